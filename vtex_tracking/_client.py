"""``AsyncTrackingClient``: builds the request, runs the retry loop over the transport, decodes."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterable, Callable, Iterable
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio

from ._accounts import Account, Accounts, hub_settings
from ._bulk import PushStream, start_push
from ._config import ClientConfig, Credentials, RetryPolicy, settings_from_env
from ._constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_ENVIRONMENT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT,
)
from ._errors import (
    ClientClosedError,
    ConfigurationError,
    TransportError,
    error_from_response,
    find_request_id,
    unexpected_body_error,
)
from ._models import PushResult, PushSummary, TrackingReceipt, TrackingStatus, TrackingUpdate
from ._retry import retry_after_from_headers, retry_delay
from ._serde import decode_receipt, encode_status
from ._throttle import AttemptHooks, acquire
from ._transport import RawResponse, Transport
from ._version import __version__

logger = logging.getLogger("vtex_tracking")

_TRACKING_PATH = "/api/oms/pvt/orders/{}/invoice/{}/tracking"


# Ids made only of these need no encoding (the common case: "1172452900000-01", "NF-4100").
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def _segment(value: str) -> str:
    # safe="" also encodes "/", so an invoice "NF/123" stays one segment ("NF%2F123").
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


def tracking_path(order_id: str, invoice_number: str) -> str:
    """The endpoint's path, each id percent-encoded as exactly one path segment."""
    return _TRACKING_PATH.format(_segment(order_id), _segment(invoice_number))


class AsyncTrackingClient:
    """Sends tracking updates to VTEX from async code.

    One client holds one connection pool; share it across your application and close it
    with ``await client.aclose()`` or ``async with``. At most ``max_concurrency`` requests are
    in flight at once, however many coroutines call it.
    """

    def __init__(
        self,
        account_name: str,
        app_key: str | None = None,
        app_token: str | None = None,
        *,
        user_token: str | None = None,
        environment: str = DEFAULT_ENVIRONMENT,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        trust_env: bool = False,
        user_agent: str | None = None,
        accounts: Accounts | None = None,
    ) -> None:
        """Configure a client; nothing is connected until the first request.

        ``base_url`` replaces ``https://{account_name}.{environment}.com.br`` (a proxy, or
        ``FakeOMS().url`` in tests); plain http is only allowed to loopback hosts unless
        ``allow_insecure_http``. ``timeout`` bounds each attempt, in seconds. ``session`` is
        an aiohttp session to borrow (never closed by the client). ``trust_env`` makes aiohttp
        honour ``HTTP(S)_PROXY`` and ``.netrc``. ``accounts`` holds other stores' credentials
        and limits: updates whose ``account_name`` names one go to that store, through this
        client's connection pool (``max_concurrency`` is then the budget of all stores).
        """
        # A user token replaces the key/token pair, so the pair is dropped when both are given.
        credentials = (
            Credentials(user_token=user_token)
            if user_token is not None
            else Credentials(app_key=app_key, app_token=app_token)
        )
        self._config = ClientConfig(
            account_name=account_name,
            credentials=credentials,
            environment=environment,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry if retry is not None else RetryPolicy(),
            max_concurrency=max_concurrency,
            allow_insecure_http=allow_insecure_http,
            trust_env=trust_env,
            user_agent=user_agent,
        )
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": user_agent or f"vtex-tracking-python/{__version__}",
            **credentials.headers(),
        }
        self._transport = Transport(
            url_prefix=self._config.url_prefix,
            headers=headers,
            timeout=timeout,
            connect_timeout=connect_timeout,
            pool_size=max_concurrency,
            trust_env=trust_env,
            session=session,
        )
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        # Redacted from error responses, in case a proxy echoes the request headers back.
        self._secrets = credentials.secrets()
        self._accounts = accounts
        # Other stores' clients, made on first use (idle accounts cost nothing).
        self._stores: dict[str, AsyncTrackingClient] = {}
        # False for a hub client made without a default store (``from_accounts``): an update
        # that names no account then fails instead of going to an arbitrary store.
        self._has_default_store = True

    @classmethod
    def from_env(cls, **overrides: Any) -> AsyncTrackingClient:
        """Build a client from ``VTEX_ACCOUNT_NAME``, ``VTEX_ENVIRONMENT``, ``VTEX_APP_KEY``,
        ``VTEX_APP_TOKEN`` and ``VTEX_USER_TOKEN``; keyword arguments override them."""
        return cls(**settings_from_env(overrides))

    @classmethod
    def from_accounts(
        cls, accounts: Accounts, *, default: str | None = None, **settings: Any
    ) -> AsyncTrackingClient:
        """A client for a hub serving every store of ``accounts``: each update goes to its
        ``account_name``'s store. ``default`` names the store for updates without an
        ``account_name``; with None such updates fail (``ConfigurationError``) rather than go
        to a store picked by chance. ``settings`` are the other constructor arguments
        (``max_concurrency`` is the budget of all stores together)."""
        client = cls(**hub_settings(accounts, default), **settings)
        client._has_default_store = default is not None
        return client

    @property
    def config(self) -> ClientConfig:
        """The client's settings (immutable; credentials redacted from its repr)."""
        return self._config

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(account_name={self._config.account_name!r},"
            f" url={self._config.url_prefix!r}, credentials=<redacted>)"
        )

    @property
    def accounts(self) -> Accounts | None:
        """The other stores this client can send to (``accounts=``), or None."""
        return self._accounts

    @property
    def default_account(self) -> str | None:
        """The store that updates without an ``account_name`` go to: this client's own, or
        None for a hub client made by ``from_accounts`` without a default."""
        return self._config.account_name if self._has_default_store else None

    def for_account(self, account_name: str | None) -> AsyncTrackingClient:
        """The client that sends to ``account_name``: this one for its own account (or None),
        otherwise one made from ``accounts`` on first use, sharing this client's pool.

        Raises ``ConfigurationError`` when no credentials are known for the account.
        """
        if account_name is None and not self._has_default_store:
            raise ConfigurationError(
                "the update names no account_name, and this client has no default account"
            )
        if account_name is None or account_name == self._config.account_name:
            return self
        store = self._stores.get(account_name)
        if store is None:
            if self._transport.closed:
                raise ClientClosedError("this client is closed; create a new one")
            account = self._accounts.get(account_name) if self._accounts is not None else None
            if account is None:
                raise ConfigurationError(f"no credentials for account {account_name!r}")
            store = self._stores[account_name] = self._store_client(account)
        return store

    def _store_client(self, account: Account) -> AsyncTrackingClient:
        config = self._config
        credentials = account.credentials
        store = AsyncTrackingClient(
            account.name,
            credentials.app_key,
            credentials.app_token,
            user_token=credentials.user_token,
            environment=account.environment,
            base_url=account.base_url,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            retry=config.retry,
            max_concurrency=min(
                account.max_concurrency or config.max_concurrency, config.max_concurrency
            ),
            allow_insecure_http=config.allow_insecure_http,
            trust_env=config.trust_env,
            user_agent=config.user_agent,
        )
        # One pool for every store: one global connection budget, pooled per host.
        store._transport = Transport(
            url_prefix=store._config.url_prefix,
            headers=store._transport.headers,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            pool_size=config.max_concurrency,
            shares_pool_of=self._transport,
        )
        return store

    async def update_tracking_status(
        self,
        order_id: str,
        invoice_number: str,
        status: TrackingStatus,
        *,
        account_name: str | None = None,
    ) -> TrackingReceipt:
        """Replace the tracking events of one invoice and return VTEX's receipt.

        ``account_name`` sends to another store of ``accounts`` (default: this client's).
        Raises ``ValidationError`` for bad input before sending, an ``APIError`` subclass when
        VTEX refuses (after retrying what is worth retrying), ``TransportError`` when no
        answer came back, ``ConfigurationError`` for an account without credentials.
        """
        update = TrackingUpdate(order_id, invoice_number, status, account_name=account_name)
        return await self.send(update)

    async def send(self, update: TrackingUpdate) -> TrackingReceipt:
        """Send one ``TrackingUpdate`` (to its ``account_name``'s store, if it has one)."""
        return await self.for_account(update.account_name)._send(update)

    async def _send(
        self, update: TrackingUpdate, hooks: AttemptHooks | None = None
    ) -> TrackingReceipt:
        """The retry loop: attempt, decide, wait, repeat. ``hooks`` let the bulk engine pace
        attempts and learn from their outcomes."""
        path = tracking_path(update.order_id, update.invoice_number)
        body = encode_status(update.status)
        policy = self._config.retry
        attempts = 0
        while True:
            attempts += 1
            started = time.perf_counter()
            outcome = await self._attempt(path, body, hooks)
            if isinstance(outcome, TransportError):
                self._log_attempt(path, None, attempts, started)
                delay = retry_delay(policy, attempts)
                if delay is None:
                    raise _with_context(outcome, update, attempts) from outcome.__cause__
                self._log_retry(path, str(outcome), attempts, delay)
                await anyio.sleep(delay)
                continue

            raw, retry_after = outcome
            self._log_attempt(path, raw.status, attempts, started)
            if 200 <= raw.status < 300:
                return self._receipt(raw, update, attempts)
            delay = retry_delay(policy, attempts, status=raw.status, retry_after=retry_after)
            if delay is None:
                raise error_from_response(
                    raw.status,
                    raw.headers,
                    raw.body,
                    order_id=update.order_id,
                    invoice_number=update.invoice_number,
                    attempts=attempts,
                    retry_after=retry_after,
                    secrets=self._secrets,
                )
            self._log_retry(path, f"HTTP {raw.status}", attempts, delay)
            await anyio.sleep(delay)

    async def _attempt(
        self, path: str, body: bytes, hooks: AttemptHooks | None
    ) -> tuple[RawResponse, float | None] | TransportError:
        """One request under the client-wide limit, reported to ``hooks`` whatever happens."""
        if hooks is not None:
            await hooks.before_attempt()
        status: int | None = None
        retry_after: float | None = None
        try:
            await acquire(self._limiter)
            try:
                raw = await self._transport.put(path, body)
            finally:
                self._limiter.release()
        except TransportError as exc:
            return exc
        else:
            status = raw.status
            if status in (429, 503):
                retry_after = retry_after_from_headers(raw.headers)
            return raw, retry_after
        finally:
            # Also on cancellation (status None), so a pacer never leaks a slot.
            if hooks is not None:
                hooks.after_attempt(status, retry_after)

    def push(
        self,
        updates: Iterable[TrackingUpdate] | AsyncIterable[TrackingUpdate],
        *,
        concurrency: int | None = None,
        rate_limit: float | None = None,
        adaptive: bool = True,
        read_ahead: int | None = None,
        on_result: Callable[[PushResult], None] | None = None,
    ) -> PushStream:
        """Send many updates; iterate the returned stream for one ``PushResult`` per item.

        ``updates`` (an iterable or async iterable) is read lazily, at most ``read_ahead``
        items ahead of the results. Updates for one invoice are sent in input order, never two
        at once. ``concurrency`` (default: the client's ``max_concurrency``, which also caps
        it) bounds requests in flight; ``rate_limit`` caps requests per second; ``adaptive``
        slows everyone down on 429/503 and speeds up again on success. ``on_result`` is
        called with each result as it is produced (for progress reporting).
        """
        return start_push(
            self,
            updates,
            concurrency=concurrency if concurrency is not None else self._config.max_concurrency,
            rate_limit=rate_limit,
            adaptive=adaptive,
            read_ahead=read_ahead,
            on_result=on_result,
        )

    async def push_all(
        self,
        updates: Iterable[TrackingUpdate] | AsyncIterable[TrackingUpdate],
        *,
        concurrency: int | None = None,
        rate_limit: float | None = None,
        adaptive: bool = True,
        read_ahead: int | None = None,
        on_result: Callable[[PushResult], None] | None = None,
    ) -> PushSummary:
        """Send many updates and return the totals (``push``, consumed for you)."""
        async with self.push(
            updates,
            concurrency=concurrency,
            rate_limit=rate_limit,
            adaptive=adaptive,
            read_ahead=read_ahead,
            on_result=on_result,
        ) as stream:
            return await stream.summary()

    def _receipt(self, raw: RawResponse, update: TrackingUpdate, attempts: int) -> TrackingReceipt:
        if raw.truncated:
            raise unexpected_body_error(
                raw.status,
                raw.headers,
                raw.body,
                "the body is larger than any receipt (reading stopped at 1 MiB)",
                order_id=update.order_id,
                invoice_number=update.invoice_number,
                attempts=attempts,
                secrets=self._secrets,
            )
        return decode_receipt(
            raw.status,
            raw.headers,
            raw.body,
            request_id=find_request_id(raw.headers),
            order_id=update.order_id,
            invoice_number=update.invoice_number,
            attempts=attempts,
            secrets=self._secrets,
        )

    @staticmethod
    def _log_attempt(path: str, status: int | None, attempts: int, started: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "PUT %s -> %s (attempt %d, %.1f ms)",
                path,
                status if status is not None else "no response",
                attempts,
                (time.perf_counter() - started) * 1000,
            )

    @staticmethod
    def _log_retry(path: str, reason: str, attempts: int, delay: float) -> None:
        logger.warning(
            "PUT %s failed with %s on attempt %d; retrying in %.2f s", path, reason, attempts, delay
        )

    async def aclose(self) -> None:
        """Close the connection pool (if the client created it); safe to call twice."""
        for store in self._stores.values():
            await store.aclose()
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncTrackingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _abandon_after_fork(self) -> None:
        """Drop the pool inherited from a parent process (used by the sync facade)."""
        self._transport.abandon()
        # Tokens held by the parent's in-flight requests would never be returned here.
        self._limiter = anyio.CapacityLimiter(self._config.max_concurrency)
        for store in self._stores.values():
            store._abandon_after_fork()


def _with_context(exc: TransportError, update: TrackingUpdate, attempts: int) -> TransportError:
    plural = "s" if attempts != 1 else ""
    return type(exc)(
        f"{exc} (order {update.order_id!r}, invoice {update.invoice_number!r},"
        f" after {attempts} attempt{plural})",
        order_id=update.order_id,
        invoice_number=update.invoice_number,
        attempts=attempts,
    )
