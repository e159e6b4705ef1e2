"""The push engine: many updates, bounded memory, order per invoice, nothing lost.

How a push flows::

    input ──reader──> its account's lane ──scheduler──> senders ──> results ──> consumer
             │  one slot per item: at most ``read_ahead`` items between input and result
             │  (and at most half of them in one account's lane, when the push spans accounts)
             └─ an update whose invoice is busy waits in that invoice's queue instead

A lane (``_Lane``) is one account's share of the push: the account's ``AccountSender``, the
updates ready to go (each the next of its invoice) and the account's counters; it is made on
the account's first update, so idle accounts cost nothing.

* Scheduling: at most ``concurrency`` sender tasks, started as work appears, take turns at
  the lanes with ready updates (round robin) and send a lane's next update as soon as its
  account's pace admits one. A lane whose pace says "not now" (window full, no token, paused)
  leaves the rotation and leaves one callback in that pace's queue instead; when the pace
  admits it, the admission goes to an idle sender. So a throttled account's backlog holds no
  sender and no slot of the client's budget, a slow account never holds up the others, and a
  fast one cannot take a slow one's turn: the pace's queue is first come first served across
  this push, other pushes and single calls of the same account.
* Order per invoice: while an invoice has a request in flight, later updates for it wait in
  a per-invoice queue; when one ends, the next becomes ready, so they go in input order and
  never overlap. Other invoices keep flowing meanwhile.
* Nothing lost: every item read from the input gets exactly one ``PushResult``: delivered
  through the stream, or, if the consumer went away or the push was cancelled, kept in
  ``PushStream.unfinished``. An account whose credentials VTEX keeps refusing is stopped
  alone; its remaining updates end as ``PushStoppedError(reason="auth")``.
* Sending less (each opt-in): an update the ``journal`` says an earlier run had confirmed,
  or whose body is the one VTEX last confirmed for its invoice (``skip_unchanged``), gets its
  result at once, unsent; with ``merge_snapshots`` a newer update of an invoice replaces the
  one waiting behind the invoice's request in flight, and the replaced one's result follows
  the newer one's. Confirmations are written to both files as they arrive (``_journal``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ._errors import (
    AuthCooldownError,
    AuthenticationError,
    ConnectError,
    PermissionDeniedError,
    PushStoppedError,
    ValidationError,
    VtexTrackingError,
)
from ._models import PushResult, TrackingUpdate
from ._pace import AccountPace
from ._progress import AccountProgress, PushProgress, RateMeter
from ._remember import (
    Entry,
    FailedInvoices,
    Journal,
    UnchangedState,
    body_digest,
    invoice_digest,
    open_memory,
)
from ._sender import AccountSender
from ._serde import encode_status
from ._stream import PushStream
from ._telemetry import logger
from ._throttle import TokenBucket

#: Items read ahead of the senders, per unit of concurrency (capped: see ``_read_ahead``).
READ_AHEAD_PER_SENDER = 4
#: Places a reader that ran out of read-ahead waits for before reading on.
READ_REFILL = 32
#: The least read-ahead of a push that may span accounts (about 1 KB per buffered update).
MULTI_ACCOUNT_READ_AHEAD = 4096
#: The most read-ahead chosen by default (about 1 KB per buffered update).
MAX_DEFAULT_READ_AHEAD = 8192
#: Updates of an account that never answered in this push which may end in "cannot
#: connect" (each after all its attempts) before the account is stopped as unreachable.
UNREACHABLE_AFTER = 2


def _positive_int(name: str) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(name, f"expected an integer >= 1, got {value!r}")

    return check


def _rate(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
    ):
        raise ValidationError("rate_limit", f"expected requests per second > 0, got {value!r}")


def _as_journal(value: Journal | str | os.PathLike[str] | None) -> Journal | None:
    """``journal=``: a ``Journal``, or a path for one."""
    if value is None or isinstance(value, Journal):
        return value
    return Journal(value)


def _as_unchanged(
    value: UnchangedState | str | os.PathLike[str] | None,
) -> UnchangedState | None:
    """``skip_unchanged=``: an ``UnchangedState``, or a path for one."""
    if value is None or isinstance(value, UnchangedState):
        return value
    return UnchangedState(value)


@attrs.frozen
class PushOptions:
    """How one push runs; checked once, when the push is made (see ``AsyncTrackingClient.push``
    for what each option means)."""

    concurrency: int = attrs.field(validator=_positive_int("concurrency"))
    rate_limit: float | None = attrs.field(default=None, validator=_rate)
    adaptive: bool | None = None
    read_ahead: int | None = attrs.field(default=None, validator=_positive_int("read_ahead"))
    on_result: Callable[[PushResult], None] | None = None
    journal: Journal | None = attrs.field(default=None, converter=_as_journal)
    skip_unchanged: UnchangedState | None = attrs.field(default=None, converter=_as_unchanged)
    merge_snapshots: bool = False


async def _next_async(items: AsyncIterator[Any]) -> Any:
    """The next item of an async iterator, or ``_END``."""
    try:
        return await anext(items)
    except StopAsyncIteration:
        return _END


_END = object()

InvoiceKey = tuple[str, str, "str | None"]


class _Item:
    """One input item on its way. ``key`` is its invoice within its account (None for an
    invalid item); ``sent`` turns True once it is handed to the sender (it may be on the
    wire from then on)."""

    __slots__ = (
        "body",
        "entry",
        "index",
        "key",
        "lane",
        "sent",
        "superseded",
        "update",
        "wire",
    )

    def __init__(self, index: int, update: Any, default_account: str | None) -> None:
        self.index = index
        self.update = update
        self.key: InvoiceKey | None = None
        if isinstance(update, TrackingUpdate):
            # The default account under one name (None), named or not: the same ids in two
            # accounts are two invoices.
            account = None if update.account_name == default_account else update.account_name
            self.key = (update.order_id, update.invoice_number, account)
        self.sent = False
        #: The update as it is sent (after the account's checks, e.g. its time zone).
        self.wire: TrackingUpdate | None = None
        # The lane whose buffer counts it, once it is in one.
        self.lane: _Lane | None = None
        # With a journal or skip_unchanged: the body as sent, and what the memory keeps.
        self.body: bytes | None = None
        self.entry: Entry | None = None
        # Earlier updates of its invoice it replaced (merge_snapshots), oldest first.
        self.superseded: list[_Item] | None = None


class _Lane:
    """One account's share of a push: its sender and pace, the updates ready to go, and its
    counters. It is also the ``AttemptObserver`` that keeps those counters."""

    __slots__ = (
        "account",
        "admitted",
        "answered",
        "buffer_cap",
        "cap",
        "on_admit",
        "on_backoff",
        "pace",
        "progress",
        "queued",
        "rate_meter",
        "reader_waits",
        "ready",
        "room",
        "sender",
        "shows_rate",
        "stats",
        "stop_error",
        "target",
        "unreachable",
        "waiting",
        "wake_timer",
    )

    def __init__(
        self,
        sender: AccountSender,
        pace: AccountPace,
        cap: TokenBucket | None,
        stats: AccountProgress,
        progress: PushProgress,
        rate_meter: RateMeter,
        *,
        buffer_cap: int,
        shows_rate: bool,
    ) -> None:
        self.account = sender.account
        self.sender = sender
        # Where its requests go: what the push's memory binds its confirmations to.
        self.target = sender.transport.url_prefix
        # Whether the account answered at all in this push, and updates that then ended
        # because no connection could be made (see UNREACHABLE_AFTER).
        self.answered = False
        self.unreachable = 0
        self.pace = pace
        # The push's own rate_limit, when lower than the account's pace.
        self.cap = cap
        self.stats = stats
        self.progress = progress
        self.rate_meter = rate_meter
        self.shows_rate = shows_rate
        self.ready: collections.deque[_Item] = collections.deque()
        # Admissions the pace granted this lane that no sender has used yet.
        self.admitted = 0
        # In the engine's rotation / waiting in the pace's queue (never both).
        self.queued = False
        self.waiting = False
        self.on_admit: Callable[[BaseException | None], None] = lambda error: None
        self.on_backoff: Callable[[bool], None] = lambda waiting: None
        self.wake_timer: asyncio.TimerHandle | None = None
        self.buffer_cap = buffer_cap
        self.room = anyio.Event()
        # The reader waits for room in this lane's buffer (set it when there is some).
        self.reader_waits = False
        self.stop_error: PushStoppedError | None = None
        self._show_rate()

    def attempt_started(self) -> None:
        stats, progress = self.stats, self.progress
        stats.requests += 1
        stats.in_flight += 1
        progress.requests += 1
        progress.in_flight += 1
        progress.send_rate = self.rate_meter.tick()

    def attempt_finished(self, status: int | None, retry_after: float | None) -> None:
        stats, progress = self.stats, self.progress
        stats.in_flight -= 1
        progress.in_flight -= 1
        if status is not None:
            self.answered = True
        if status == 429 or (status == 503 and retry_after is not None):
            stats.throttled += 1
            progress.throttled += 1
        self._show_rate()

    def backoff(self, waiting: bool) -> None:
        self.on_backoff(waiting)

    def _show_rate(self) -> None:
        rate = self.pace.bucket.rate
        if self.cap is not None and self.cap.rate is not None:
            rate = self.cap.rate if rate is None else min(rate, self.cap.rate)
        self.stats.rate_limit = rate
        if self.shows_rate:
            self.progress.rate_limit = rate


class _Engine:
    """One push's state and tasks; runs inside ``PushStream``'s background task.

    ``stop()`` cancels the reader and the senders at once (in-flight requests included) and
    ``run`` then reports every item still pending, so nothing read goes without a result.
    """

    def __init__(
        self,
        updates: Iterable[Any] | AsyncIterable[Any],
        options: PushOptions,
        *,
        sender_for: Callable[[str | None], AccountSender],
        default_account: str | None,
        spans_accounts: bool,
    ) -> None:
        # The caller's iterable, read one item at a time (a plain iterator costs no coroutine).
        self._sync_source: Iterator[Any] | None = None
        self._async_source: AsyncIterator[Any] | None = None
        if isinstance(updates, AsyncIterable):
            self._async_source = aiter(updates)
        else:
            self._sync_source = iter(updates)
        self._options = options
        self._sender_for = sender_for
        self._default_account = default_account
        self._spans_accounts = spans_accounts
        self._read_ahead = _read_ahead(options, spans_accounts)
        self.progress = PushProgress()
        self._rate_meter = RateMeter()
        self._lanes: dict[str | None, _Lane] = {}
        self._next_index = 0
        # Items read and without a result yet, by input index.
        self._pending: dict[int, _Item] = {}
        # Invoices with an update being sent or ready -> their later updates (None: none yet).
        self._busy: dict[InvoiceKey, collections.deque[_Item] | None] = {}
        self._reading_done = False
        # The scheduler: lanes that may send now, lanes the pace admitted, idle senders.
        self._rotation: collections.deque[_Lane] = collections.deque()
        self._admitted: collections.deque[_Lane] = collections.deque()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._senders = 0
        # Senders waiting out a retry's backoff: they hold no request in flight, so their
        # turn goes to another sender meanwhile (``concurrency`` bounds requests, not waits).
        self._backing_off = 0
        self._stop_error: PushStoppedError | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        # Results made but not handed over when a stop interrupted the handing over.
        self._undelivered: list[PushResult] = []
        self.unfinished: list[PushResult] = []
        self._results: MemoryObjectSendStream[PushResult] | None = None
        # Read-ahead: items the reader may still read before results free their places. A
        # reader that ran out waits for a batch of places, not one: woken per result, it
        # would cost a task switch per update.
        self._room = self._read_ahead
        self._refill = max(1, min(READ_REFILL, self._read_ahead // 4))
        self._reader_waiting: asyncio.Future[None] | None = None
        # What VTEX confirmed (opt-in); opened now so a bad file fails ``push()`` itself.
        self._memory = open_memory(options.journal, options.skip_unchanged)
        # Failed updates by invoice, until a later update of the invoice is confirmed.
        self._failed = FailedInvoices()

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, results: MemoryObjectSendStream[PushResult]) -> None:
        """Push everything; hand each result to ``results`` (closed at the end)."""
        self._results = results
        try:
            async with results:
                try:
                    async with anyio.create_task_group() as tg:
                        self._task_group = tg
                        tg.start_soon(self._read)
                finally:
                    # No sender left to use an admission: give them back before anything
                    # else can await (a pace admitting us now must not find us half-closed).
                    self._task_group = None
                    self._give_back_admissions()
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
            if self._memory is not None:
                # Even when cancelled: what VTEX confirmed must be written down.
                with anyio.CancelScope(shield=True):
                    await self._memory.aclose()

    def stop(self, reason: str = "stopped", cause: BaseException | None = None) -> None:
        """Stop sending: no new requests, in-flight ones are cancelled, and every item already
        read still gets a result (a ``PushStoppedError``)."""
        if self._stop_error is None:
            self._stop_error = PushStoppedError(
                "not sent: the push was stopped", reason=reason, cause=cause
            )
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    def _give_back_admissions(self) -> None:
        """The account paces are shared with other calls: return what this push holds."""
        for lane in self._lanes.values():
            if lane.waiting:
                lane.pace.cancel(lane.on_admit)
                lane.waiting = False
            for _ in range(lane.admitted):
                lane.pace.release_unused()
            lane.admitted = 0
            if lane.wake_timer is not None:
                lane.wake_timer.cancel()
                lane.wake_timer = None
        self._admitted.clear()

    async def _report_stopped(self) -> None:
        """After a stop: hand out a result for every item still pending."""
        undelivered, self._undelivered = self._undelivered, []
        for result in undelivered:
            await self._hand_over(result)
        for _, item in sorted(self._pending.items()):
            await self._emit(self._stopped_result(item))

    # -- reading -----------------------------------------------------------------------------

    async def _read(self) -> None:
        sync_source = self._sync_source
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._room <= 0:
                    self._reader_waiting = loop.create_future()
                    await self._reader_waiting
                if sync_source is not None:
                    raw = next(sync_source, _END)
                else:
                    assert self._async_source is not None
                    raw = await _next_async(self._async_source)
                if raw is _END:
                    return
                self._room -= 1
                await self._admit_item(raw)
        finally:
            self._reading_done = True
            if not self._pending:
                self._wake_all_senders()

    async def _admit_item(self, raw: Any) -> None:
        item = self._track(raw)
        key = item.key
        if key is None:
            await self._emit(_invalid(item.index, raw))
            return
        try:
            lane = self._lane(key[2])
        except VtexTrackingError as exc:  # no credentials for that account
            await self._emit(PushResult(item.index, raw, error=exc, account=key[2]))
            return
        if lane.stop_error is not None:
            await self._emit(self._stopped_result(item, lane))
            return
        try:
            item.wire = lane.sender.checks.check(raw)
        except ValidationError as exc:  # what VTEX would refuse: never queued, never sent
            await self._emit(PushResult(item.index, raw, error=exc, account=lane.account))
            return
        memory = self._memory
        if memory is not None:
            entry = self._entry(item, lane)
            skipped = await memory.skip(entry, busy=key in self._busy)
            if skipped is not None:
                memory.settled(entry, confirmed=True, sent=False)
                await self._emit(
                    PushResult(item.index, raw, attempts=0, account=lane.account, skipped=skipped)
                )
                return
        stats = lane.stats
        if stats.buffered >= lane.buffer_cap:
            # This account is the slowest: hold the input rather than memory without bound.
            self.progress.bottleneck = lane.account
            while stats.buffered >= lane.buffer_cap and lane.stop_error is None:
                lane.room = anyio.Event()
                lane.reader_waits = True
                await lane.room.wait()
            self.progress.bottleneck = None
            if lane.stop_error is not None:
                await self._emit(self._stopped_result(item, lane))
                return
        stats.buffered += 1
        item.lane = lane
        if key in self._busy:
            # Its invoice is being sent: wait behind it, in input order.
            queue = self._busy[key]
            if queue is None:
                queue = self._busy[key] = collections.deque()
            if queue and self._options.merge_snapshots:
                # A newer snapshot of the invoice: it takes the waiting one's place (and
                # carries its result); the order of what is sent stays the input's.
                older = queue[-1]
                item.superseded = [*(older.superseded or ()), older]
                older.superseded = None
                queue[-1] = item
            else:
                queue.append(item)
        else:
            self._busy[key] = None
            lane.ready.append(item)
            self._offer(lane)

    def _entry(self, item: _Item, lane: _Lane) -> Entry:
        """The update as the memory sees it: digests of its invoice, bound to the target
        its account's requests go to, and of the body that is sent."""
        wire = item.wire
        assert wire is not None
        item.body = encode_status(wire.status)
        invoice = invoice_digest(lane.target, lane.account, wire.order_id, wire.invoice_number)
        item.entry = Entry(item.index, invoice, body_digest(item.body))
        return item.entry

    def _track(self, raw: Any) -> _Item:
        item = _Item(self._next_index, raw, self._default_account)
        self._next_index += 1
        self._pending[item.index] = item
        self.progress.read += 1
        self.progress.queued += 1
        return item

    def _lane(self, account: str | None) -> _Lane:
        lane = self._lanes.get(account)
        if lane is not None:
            return lane
        sender = self._sender_for(account)  # ConfigurationError: unknown account
        sender.bind()
        options = self._options
        stats = self.progress.accounts.setdefault(sender.account, AccountProgress())
        pace = sender.pace
        cap = None
        if options.adaptive is False:
            # This push paces itself: its own window and rate, nothing learned or shared.
            pace = AccountPace(
                sender.account,
                rate_limit=_lower(options.rate_limit, pace.bucket.rate),
                adaptive=False,
                max_concurrency=min(pace.max_window, options.concurrency),
                max_retry_after=sender.retry_policy.max_retry_after,
            )
            pace.bind(asyncio.get_running_loop())
        elif options.rate_limit is not None:
            cap = TokenBucket(options.rate_limit)
        # One account may fill at most half the read-ahead, so the others keep flowing.
        buffer_cap = max(1, self._read_ahead // 2) if self._spans_accounts else self._read_ahead
        lane = _Lane(
            sender,
            pace,
            cap,
            stats,
            self.progress,
            self._rate_meter,
            buffer_cap=buffer_cap,
            shows_rate=not self._spans_accounts,
        )
        lane.on_admit = functools.partial(self._on_admit, lane)
        lane.on_backoff = self._on_backoff
        self._lanes[account] = lane
        return lane

    # -- scheduling --------------------------------------------------------------------------

    def _offer(self, lane: _Lane) -> None:
        """Put ``lane`` in the rotation if it has a ready update no admission covers yet."""
        if lane.queued or lane.waiting:
            return
        if lane.stop_error is None and len(lane.ready) <= lane.admitted:
            return
        if lane.stop_error is not None and not lane.ready:
            return
        lane.queued = True
        self._rotation.append(lane)
        self._wake_sender()

    def _on_admit(self, lane: _Lane, error: BaseException | None) -> None:
        """The pace admitted a request for ``lane`` (or refused it for good)."""
        lane.waiting = False
        if error is not None:
            self._stop_lane(lane, error, "auth")
            return
        if lane.stop_error is not None or self._task_group is None:
            lane.pace.release_unused()  # stopped, or the push is over: nobody will send it
            return
        lane.admitted += 1
        self._admitted.append(lane)
        self._wake_sender()
        self._offer(lane)

    def _wake_sender(self) -> None:
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        if (
            self._senders - self._backing_off < self._options.concurrency
            and self._task_group is not None
        ):
            self._senders += 1
            self._task_group.start_soon(self._send_loop)

    def _on_backoff(self, waiting: bool) -> None:
        if waiting:
            self._backing_off += 1
            if self._rotation or self._admitted:
                self._wake_sender()  # someone else may send meanwhile
        else:
            self._backing_off -= 1

    def _wake_all_senders(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _next_lane(self) -> _Lane | None:
        """A lane with an admission to use (or a stopped lane to report), or None."""
        while True:
            admitted = self._admitted
            while admitted:
                lane = admitted.popleft()
                if lane.stop_error is None:
                    return lane
            rotation = self._rotation
            if not rotation:
                return None
            lane = rotation.popleft()
            lane.queued = False
            if lane.stop_error is not None:
                if lane.ready:
                    return lane
                continue
            if len(lane.ready) <= lane.admitted:
                continue
            cap = lane.cap
            if cap is not None and (wait := cap.wait_time()) > 0:
                if lane.wake_timer is None:
                    lane.wake_timer = asyncio.get_running_loop().call_later(
                        wait, self._wake_lane, lane
                    )
                continue
            if lane.pace.try_admit():
                if cap is not None:
                    cap.take()
                lane.admitted += 1
                self._offer(lane)  # more ready: back of the rotation, round robin
                return lane
            # Not now: wait in the pace's queue, holding no sender.
            lane.waiting = True
            if cap is not None:
                cap.take()
            lane.pace.enqueue(lane.on_admit)

    def _wake_lane(self, lane: _Lane) -> None:
        lane.wake_timer = None
        self._offer(lane)

    def _finished(self) -> bool:
        return self._reading_done and not self._pending

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._senders - self._backing_off > self._options.concurrency:
                    return  # back from a backoff to more senders than needed: step aside
                lane = self._next_lane()
                if lane is None:
                    if self._finished():
                        return
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._idle.append(waiter)
                    await waiter
                    continue
                if lane.stop_error is not None:
                    await self._drop_invoice(lane, None)
                    continue
                lane.admitted -= 1
                item = lane.ready.popleft()
                await self._send_one(lane, item)
                following = self._next_for(item.key)
                if following is None:
                    continue
                if lane.stop_error is not None:
                    await self._drop_invoice(lane, following)
                else:
                    lane.ready.append(following)
                    self._offer(lane)
        finally:
            self._senders -= 1

    def _next_for(self, key: InvoiceKey | None) -> _Item | None:
        assert key is not None
        queue = self._busy[key]
        if queue:
            return queue.popleft()
        del self._busy[key]
        return None

    async def _send_one(self, lane: _Lane, item: _Item) -> None:
        item.sent = True
        try:
            receipt = await lane.sender.send(
                item.wire or item.update,
                pace=lane.pace,
                admitted=True,
                patient=True,
                observer=lane,
                checked=item.wire is not None,
                body=item.body,
            )
        except Exception as exc:  # every failure is this item's result, never the push's
            result = PushResult(
                item.index,
                item.update,
                error=exc,
                attempts=getattr(exc, "attempts", 1),
                account=lane.account,
            )
            if isinstance(exc, AuthCooldownError) or (
                isinstance(exc, (AuthenticationError, PermissionDeniedError))
                and lane.pace.auth_stopped
            ):
                self._stop_lane(lane, exc, "auth")
            elif isinstance(exc, ConnectError) and not lane.answered:
                lane.unreachable += 1
                if lane.unreachable >= UNREACHABLE_AFTER:
                    self._stop_lane(lane, exc, "unreachable")
        else:
            result = PushResult(
                item.index,
                item.update,
                receipt=receipt,
                attempts=receipt.attempts,
                account=lane.account,
            )
        if item.entry is not None:
            assert self._memory is not None
            self._memory.settled(item.entry, confirmed=result.ok, sent=True)
        await self._emit(result)

    def _stop_lane(self, lane: _Lane, cause: BaseException, reason: str) -> None:
        """Stop one account, the others go on: VTEX keeps refusing its credentials
        (``"auth"``), or it cannot be reached at all (``"unreachable"``). A revoked key or a
        mistyped account name must not fire, or retry line by line, the rest of a
        million-update file; every remaining update gets its result at once."""
        if lane.stop_error is not None:
            return
        if isinstance(cause, AuthCooldownError) and cause.cause is not None:
            cause = cause.cause
        if reason == "unreachable":
            why = (
                f"account {lane.account!r} could not be reached at {lane.sender.transport.host}"
                f" ({cause}); check the account name (VTEX_ACCOUNT_NAME, accountName or the"
                " accounts file), the base URL (--base-url, base_url) and DNS"
            )
        else:
            why = f"VTEX kept refusing the credentials of account {lane.account!r} ({cause})"
        lane.stop_error = PushStoppedError(f"not sent: {why}", reason=reason, cause=cause)
        logger.warning(
            "push: stopped sending to account %r: %s; its remaining updates are reported as"
            " not sent",
            lane.account,
            why,
        )
        lane.stats.stopped = reason
        lane.room.set()
        if lane.waiting:
            lane.pace.cancel(lane.on_admit)
            lane.waiting = False
        for _ in range(lane.admitted):
            lane.pace.release_unused()
        lane.admitted = 0
        self._offer(lane)  # a sender reports what is still ready

    async def _drop_invoice(self, lane: _Lane, item: _Item | None) -> None:
        """Report as stopped ``item``, the updates of its invoice behind it, then every
        invoice still waiting in the stopped lane."""
        while True:
            if item is None:
                if not lane.ready:
                    return
                item = lane.ready.popleft()
            if item.index in self._pending:
                await self._emit(self._stopped_result(item, lane))
            item = self._next_for(item.key)

    # -- results -----------------------------------------------------------------------------

    def _stopped_result(self, item: _Item, lane: _Lane | None = None) -> PushResult:
        stop = lane.stop_error if lane is not None and lane.stop_error else self._stop_error
        account = lane.account if lane is not None else self._account_of(item)
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

    def _account_of(self, item: _Item) -> str | None:
        if item.key is None:
            return None
        return item.key[2] or self._default_account

    async def _emit(self, result: PushResult) -> None:
        """Count one result, free its read-ahead slot and hand it out (and the results of
        the updates it superseded: its own)."""
        item = self._pending.pop(result.index, None)
        if item is not None and item.key is not None:
            moot = self._failed.settle(item.key, result.index, result.ok)
            if moot:
                result = attrs.evolve(result, supersedes=moot)
        if item is not None and item.superseded:
            for older in item.superseded:
                if older.index in self._pending:  # not already reported by a stop
                    await self._emit(
                        PushResult(
                            older.index,
                            older.update,
                            receipt=result.receipt,
                            error=result.error,
                            account=result.account,
                            skipped="superseded",
                            superseded_by=result.index,
                        )
                    )
        self._room += 1
        waiting = self._reader_waiting
        if waiting is not None and self._room >= self._refill:
            self._reader_waiting = None
            if not waiting.done():
                waiting.set_result(None)
        progress = self.progress
        progress.queued -= 1
        ok = result.ok
        if ok:
            progress.succeeded += 1
        else:
            progress.failed += 1
        lane = item.lane if item is not None else None
        if lane is not None:
            stats: AccountProgress | None = lane.stats
            lane.stats.buffered -= 1
            if lane.reader_waits and lane.stats.buffered < lane.buffer_cap:
                lane.reader_waits = False
                lane.room.set()
        else:
            account = result.account
            stats = progress.accounts.get(account) if account is not None else None
        if stats is not None:
            if ok:
                stats.succeeded += 1
            else:
                stats.failed += 1
            stats.last_result_at = time.monotonic()
        if self._reading_done and not self._pending:
            self._wake_all_senders()
        if self._options.on_result is not None:
            self._options.on_result(result)
        await self._hand_over(result)

    async def _hand_over(self, result: PushResult) -> None:
        results = self._results
        assert results is not None
        try:
            # Without waiting when the consumer keeps up (anyio's send() always passes a
            # checkpoint, an event-loop turn per result).
            try:
                results.send_nowait(result)
            except anyio.WouldBlock:
                await results.send(result)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The consumer stopped listening: keep the result for PushStream.unfinished.
            self.unfinished.append(result)
        except BaseException:
            # Interrupted (a stop, or cancellation) before it was handed over: keep it.
            self._undelivered.append(result)
            raise


def _lower(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _read_ahead(options: PushOptions, spans_accounts: bool) -> int:
    if options.read_ahead:
        return options.read_ahead
    read_ahead = min(options.concurrency * READ_AHEAD_PER_SENDER, MAX_DEFAULT_READ_AHEAD)
    if spans_accounts:
        # Room for a slow account's backlog (half of it at most) while the others flow.
        read_ahead = max(read_ahead, MULTI_ACCOUNT_READ_AHEAD)
    return read_ahead


def _invalid(index: int, raw: Any) -> PushResult:
    error = ValidationError(
        f"item[{index}]", f"expected a TrackingUpdate, got {type(raw).__name__}"
    )
    return PushResult(index, raw, error=error, attempts=0)


def start_push(
    updates: Iterable[Any] | AsyncIterable[Any],
    options: PushOptions,
    *,
    sender_for: Callable[[str | None], AccountSender],
    default_account: str | None,
    spans_accounts: bool,
) -> PushStream:
    """Build a push; it starts sending on first iteration (or ``async with``).

    ``sender_for`` gives the ``AccountSender`` of an update's ``account_name`` (None: the
    default account), raising ``VtexTrackingError`` for an account it cannot serve.
    """
    if isinstance(updates, (str, bytes)) or not isinstance(updates, (Iterable, AsyncIterable)):
        raise ValidationError("updates", "expected an iterable of TrackingUpdate")
    engine = _Engine(
        updates,
        options,
        sender_for=sender_for,
        default_account=default_account,
        spans_accounts=spans_accounts,
    )
    return PushStream(engine, buffer=min(options.concurrency, 256))
