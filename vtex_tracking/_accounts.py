"""``Accounts``: the credentials and limits of many VTEX stores, for hubs that serve them all.

Built from a mapping, from environment variables, or from a TOML file with one table per
account. Secrets are best kept out of the file: ``app_token_env = "ACME_TOKEN"`` names the
environment variable that holds the token. Nothing secret ever shows in a repr or an error.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from ._config import Credentials
from ._constants import DEFAULT_ENVIRONMENT
from ._errors import ConfigurationError
from ._public import present_lazy

_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SECRETS = ("app_token", "user_token")
#: An account's settings other than its credentials.
_SETTINGS = (
    "environment",
    "base_url",
    "rate_limit",
    "adaptive",
    "max_concurrency",
    "allow_slash_in_invoice",
)
_KEYS = (
    "app_key",
    "app_key_env",
    "app_token",
    "app_token_env",
    "user_token",
    "user_token_env",
    *_SETTINGS,
)
#: Environment variable listing the accounts for ``Accounts.from_env``.
ENV_ACCOUNTS = "VTEX_ACCOUNTS"


@attrs.frozen
class Account:
    """One store: its name, credentials (never shown), host and optional limits.

    ``rate_limit`` caps its requests per second (None: the client's; learned from 429s
    when ``adaptive``); ``adaptive`` (None: the client's) learns its limit from 429/503;
    ``max_concurrency`` caps its requests in flight (None: the client's ``max_concurrency``).
    ``allow_slash_in_invoice`` (None: the client's ``Checks``) sends invoice numbers with
    ``/`` to this store, for the accounts whose OMS routes them.
    """

    name: str
    credentials: Credentials = attrs.field(repr=False)
    environment: str = DEFAULT_ENVIRONMENT
    base_url: str | None = None
    rate_limit: float | None = None
    max_concurrency: int | None = None
    adaptive: bool | None = None
    allow_slash_in_invoice: bool | None = None


class Accounts(Mapping[str, Account]):
    """A read-only mapping of account name to ``Account``; give it to a client as
    ``accounts=`` so updates with an ``account_name`` go to their own store."""

    def __init__(self, accounts: Mapping[str, Account] | None = None) -> None:
        self._accounts = dict(accounts or {})

    def __getitem__(self, name: str) -> Account:
        return self._accounts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._accounts)

    def __len__(self) -> int:
        return len(self._accounts)

    def __repr__(self) -> str:
        names = ", ".join(self._accounts)
        return f"Accounts([{names}], credentials=<redacted>)"

    @classmethod
    def from_mapping(
        cls, settings: Mapping[str, Mapping[str, Any]], *, environ: Mapping[str, str] | None = None
    ) -> Accounts:
        """From ``{"acme": {"app_key": ..., "app_token_env": "ACME_TOKEN", ...}, ...}``.

        Keys per account: ``app_key``, ``app_token`` and ``user_token``, each either inline
        or as ``<key>_env`` naming an environment variable; ``environment``, ``base_url``,
        ``rate_limit``, ``adaptive``, ``max_concurrency``, ``allow_slash_in_invoice``.
        """
        env = os.environ if environ is None else environ
        accounts = {}
        for name, table in settings.items():
            accounts[name] = _account(name, table, env, _where=lambda key: "")
        return cls(accounts)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Accounts:
        """From ``VTEX_ACCOUNTS=acme,globex`` and, per account, ``VTEX_<NAME>_APP_KEY``,
        ``VTEX_<NAME>_APP_TOKEN`` (or ``VTEX_<NAME>_USER_TOKEN``), and optionally
        ``VTEX_<NAME>_ENVIRONMENT``, ``_BASE_URL``, ``_RATE_LIMIT``, ``_ADAPTIVE``,
        ``_MAX_CONCURRENCY``, ``_ALLOW_SLASH_IN_INVOICE``
        (``<NAME>`` upper-cased, ``-`` as ``_``)."""
        env = os.environ if environ is None else environ
        names = [n.strip() for n in env.get(ENV_ACCOUNTS, "").split(",") if n.strip()]
        if not names:
            raise ConfigurationError(f"set {ENV_ACCOUNTS} to a comma-separated list of accounts")
        settings: dict[str, dict[str, Any]] = {}
        for name in names:
            prefix = f"VTEX_{name.upper().replace('-', '_')}_"
            table: dict[str, Any] = {}
            for key in ("app_key", "app_token", "user_token"):
                if f"{prefix}{key.upper()}" in env:
                    table[f"{key}_env"] = f"{prefix}{key.upper()}"
            for key in _SETTINGS:
                value = env.get(f"{prefix}{key.upper()}")
                if value:
                    table[key] = value
            settings[name] = table
        return cls.from_mapping(settings, environ=env)

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
    ) -> Accounts:
        """From a TOML file with one table per account (see ``from_mapping`` for the keys).
        A file holding an inline secret that other users can read gets a warning. Errors say
        ``file:line: account: key: problem``."""
        path = Path(path)
        env = os.environ if environ is None else environ
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"{path}: not UTF-8") from None
        # Imported here, not with the package: only accounts files need a TOML parser.
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised on Python 3.10 only
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
        lines = text.splitlines()
        accounts = {}
        inline_secrets = []
        for name, table in doc.items():
            where = _locator(path, lines, name)
            if not isinstance(table, dict):
                raise ConfigurationError(
                    f"{where(None)}{name}: expected a table ([{name}]) of settings"
                )
            accounts[name] = _account(name, table, env, _where=where)
            inline_secrets += [f"{name}.{key}" for key in _SECRETS if key in table]
        if inline_secrets and _readable_by_others(path):
            warnings.warn(
                f"{path} holds secrets ({', '.join(inline_secrets)}) and other users can read"
                f" it: chmod 600 {path}, or use app_token_env to name an environment variable",
                UserWarning,
                stacklevel=2,
            )
        return cls(accounts)


def default_account_settings(accounts: Accounts, default: str | None) -> dict[str, Any]:
    """Constructor arguments for a client whose own store is ``default`` (None: the first
    store, standing in for a default that does not exist; see ``from_accounts``)."""
    if not accounts:
        raise ConfigurationError("the accounts registry is empty")
    name = default if default is not None else next(iter(accounts))
    account = accounts.get(name)
    if account is None:
        raise ConfigurationError(
            f"no credentials for the default account {name!r} in the registry"
            f" (it has {', '.join(sorted(accounts))})"
        )
    credentials = account.credentials
    return {
        "account_name": account.name,
        "app_key": credentials.app_key,
        "app_token": credentials.app_token,
        "user_token": credentials.user_token,
        "environment": account.environment,
        "base_url": account.base_url,
        "accounts": accounts,
    }


def _locator(path: Path, lines: list[str], account: str) -> Any:
    """A function giving ``file:line: `` for a key of ``account`` (its table's line if the key
    is absent), so errors point at the line to fix."""
    header = re.compile(rf"^\s*\[\s*\"?{re.escape(account)}\"?\s*\]")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)

    def where(key: str | None) -> str:
        if start is None:
            return f"{path}: "
        if key is not None:
            pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
            for i in range(start + 1, len(lines)):
                if lines[i].lstrip().startswith("["):
                    break
                if pattern.match(lines[i]):
                    return f"{path}:{i + 1}: "
        return f"{path}:{start + 1}: "

    return where


def _readable_by_others(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH)) and os.name == "posix"


def _account(name: str, table: Mapping[str, Any], env: Mapping[str, str], _where: Any) -> Account:
    def fail(key: str | None, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{_where(key)}{name}: {key + ': ' if key else ''}{problem}")

    if not isinstance(name, str) or not _ACCOUNT_NAME.match(name):
        raise fail(None, "not a VTEX account name (letters, digits, '-')")
    if not isinstance(table, Mapping):
        raise fail(None, "expected a mapping of settings")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown key; expected one of {', '.join(_KEYS)}")

    values: dict[str, str | None] = {}
    for key in ("app_key", "app_token", "user_token"):
        inline, reference = table.get(key), table.get(f"{key}_env")
        if inline is not None and reference is not None:
            raise fail(key, f"give {key} or {key}_env, not both")
        if reference is not None:
            if not isinstance(reference, str) or not reference:
                raise fail(f"{key}_env", "expected the name of an environment variable")
            if not env.get(reference):
                raise fail(f"{key}_env", f"the environment variable {reference} is not set")
            values[key] = env[reference]
        elif inline is not None:
            if not isinstance(inline, str) or not inline.strip():
                raise fail(key, "expected a non-empty string")
            values[key] = inline
    try:
        credentials = (
            Credentials(user_token=values["user_token"])
            if values.get("user_token")
            else Credentials(app_key=values.get("app_key"), app_token=values.get("app_token"))
        )
    except ConfigurationError as exc:
        complete = values.get("user_token") or (values.get("app_key") and values.get("app_token"))
        problem = str(exc) if complete else "needs app_key and app_token (or user_token)"
        raise fail(None, problem) from None

    environment = table.get("environment", DEFAULT_ENVIRONMENT)
    if not isinstance(environment, str) or not _ACCOUNT_NAME.match(environment):
        raise fail("environment", f"expected a host-name label, got {environment!r}")
    base_url = table.get("base_url")
    if base_url is not None and not isinstance(base_url, str):
        raise fail("base_url", "expected a URL string")
    rate_limit = _number(table, "rate_limit", fail, float)
    max_concurrency = _number(table, "max_concurrency", fail, int)
    adaptive = _flag(table, "adaptive", fail)
    allow_slash = _flag(table, "allow_slash_in_invoice", fail)
    return Account(
        name=name,
        credentials=credentials,
        environment=environment,
        base_url=base_url,
        rate_limit=rate_limit,
        max_concurrency=int(max_concurrency) if max_concurrency is not None else None,
        adaptive=adaptive,
        allow_slash_in_invoice=allow_slash,
    )


def _flag(table: Mapping[str, Any], key: str, fail: Any) -> bool | None:
    value = table.get(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise fail(key, f"expected true or false, got {value!r}")


def _number(table: Mapping[str, Any], key: str, fail: Any, kind: type) -> Any:
    value = table.get(key)
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise fail(key, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or number <= 0 or (kind is int and number != float(value)):
        raise fail(key, f"expected a {'whole ' if kind is int else ''}number > 0, got {value!r}")
    return number


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
