"""Immutable settings: where to send, as whom, how long to wait, how often to retry.

Settings are values (attrs frozen classes, compared by value, copied with ``attrs.evolve``);
credentials are redacted from every repr.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._checks import Checks
from ._constants import (
    APP_KEY_HEADER,
    APP_TOKEN_HEADER,
    DEFAULT_AUTH_COOLDOWN,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_ENVIRONMENT,
    DEFAULT_INITIAL_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_PACE_TIMEOUT,
    DEFAULT_RETRY_STATUSES,
    DEFAULT_TIMEOUT,
    ENV_ACCOUNT_NAME,
    ENV_APP_KEY,
    ENV_APP_TOKEN,
    ENV_ENVIRONMENT,
    ENV_SHARED_PACE,
    ENV_USER_TOKEN,
    LIMIT_KEPT,
    NEVER_RETRY_STATUSES,
    USER_TOKEN_HEADER,
)
from ._errors import ConfigurationError

#: Seconds a Redis call may take before this process paces on its own. Not shorter: a busy
#: process reads Redis' answer late (its event loop lags), and a late answer is not an
#: outage; meanwhile its requests wait for the lease, so it slows down instead of sending
#: alone.
DEFAULT_REDIS_TIMEOUT = 1.0
#: Milliseconds an idle account's state lives in Redis.
DEFAULT_KEY_TTL_MS = 15 * 60 * 1000
#: Milliseconds an account's measured limit is kept (renewed at each measure).
DEFAULT_LIMIT_TTL_MS = int(LIMIT_KEPT * 1000)


def _validate_url(instance: object, attribute: Any, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            "shared_pace: expected a redis://, rediss:// or unix:// URL, got a"
            f" {type(value).__name__}"
        )


# Here, with the other settings, not in ``_shared``: ``ClientConfig`` names it, and the Redis
# machinery (``_shared``) is imported only by a client that uses it.
@attrs.frozen
class SharedPace:
    """Where the accounts' shared pace lives: a Redis URL (``redis://host:6379/0``), or a
    ``redis.asyncio.Redis`` client (``client_factory``, called once per event loop and
    process). Keys are ``{prefix}:{account}.{environment}`` and expire after ``key_ttl_ms``
    idle; each account's measured limit (at the URL its requests go to) is kept apart for
    ``limit_ttl_ms`` (30 days), so the next run starts at it.
    idle. ``timeout``: seconds a Redis call may take before this process paces on its own."""

    url: str | None = attrs.field(default=None, validator=_validate_url, repr=False)
    prefix: str = "vtex-tracking:pace"
    timeout: float = DEFAULT_REDIS_TIMEOUT
    key_ttl_ms: int = DEFAULT_KEY_TTL_MS
    limit_ttl_ms: int = DEFAULT_LIMIT_TTL_MS
    client_factory: Callable[[], Any] | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if (self.url is None) == (self.client_factory is None):
            raise ConfigurationError("shared_pace: give a Redis URL or a client_factory")

    @property
    def where(self) -> str:
        """Host and port of the Redis server, for messages (never its password)."""
        if self.url is None:
            return "a Redis client"
        rest = self.url.split("://", 1)[1]
        return rest.rsplit("@", 1)[-1].split("/", 1)[0] or "localhost"


def _to_shared_pace(value: SharedPace | str | None) -> SharedPace | None:
    if value is None or isinstance(value, SharedPace):
        return value
    if isinstance(value, str):
        return SharedPace(url=value)
    raise ConfigurationError(
        f"shared_pace must be a Redis URL or a SharedPace, got {type(value).__name__}"
    )


# One DNS label: what may stand in "{accountName}.{environment}.com.br".
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _positive_number(name: str) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")

    return check


def _retry_statuses(value: Iterable[int]) -> frozenset[int]:
    return frozenset(value)


@attrs.frozen
class RetryPolicy:
    """How failed attempts are retried.

    ``max_attempts`` counts every request, the first included (1 disables retries). Before
    retry *n* the client sleeps a random time in ``[0, min(max_backoff, initial_backoff *
    2 ** (n - 1))]`` ("full jitter"), unless VTEX sent ``Retry-After``, which wins, capped at
    ``max_retry_after``. ``retry_statuses`` are the HTTP statuses worth another attempt;
    connection errors and timeouts are always retried. 400, 401, 403 and 404 never are.
    """

    max_attempts: int = attrs.field(default=DEFAULT_MAX_ATTEMPTS)
    initial_backoff: float = attrs.field(
        default=DEFAULT_INITIAL_BACKOFF, validator=_positive_number("initial_backoff")
    )
    max_backoff: float = attrs.field(
        default=DEFAULT_MAX_BACKOFF, validator=_positive_number("max_backoff")
    )
    max_retry_after: float = attrs.field(
        default=DEFAULT_MAX_RETRY_AFTER, validator=_positive_number("max_retry_after")
    )
    retry_statuses: frozenset[int] = attrs.field(
        default=DEFAULT_RETRY_STATUSES, converter=_retry_statuses
    )

    @max_attempts.validator
    def _check_attempts(self, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"max_attempts must be an integer >= 1, got {value!r}")

    @retry_statuses.validator
    def _check_statuses(self, attribute: attrs.Attribute[Any], value: frozenset[int]) -> None:
        forbidden = sorted(value & NEVER_RETRY_STATUSES)
        if forbidden:
            raise ConfigurationError(
                f"retry_statuses must not contain {forbidden}: the same request would fail"
                " the same way again"
            )

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(max_attempts=1)


@attrs.frozen
class Credentials:
    """An app key and token pair, or a user token; never shown in a repr."""

    app_key: str | None = attrs.field(default=None, repr=False)
    app_token: str | None = attrs.field(default=None, repr=False)
    user_token: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        for name in ("app_key", "app_token", "user_token"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(f"{name} must be a non-empty string")
            if isinstance(value, str) and ("\r" in value or "\n" in value):
                raise ConfigurationError(f"{name} must not contain line breaks")
        if self.user_token is None and (self.app_key is None or self.app_token is None):
            raise ConfigurationError(
                "VTEX credentials are missing: pass app_key and app_token (or user_token),"
                f" or set {ENV_APP_KEY} and {ENV_APP_TOKEN} (or {ENV_USER_TOKEN})"
            )

    def headers(self) -> dict[str, str]:
        """The authentication headers; a user token is sent instead of the key/token pair."""
        if self.user_token is not None:
            return {USER_TOKEN_HEADER: self.user_token}
        assert self.app_key is not None and self.app_token is not None
        return {APP_KEY_HEADER: self.app_key, APP_TOKEN_HEADER: self.app_token}

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for tests and redaction."""
        return tuple(v for v in (self.app_key, self.app_token, self.user_token) if v)

    def __repr__(self) -> str:
        kind = "user_token" if self.user_token is not None else "app_key/app_token"
        return f"Credentials({kind}=<redacted>)"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_base_url(
    account_name: str,
    environment: str,
    base_url: str | None,
    *,
    allow_insecure_http: bool,
) -> str:
    """Return the URL prefix requests go to, refusing hosts an attacker could choose."""
    for name, value in (("account_name", account_name), ("environment", environment)):
        if not isinstance(value, str) or not _HOST_LABEL.match(value):
            raise ConfigurationError(
                f"{name} must be a single host-name label (letters, digits, '-'),"
                f" got {value!r}"
            )
    if base_url is None:
        return f"https://{account_name}.{environment}.com.br"

    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url must be an absolute http(s) URL such as https://host, got {base_url!r}"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError("base_url must not contain credentials, a query or a fragment")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            "base_url uses plain http to a non-loopback host, which would send the app token"
            " in clear text; use https, or pass allow_insecure_http=True to opt out"
        )
    return base_url.rstrip("/")


@attrs.frozen
class ClientConfig:
    """Everything a client needs to know, checked once at construction."""

    account_name: str
    credentials: Credentials
    environment: str = DEFAULT_ENVIRONMENT
    base_url: str | None = None
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, validator=_positive_number("timeout"))
    connect_timeout: float = attrs.field(
        default=DEFAULT_CONNECT_TIMEOUT, validator=_positive_number("connect_timeout")
    )
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    rate_limit: float | None = None
    adaptive: bool = True
    pace_timeout: float | None = DEFAULT_PACE_TIMEOUT
    auth_cooldown: float = attrs.field(
        default=DEFAULT_AUTH_COOLDOWN, validator=_positive_number("auth_cooldown")
    )
    allow_insecure_http: bool = False
    trust_env: bool = False
    user_agent: str | None = None
    checks: Checks = attrs.field(factory=Checks)
    shared_pace: SharedPace | None = attrs.field(default=None, converter=_to_shared_pace)
    url_prefix: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {self.retry!r}")
        if not isinstance(self.checks, Checks):
            raise ConfigurationError(f"checks must be a Checks, got {self.checks!r}")
        for name in ("rate_limit", "pace_timeout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
            ):
                raise ConfigurationError(f"{name} must be a number > 0 or None, got {value!r}")
        if not isinstance(self.adaptive, bool):
            raise ConfigurationError(f"adaptive must be True or False, got {self.adaptive!r}")
        if (
            isinstance(self.max_concurrency, bool)
            or not isinstance(self.max_concurrency, int)
            or self.max_concurrency < 1
        ):
            raise ConfigurationError(
                f"max_concurrency must be an integer >= 1, got {self.max_concurrency!r}"
            )
        if self.timeout == 0:
            raise ConfigurationError("timeout must be greater than 0")
        prefix = build_base_url(
            self.account_name,
            self.environment,
            self.base_url,
            allow_insecure_http=self.allow_insecure_http,
        )
        object.__setattr__(self, "url_prefix", prefix)


def settings_from_env(
    overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Merge ``VTEX_*`` environment variables under explicit ``overrides`` (which win)."""
    env = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for key, variable in (
        ("account_name", ENV_ACCOUNT_NAME),
        ("environment", ENV_ENVIRONMENT),
        ("app_key", ENV_APP_KEY),
        ("app_token", ENV_APP_TOKEN),
        ("user_token", ENV_USER_TOKEN),
        ("shared_pace", ENV_SHARED_PACE),
    ):
        value = env.get(variable)
        if value:
            settings[key] = value
    settings.update(overrides)

    missing: list[str] = []
    if not settings.get("account_name"):
        missing.append(ENV_ACCOUNT_NAME)
    if not settings.get("user_token") and not (
        settings.get("app_key") and settings.get("app_token")
    ):
        missing.append(f"{ENV_APP_KEY} and {ENV_APP_TOKEN} (or {ENV_USER_TOKEN})")
    if missing:
        raise ConfigurationError(
            "cannot configure the VTEX client from the environment: set "
            + "; ".join(missing)
            + ", or pass the values as arguments"
        )
    return settings
