"""The bulk push engine: many updates, bounded memory, order per invoice, nothing lost.

How a push flows::

    input ──reader──> lane of the update's store ──its workers──> results stream ──> consumer
             │  one slot per item: at most ``read_ahead`` items between input and result
             │  (and at most half of them in one store's lane, in a multi-store push)
             └─ an update whose invoice is busy waits in that invoice's queue instead

A lane (``_Lane``) is one store's share: its client, its pacer, its ready queue and up to its
``max_concurrency`` workers, made on the store's first update. A push without ``accounts`` has
one lane. Workers end when their lane's queue is empty and are started again as items come.

* Order per invoice: while an invoice has a request in flight, later updates for it wait in
  a per-invoice queue; the worker that finishes one sends the next, so they go in input order
  and never overlap. Other invoices keep flowing through the other workers.
* Pacing (``_throttle``), per store: a slow-start window of requests in flight, an optional
  fixed ``rate_limit``, and the adaptive rate that 429/503 answers lower for that store; in a
  multi-store push, one global budget of ``concurrency`` requests, taken last.
* Nothing lost: every item read from the input gets exactly one ``PushResult`` — delivered
  through the stream, or, if the consumer went away or the push was cancelled, kept in
  ``PushStream.unfinished``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import (
    AuthenticationError,
    PermissionDeniedError,
    PushStoppedError,
    ValidationError,
    VtexTrackingError,
)
from ._models import AccountSummary, PushResult, PushSummary, TrackingUpdate
from ._throttle import AdaptiveRate, Budget, TokenBucket, acquire

if TYPE_CHECKING:
    from ._client import AsyncTrackingClient

#: Requests in flight when a push starts; grows by one per success up to ``concurrency``.
#: Keeps a revoked key or a tight rate limit from meeting a full wave of requests.
INITIAL_WINDOW = 4
#: Consecutive 401/403 answers (with no success between) after which a push stops sending.
AUTH_FAILURES_TO_STOP = 3
#: A ``Retry-After`` at least this long (seconds) pauses every sender of the push.
GLOBAL_PAUSE_AFTER = 5.0
#: Items read ahead of the workers, per unit of concurrency.
READ_AHEAD_PER_WORKER = 4
#: The least read-ahead of a push that may span stores (about 1 KB per buffered update).
MULTI_STORE_READ_AHEAD = 4096


@attrs.define
class PushProgress:
    """Live counters of a push, for progress bars: read them at any time.

    ``queued`` items were read from the input and have no result yet (waiting or in flight);
    ``send_rate`` is the measured requests per second; ``rate_limit`` the pace currently
    imposed (None: unlimited).
    """

    read: int = 0
    queued: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    requests: int = 0
    throttled: int = 0
    send_rate: float = 0.0
    rate_limit: float | None = None
    started_at: float = attrs.field(factory=time.monotonic)
    #: Per store, for pushes that span several accounts (``TrackingUpdate.account_name``).
    accounts: dict[str, AccountProgress] = attrs.field(factory=dict)
    #: The store whose full buffer is holding up reading the input right now, if any.
    bottleneck: str | None = None

    @property
    def done(self) -> int:
        """Items with a result."""
        return self.succeeded + self.failed

    @property
    def elapsed_s(self) -> float:
        """Seconds since the push started."""
        return time.monotonic() - self.started_at


@attrs.define
class AccountProgress:
    """Live counters of one store within a push."""

    buffered: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    requests: int = 0
    throttled: int = 0
    rate_limit: float | None = None
    #: Why the store's updates are no longer sent (a revoked key), or None.
    stopped: str | None = None
    last_result_at: float = 0.0


class _Pacer:
    """Implements the client's ``AttemptHooks`` for one push: window, bucket, adaptive rate."""

    def __init__(
        self,
        *,
        concurrency: int,
        rate_limit: float | None,
        adaptive: bool,
        max_retry_after: float,
        progress: PushProgress,
        stats: AccountProgress,
        rate_meter: _RateMeter,
        budget: Budget | None,
        shows_rate: bool,
    ) -> None:
        self.bucket = TokenBucket(rate_limit)
        self.adaptive = AdaptiveRate(self.bucket, ceiling=rate_limit) if adaptive else None
        self.window = anyio.CapacityLimiter(min(INITIAL_WINDOW, concurrency))
        self._max_window = concurrency
        self._max_retry_after = max_retry_after
        self._progress = progress
        self._stats = stats
        self._rate_meter = rate_meter
        # Shared by every store's pacer: taken last, after this store's own window and rate,
        # so a throttled store waits without holding a slot the others could use.
        self._budget = budget
        self._shows_rate = shows_rate
        stats.rate_limit = rate_limit
        if shows_rate:
            progress.rate_limit = rate_limit

    async def before_attempt(self) -> None:
        await acquire(self.window)
        try:
            await self.bucket.acquire()
            if self._budget is not None:
                await self._budget.acquire()
        except BaseException:
            self.window.release()
            raise
        item = _current_item.get()
        if item is not None:
            item.sent = True
        progress = self._progress
        progress.in_flight += 1
        progress.requests += 1
        progress.send_rate = self._rate_meter.tick()
        self._stats.in_flight += 1
        self._stats.requests += 1

    def after_attempt(self, status: int | None, retry_after: float | None) -> None:
        progress = self._progress
        progress.in_flight -= 1
        self._stats.in_flight -= 1
        if self._budget is not None:
            self._budget.release()
        # A 503 with Retry-After is VTEX's circuit breaker asking for less; a bare 503 is
        # treated as a server error (retried), so random failures don't throttle a push.
        if status == 429 or (status == 503 and retry_after is not None):
            progress.throttled += 1
            self._stats.throttled += 1
            if retry_after is not None and retry_after >= GLOBAL_PAUSE_AFTER:
                # A long wait means the account is well over its limit: everyone waits, not
                # just this request. Short ones delay that request and inform the rate.
                self.bucket.pause_until(
                    time.monotonic() + min(retry_after, self._max_retry_after)
                )
            if self.adaptive is not None:
                self.adaptive.on_throttle()
        elif status == 401 or status == 403:
            # Likely a revoked key: let fewer requests out until something succeeds.
            self.window.total_tokens = max(1, self.window.total_tokens - 1)
        elif status is not None and 200 <= status < 300:
            if self.adaptive is not None:
                self.adaptive.on_success()
            if self.window.total_tokens < self._max_window:
                self.window.total_tokens += 1
        self._stats.rate_limit = self.bucket.rate
        if self._shows_rate:
            progress.rate_limit = self.bucket.rate
        # Released last, so a shrunken window already applies to whoever waits for this slot.
        self.window.release()


class _RateMeter:
    """Requests per second over the last full second, for progress reports."""

    def __init__(self) -> None:
        self._window_start = time.monotonic()
        self._count = 0
        self._rate = 0.0

    def tick(self) -> float:
        self._count += 1
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._rate = self._count / (now - self._window_start)
            self._window_start = now
            self._count = 0
        return self._rate


class _Item:
    """One input item on its way. ``key`` is its invoice (None for an invalid item); ``sent``
    turns True once a request for it hits the wire."""

    __slots__ = ("index", "key", "lane", "sent", "update")

    def __init__(self, index: int, update: Any, home: str | None) -> None:
        self.index = index
        self.update = update
        # The invoice, within its store (None: the client's default store, whether named or
        # not): the same ids in two stores are two invoices.
        self.key: tuple[str, str, str | None] | None = None
        if isinstance(update, TrackingUpdate):
            store = None if update.account_name == home else update.account_name
            self.key = (update.order_id, update.invoice_number, store)
        self.sent = False
        # The lane whose buffer counts it, once it is in one.
        self.lane: _Lane | None = None


class _Lane:
    """One store's share of a push: its client, its pacer, its queue of items ready to send
    (each the next of its invoice) and the workers sending them. Made when the store's first
    update is read; its workers end when its queue is empty, so an idle store costs nothing.
    """

    def __init__(
        self,
        account: str,
        client: AsyncTrackingClient,
        pacer: _Pacer,
        stats: AccountProgress,
        *,
        max_workers: int,
        buffer_cap: int,
    ) -> None:
        self.account = account
        self.client = client
        self.pacer = pacer
        self.stats = stats
        self.ready: collections.deque[_Item] = collections.deque()
        self.workers = 0
        self.max_workers = max_workers
        self.buffer_cap = buffer_cap
        self.room = anyio.Event()
        self.auth_failures = 0
        self.stop_error: PushStoppedError | None = None
        self.scopes: set[anyio.CancelScope] = set()


# The item the current worker task is sending, so the pacer can mark it sent.
_current_item: contextvars.ContextVar[_Item | None] = contextvars.ContextVar(
    "vtex_tracking_current_item", default=None
)

_END = object()


class _Source:
    """The caller's iterable or async iterable, read one item at a time."""

    def __init__(self, updates: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._async: AsyncIterator[Any] | None = None
        self._sync: Iterator[Any] | None = None
        if isinstance(updates, AsyncIterable):
            self._async = aiter(updates)
        else:
            self._sync = iter(updates)

    async def next(self) -> Any:
        """The next item, or ``_END``."""
        if self._sync is not None:
            return next(self._sync, _END)
        assert self._async is not None
        try:
            return await anext(self._async)
        except StopAsyncIteration:
            return _END


class _Engine:
    """One push's state and tasks. Runs inside ``PushStream``'s background task.

    A reader task reads the input into per-store lanes (``_Lane``); each lane's workers send
    its ready items, at most ``max_workers`` at once, paced by the lane's own window, rate
    and adaptive throttle, and all of them under one global budget of ``concurrency``
    requests in flight. ``stop()`` cancels the reader and the workers at once (in-flight
    requests included) and ``run`` then reports every item still pending, so nothing read
    goes without a result. A store whose key is refused is stopped alone.
    """

    def __init__(
        self,
        client: AsyncTrackingClient,
        updates: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int,
        rate_limit: float | None,
        adaptive: bool,
        read_ahead: int,
        on_result: Callable[[PushResult], None] | None,
    ) -> None:
        self._client = client
        self._source = _Source(updates)
        self._concurrency = concurrency
        self._rate_limit = rate_limit
        self._adaptive = adaptive
        self._read_ahead = read_ahead
        self._on_result = on_result
        self.progress = PushProgress()
        self._rate_meter = _RateMeter()
        self._home = client.default_account
        # Only a push that may span stores needs a budget shared between lanes.
        self._multi_store = client.accounts is not None
        self._budget = Budget(concurrency) if self._multi_store else None
        self._lanes: dict[str | None, _Lane] = {}
        self._next_index = 0
        # Items read and without a result yet, by input index.
        self._pending: dict[int, _Item] = {}
        # Invoices with an update being sent or ready -> their later updates (None: none yet).
        self._busy: dict[tuple[str, str, str | None], collections.deque[_Item] | None] = {}
        self._stop_error: PushStoppedError | None = None
        self._workers: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        # Results made but not handed over when a stop interrupted the handing over.
        self._undelivered: list[PushResult] = []
        self.unfinished: list[PushResult] = []
        self._results: MemoryObjectSendStream[PushResult] | None = None
        self._slots = anyio.Semaphore(read_ahead)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, results: MemoryObjectSendStream[PushResult]) -> None:
        self._results = results
        try:
            async with results:
                async with anyio.create_task_group() as tg:
                    self._workers = tg.cancel_scope
                    self._task_group = tg
                    tg.start_soon(self._read)
                if self._stop_error is not None:
                    await self._report_stopped()
        finally:
            # Cancelled, or the consumer went away: whatever has no result yet is recorded
            # as unfinished, so every item read is still accounted for.
            self.unfinished.extend(self._undelivered)
            self._undelivered.clear()
            for _, item in sorted(self._pending.items()):
                self.unfinished.append(self._stopped_result(item))
                self.progress.failed += 1
            self._pending.clear()
            self.progress.queued = 0

    def stop(self, reason: str = "stopped", cause: BaseException | None = None) -> None:
        """Stop sending: no new requests, in-flight ones are cancelled, and every item already
        read still gets a result (a ``PushStoppedError``)."""
        if self._stop_error is None:
            self._stop_error = PushStoppedError(
                "not sent: the push was stopped", reason=reason, cause=cause
            )
        if self._workers is not None:
            self._workers.cancel()

    async def _report_stopped(self) -> None:
        """After a stop: hand out a result for every item still pending."""
        undelivered, self._undelivered = self._undelivered, []
        for result in undelivered:
            await self._hand_over(result)
        for _, item in sorted(self._pending.items()):
            await self._emit(self._stopped_result(item))

    # -- reading -----------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            await acquire(self._slots)
            raw = await self._source.next()
            if raw is _END:
                self._slots.release()
                return
            item = self._track(raw)
            key = item.key
            if key is None:
                await self._emit(_invalid(item.index, raw))
                continue
            try:
                lane = self._lane(key[2])
            except VtexTrackingError as exc:  # no credentials for that store
                await self._emit(PushResult(item.index, raw, error=exc, account=key[2]))
                continue
            if lane.stop_error is not None:
                await self._emit(self._stopped_result(item, lane))
                continue
            stats = lane.stats
            if stats.buffered >= lane.buffer_cap:
                # This store is the slowest: hold the input rather than memory without bound.
                self.progress.bottleneck = lane.account
                while stats.buffered >= lane.buffer_cap and lane.stop_error is None:
                    lane.room = anyio.Event()
                    await lane.room.wait()
                self.progress.bottleneck = None
                if lane.stop_error is not None:
                    await self._emit(self._stopped_result(item, lane))
                    continue
            stats.buffered += 1
            item.lane = lane
            if key in self._busy:
                # Its invoice is being sent: wait behind it, in input order.
                queue = self._busy[key]
                if queue is None:
                    queue = self._busy[key] = collections.deque()
                queue.append(item)
            else:
                self._busy[key] = None
                lane.ready.append(item)
                self._spawn(lane)

    def _track(self, raw: Any) -> _Item:
        item = _Item(self._next_index, raw, self._home)
        self._next_index += 1
        self._pending[item.index] = item
        self.progress.read += 1
        self.progress.queued += 1
        return item

    def _lane(self, account: str | None) -> _Lane:
        lane = self._lanes.get(account)
        if lane is not None:
            return lane
        client = self._client.for_account(account)  # ConfigurationError: unknown store
        config = client.config
        name = config.account_name
        stats = self.progress.accounts.setdefault(name, AccountProgress())
        registered = self._client.accounts.get(name) if self._client.accounts else None
        rate_limit = self._rate_limit
        if registered is not None and registered.rate_limit is not None:
            rate_limit = min(rate_limit or registered.rate_limit, registered.rate_limit)
        max_workers = min(config.max_concurrency, self._concurrency)
        if registered is not None and registered.max_concurrency is not None:
            max_workers = min(max_workers, registered.max_concurrency)  # the home store's
        pacer = _Pacer(
            concurrency=max_workers,
            rate_limit=rate_limit,
            adaptive=self._adaptive,
            max_retry_after=config.retry.max_retry_after,
            progress=self.progress,
            stats=stats,
            rate_meter=self._rate_meter,
            budget=self._budget,
            shows_rate=not self._multi_store,
        )
        # One store may fill at most half the read-ahead, so the others keep flowing.
        cap = max(1, self._read_ahead // 2) if self._multi_store else self._read_ahead
        lane = _Lane(name, client, pacer, stats, max_workers=max_workers, buffer_cap=cap)
        self._lanes[account] = lane
        return lane

    # -- sending -----------------------------------------------------------------------------

    def _spawn(self, lane: _Lane) -> None:
        """Start one more worker for ``lane`` if it can use one. Never more than the store's
        current window (the extra ones would only wait on it); in a multi-store push, a store
        gets a second and later worker only while the global budget has a free slot: a
        hundred stores with 64 waiting workers each would cost memory and wake-ups for no
        more requests in flight."""
        if not lane.ready or lane.workers >= lane.max_workers:
            return
        if lane.workers >= lane.pacer.window.total_tokens:
            return
        budget = self._budget
        if budget is not None and lane.workers > 0 and budget.value < 1:
            return
        lane.workers += 1
        assert self._task_group is not None
        self._task_group.start_soon(self._work, lane)

    async def _work(self, lane: _Lane) -> None:
        try:
            while lane.ready and lane.stop_error is None:
                item: _Item | None = lane.ready.popleft()
                self._spawn(lane)  # the window may have grown since the last one started
                with anyio.CancelScope() as scope:
                    lane.scopes.add(scope)
                    # Send this invoice's updates one after the other, in input order.
                    while item is not None:
                        await self._send_one(lane, item)
                        item = self._next_for(item.key)
                lane.scopes.discard(scope)
                if scope.cancelled_caught:
                    # The store was stopped while this invoice was being sent: deliver what
                    # the stop interrupted, then report the invoice's unsent updates.
                    undelivered, self._undelivered = self._undelivered, []
                    for result in undelivered:
                        await self._hand_over(result)
                    if item is not None:
                        await self._drop_invoice(lane, item)
        finally:
            lane.workers -= 1

    def _next_for(self, key: tuple[str, str, str | None] | None) -> _Item | None:
        assert key is not None
        queue = self._busy[key]
        if queue:
            return queue.popleft()
        del self._busy[key]
        return None

    async def _send_one(self, lane: _Lane, item: _Item) -> None:
        token = _current_item.set(item)
        try:
            receipt = await lane.client._send(item.update, lane.pacer)
        except Exception as exc:  # every failure is this item's result, never the push's
            result = PushResult(
                item.index,
                item.update,
                error=exc,
                attempts=getattr(exc, "attempts", 1),
                account=lane.account,
            )
            self._note_failure(lane, exc)
        else:
            result = PushResult(
                item.index,
                item.update,
                receipt=receipt,
                attempts=receipt.attempts,
                account=lane.account,
            )
            lane.auth_failures = 0
        finally:
            _current_item.reset(token)
        await self._emit(result)

    def _note_failure(self, lane: _Lane, exc: Exception) -> None:
        if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
            lane.auth_failures += 1
            if lane.auth_failures >= AUTH_FAILURES_TO_STOP and lane.stop_error is None:
                # A revoked key must not fire the rest of a million-update file; the other
                # stores go on.
                message = (
                    f"not sent: VTEX kept refusing the credentials of account {lane.account!r}"
                    f" ({exc})"
                )
                lane.stop_error = PushStoppedError(message, reason="auth", cause=exc)
                lane.stats.stopped = "auth"
                lane.room.set()
                for scope in lane.scopes:
                    scope.cancel()

    async def _drop_invoice(self, lane: _Lane, item: _Item | None) -> None:
        """Report as stopped ``item``, the updates of its invoice behind it, then every
        invoice still waiting in the stopped lane."""
        while item is not None:
            if item.index in self._pending:
                await self._emit(self._stopped_result(item, lane))
            item = self._next_for(item.key)
            if item is None and lane.ready:
                item = lane.ready.popleft()

    # -- results -----------------------------------------------------------------------------

    def _stopped_result(self, item: _Item, lane: _Lane | None = None) -> PushResult:
        stop = lane.stop_error if lane is not None and lane.stop_error else self._stop_error
        account = lane.account if lane is not None else _account_of(item, self._client)
        if item.sent:
            error = PushStoppedError(
                "cancelled while in flight: VTEX may or may not have applied it",
                reason=stop.reason if stop is not None else "cancelled",
                cause=stop.cause if stop is not None else None,
                in_flight=True,
            )
        elif stop is not None:
            error = stop
        else:
            error = PushStoppedError("not sent: the push was cancelled", reason="cancelled")
        return PushResult(item.index, item.update, error=error, attempts=0, account=account)

    async def _emit(self, result: PushResult) -> None:
        """Count one result, free its read-ahead slot and hand it out."""
        item = self._pending.pop(result.index, None)
        self._slots.release()
        progress = self.progress
        progress.queued -= 1
        if result.ok:
            progress.succeeded += 1
        else:
            progress.failed += 1
        stats = progress.accounts.get(result.account) if result.account is not None else None
        if stats is not None:
            if result.ok:
                stats.succeeded += 1
            else:
                stats.failed += 1
            stats.last_result_at = time.monotonic()
        lane = item.lane if item is not None else None
        if lane is not None:
            lane.stats.buffered -= 1
            if lane.stats.buffered < lane.buffer_cap:
                lane.room.set()
        if self._on_result is not None:
            self._on_result(result)
        await self._hand_over(result)

    async def _hand_over(self, result: PushResult) -> None:
        assert self._results is not None
        try:
            await _send(self._results, result)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The consumer stopped listening: keep the result for PushStream.unfinished.
            self.unfinished.append(result)
        except BaseException:
            # Interrupted (a stop, or cancellation) before it was handed over: keep it.
            self._undelivered.append(result)
            raise


def _account_of(item: _Item, client: AsyncTrackingClient) -> str | None:
    if item.key is None:
        return None
    return item.key[2] or client.default_account


T = TypeVar("T")


# Memory-stream calls with a fast path: anyio's send()/receive() always pass through a
# checkpoint (an extra event-loop turn), even when the buffer is ready (see _throttle.acquire).
async def _send(stream: MemoryObjectSendStream[T], item: T) -> None:
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


async def _receive(stream: MemoryObjectReceiveStream[T]) -> T:
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        return await stream.receive()


def _invalid(index: int, raw: Any) -> PushResult:
    error = ValidationError(
        f"item[{index}]", f"expected a TrackingUpdate, got {type(raw).__name__}"
    )
    return PushResult(index, raw, error=error, attempts=0)


class PushStream:
    """The results of ``AsyncTrackingClient.push``, in completion order, one per input item.

    Iterate it with ``async for``. ``progress`` has live counters. ``stop()`` stops sending and
    lets the iteration finish with a result for every item already read. Leaving the loop early
    (``break``) or ``aclose()`` cancels in-flight requests at once; results nobody received are
    then in ``unfinished``. ``summary()`` totals every result the stream delivered, so it may be
    called during or after the loop (the stream keeps the failed results for it).
    """

    def __init__(self, engine: _Engine, buffer: int) -> None:
        self._engine = engine
        self._send, self._receive = anyio.create_memory_object_stream[PushResult](buffer)
        self._task: asyncio.Task[None] | None = None
        self._started_at: float | None = None
        self._tally = Tally(engine.progress)

    @property
    def progress(self) -> PushProgress:
        """Live counters: read, queued, in flight, succeeded, failed, send rate, rate limit."""
        return self._engine.progress

    @property
    def unfinished(self) -> list[PushResult]:
        """Results the consumer never received (cancelled pushes, early exits)."""
        return self._engine.unfinished

    def _start(self) -> None:
        if self._task is None:
            self._engine.progress.started_at = time.monotonic()
            # A plain asyncio task, not a task group: the consumer may leave the `async for`
            # at any point, and an async iterator cannot hold a task group open across
            # iterations. The task is cancelled when the stream is closed or collected.
            self._task = asyncio.get_running_loop().create_task(self._engine.run(self._send))
            weakref.finalize(self, _cancel_task, self._task)

    def __aiter__(self) -> PushStream:
        return self

    async def __anext__(self) -> PushResult:
        self._start()
        try:
            result = await _receive(self._receive)
        except anyio.EndOfStream:
            await self._join()
            raise StopAsyncIteration from None
        except anyio.ClosedResourceError:  # iterated again after the end, or after aclose()
            raise StopAsyncIteration from None
        self._tally.add(result)
        return result

    async def next_batch(self, max_items: int) -> list[PushResult]:
        """Wait for at least one result, then take up to ``max_items`` already available;
        an empty list means the push is over. (The sync facade uses this to cross the
        portal once per batch instead of once per result.)"""
        self._start()
        try:
            batch = [await _receive(self._receive)]
        except anyio.EndOfStream:
            await self._join()
            return []
        except anyio.ClosedResourceError:
            return []
        while len(batch) < max_items:
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return batch

    def stop(self) -> None:
        """Stop sending; iteration goes on until every item read has its result."""
        self._engine.stop()

    async def aclose(self) -> None:
        """Cancel the push now; results not yet received go to ``unfinished``."""
        task = self._task
        if task is not None:
            if not task.done():
                task.cancel()
            await asyncio.wait({task})
        # Results already produced but not received are unfinished too.
        while True:
            try:
                self._engine.unfinished.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._receive.close()

    async def _join(self) -> None:
        """Wait for the engine task to end; re-raise what broke it (e.g. the input iterator)."""
        self._receive.close()
        task = self._task
        if task is None:
            return
        if not task.done():
            await asyncio.wait({task})
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            raise _single(exc)

    async def __aenter__(self) -> PushStream:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def summary(self) -> PushSummary:
        """Consume the rest of the stream and return the totals of every result it delivered
        (those received in an ``async for`` before included)."""
        async for _ in self:
            pass
        return self._tally.summary()

    def cancel_soon(self) -> None:
        """Cancel the push without waiting; safe from finalizers and other threads, because
        the work is handed to the stream's own event loop."""
        task = self._task
        if task is not None and not task.done():
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._cancel_now)

    def _cancel_now(self) -> None:
        self._receive.close()
        if self._task is not None:
            self._task.cancel()


class Tally:
    """Counts results into a ``PushSummary`` (failed results are kept for it)."""

    def __init__(self, progress: PushProgress) -> None:
        self._progress = progress
        self._started = time.monotonic()
        self.total = 0
        self.succeeded = 0
        self.by_outcome: collections.Counter[str] = collections.Counter()
        self.failures: list[PushResult] = []
        # Per store: [results, confirmed].
        self.by_account: dict[str | None, list[int]] = {}

    def add(self, result: PushResult) -> None:
        self.total += 1
        self.by_outcome[result.outcome] += 1
        counts = self.by_account.get(result.account)
        if counts is None:
            counts = self.by_account[result.account] = [0, 0]
        counts[0] += 1
        if result.ok:
            self.succeeded += 1
            counts[1] += 1
        else:
            self.failures.append(result)

    def summary(self) -> PushSummary:
        started = min(self._started, self._progress.started_at)
        accounts = {}
        for name, (total, succeeded) in self.by_account.items():
            if name is None:  # invalid items belong to no store
                continue
            live = self._progress.accounts.get(name) or AccountProgress()
            accounts[name] = AccountSummary(
                total=total,
                succeeded=succeeded,
                failed=total - succeeded,
                requests=live.requests,
                throttled=live.throttled,
                elapsed_s=max(0.0, (live.last_result_at or time.monotonic()) - started),
                stopped=live.stopped,
            )
        return PushSummary(
            total=self.total,
            succeeded=self.succeeded,
            failed=self.total - self.succeeded,
            by_outcome=dict(self.by_outcome),
            elapsed_s=time.monotonic() - started,
            failures=tuple(self.failures),
            requests=self._progress.requests,
            by_account=accounts,
        )


def _single(exc: BaseException) -> BaseException:
    # anyio task groups wrap errors in an ExceptionGroup; a lone error reads better bare.
    inner = getattr(exc, "exceptions", None)
    while inner is not None and len(inner) == 1:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


def _cancel_task(task: asyncio.Task[None]) -> None:
    if not task.done():
        loop = task.get_loop()
        if not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)


def start_push(
    client: AsyncTrackingClient,
    updates: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int,
    rate_limit: float | None,
    adaptive: bool,
    read_ahead: int | None,
    on_result: Callable[[PushResult], None] | None,
) -> PushStream:
    """Build a push; it starts sending on first iteration (or ``async with``)."""
    if isinstance(updates, (str, bytes)) or not isinstance(updates, (Iterable, AsyncIterable)):
        raise ValidationError("updates", "expected an iterable of TrackingUpdate")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"expected an integer >= 1, got {concurrency!r}")
    if rate_limit is not None and (
        isinstance(rate_limit, bool) or not isinstance(rate_limit, (int, float)) or rate_limit <= 0
    ):
        raise ValidationError("rate_limit", f"expected requests per second > 0, got {rate_limit!r}")
    if not read_ahead:
        read_ahead = concurrency * READ_AHEAD_PER_WORKER
        if client.accounts is not None:
            # Room for a slow store's backlog (half of it at most) while the others flow.
            read_ahead = max(read_ahead, MULTI_STORE_READ_AHEAD)
    engine = _Engine(
        client,
        updates,
        concurrency=concurrency,
        rate_limit=float(rate_limit) if rate_limit is not None else None,
        adaptive=adaptive,
        read_ahead=read_ahead,
        on_result=on_result,
    )
    return PushStream(engine, buffer=concurrency)

