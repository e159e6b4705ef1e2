"""The push engine: many updates, bounded memory, order per invoice, nothing lost.

How a push flows::

    input ──reader──> its account's lane ──scheduler──> senders ──> results ──> consumer
             │  one slot per item: at most ``read_ahead`` items between input and result
             │  (and at most half of them in one account's lane, when the push spans accounts)
             └─ an update whose invoice is busy waits in that invoice's queue instead

A lane (``Lane``) is one account's share of the push: the account's ``AccountSender``, the
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
  ``PushStream.unfinished``. An account whose credentials VTEX keeps refusing, or that cannot
  be reached at all, is stopped alone (``Lane.stop``).
* Sending less (each opt-in) is not the scheduler's business: a memory (``_remember``:
  journal, unchanged state) is asked once per admitted update whether it may be skipped, and
  told each final result; with ``merge_snapshots`` a newer update of an invoice replaces the
  one waiting behind the invoice's request in flight, and the replaced one's result follows
  the newer one's. A confirmed result names the earlier failures of its invoice it made moot
  (``PushResult.supersedes``, from ``FailedInvoices``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
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
from ._lane import EVENTS, NUMBER, InvoiceQueues, Item, Lane, Part
from ._models import PushResult, TrackingNumberUpdate, TrackingUpdate
from ._progress import AccountProgress, PushProgress, RateMeter
from ._push_options import READ_REFILL, PushOptions, read_ahead
from ._remember import (
    Entry,
    FailedInvoices,
    body_digest,
    invoice_digest,
    open_memory,
)
from ._sender import AccountSender
from ._serde import encode_invoice_tracking, encode_status
from ._stream import PushStream

#: Updates of an account that never answered in this push which may end in "cannot
#: connect" (each after all its attempts) before the account is stopped as unreachable.
UNREACHABLE_AFTER = 2


async def _next_async(items: AsyncIterator[Any]) -> Any:
    """The next item of an async iterator, or ``_END``."""
    try:
        return await anext(items)
    except StopAsyncIteration:
        return _END


_END = object()

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
        self._concurrency = options.concurrency
        self._sender_for = sender_for
        self._default_account = default_account
        self._spans_accounts = spans_accounts
        self._read_ahead = read_ahead(options, spans_accounts)
        self.progress = PushProgress()
        self._rate_meter = RateMeter(self.progress)
        self._lanes: dict[str | None, Lane] = {}
        self._next_index = 0
        # Items read and without a result yet, by input index.
        self._pending: dict[int, Item] = {}
        # Order per invoice: the invoices with an update on its way, and what waits behind.
        self._busy = InvoiceQueues(merge=options.merge_snapshots)
        self._reading_done = False
        # The scheduler: lanes that may send now, lanes the pace admitted, idle senders.
        self._rotation: collections.deque[Lane] = collections.deque()
        self._admitted: collections.deque[Lane] = collections.deque()
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
            lane.pace.backlogs.discard(lane.backlog)
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
                rest = self._admit_item(raw)
                if rest is not None:
                    await rest
        finally:
            self._reading_done = True
            if not self._pending:
                self._wake_all_senders()

    def _admit_item(self, raw: Any) -> Coroutine[Any, Any, None] | None:
        """Track ``raw`` and put it in its lane. Most items need no waiting, so this is no
        coroutine (one fewer per item): what has to wait (a result to hand out now, the
        memory to ask, room in a full lane) is returned for the reader to await."""
        # Tracked from now on: it gets a result whatever happens.
        item = Item(self._next_index, raw, self._default_account)
        self._next_index += 1
        self._pending[item.index] = item
        progress = self.progress
        progress.read += 1
        progress.queued += 1
        key = item.key
        if key is None:
            return self._emit(_invalid(item.index, raw))
        lane = self._lanes.get(key[2])
        if lane is None:
            try:
                lane = self._new_lane(key[2])
            except VtexTrackingError as exc:  # no credentials for that account
                return self._emit(PushResult(item.index, raw, error=exc, account=key[2]))
        if lane.stop_error is not None:
            return self._emit(self._stopped_result(item, lane))
        try:
            item.parts = _parts(lane, raw)
        except ValidationError as exc:  # what VTEX would refuse: never queued, never sent
            return self._emit(PushResult(item.index, raw, error=exc, account=lane.account))
        if self._memory is not None:
            return self._admit_remembered(item, lane)
        stats = lane.stats
        if stats.buffered >= lane.buffer_cap:
            return self._admit_when_room(item, lane)
        # ``_queue`` inlined (saves a call per update).
        stats.buffered += 1
        item.lane = lane
        if self._busy.start_or_wait(key, item):
            lane.ready.append(item)
            if not lane.queued:  # mostly it is in the rotation already: no call then
                self._offer(lane)
        return None

    async def _admit_remembered(self, item: Item, lane: Lane) -> None:
        """``_admit_item`` with a memory: ask it about each part first (in input order)."""
        memory = self._memory
        assert memory is not None and item.key is not None
        skipped = None
        for part in item.parts:
            entry = self._entry(item, part, lane)
            reason = await memory.skip(entry, busy=item.key in self._busy)
            if reason is not None:
                # VTEX has this part already: settled now, and not sent.
                entry.skipped = skipped = reason
                memory.settled(entry, confirmed=True, sent=False)
                item.parts = tuple(kept for kept in item.parts if kept is not part)
        if not item.parts:
            result = PushResult(
                item.index, item.update, attempts=0, account=lane.account, skipped=skipped
            )
            await self._emit(result)
            return
        if lane.stats.buffered >= lane.buffer_cap:
            await self._admit_when_room(item, lane)
        else:
            self._queue(item, lane)

    async def _admit_when_room(self, item: Item, lane: Lane) -> None:
        """``_admit_item`` into a full lane: this account is the slowest, so hold the input
        rather than memory without bound."""
        stats = lane.stats
        self.progress.bottleneck = lane.account
        while stats.buffered >= lane.buffer_cap and lane.stop_error is None:
            lane.room = anyio.Event()
            lane.reader_waits = True
            await lane.room.wait()
        self.progress.bottleneck = None
        if lane.stop_error is not None:
            await self._emit(self._stopped_result(item, lane))
            return
        self._queue(item, lane)

    def _queue(self, item: Item, lane: Lane) -> None:
        """Count ``item`` in its lane's buffer; ready now unless its invoice is busy."""
        lane.stats.buffered += 1
        item.lane = lane
        key = item.key
        assert key is not None
        if self._busy.start_or_wait(key, item):
            lane.ready.append(item)
            self._offer(lane)

    def _entry(self, item: Item, part: Part, lane: Lane) -> Entry:
        """A part as the memory sees it: digests of its invoice (and which part), bound to
        the target its account's requests go to, and of the body that is sent."""
        wire = part.wire
        if isinstance(wire, TrackingNumberUpdate):
            part.body = encode_invoice_tracking(wire.tracking)
        else:
            part.body = encode_status(wire.status)
        invoice = invoice_digest(
            lane.target,
            lane.account,
            wire.order_id,
            wire.invoice_number,
            part="" if part.name == EVENTS else part.name,
        )
        part.entry = Entry(item.index, invoice, body_digest(part.body))
        return part.entry

    def _new_lane(self, account: str | None) -> Lane:
        """The lane of an account's first update."""
        sender = self._sender_for(account)  # ConfigurationError: unknown account
        # One account may fill at most half the read-ahead, so the others keep flowing.
        buffer_cap = max(1, self._read_ahead // 2) if self._spans_accounts else self._read_ahead
        lane = Lane.for_push(
            sender,
            self._options,
            self.progress,
            self._rate_meter,
            buffer_cap=buffer_cap,
            shows_rate=not self._spans_accounts,
        )
        lane.on_admit = functools.partial(self._on_admit, lane)
        lane.on_backoff = self._on_backoff
        lane.pace.backlogs.add(lane.backlog)
        self._lanes[account] = lane
        return lane

    # -- scheduling --------------------------------------------------------------------------

    def _offer(self, lane: Lane) -> None:
        """Put ``lane`` in the rotation if it has a ready update no admission covers yet."""
        if lane.queued or lane.waiting:
            return
        if lane.stop_error is None:
            if len(lane.ready) <= lane.admitted:
                return
        elif not lane.ready:  # a stopped lane goes round to report what is ready
            return
        lane.queued = True
        self._rotation.append(lane)
        self._wake_sender()

    def _on_admit(self, lane: Lane, error: BaseException | None) -> None:
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
        if self._senders - self._backing_off >= self._concurrency:
            return  # all at work (the common case): the first one free takes the turn
        group = self._task_group
        if (
            group is not None
            # Not into a cancelled group (after stop()): anyio has already delivered its
            # cancellation to the senders it had, and a sender started now would wait on a
            # future nobody cancels, holding the push open for ever (a rare hang on close).
            and not group.cancel_scope.cancel_called
        ):
            self._senders += 1
            group.start_soon(self._send_loop)

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

    def _next_lane(self) -> Lane | None:
        """A lane and an admission for its next ready update (or a stopped lane to report),
        or None. The admission is the caller's from now on: ``lane.admitted`` no longer
        counts it."""
        while True:
            admitted = self._admitted
            while admitted:
                lane = admitted.popleft()
                if lane.stop_error is None:
                    lane.admitted -= 1
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
            backlog = len(lane.ready) - lane.admitted  # ``Lane.backlog``, with its sign
            if backlog <= 0:
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
                if backlog > 1:
                    # More ready: back of the rotation, round robin. (``_offer`` inlined:
                    # the lane just left the rotation, and is neither stopped nor waiting.)
                    lane.queued = True
                    rotation.append(lane)
                    self._wake_sender()
                return lane
            # Not now: wait in the pace's queue, holding no sender.
            lane.waiting = True
            if cap is not None:
                cap.take()
            lane.pace.enqueue(lane.on_admit)

    def _wake_lane(self, lane: Lane) -> None:
        lane.wake_timer = None
        self._offer(lane)

    def _finished(self) -> bool:
        return self._reading_done and not self._pending

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        concurrency = self._concurrency
        busy = self._busy
        merge = self._options.merge_snapshots
        try:
            while True:
                if self._senders - self._backing_off > concurrency:
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
                slot = lane.ready.popleft()
                # Only a merge puts a newer update in a slot's place (saves a call per update).
                item = busy.take(slot) if merge else slot
                # Send its next part. (Here, not in a coroutine of its own: one await layer
                # fewer for every suspension of every request.)
                item.sent = True
                part = item.parts[0]
                try:
                    receipt = await lane.sender.send(
                        part.wire,
                        pace=lane.pace,
                        admitted=True,
                        patient=True,
                        observer=lane,
                        checked=True,
                        body=part.body,
                    )
                except Exception as exc:  # every failure is this item's result, never the push's
                    result = self._send_failed(lane, item, part, exc)
                    ok = False
                else:
                    item.confirmed += (part.name,)
                    item.parts = item.parts[1:]
                    if part.entry is not None:
                        assert self._memory is not None
                        self._memory.settled(part.entry, confirmed=True, sent=True)
                    if item.parts:
                        # Its next part (the events after the number) waits for a turn of
                        # its own, the invoice still busy: nothing of it overtakes the part
                        # sent, and its result waits for that part.
                        if lane.stop_error is not None:
                            await self._drop_invoice(lane, item)
                        else:
                            lane.ready.append(item)
                            self._offer(lane)
                        continue
                    result = PushResult(
                        item.index,
                        item.update,
                        receipt=receipt,
                        attempts=receipt.attempts,
                        account=lane.account,
                        sent=item.confirmed,
                    )
                    ok = True
                rest = self._emit_nowait(result, ok)
                if rest is not None:
                    await rest
                # The item has its result: the next update of its invoice may go.
                following = busy.next_for(item.key)
                if following is None:
                    continue
                if lane.stop_error is not None:
                    await self._drop_invoice(lane, following)
                else:
                    lane.ready.append(following)
                    self._offer(lane)
        finally:
            self._senders -= 1

    def _send_failed(self, lane: Lane, item: Item, part: Part, exc: Exception) -> PushResult:
        """The result of ``item`` whose ``part`` failed (``exc``): an account that keeps
        refusing its credentials, or that cannot be reached, is stopped on the way."""
        result = PushResult(
            item.index,
            item.update,
            error=exc,
            attempts=getattr(exc, "attempts", 1),
            account=lane.account,
            sent=item.confirmed,
        )
        if isinstance(exc, AuthCooldownError) or (
            isinstance(exc, (AuthenticationError, PermissionDeniedError)) and lane.pace.auth_stopped
        ):
            self._stop_lane(lane, exc, "auth")
        elif isinstance(exc, ConnectError) and not lane.answered:
            lane.unreachable += 1
            if lane.unreachable >= UNREACHABLE_AFTER:
                self._stop_lane(lane, exc, "unreachable")
        if part.entry is not None:
            assert self._memory is not None
            self._memory.settled(part.entry, confirmed=False, sent=True)
        return result

    def _stop_lane(self, lane: Lane, cause: BaseException, reason: str) -> None:
        """Stop one account (``Lane.stop``), give back what its pace granted it, and let a
        sender report what is still ready; the other accounts go on."""
        if not lane.stop(cause, reason):
            return
        if lane.waiting:
            lane.pace.cancel(lane.on_admit)
            lane.waiting = False
        for _ in range(lane.admitted):
            lane.pace.release_unused()
        lane.admitted = 0
        self._offer(lane)

    async def _drop_invoice(self, lane: Lane, item: Item | None) -> None:
        """Report as stopped ``item``, the updates of its invoice behind it, then every
        invoice still waiting in the stopped lane."""
        while True:
            if item is None:
                if not lane.ready:
                    return
                item = self._busy.take(lane.ready.popleft())
            if item.index in self._pending:
                await self._emit(self._stopped_result(item, lane))
            item = self._busy.next_for(item.key)

    # -- results -----------------------------------------------------------------------------

    def _stopped_result(self, item: Item, lane: Lane | None = None) -> PushResult:
        stop = lane.stop_error if lane is not None and lane.stop_error else self._stop_error
        account = lane.account if lane is not None else self._account_of(item)
        return item.stopped(stop, account)

    def _account_of(self, item: Item) -> str | None:
        if item.key is None:
            return None
        return item.key[2] or self._default_account

    async def _emit(self, result: PushResult) -> None:
        """Count one result, free its read-ahead slot and hand it out (and the results of
        the updates it superseded: its own)."""
        rest = self._emit_nowait(result, result.ok)
        if rest is not None:
            await rest

    def _emit_nowait(self, result: PushResult, ok: bool) -> Coroutine[Any, Any, None] | None:
        """``_emit`` without a coroutine of its own for the common result (it superseded
        nothing, and the consumer keeps up): what is left to await is returned, if any.
        ``ok`` is ``result.ok``, which the sender knows without working it out."""
        item = self._pending.pop(result.index, None)
        if item is not None:
            # A success while no update failed settles nothing (saves a call per result).
            if item.key is not None and (not ok or self._failed.by_invoice):
                moot = self._failed.settle(item.key, result.index, ok)
                if moot:
                    result = attrs.evolve(result, supersedes=moot)
            if item.superseded:
                return self._emit_superseded(result, item, ok)
        return self._count(result, item, ok)

    async def _emit_superseded(self, result: PushResult, item: Item, ok: bool) -> None:
        """The results of the updates ``item`` replaced (``merge_snapshots``), then its own."""
        assert item.superseded is not None
        try:
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
                            sent=result.sent,
                        )
                    )
        except BaseException:
            # Interrupted (the push cancelled) while an older result waited for the consumer:
            # ``item`` is no longer pending, so no stop would report it. Count its result
            # and keep it to be handed over or reported as unfinished, never lost.
            rest = self._count(result, item, ok)
            if rest is not None:
                rest.close()  # the hand-over, not started: the result is kept instead
                self._undelivered.append(result)
            raise
        rest = self._count(result, item, ok)
        if rest is not None:
            await rest

    def _count(
        self, result: PushResult, item: Item | None, ok: bool
    ) -> Coroutine[Any, Any, None] | None:
        """Count ``result`` (progress, read-ahead, its lane) and hand it out; the handing
        over is returned to await when the consumer does not keep up."""
        self._room += 1
        waiting = self._reader_waiting
        if waiting is not None and self._room >= self._refill:
            self._reader_waiting = None
            if not waiting.done():
                waiting.set_result(None)
        progress = self.progress
        progress.queued -= 1
        if ok:
            progress.succeeded += 1
        else:
            progress.failed += 1
        lane = item.lane if item is not None else None
        if lane is not None:
            stats: AccountProgress | None = lane.stats
            assert stats is not None
            stats.buffered -= 1
            if lane.reader_waits and stats.buffered < lane.buffer_cap:
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
        on_result = self._options.on_result
        if on_result is not None:
            on_result(result)
        results = self._results
        assert results is not None
        try:
            # Without waiting when the consumer keeps up (anyio's send() always passes a
            # checkpoint, an event-loop turn per result).
            results.send_nowait(result)
        except anyio.WouldBlock:
            return self._hand_over(result)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The consumer stopped listening: keep the result for PushStream.unfinished.
            self.unfinished.append(result)
        except BaseException:
            self._undelivered.append(result)
            raise
        return None

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


def _parts(lane: Lane, raw: TrackingUpdate | TrackingNumberUpdate) -> tuple[Part, ...]:
    """What ``raw`` sends, in order, as its account's checks pass it (``ValidationError``
    for what VTEX would refuse): its tracking number, then its events."""
    checks = lane.sender.checks
    if isinstance(raw, TrackingNumberUpdate):
        return (Part(NUMBER, checks.check_tracking_number(raw)),)
    events = Part(EVENTS, checks.check(raw))
    if raw.tracking is None:
        return (events,)
    number = TrackingNumberUpdate(
        raw.order_id, raw.invoice_number, raw.tracking, account_name=raw.account_name
    )
    return (Part(NUMBER, checks.check_tracking_number(number)), events)


def _invalid(index: int, raw: Any) -> PushResult:
    error = ValidationError(
        f"item[{index}]",
        f"expected a TrackingUpdate or TrackingNumberUpdate, got {type(raw).__name__}",
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
