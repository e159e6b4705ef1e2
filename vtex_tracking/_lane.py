"""The push engine's parts: ``Item``, one input item on its way; ``Lane``, one account's
share of a push (its sender and pace, its ready updates, its counters); ``InvoiceQueues``,
order per invoice (what waits behind an invoice's update on its way)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import anyio

from ._answer import Answer
from ._errors import AuthCooldownError, PushStoppedError
from ._log import logger
from ._models import PushResult, TrackingNumberUpdate, TrackingUpdate
from ._pace import AccountPace
from ._progress import AccountProgress, PushProgress, RateMeter
from ._push_options import PushOptions
from ._remember import Entry
from ._sender import AccountSender
from ._throttle import TokenBucket

#: An invoice within a push: (order, invoice number, account; None for the default account).
InvoiceKey = tuple[str, str, "str | None"]


#: The parts an item may send, in this order: its tracking number (the invoice's PATCH),
#: then its events (the tracking PUT); ``Item.kinds`` has a bit per part.
NUMBER, EVENTS = "tracking_number", "events"
_BITS = {NUMBER: 1, EVENTS: 2}
_EVENTS_ONLY = _BITS[EVENTS]
_NUMBER_ONLY = _BITS[NUMBER]
_NUMBER_AND_EVENTS = _BITS[EVENTS] | _BITS[NUMBER]
_NO_ANSWER, _THROTTLED = Answer.NO_ANSWER, Answer.THROTTLED
#: What ``Item`` accepts as an update (a constant: no tuple built per item).
_UPDATE_TYPES = (TrackingUpdate, TrackingNumberUpdate)


class Part:
    """One request of an item: its name (``NUMBER`` or ``EVENTS``), the update as it is sent
    (after the account's checks), and with a journal or skip_unchanged its body and what the
    memory keeps of it."""

    __slots__ = ("body", "entry", "name", "wire")

    def __init__(self, name: str, wire: TrackingUpdate | TrackingNumberUpdate) -> None:
        self.name = name
        self.wire = wire
        self.body: bytes | None = None
        self.entry: Entry | None = None


class Item:
    """One input item on its way. ``key`` is its invoice within its account (None for an
    invalid item); ``sent`` turns True once it is handed to the sender (it may be on the
    wire from then on). ``parts`` are its requests still to send, in order (a number, then
    events); ``confirmed`` the names of those VTEX confirmed."""

    __slots__ = (
        "confirmed",
        "index",
        "key",
        "lane",
        "parts",
        "replaced_by",
        "sent",
        "superseded",
        "update",
    )

    def __init__(self, index: int, update: Any, default_account: str | None) -> None:
        self.index = index
        self.update = update
        if isinstance(update, _UPDATE_TYPES):
            # The default account under one name (None), named or not: the same ids in two
            # accounts are two invoices.
            account = update.account_name
            if account == default_account:
                account = None
            self.key: InvoiceKey | None = (update.order_id, update.invoice_number, account)
        else:
            self.key = None
        self.sent = False
        # A tuple (shared while empty): an item gets its parts once, at admission.
        self.parts: tuple[Part, ...] = ()
        # A tuple (shared while empty): it becomes the result's ``sent`` as it is.
        self.confirmed: tuple[str, ...] = ()
        # The lane whose buffer counts it, once it is in one.
        self.lane: Lane | None = None
        # Earlier updates of its invoice it replaced (merge_snapshots), oldest first.
        self.superseded: list[Item] | None = None
        # While it waits unsent in a lane's ready queue: the newer update of its invoice
        # that takes its place there (merge_snapshots).
        self.replaced_by: Item | None = None

    @property
    def kinds(self) -> int:
        """The parts it carries (a bit each, ``_BITS``): merging never drops one. (Asked
        only when merging: not worked out for every item. No class is both kinds of update:
        two attrs classes with slots cannot be combined.)"""
        update = self.update
        if isinstance(update, TrackingUpdate):
            return _NUMBER_AND_EVENTS if update.tracking else _EVENTS_ONLY
        if isinstance(update, TrackingNumberUpdate):
            return _NUMBER_ONLY
        return 0

    def stopped(self, stop: PushStoppedError | None, account: str | None) -> PushResult:
        """Its result when the push (or its account) stopped before it was confirmed: an
        update already on the wire may or may not have been applied, and says so."""
        if self.sent:
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
        return PushResult(
            self.index,
            self.update,
            error=error,
            attempts=0,
            account=account,
            sent=self.confirmed,
        )


class Lane:
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
        self.ready: collections.deque[Item] = collections.deque()
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

    @classmethod
    def for_push(
        cls,
        sender: AccountSender,
        options: PushOptions,
        progress: PushProgress,
        rate_meter: RateMeter,
        *,
        buffer_cap: int,
        shows_rate: bool,
    ) -> Lane:
        """The lane of ``sender``'s account in a push with ``options``: the account's own
        pace, or with ``adaptive=False`` a pace of the push's own (its window and rate,
        nothing learned or shared); a ``rate_limit`` lower than the pace caps it."""
        sender.bind()
        stats = progress.accounts.setdefault(sender.account, AccountProgress())
        pace = sender.pace
        cap = None
        if options.adaptive is False:
            pace = AccountPace(
                sender.account,
                # The account's configured limit, not its adaptive rate of the moment: a
                # new account's is still the slow start's (2 req/s) and would hold the push.
                rate_limit=lower_rate(options.rate_limit, pace.rate_limit),
                adaptive=False,
                max_concurrency=min(pace.max_window, options.concurrency),
                max_retry_after=sender.retry_policy.max_retry_after,
            )
            pace.bind(asyncio.get_running_loop())
        elif options.rate_limit is not None:
            cap = TokenBucket(options.rate_limit)
        return cls(
            sender,
            pace,
            cap,
            stats,
            progress,
            rate_meter,
            buffer_cap=buffer_cap,
            shows_rate=shows_rate,
        )

    def backlog(self) -> int:
        """Updates ready to send that no admission covers yet (the pace's ``demand``)."""
        return max(0, len(self.ready) - self.admitted)

    def stop(self, cause: BaseException, reason: str) -> bool:
        """Stop sending to this account: VTEX keeps refusing its credentials (``"auth"``),
        or it cannot be reached at all (``"unreachable"``). A revoked key or a mistyped
        account name must not fire, or retry line by line, the rest of a million-update
        file: every remaining update gets this error at once. False if already stopped."""
        if self.stop_error is not None:
            return False
        if isinstance(cause, AuthCooldownError) and cause.cause is not None:
            cause = cause.cause
        if reason == "unreachable":
            why = (
                f"account {self.account!r} could not be reached at {self.sender.transport.host}"
                f" ({cause}); check the account name (VTEX_ACCOUNT_NAME, accountName or the"
                " accounts file), the base URL (--base-url, base_url) and DNS"
            )
        else:
            why = f"VTEX kept refusing the credentials of account {self.account!r} ({cause})"
        self.stop_error = PushStoppedError(f"not sent: {why}", reason=reason, cause=cause)
        logger.warning(
            "push: stopped sending to account %r: %s; its remaining updates are reported as"
            " not sent",
            self.account,
            why,
        )
        self.stats.stopped = reason
        self.room.set()  # a reader waiting for room here reports instead
        return True

    def attempt_started(self) -> None:
        stats = self.stats
        progress = self.progress
        stats.requests += 1
        stats.in_flight += 1
        progress.requests += 1
        progress.in_flight += 1
        self.rate_meter.tick()

    def attempt_finished(self, answer: Answer) -> None:
        stats = self.stats
        progress = self.progress
        stats.in_flight -= 1
        progress.in_flight -= 1
        if answer is not _NO_ANSWER:
            self.answered = True
            if answer is _THROTTLED:
                stats.throttled += 1
                progress.throttled += 1
        # ``_show_rate`` inlined (every answer comes here).
        rate = self.pace.rate
        cap = self.cap
        if cap is not None and cap.rate is not None:
            rate = cap.rate if rate is None else min(rate, cap.rate)
        stats.rate_limit = rate
        if self.shows_rate:
            progress.rate_limit = rate

    def backoff(self, waiting: bool) -> None:
        self.on_backoff(waiting)

    def _show_rate(self) -> None:
        rate = self.pace.rate
        cap = self.cap
        if cap is not None and cap.rate is not None:
            rate = cap.rate if rate is None else min(rate, cap.rate)
        self.stats.rate_limit = rate
        if self.shows_rate:
            self.progress.rate_limit = rate


def lower_rate(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class InvoiceQueues:
    """Order per invoice within a push: the invoices with an update on its way (ready in its
    lane, or sent), and the later updates of each, waiting in input order.

    With ``merge``, a newer snapshot of an invoice replaces the older one wherever that one
    waits unsent: in its lane's ready queue (it takes that place: ``Item.replaced_by``) or
    behind the invoice's request in flight; it carries the replaced one's result
    (``Item.superseded``). Only what already left for the sender is kept as it is.
    """

    def __init__(self, *, merge: bool) -> None:
        self._merge = merge
        # Invoice -> the updates waiting behind its update on its way (None: none yet).
        self._waiting: dict[InvoiceKey, collections.deque[Item] | None] = {}
        # With merge: invoice -> the item holding its place in a lane's ready queue, while
        # no sender has taken it.
        self._ready: dict[InvoiceKey, Item] = {}

    def __contains__(self, key: InvoiceKey) -> bool:
        return key in self._waiting

    def start_or_wait(self, key: InvoiceKey, item: Item) -> bool:
        """True when ``item`` goes to its lane's ready queue now (nothing of its invoice is
        on its way); else it waits behind the invoice's updates, or replaces one unsent."""
        waiting = self._waiting
        if key not in waiting:
            waiting[key] = None
            if self._merge:
                self._ready[key] = item
            return True
        slot = self._ready.get(key)
        if slot is not None and not _covers(item, slot.replaced_by or slot):
            # The newer one lacks a part of the waiting one (its tracking number): both go.
            del self._ready[key]
            slot = None
        if slot is not None:
            # The invoice's update is still in the ready queue: the newer one takes its
            # place there (same position), and reports for it.
            self._supersede(slot.replaced_by or slot, item)
            slot.replaced_by = item
            return False
        queue = waiting[key]
        if queue is None:
            queue = waiting[key] = collections.deque()
        if queue and self._merge and _covers(item, queue[-1]):
            # The order of what is sent stays the input's: the newer one takes the older
            # one's place in the queue, and reports for it.
            self._supersede(queue[-1], item)
            queue[-1] = item
        else:
            queue.append(item)
        return False

    @staticmethod
    def _supersede(older: Item, newer: Item) -> None:
        newer.superseded = [*(older.superseded or ()), older]
        older.superseded = None

    def take(self, slot: Item) -> Item:
        """A sender takes ``slot`` from its lane's ready queue: the update to send now (the
        newest that took its place)."""
        item = slot.replaced_by or slot
        if self._merge and item.key is not None:
            self._ready.pop(item.key, None)
        return item

    def next_for(self, key: InvoiceKey | None) -> Item | None:
        """The invoice's update on its way ended: its next one (which the caller puts in
        its lane's ready queue), or None (the invoice is no longer busy)."""
        assert key is not None
        queue = self._waiting[key]
        if queue:
            following = queue.popleft()
            if self._merge:
                self._ready[key] = following
            return following
        del self._waiting[key]
        if self._merge:  # only a merge holds places in ``_ready``
            self._ready.pop(key, None)  # a stopped lane's last update never went to the queue
        return None


def _covers(newer: Item, older: Item) -> bool:
    """Whether ``newer`` sends every part ``older`` would (so it may replace it)."""
    return older.kinds & ~newer.kinds == 0
