"""``TrackingClient``: the async client, driven from synchronous code through a portal thread.

The facade owns one daemon thread running an event loop and an anyio ``BlockingPortal``, and
forwards every call to an ``AsyncTrackingClient`` living there. It holds no HTTP or retry
logic of its own. Three lifecycle hazards shape this module:

* fork (Celery prefork, gunicorn, multiprocessing): the child inherits the client but not its
  thread, so after a fork the client starts a new thread and pool on first use and never
  touches the parent's sockets;
* a forgotten ``close()``: the thread is a daemon and an ``atexit`` hook closes the pool with a
  deadline, so scripts exit promptly and quietly;
* garbage collection: finalizers only *request* shutdown (never block on the portal, which
  can deadlock during interpreter shutdown).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from ._accounts import Accounts, default_account_settings
from ._checks import Checks
from ._client import AsyncTrackingClient
from ._config import ClientConfig, RetryPolicy, settings_from_env
from ._constants import (
    DEFAULT_AUTH_COOLDOWN,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_ENVIRONMENT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_PACE_TIMEOUT,
    DEFAULT_TIMEOUT,
)
from ._errors import ClientClosedError
from ._fork import at_fork_in_child
from ._models import (
    AccountMetrics,
    DispatchedDate,
    InvoiceTracking,
    Order,
    PushResult,
    PushSummary,
    TrackingNumberUpdate,
    TrackingReceipt,
    TrackingStatus,
    TrackingUpdate,
    check_order_id,
)
from ._progress import PushProgress, Tally
from ._remember import Journal, UnchangedState
from ._shared import SharedPace
from ._stream import PushStream

T = TypeVar("T")

#: Seconds ``close()`` and interpreter exit wait for the pool to close before giving up.
_SHUTDOWN_TIMEOUT = 5.0
#: Most push results carried across the portal in one hop.
_SYNC_BATCH = 256


class _PortalThread:
    """A daemon thread running an asyncio loop with a ``BlockingPortal`` for other threads."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._startup_error: BaseException | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._on_shutdown: Callable[[], Awaitable[None]] | None = None
        self.thread = threading.Thread(target=self._run, name="vtex-tracking-portal", daemon=True)
        self.thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def _run(self) -> None:
        try:
            # anyio.run in a thread of our own: anyio's start_blocking_portal() was seen to
            # hang when first called in a forked child.
            anyio.run(self._serve, backend="asyncio")
        except BaseException as exc:  # pragma: no cover - only if the loop cannot start
            self._startup_error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with BlockingPortal() as portal:
            self._portal = portal
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await portal.sleep_until_stopped()

    def submit(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` in the loop and wait for it; Ctrl-C here cancels it there."""
        assert self._portal is not None
        future: concurrent.futures.Future[T] = self._portal.start_task_soon(func, *args)
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt (or any early exit) in the calling thread: don't leave the
            # request running unattended in the portal.
            future.cancel()
            raise

    def request_shutdown(self, on_shutdown: Callable[[], Awaitable[None]]) -> None:
        """Ask the loop to run ``on_shutdown`` then stop; returns at once, from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._on_shutdown = on_shutdown
        # RuntimeError: the loop closed meanwhile, so there is nothing left to stop.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._begin_shutdown)

    def _begin_shutdown(self) -> None:
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._shutdown())

    async def _shutdown(self) -> None:
        assert self._portal is not None
        if self._on_shutdown is not None:
            with anyio.move_on_after(_SHUTDOWN_TIMEOUT):
                await self._on_shutdown()
        await self._portal.stop(cancel_remaining=True)

    def shutdown(self, on_shutdown: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Run ``on_shutdown`` in the loop, stop the loop and join the thread."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("a TrackingClient cannot be closed from its own portal thread")
        self.request_shutdown(on_shutdown)
        self.thread.join(timeout)


_live_clients: weakref.WeakSet[TrackingClient] = weakref.WeakSet()


class TrackingClient:
    """Sends tracking updates to VTEX from synchronous code (Django, Celery, scripts, notebooks).

    Safe to share between threads; usable in a process forked after it was created; close it
    with ``close()`` or a ``with`` block (a forgotten close is done at interpreter exit). The
    constructor takes the same arguments as ``AsyncTrackingClient`` except ``session``.
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
        allow_insecure_http: bool = False,
        trust_env: bool = False,
        user_agent: str | None = None,
        accounts: Accounts | None = None,
        checks: Checks | None = None,
        shared_pace: SharedPace | str | None = None,
        limits_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """Configure a client; the background thread starts on the first call. Arguments
        as for ``AsyncTrackingClient`` (``accounts``: other accounts it can send to). Calls
        from every thread share each account's pace."""
        self._async = AsyncTrackingClient(
            account_name,
            app_key,
            app_token,
            user_token=user_token,
            environment=environment,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
            adaptive=adaptive,
            pace_timeout=pace_timeout,
            auth_cooldown=auth_cooldown,
            allow_insecure_http=allow_insecure_http,
            trust_env=trust_env,
            user_agent=user_agent,
            accounts=accounts,
            checks=checks,
            shared_pace=shared_pace,
            limits_file=limits_file,
        )
        self._lock = threading.Lock()
        self._runner: _PortalThread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._closed = False
        _live_clients.add(self)

    @classmethod
    def from_env(cls, **overrides: Any) -> TrackingClient:
        """Build a client from ``VTEX_*`` environment variables; keyword arguments override."""
        return cls(**settings_from_env(overrides))

    @classmethod
    def from_accounts(
        cls, accounts: Accounts, *, default: str | None = None, **settings: Any
    ) -> TrackingClient:
        """A client for a hub serving every account of ``accounts``; see
        ``AsyncTrackingClient.from_accounts``."""
        client = cls(**default_account_settings(accounts, default), **settings)
        client._async._has_default_account = default is not None
        return client

    @property
    def config(self) -> ClientConfig:
        """The client's settings (immutable; credentials redacted from its repr)."""
        return self._async.config

    @property
    def accounts(self) -> Accounts | None:
        """The other accounts this client can send to (``accounts=``), or None."""
        return self._async.accounts

    @property
    def default_account(self) -> str | None:
        """The account that updates without an ``account_name`` go to (None: no default)."""
        return self._async.default_account

    def metrics(self) -> dict[str, AccountMetrics]:
        """Per-account counters and pace, as ``AsyncTrackingClient.metrics``."""
        return self._async.metrics()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(account_name={self.config.account_name!r},"
            f" url={self.config.url_prefix!r}, credentials=<redacted>)"
        )

    def _portal_thread(self) -> _PortalThread:
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client is closed; create a new one")
            if self._runner is None:
                runner = _PortalThread()
                self._runner = runner
                # Runs when the client is garbage collected without close(): only a request,
                # because blocking on the portal from a finalizer can deadlock.
                self._finalizer = weakref.finalize(
                    self, runner.request_shutdown, self._async.aclose
                )
                self._finalizer.atexit = False
            return self._runner

    def update_tracking_status(
        self,
        order_id: str,
        invoice_number: str,
        status: TrackingStatus,
        *,
        account_name: str | None = None,
    ) -> TrackingReceipt:
        """Replace the tracking events of one invoice and return VTEX's receipt.

        ``account_name`` sends to another account of ``accounts``. Same errors as
        ``AsyncTrackingClient.update_tracking_status``, raised unchanged.
        """
        # Validate in the caller's thread: the error's traceback then points at the caller.
        update = TrackingUpdate(order_id, invoice_number, status, account_name=account_name)
        return self._portal_thread().submit(self._async.send, update)

    def send_tracking_number(
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
        """Set the tracking number (and URL, courier, dispatch time) of one invoice and
        return VTEX's receipt; send it before the invoice's events. Same as
        ``AsyncTrackingClient.send_tracking_number``."""
        tracking = InvoiceTracking(tracking_number, tracking_url, courier, dispatched_date)
        update = TrackingNumberUpdate(
            order_id, invoice_number, tracking, account_name=account_name
        )
        return self._portal_thread().submit(self._async.send, update)

    def get_order(self, order_id: str, *, account_name: str | None = None) -> Order:
        """Read an order as VTEX holds it; the same as ``AsyncTrackingClient.get_order``
        (needs the "View order" resource)."""
        check_order_id(order_id)
        return self._portal_thread().submit(
            functools.partial(self._async.get_order, order_id, account_name=account_name)
        )

    def send(self, update: TrackingUpdate | TrackingNumberUpdate) -> TrackingReceipt:
        """Send one ``TrackingUpdate`` or ``TrackingNumberUpdate``; the same as
        ``update_tracking_status`` or ``send_tracking_number``."""
        return self._portal_thread().submit(self._async.send, update)

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
    ) -> SyncPushStream:
        """Send many updates; iterate the result for one ``PushResult`` per item, as they
        complete. See ``AsyncTrackingClient.push``; ``on_result`` runs in the portal thread."""
        runner = self._portal_thread()
        stream = runner.submit(
            _make_push,
            self._async,
            updates,
            {
                "concurrency": concurrency,
                "rate_limit": rate_limit,
                "adaptive": adaptive,
                "read_ahead": read_ahead,
                "on_result": on_result,
                "journal": journal,
                "skip_unchanged": skip_unchanged,
                "merge_snapshots": merge_snapshots,
            },
        )
        return SyncPushStream(runner, stream)

    def push_all(
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
        """Send many updates and return the totals."""
        with self.push(
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
            return stream.summary()

    def close(self) -> None:
        """Close the connection pool and stop the background thread; safe to call twice."""
        with self._lock:
            self._closed = True
            runner, self._runner = self._runner, None
            if self._finalizer is not None:
                self._finalizer.detach()
        if runner is not None:
            runner.shutdown(self._async.aclose, _SHUTDOWN_TIMEOUT)
        _live_clients.discard(self)

    def __enter__(self) -> TrackingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here and its sockets are the parent's: start over
        # lazily with a new lock (the old one may have been held at fork time), thread and pool.
        self._lock = threading.Lock()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._runner is not None:
            self._runner = None
            self._async._abandon_after_fork()


async def _make_push(
    client: AsyncTrackingClient, updates: Any, options: dict[str, Any]
) -> PushStream:
    # Built inside the loop: the stream's memory channels belong to it.
    stream = client.push(updates, **options)
    return stream


class SyncPushStream:
    """The results of ``TrackingClient.push``, yielded as they complete.

    Results cross the portal in batches of whatever is ready, so the first one arrives as soon
    as it exists and a million cost a few thousand thread hops, not a million. ``stop()``,
    ``progress`` and ``unfinished`` behave as on ``PushStream``; leaving the loop early or
    ``close()`` cancels the push.
    """

    def __init__(self, runner: _PortalThread, stream: PushStream) -> None:
        self._runner = runner
        self._stream = stream
        self._buffer: collections.deque[PushResult] = collections.deque()
        self._finished = False
        self._tally = Tally(stream.progress)

    @property
    def progress(self) -> PushProgress:
        """Live counters (read from any thread)."""
        return self._stream.progress

    @property
    def unfinished(self) -> list[PushResult]:
        """Results nobody received (after ``close()`` or an early exit)."""
        return self._stream.unfinished

    def __iter__(self) -> SyncPushStream:
        return self

    def __next__(self) -> PushResult:
        if not self._buffer:
            if self._finished:
                raise StopIteration
            batch = self._runner.submit(self._stream.next_batch, _SYNC_BATCH)
            if not batch:
                self._finished = True
                raise StopIteration
            self._buffer.extend(batch)
        result = self._buffer.popleft()
        self._tally.add(result)
        return result

    def stop(self) -> None:
        """Stop sending; iteration goes on until every item read has its result."""
        self._runner.submit(_call_soon, self._stream.stop)

    def close(self) -> None:
        """Cancel the push now; results not yet received go to ``unfinished``."""
        if not self._finished:
            self._finished = True
            self._runner.submit(self._stream.aclose)
            self.unfinished.extend(self._buffer)
            self._buffer.clear()

    def summary(self) -> PushSummary:
        """Consume the rest and return the totals of every result the stream delivered
        (those received in a ``for`` loop before included)."""
        for _ in self:
            pass
        return self._tally.summary()

    def __enter__(self) -> SyncPushStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned iterator must not leave the push sending: cancel without blocking.
        if not self._finished:
            self._stream.cancel_soon()


async def _call_soon(func: Callable[[], None]) -> None:
    func()


def _after_fork_in_child() -> None:
    for client in list(_live_clients):
        client._after_fork_in_child()


def _close_all_at_exit() -> None:
    # Daemon threads are not joined at exit; close their pools first so aiohttp does not
    # complain about unclosed sessions, within a deadline so exit stays prompt.
    for client in list(_live_clients):
        try:
            client.close()
        except Exception:  # noqa: S112 - nothing useful can be done with an error at exit
            continue


at_fork_in_child(_after_fork_in_child)
atexit.register(_close_all_at_exit)
