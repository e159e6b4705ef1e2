"""``AsyncTrackingClient``: the public surface; routes each call to its account's sender.

The client owns the connection pool and the budget of requests in flight; each account it
talks to gets an ``AccountSender`` (``_sender``) on first use, with its own credentials,
retry loop and pace. Single calls and pushes go through the same senders, so they share
each account's pace.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs

from ._checks import Checks
from ._config import (
    ClientConfig,
    Credentials,
    RetryPolicy,
    SharedPace,
    build_base_url,
    settings_from_env,
)
from ._constants import (
    AUTH_FAILURES_TO_STOP,
    DEFAULT_AUTH_COOLDOWN,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_ENVIRONMENT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_PACE_TIMEOUT,
    DEFAULT_TIMEOUT,
    POOL_SHARE_OF_OPEN_FILES,
)
from ._errors import ClientClosedError, ConfigurationError, unexpected_body_error
from ._log import logger
from ._models import (
    DispatchedDate,
    InvoiceTracking,
    TrackingNumberUpdate,
    TrackingReceipt,
    TrackingStatus,
    TrackingUpdate,
    check_order_id,
)
from ._pace import AccountPace
from ._sender import AccountSender, SharedBudget, tracking_path
from ._serde import decode_order, prepare_wire
from ._tokens import LocalTokens, TokenSource
from ._transport import Transport, open_files_limit, pool_size_within
from ._version import __version__

# Imported where they are used, not with the package: accounts files, the limits file, the
# Redis shared pace and the push machinery (anyio with it) serve some programs only.
if TYPE_CHECKING:
    from ._accounts import Account, Accounts
    from ._limits_file import LimitsFile
    from ._read_back import Order
    from ._remember import Journal, UnchangedState
    from ._reports import AccountMetrics, PushResult, PushSummary
    from ._shared import SharedConnection
    from ._stream import PushStream

__all__ = ["AsyncTrackingClient", "tracking_path"]


def _pool_size_for_this_process(requested: int) -> int:
    """``requested`` (``max_concurrency``), or the share of the process' open-files limit the
    pool may take when that is less, with a note in the log saying so.

    Each pooled connection is an open file: a pool the limit cannot hold would make requests
    fail with "Too many open files" instead of waiting for a connection (macOS' default limit
    is 256, below the default ``max_concurrency``).
    """
    open_files = open_files_limit()
    size = pool_size_within(open_files, requested)
    if size < requested:
        # The default adapting to the machine is expected (INFO); a value the user chose and
        # does not get is theirs to act on (WARNING).
        explicit = requested != DEFAULT_MAX_CONCURRENCY
        logger.log(
            logging.WARNING if explicit else logging.INFO,
            "connection pool sized to %d (max_concurrency=%d): this process may open only %d"
            " files (RLIMIT_NOFILE); for all %d requests in flight, raise the limit with"
            " `ulimit -n %d` (or more) in the shell that starts it",
            size,
            requested,
            open_files,
            requested,
            math.ceil(requested / POOL_SHARE_OF_OPEN_FILES),
        )
    return size


class AsyncTrackingClient:
    """Sends tracking updates to VTEX from async code.

    One client holds one connection pool; share it across your application and close it
    with ``await client.aclose()`` or ``async with``. Every request for an account waits for
    its turn in that account's pace (rate, window, ``Retry-After``), whichever coroutine or
    push sends it; at most ``max_concurrency`` requests are in flight over all accounts.
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
        rate_limit: float | None = None,
        adaptive: bool = True,
        pace_timeout: float | None = DEFAULT_PACE_TIMEOUT,
        auth_cooldown: float = DEFAULT_AUTH_COOLDOWN,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        trust_env: bool = False,
        user_agent: str | None = None,
        accounts: Accounts | None = None,
        checks: Checks | None = None,
        shared_pace: SharedPace | str | None = None,
        limits_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """Configure a client; nothing is connected until the first request.

        ``base_url`` replaces ``https://{account_name}.{environment}.com.br`` (a proxy, or
        ``FakeOMS().url`` in tests); plain http is only allowed to loopback hosts unless
        ``allow_insecure_http``. ``timeout`` bounds each attempt, in seconds.
        ``max_concurrency`` caps requests in flight over all accounts (and sizes the pool;
        where the process may open few files, ``ulimit -n``, the pool and the cap shrink to
        fit, with a note in the log).
        ``rate_limit`` caps the account's requests per second; ``adaptive`` learns its limit
        from 429/503 answers (False, with no ``rate_limit``: the SDK adds no pacing of its
        own). ``pace_timeout`` bounds how long a single call waits for its turn (None: no
        bound). After repeated 401/403 an account's calls fail fast for ``auth_cooldown``
        seconds (``AuthCooldownError``). ``session`` is an aiohttp session to borrow (never
        closed by the client). ``trust_env`` makes aiohttp honour ``HTTP(S)_PROXY`` and
        ``.netrc``. ``accounts`` holds other accounts' credentials and limits: updates whose
        ``account_name`` names one go to that account through this client's pool;
        ``rate_limit`` and ``adaptive`` are their defaults. ``checks`` says what is refused
        before sending and the time zone of ``deliveredDate`` (default ``Checks()``: no ``/``
        in invoice numbers, no empty event list, no delivery without a date or in the
        future, Brasília time). ``shared_pace`` (a Redis URL or a ``SharedPace``) shares
        each account's pace with every process and machine pointed at the same Redis (and
        keeps each account's measured limit there for the next run). ``limits_file`` keeps
        each account's measured limit in a file for a single process: the next client with
        the same file starts each account just below it instead of slowly from 2 requests per
        second (written when the client closes).
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
            rate_limit=rate_limit,
            adaptive=adaptive,
            pace_timeout=pace_timeout,
            auth_cooldown=auth_cooldown,
            allow_insecure_http=allow_insecure_http,
            trust_env=trust_env,
            user_agent=user_agent,
            checks=checks if checks is not None else Checks(),
            shared_pace=shared_pace,
        )
        # The wire converter is built now, not on the first request: building it imports
        # cattrs, and an import opens files, which a process out of file descriptors (or a
        # request deadline) should not meet in the middle of a send.
        prepare_wire()
        self._shared: SharedConnection | None = None
        if self._config.shared_pace is not None:
            from ._shared import SharedConnection

            self._shared = SharedConnection(self._config.shared_pace)
        self._limits: LimitsFile | None = None
        if limits_file is not None:
            from ._limits_file import LimitsFile

            self._limits = LimitsFile(limits_file)
        self._user_agent = user_agent or f"vtex-tracking-python/{__version__}"
        #: Requests in flight over all accounts, and the pool's size: ``max_concurrency``, or
        #: fewer where the process cannot open that many connections.
        self._max_concurrency = (
            self._config.max_concurrency
            if session is not None  # a borrowed session's pool is its owner's to size
            else _pool_size_for_this_process(self._config.max_concurrency)
        )
        # The pool: owned by the client's own account's transport, shared by the others'.
        self._transport = Transport(
            url_prefix=self._config.url_prefix,
            headers=self._headers(credentials),
            timeout=timeout,
            connect_timeout=connect_timeout,
            pool_size=self._max_concurrency,
            trust_env=trust_env,
            session=session,
        )
        self._budget = SharedBudget(self._max_concurrency)
        self._accounts = accounts
        # One sender per account talked to; others are made on first use (idle accounts
        # cost nothing).
        own = accounts.get(account_name) if accounts is not None else None
        self._senders: dict[str, AccountSender] = {
            account_name: self._new_sender(account_name, credentials, self._transport, own)
        }
        # False for a hub client made without a default account (``from_accounts``): an
        # update that names no account then fails instead of going to an arbitrary one.
        self._has_default_account = True

    @classmethod
    def from_env(cls, **overrides: Any) -> AsyncTrackingClient:
        """Build a client from ``VTEX_ACCOUNT_NAME``, ``VTEX_ENVIRONMENT``, ``VTEX_APP_KEY``,
        ``VTEX_APP_TOKEN`` and ``VTEX_USER_TOKEN``; keyword arguments override them."""
        return cls(**settings_from_env(overrides))

    @classmethod
    def from_accounts(
        cls, accounts: Accounts, *, default: str | None = None, **settings: Any
    ) -> AsyncTrackingClient:
        """A client for a hub serving every account of ``accounts``: each update goes to its
        ``account_name``'s account. ``default`` names the account for updates without an
        ``account_name``; with None such updates fail (``ConfigurationError``) rather than go
        to an account picked by chance. ``settings`` are the other constructor arguments
        (``max_concurrency`` is the budget of all accounts together)."""
        from ._accounts import default_account_settings

        client = cls(**default_account_settings(accounts, default), **settings)
        client._has_default_account = default is not None
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
        """The other accounts this client can send to (``accounts=``), or None."""
        return self._accounts

    @property
    def default_account(self) -> str | None:
        """The account that updates without an ``account_name`` go to: this client's own, or
        None for a hub client made by ``from_accounts`` without a default."""
        return self._config.account_name if self._has_default_account else None

    def metrics(self) -> dict[str, AccountMetrics]:
        """Each account's counters since the client was made (requests, retries, answers by
        kind, seconds waited for the pace) and its pace now (rate, window, round trip), for a
        metrics system to read. Single calls and pushes are counted alike. Cheap: call it
        as often as your scraper likes."""
        return {
            name: sender.counters.snapshot(sender.account, sender.pace)
            for name, sender in list(self._senders.items())
        }

    # -- routing -------------------------------------------------------------------------------

    def _headers(self, credentials: Credentials) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            **credentials.headers(),
        }

    def _new_sender(
        self,
        name: str,
        credentials: Credentials,
        transport: Transport,
        account: Account | None,
    ) -> AccountSender:
        """The sender of account ``name``: the registry's limits (``account``) where it sets
        them, else the client's."""
        config = self._config
        rate_limit = config.rate_limit
        adaptive = config.adaptive
        window = self._max_concurrency
        checks = config.checks
        if account is not None:
            if account.allow_slash_in_invoice is not None:
                checks = attrs.evolve(checks, allow_slash_in_invoice=account.allow_slash_in_invoice)
            if account.rate_limit is not None:
                rate_limit = account.rate_limit
            if account.adaptive is not None:
                adaptive = account.adaptive
            if account.max_concurrency is not None:
                window = min(window, account.max_concurrency)
        learned = None
        if self._limits is not None and self._shared is None:
            learned = self._limits.limit_for(transport.url_prefix)
        local = LocalTokens(rate_limit, adaptive=adaptive, learned=learned)
        tokens: TokenSource = local
        if self._shared is not None:
            from ._shared import SharedTokens

            host = f"{name}.{account.environment if account is not None else config.environment}"
            tokens = SharedTokens(
                self._shared,
                # VTEX limits the account ("acme" in "vtexcommercestable"), whichever URL
                # (a proxy, a fake) the requests go to.
                self._shared.key(host),
                local,
                self._shared.limit_key(host, transport.url_prefix),
                max_pause=config.retry.max_retry_after,
                ceiling=rate_limit,
                adaptive=adaptive,
                auth_to_stop=AUTH_FAILURES_TO_STOP,
                auth_cooldown=config.auth_cooldown,
            )
        pace = AccountPace(
            name,
            rate_limit=rate_limit,
            adaptive=adaptive,
            max_concurrency=window,
            max_retry_after=config.retry.max_retry_after,
            auth_cooldown=config.auth_cooldown,
            tokens=tokens,
        )
        return AccountSender(
            name,
            transport=transport,
            pace=pace,
            budget=self._budget,
            retry_policy=config.retry,
            pace_timeout=config.pace_timeout,
            checks=checks,
            secrets=credentials.secrets(),
        )

    def _sender_for(self, account_name: str | None) -> AccountSender:
        """The sender of ``account_name`` (None: the default account), made on first use.

        Raises ``ConfigurationError`` when no credentials are known for the account.
        """
        if account_name is None:
            if not self._has_default_account:
                raise ConfigurationError(
                    "the update names no account_name, and this client has no default account"
                )
            account_name = self._config.account_name
        sender = self._senders.get(account_name)
        if sender is not None:
            return sender
        if self._transport.closed:
            raise ClientClosedError("this client is closed; create a new one")
        account = self._accounts.get(account_name) if self._accounts is not None else None
        if account is None:
            raise ConfigurationError(f"no credentials for account {account_name!r}")
        config = self._config
        # Its own session over this client's pool: one global budget, pooled per host, and
        # only its own credentials on its requests.
        transport = Transport(
            url_prefix=build_base_url(
                account.name,
                account.environment,
                account.base_url,
                allow_insecure_http=config.allow_insecure_http,
            ),
            headers=self._headers(account.credentials),
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            pool_size=self._max_concurrency,
            shares_pool_of=self._transport,
        )
        sender = self._senders[account_name] = self._new_sender(
            account.name, account.credentials, transport, account
        )
        return sender

    # -- single calls --------------------------------------------------------------------------

    async def update_tracking_status(
        self,
        order_id: str,
        invoice_number: str,
        status: TrackingStatus,
        *,
        account_name: str | None = None,
    ) -> TrackingReceipt:
        """Replace the tracking events of one invoice and return VTEX's receipt.

        ``account_name`` sends to another account of ``accounts`` (default: this client's).
        The call first waits for its turn in the account's pace (at most ``pace_timeout``).
        Raises ``ValidationError`` for bad input before sending, an ``APIError`` subclass when
        VTEX refuses (after retrying what is worth retrying), ``TransportError`` when no
        answer came back, ``PaceTimeoutError`` when its turn did not come in time (never
        sent), ``AuthCooldownError`` while the account's credentials are cooling down after
        repeated refusals, ``ConfigurationError`` for an account without credentials.
        """
        update = TrackingUpdate(order_id, invoice_number, status, account_name=account_name)
        return await self.send(update)

    async def send_tracking_number(
        self,
        order_id: str,
        invoice_number: str,
        tracking_number: str,
        *,
        tracking_url: str | None = None,
        courier: str | None = None,
        dispatched_date: DispatchedDate = None,
        account_name: str | None = None,
    ) -> TrackingReceipt:
        """Set the tracking number (and URL, courier, dispatch time) of one invoice, VTEX's
        "send tracking number" (PATCH of the invoice), and return its receipt.

        Send it before the first ``update_tracking_status`` of the invoice: VTEX shows
        events, and sends its "shipping update" e-mail, only for an invoice that carries a
        tracking number (and URL); without it the PUT is answered 200 and nothing shows.
        Sending it again sets the same values (harmless). Same account, pace, retries and
        errors as ``update_tracking_status``; a naive ``dispatched_date`` is taken in the
        client's ``Checks.time_zone``.
        """
        tracking = InvoiceTracking(tracking_number, tracking_url, courier, dispatched_date)
        update = TrackingNumberUpdate(
            order_id, invoice_number, tracking, account_name=account_name
        )
        return await self.send(update)

    async def get_order(self, order_id: str, *, account_name: str | None = None) -> Order:
        """Read an order as VTEX holds it ("Get order"): ``Order.package(invoice_number)``
        gives an invoice's tracking number, URL, courier and events, to check before a big
        push or verify after it.

        Opt-in: it needs the License Manager resource "View order" (a key made for
        tracking often has only "Notify invoice": the ``PermissionDeniedError`` says so).
        Reads go through the account's pace and retries. VTEX shows writes in reads after a
        few seconds, not at once.
        """
        check_order_id(order_id)
        sender = self._sender_for(account_name)
        raw, attempts = await sender.get_order(order_id)
        if raw.truncated:
            raise unexpected_body_error(
                raw.status, raw.headers, raw.body,
                "the order is larger than 1 MiB (reading stopped there)",
                order_id=order_id, invoice_number=None, attempts=attempts,
                secrets=sender.secrets,
            )  # fmt: skip
        return decode_order(
            raw.status, raw.headers, raw.body, order_id=order_id, attempts=attempts,
            secrets=sender.secrets,
        )  # fmt: skip

    async def send(self, update: TrackingUpdate | TrackingNumberUpdate) -> TrackingReceipt:
        """Send one ``TrackingUpdate`` (the events' PUT) or ``TrackingNumberUpdate`` (the
        tracking number's PATCH), to its ``account_name``'s account if it has one. A
        ``TrackingUpdate`` with ``tracking`` sends its number first, then its events (the
        events' receipt is returned; a failed PATCH raises and the events are not sent)."""
        sender = self._sender_for(update.account_name)
        if isinstance(update, TrackingUpdate) and update.tracking is not None:
            number = TrackingNumberUpdate(
                update.order_id,
                update.invoice_number,
                update.tracking,
                account_name=update.account_name,
            )
            await sender.send(number)
        return await sender.send(update)

    # -- bulk ----------------------------------------------------------------------------------

    def push(
        self,
        updates: Iterable[TrackingUpdate | TrackingNumberUpdate]
        | AsyncIterable[TrackingUpdate | TrackingNumberUpdate],
        *,
        concurrency: int | None = None,
        rate_limit: float | None = None,
        adaptive: bool | None = None,
        read_ahead: int | None = None,
        on_result: Callable[[PushResult], None] | None = None,
        journal: Journal | str | os.PathLike[str] | None = None,
        skip_unchanged: UnchangedState | str | os.PathLike[str] | None = None,
        merge_snapshots: bool = False,
    ) -> PushStream:
        """Send many updates; iterate the returned stream for one ``PushResult`` per item.

        ``updates`` (an iterable or async iterable) is read lazily, at most ``read_ahead``
        items ahead of the results. Updates for one invoice are sent in input order, never two
        at once. Each request waits for its account's pace, shared with every other call to
        that account. ``concurrency`` (default and ceiling: ``max_concurrency``) bounds this
        push's requests in flight; ``rate_limit`` caps each account's requests per second in
        this push (below the account's own); ``adaptive=False`` makes this push pace itself
        (its own window and ``rate_limit``, nothing learned or shared). ``on_result`` is
        called with each result as it is produced (for progress reporting).

        Sending less (each opt-in): ``journal`` (a ``Journal`` or a path) records what VTEX
        confirmed, so that after a crash the same push sends only the rest (the others end as
        ``skipped="already_done"``); ``skip_unchanged`` (an ``UnchangedState`` or a path)
        does not send an update whose body VTEX last confirmed for its invoice
        (``"unchanged"``); ``merge_snapshots`` lets a newer update of an invoice replace one
        still waiting behind that invoice's request in flight (``"superseded"``).
        """
        from ._push import start_push
        from ._push_options import PushOptions

        ceiling = self._max_concurrency
        options = PushOptions(
            concurrency=ceiling if concurrency is None else concurrency,
            rate_limit=rate_limit,
            adaptive=adaptive,
            read_ahead=read_ahead,
            on_result=on_result,
            journal=journal,
            skip_unchanged=skip_unchanged,
            merge_snapshots=merge_snapshots,
        )
        if options.concurrency > ceiling:
            options = attrs.evolve(options, concurrency=ceiling)
        return start_push(
            updates,
            options,
            sender_for=self._sender_for,
            default_account=self.default_account,
            spans_accounts=self._accounts is not None,
        )

    async def push_all(
        self,
        updates: Iterable[TrackingUpdate | TrackingNumberUpdate]
        | AsyncIterable[TrackingUpdate | TrackingNumberUpdate],
        *,
        concurrency: int | None = None,
        rate_limit: float | None = None,
        adaptive: bool | None = None,
        read_ahead: int | None = None,
        on_result: Callable[[PushResult], None] | None = None,
        journal: Journal | str | os.PathLike[str] | None = None,
        skip_unchanged: UnchangedState | str | os.PathLike[str] | None = None,
        merge_snapshots: bool = False,
    ) -> PushSummary:
        """Send many updates and return the totals (``push``, consumed for you)."""
        async with self.push(
            updates,
            concurrency=concurrency,
            rate_limit=rate_limit,
            adaptive=adaptive,
            read_ahead=read_ahead,
            on_result=on_result,
            journal=journal,
            skip_unchanged=skip_unchanged,
            merge_snapshots=merge_snapshots,
        ) as stream:
            return await stream.summary()

    # -- lifecycle -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool (if the client created it); safe to call twice. With a
        ``limits_file``, write the limits measured."""
        if self._limits is not None:
            for sender in self._senders.values():
                limit = sender.pace.limit
                if limit is not None:
                    self._limits.remember(sender.transport.url_prefix, limit)
            self._limits.save()
        for sender in self._senders.values():
            if sender.transport is not self._transport:
                await sender.transport.aclose()
        await self._transport.aclose()
        if self._shared is not None:
            await self._shared.aclose()

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
        """Drop the pool and requests inherited from a parent process (the sync facade)."""
        for sender in self._senders.values():
            sender.forget_requests()
        if self._shared is not None:
            self._shared.forget()  # the parent's Redis connections are the parent's
        # Slots held by the parent's in-flight requests would never be returned here.
        self._budget.reset()
