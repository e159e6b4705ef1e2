"""``TrackingClient``: the async client, driven from synchronous code by its callers' threads.

The facade owns a private event loop and forwards every call to an ``AsyncTrackingClient``
living in it. It holds no HTTP, pacing or retry logic of its own.

Why the callers drive the loop (measured with ``python -m benchmarks --only sync --reps 5``:
3,000 sequential calls against nginx on 127.0.0.1, a busy 2-CPU VM, medians of 5 interleaved
runs, ratios paired per run; 2026-12-03):

=================================  =========  ===========  ======================
the same async client behind       req/s      CPU us/call  this design is ... x
=================================  =========  ===========  ======================
callers drive it (this module)     2,019      442          (1)
an anyio ``BlockingPortal`` thread 997        1,019        1.75 x faster
an asyncio loop thread and         1,293      718          1.31 x faster
``run_coroutine_threadsafe``
awaited directly (no facade)       1,676      486          1.03 x (equal: noise)
=================================  =========  ===========  ======================

A hop to another thread costs two wake-ups (the loop's self-pipe, then the caller's lock) and
~300-600 us of CPU per call on this machine, more than the request itself. Driving the loop
from the calling thread costs ~20 us per call (a no-op coroutine, in process), so a call
costs what awaiting the async client costs: 3.42 x ``requests.Session``, 1.69 x
``httpx.Client`` (sync, reused), p50 68 us above raw aiohttp (noisy: -45 to 311 by run).

How (``_LoopDriver``): the first caller with nothing in progress becomes the driver and runs
the loop (``run_forever``) until its own call is done; a thread arriving meanwhile hands its
coroutine to the running loop (``call_soon_threadsafe``) and waits on an event; a driver whose
call is done hands the loop to the oldest waiting caller (so it returns as soon as its answer
is in, never held hostage by the others' calls). One loop, one ``AsyncTrackingClient``: every
thread shares each account's pace (an ``AccountPace`` serves one loop), pool and budget.

Threads that keep the loop running in the background (``_Hold``, named ``vtex-tracking-loop``):

* while a ``SyncPushStream`` is open, so the push keeps sending while its reader handles
  results; every call meanwhile waits on that thread, as on the former portal;
* for a caller whose thread already runs an event loop (async code calling sync code, a
  notebook cell): it cannot run a second loop, so a background thread drives and it waits
  (blocking its own loop, as any blocking call would).

Lifecycle hazards:

* fork (Celery prefork, gunicorn, multiprocessing): the child inherits the client but not
  other threads, so after a fork the client makes a new loop and pool on first use and never
  touches the parent's sockets;
* Ctrl-C: in the main thread while it drives, only its own call is cancelled (``_CtrlC``, as
  ``asyncio.run`` does); while it waits, its call is cancelled in the loop; the loop is handed
  over in both cases, so the client stays usable;
* a forgotten ``close()``: an ``atexit`` hook closes the pool with a deadline, so scripts exit
  promptly and quietly; a client garbage collected unclosed is closed by its finalizer only
  when no thread runs its loop (waiting on one there could deadlock).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import importlib
import os
import signal
import threading
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._checks import Checks
from ._client import AsyncTrackingClient
from ._config import ClientConfig, RetryPolicy, SharedPace, settings_from_env
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
    DispatchedDate,
    InvoiceTracking,
    TrackingNumberUpdate,
    TrackingReceipt,
    TrackingStatus,
    TrackingUpdate,
    check_order_id,
)

# Imported where they are used, not with the package (see ``_client``): a push's stream and
# progress (anyio with them), accounts files, the journal.
if TYPE_CHECKING:
    from ._accounts import Accounts
    from ._progress import PushProgress
    from ._read_back import Order
    from ._remember import Journal, UnchangedState
    from ._reports import AccountMetrics, PushResult, PushSummary
    from ._stream import PushStream

T = TypeVar("T")

# The C functions under ``signal``'s: its wrappers convert every handler to and from an enum,
# which made swapping the SIGINT handler around each call cost ~25 us instead of ~1.
try:
    _signals: Any = importlib.import_module("_signal")
except ImportError:  # pragma: no cover - an interpreter without it
    _signals = signal

#: Seconds ``close()`` and interpreter exit wait for the pool to close before giving up.
_SHUTDOWN_TIMEOUT = 5.0
#: Most push results carried to the caller's thread in one hop.
_SYNC_BATCH = 256
#: The name of the background threads that keep the loop running for a push stream.
_THREAD_NAME = "vtex-tracking-loop"


class _Call:
    """One call through the loop: who waits for it, and whether its thread drives the loop."""

    __slots__ = ("done", "driving", "task", "wake", "withdrawn")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.wake: threading.Event | None = None  # only a thread that waits needs one
        self.driving = False
        self.done = False
        self.withdrawn = False


class _LoopDriver:
    """A private event loop that the calling threads run themselves, one at a time.

    The first caller drives (runs the loop until its own call is done); callers arriving
    meanwhile hand their coroutine to the running loop and wait; a driver whose call is done
    hands the loop to the oldest waiting caller, so no call waits on another's longer than
    one loop turn. Every call of the client runs in this one loop, so each account's pace
    is shared by every thread.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._driving = False  # some thread runs the loop, or has been handed it
        self._waiting: dict[_Call, None] = {}  # calls whose threads wait, oldest first
        self._closing = False
        self._closed = False

    def submit(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` in the loop and return its result; Ctrl-C cancels it."""
        if _running_loop() is not None:
            return self._submit_from_a_running_loop(func, args)
        return self._run(func, args)

    def _enter(
        self, call: _Call, func: Callable[..., Awaitable[T]], args: Any, *, closing: bool = False
    ) -> None:
        coro = func(*args)
        with self._lock:
            if self._closing and not closing:
                coro.close()  # type: ignore[attr-defined]
                raise ClientClosedError("this client is closed; create a new one")
            if not self._driving:
                self._driving = call.driving = True
            else:
                call.wake = threading.Event()
                self._waiting[call] = None
        if call.driving:
            # Nobody runs the loop: it may be touched from this thread without a hop.
            self._start(call, coro)
        else:
            self.loop.call_soon_threadsafe(self._start, call, coro)

    def _start(self, call: _Call, coro: Any) -> None:
        # In the loop (or before it runs, by its driver).
        if call.withdrawn:  # its thread gave up (Ctrl-C) before the loop got to it
            coro.close()
            self._finish(call)
            return
        task = self.loop.create_task(self._run_call(call, coro))
        call.task = task
        task.add_done_callback(functools.partial(self._finished, call))

    async def _run_call(self, call: _Call, coro: Awaitable[T]) -> T:
        try:
            return await coro
        finally:
            # The driver's own call: stopping from inside its last step ends run_forever()
            # after this turn of the loop (the done callback would take one more). Whether a
            # call drives cannot change while the loop runs: the loop is handed over only
            # between runs.
            if call.driving:
                call.done = True
                self.loop.stop()

    def _finished(self, call: _Call, task: asyncio.Task[Any] | None) -> None:
        self._finish(call)

    def _finish(self, call: _Call) -> None:
        # A waiting call leaves the queue and is woken in one step, here, once its task holds
        # its result: left in the queue until then, a call finished in the driver's last turn
        # is handed the loop (and runs this callback itself) instead of waiting for nobody.
        with self._lock:
            self._waiting.pop(call, None)
            settled = call.done
            call.done = True
        if call.driving and not settled:  # cancelled before its first step, or withdrawn
            self.loop.stop()
        if call.wake is not None:
            call.wake.set()

    def _complete(self, call: _Call) -> Any:
        if not call.driving:
            assert call.wake is not None
            try:
                call.wake.wait()
            except BaseException:
                # Ctrl-C (or another exit) while another thread drives: cancel the call
                # there, unless this thread was handed the loop meanwhile.
                with self._lock:
                    handed = call.driving
                    if not handed:
                        self._waiting.pop(call, None)
                        call.withdrawn = True
                if not handed:
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        self.loop.call_soon_threadsafe(self._cancel, call)
                    raise
                self._drive_cancelled(call)
                raise
            if not call.driving:
                assert call.task is not None
                return call.task.result()
        ctrl_c = _CtrlC.catch(self, call)
        try:
            while not call.done:
                self.loop.run_forever()
        except BaseException:
            # Ctrl-C where _CtrlC could not catch it (or a second one): cancel the call
            # cleanly before giving up the loop.
            self._drive_cancelled(call)
            raise
        finally:
            if ctrl_c is not None:
                ctrl_c.release()
        self._hand_over()
        if ctrl_c is not None and ctrl_c.pressed:
            raise KeyboardInterrupt
        assert call.task is not None
        return call.task.result()

    def _cancel(self, call: _Call) -> None:
        if call.task is not None:
            call.task.cancel()
        else:
            call.withdrawn = True  # not started yet: _start drops it

    def cancel_soon(self, call: _Call) -> None:
        """Cancel ``call`` at the loop's next turn (safe from a signal handler)."""
        self.loop.call_soon_threadsafe(self._cancel, call)

    def _drive_cancelled(self, call: _Call) -> None:
        """Cancel the call, drive the loop until the cancellation is over, hand it over."""
        try:
            self._cancel(call)
            while not call.done:
                self.loop.run_forever()
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        with self._lock:
            successor = next(iter(self._waiting), None)
            if successor is None:
                self._driving = False
                close = self._closing and not self._closed
                self._closed = self._closed or close
            else:
                del self._waiting[successor]
                successor.driving = True
        if successor is not None:
            assert successor.wake is not None
            successor.wake.set()
        elif close:
            self._close_loop()

    def _close_loop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def abandon_after_fork(self) -> None:
        """In a forked child: let the parent's loop go without ``close()``, which would take
        the parent's wake-up pipe out of their shared epoll set (so the parent's loop would no
        longer notice calls handed to it); close only this process's descriptors."""
        loop: Any = self.loop
        with contextlib.suppress(Exception):
            loop._selector.close()  # this process's epoll descriptor; the set stays the parent's
            loop._ssock.close()
            loop._csock.close()
            loop._closed = True  # nothing left to close: the loop's __del__ must not try

    # -- callers that cannot drive -------------------------------------------------------------

    def hold(self, *, closing: bool = False) -> _Hold:
        """Keep the loop running in a background thread until the hold is released (a push
        stream's engine works between the caller's reads)."""
        release = self.loop.create_future()
        call = _Call()
        self._enter(call, _wait_for, (release,), closing=closing)
        thread = threading.Thread(
            target=self._complete_quietly, args=(call,), name=_THREAD_NAME, daemon=True
        )
        thread.start()
        return _Hold(self.loop, release, thread)

    def _complete_quietly(self, call: _Call) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            self._complete(call)

    def _submit_from_a_running_loop(self, func: Callable[..., Awaitable[T]], args: Any) -> T:
        # This thread already runs an event loop (async code calling sync code, a notebook),
        # so it cannot run ours: a background thread drives while this one waits (blocking
        # the caller's loop, as any blocking call would).
        hold = self.hold()
        try:
            return self._run(func, args)  # the hold's thread drives: this one waits
        finally:
            hold.release()

    def _run(self, func: Callable[..., Awaitable[T]], args: Any, *, closing: bool = False) -> T:
        call = _Call()
        self._enter(call, func, args, closing=closing)
        return self._complete(call)  # type: ignore[no-any-return]

    # -- closing ---------------------------------------------------------------------------------

    def shutdown(self, on_shutdown: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Run ``on_shutdown`` (within ``timeout``), cancel what is left, refuse new calls;
        the last thread out of the loop closes it."""
        if _running_loop() is self.loop:
            raise RuntimeError("a TrackingClient cannot be closed from inside one of its calls")
        with self._lock:
            if self._closing:
                return
            self._closing = True  # new calls are refused from here on
        try:
            if _running_loop() is not None:
                hold = self.hold(closing=True)
                try:
                    self._run(_shutdown, (on_shutdown, timeout), closing=True)
                finally:
                    hold.release()
            else:
                self._run(_shutdown, (on_shutdown, timeout), closing=True)
        finally:
            with self._lock:
                close = not self._driving and not self._closed
                if close:
                    self._driving = self._closed = True
            if close:
                self._close_loop()

    def close_unattended(self, on_shutdown: Callable[[], Awaitable[None]]) -> None:
        """``shutdown`` for a finalizer: only when no thread runs the loop, else abandon."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._driving or self._closing or _running_loop() is not None:
                return
        finally:
            self._lock.release()
        with contextlib.suppress(Exception):
            self.shutdown(on_shutdown, _SHUTDOWN_TIMEOUT)


class _CtrlC:
    """Ctrl-C while the main thread drives the loop, turned into a cancellation of its call.

    Python raises KeyboardInterrupt wherever the main thread is, which may be inside another
    thread's call running in the loop: that call would fail with it. Like ``asyncio.run``,
    the first Ctrl-C only cancels the driver's own call (KeyboardInterrupt is raised once it
    is cancelled and the loop handed over); a second one raises at once.
    """

    __slots__ = ("_call", "_driver", "_previous", "pressed")

    def __init__(self, driver: _LoopDriver, call: _Call) -> None:
        self._driver = driver
        self._call = call
        self.pressed = False
        self._previous = _signals.signal(signal.SIGINT, self._on_sigint)

    @classmethod
    def catch(cls, driver: _LoopDriver, call: _Call) -> _CtrlC | None:
        """Catch Ctrl-C during ``call``, if this thread gets it and nobody else handles it."""
        if (
            threading.current_thread() is not threading.main_thread()
            or _signals.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            return None
        return cls(driver, call)

    def _on_sigint(self, signum: int, frame: object) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        self._driver.cancel_soon(self._call)

    def release(self) -> None:
        """Give Ctrl-C back to what handled it before."""
        _signals.signal(signal.SIGINT, self._previous)


class _Hold:
    """A background thread keeping a ``_LoopDriver``'s loop running until ``release()``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        release: asyncio.Future[None],
        thread: threading.Thread,
    ) -> None:
        self._loop = loop
        self._release = release
        self.thread = thread

    def release(self) -> None:
        """Let the thread go (from any thread; twice is harmless)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to release
            self._loop.call_soon_threadsafe(_resolve, self._release)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _wait_for(future: asyncio.Future[None]) -> None:
    await future


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _shutdown(on_shutdown: Callable[[], Awaitable[None]], seconds: float) -> None:
    import anyio

    with anyio.move_on_after(seconds):
        await on_shutdown()
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=seconds)


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
        self._runner: _LoopDriver | None = None
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
        from ._accounts import default_account_settings

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

    def _driver(self) -> _LoopDriver:
        runner = self._runner
        if runner is not None:
            return runner
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client is closed; create a new one")
            if self._runner is None:
                runner = _LoopDriver()
                self._runner = runner
                # Runs when the client is garbage collected without close(): closes the pool
                # only if no thread is running the loop (waiting for one could deadlock).
                self._finalizer = weakref.finalize(
                    self, runner.close_unattended, self._async.aclose
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
        return self._driver().submit(self._async.send, update)

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
        return self._driver().submit(self._async.send, update)

    def get_order(self, order_id: str, *, account_name: str | None = None) -> Order:
        """Read an order as VTEX holds it; the same as ``AsyncTrackingClient.get_order``
        (needs the "View order" resource)."""
        check_order_id(order_id)
        return self._driver().submit(
            functools.partial(self._async.get_order, order_id, account_name=account_name)
        )

    def send(self, update: TrackingUpdate | TrackingNumberUpdate) -> TrackingReceipt:
        """Send one ``TrackingUpdate`` or ``TrackingNumberUpdate``; the same as
        ``update_tracking_status`` or ``send_tracking_number``."""
        return self._driver().submit(self._async.send, update)

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
        complete. See ``AsyncTrackingClient.push``; ``on_result`` runs in the thread running the
        client's loop (a background one while the stream is open)."""
        runner = self._driver()
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
        return SyncPushStream(runner, stream, runner.hold())

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
            self._runner.abandon_after_fork()
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

    Results reach the caller's thread in batches of whatever is ready, so the first one arrives
    as soon as it exists and a million cost a few thousand thread hops, not a million. While
    the stream is open a background thread keeps the client's loop running, so the push goes
    on while the caller handles results; it ends with the stream. ``stop()``,
    ``progress`` and ``unfinished`` behave as on ``PushStream``; leaving the loop early or
    ``close()`` cancels the push.
    """

    def __init__(self, runner: _LoopDriver, stream: PushStream, hold: _Hold) -> None:
        from ._progress import Tally

        self._runner = runner
        self._stream = stream
        # A thread keeps the loop running while the caller handles results between reads.
        self._hold = hold
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
                self._hold.release()
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
            try:
                self._runner.submit(self._stream.aclose)
            finally:
                self._hold.release()
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
            self._hold.release()


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
