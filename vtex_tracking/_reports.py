"""What the SDK reports back about its work: a push's results and totals, an account's
metrics (``client.metrics()``).

Apart from ``_models`` for the same reason as ``_read_back``: a program that sends single updates
never makes these classes, so ``import vtex_tracking`` does not either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._models import TrackingReceipt
from ._public import present_lazy

__all__ = ["AccountMetrics", "AccountSummary", "PushResult", "PushSummary"]


@attrs.frozen
class PushResult:
    """The outcome of one item handed to a bulk push: exactly one per input item.

    ``update`` is the item as given (not necessarily a valid ``TrackingUpdate``), ``index`` its
    0-based position in the input. Exactly one of ``receipt`` and ``error`` is set, except for
    an update that was not sent because VTEX already has it (``skipped``):

    * ``"already_done"``: the push's ``journal`` says an earlier run had it (or a later update
      of its invoice) confirmed;
    * ``"unchanged"``: its body is the one VTEX last confirmed for its invoice
      (``skip_unchanged``);
    * ``"superseded"``: a newer update of its invoice replaced it while it waited
      (``merge_snapshots``); ``superseded_by`` is that update's index, and ``receipt`` or
      ``error`` are that update's.
    """

    index: int
    update: Any
    receipt: TrackingReceipt | None = None
    error: Exception | None = None
    attempts: int = 0
    #: The store it went to (the client's own account unless the update named another).
    account: str | None = None
    #: Why it was not sent itself: ``"already_done"``, ``"unchanged"``, ``"superseded"``.
    skipped: str | None = None
    #: The index of the update that carried its data (``skipped == "superseded"``).
    superseded_by: int | None = None
    #: Indexes of earlier updates of its invoice in this push that failed, made moot by this
    #: one: VTEX holds this newer update now, so resending them would roll the invoice back
    #: (``PushSummary.failures`` and the CLI's failures file leave them out).
    supersedes: tuple[int, ...] = ()
    #: What VTEX confirmed for this item in this push, in the order sent: ``"tracking_number"``
    #: (the invoice's PATCH), ``"events"`` (the tracking PUT). A part skipped because VTEX
    #: already has it is not in it; after a failure, the parts confirmed before it are.
    sent: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when VTEX confirmed the update (or already had it: ``skipped``)."""
        return self.receipt is not None or (self.skipped is not None and self.error is None)

    @property
    def status_code(self) -> int | None:
        """The HTTP status of the last answer, or None when there was none."""
        if self.receipt is not None:
            return self.receipt.status_code
        return getattr(self.error, "status_code", None)

    @property
    def outcome(self) -> str:
        """A short label for counting: ``"200"``, ``"429"``, ``"TransportError"``, ``"invalid"``,
        ``"already_done"``…"""
        if self.skipped is not None:
            return self.skipped
        if self.receipt is not None:
            return str(self.receipt.status_code)
        status = self.status_code
        if status is not None:
            return str(status)
        if isinstance(self.error, ValueError):
            return "invalid"
        reason = getattr(self.error, "reason", None)
        if isinstance(reason, str):
            return reason
        return type(self.error).__name__


@attrs.frozen
class AccountSummary:
    """One store's totals within a push: updates, requests, 429/503 throttles, and
    ``elapsed_s`` from the start of the push to the store's last result."""

    total: int
    succeeded: int
    failed: int
    requests: int
    throttled: int
    elapsed_s: float
    #: Why the store's remaining updates were not sent: ``"auth"`` (a refused key),
    #: ``"unreachable"`` (no connection could be made), or None.
    stopped: str | None = None

    @property
    def throughput(self) -> float:
        """Confirmed updates per second for this store."""
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0


@attrs.frozen
class AccountMetrics:
    """One account's counters since the client was made (single calls and pushes alike), and
    its pace right now: what ``client.metrics()`` returns for a metrics system to read."""

    account: str
    #: Requests sent (attempts, retries included).
    requests: int
    #: Of those, retries of an earlier attempt.
    retries: int
    #: Answers 2xx.
    confirmed: int
    #: Answers 429 or 503 (VTEX's rate limit or circuit breaker).
    throttled: int
    #: Other answers (4xx, 5xx).
    errors: int
    #: Attempts that got no answer (connection errors, timeouts, cancellations).
    no_answer: int
    #: Seconds single calls and retries waited for their turn in the account's pace.
    pace_wait_s: float
    #: Requests in flight now, and how many the account's window allows.
    in_flight: int
    window: int
    #: Requests per second the pace allows now (learned or set); None: no limit.
    rate: float | None
    #: Moving average of the account's round trips, in seconds (0: none yet).
    rtt_s: float
    #: Whether the account is cooling down after refused credentials.
    auth_stopped: bool
    #: ``"shared"`` while its pace is shared through Redis, ``"local"`` while Redis does not
    #: answer (this process paces it alone meanwhile), None without ``shared_pace``.
    shared_pace: str | None = None


@attrs.frozen
class PushSummary:
    """Totals of a finished bulk push (``push_all``); ``by_account`` per store.
    ``failures`` are the failed results worth resending, in the order they arrived."""

    total: int
    succeeded: int
    failed: int
    by_outcome: Mapping[str, int]
    elapsed_s: float
    failures: tuple[PushResult, ...] = attrs.field(repr=False)
    requests: int = 0
    by_account: Mapping[str, AccountSummary] = attrs.field(factory=dict, repr=False)
    #: Failed updates left out of ``failures`` because a later update of their invoice was
    #: confirmed in the same push (``PushResult.supersedes``): resending them would roll the
    #: invoice back. They still count in ``failed``.
    superseded_failures: int = 0

    @property
    def throughput(self) -> float:
        """Confirmed updates per second."""
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every update was confirmed."""
        return self.failed == 0


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
