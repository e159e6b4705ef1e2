"""What a push tells while it runs and when it ends: live counters (``PushProgress``, per
account ``AccountProgress``), the send-rate meter, and the tally that sums results into a
``PushSummary``."""

from __future__ import annotations

import collections
import time

import attrs

from ._public import present_lazy
from ._reports import AccountSummary, PushResult, PushSummary


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
    #: Per account, for pushes that span several accounts (``TrackingUpdate.account_name``).
    accounts: dict[str, AccountProgress] = attrs.field(factory=dict)
    #: The account whose full buffer is holding up reading the input right now, if any.
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
    """Live counters of one account within a push."""

    buffered: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    requests: int = 0
    throttled: int = 0
    rate_limit: float | None = None
    #: Why the account's updates are no longer sent (a revoked key), or None.
    stopped: str | None = None
    last_result_at: float = 0.0


class RateMeter:
    """Requests per second over the last full second: it keeps ``progress.send_rate``,
    counting the requests ``progress.requests`` counts."""

    def __init__(self, progress: PushProgress) -> None:
        self._progress = progress
        self._window_start = time.monotonic()
        # ``progress.requests`` when the window started.
        self._requests_before = progress.requests

    def tick(self) -> None:
        """After a request is counted in ``progress.requests``: at the end of each full
        second, show the rate of the second that ended."""
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            progress = self._progress
            requests = progress.requests
            progress.send_rate = (requests - self._requests_before) / elapsed
            self._window_start = now
            self._requests_before = requests


class _Counts:
    """One account's results in a push: those VTEX confirmed (or already had), and the
    others. (Not a total and a part of it: the common result then counts once, not twice.)"""

    __slots__ = ("confirmed", "others")

    def __init__(self) -> None:
        self.confirmed = 0
        self.others = 0

    @property
    def results(self) -> int:
        return self.confirmed + self.others


class Tally:
    """Counts results into a ``PushSummary`` (failed results are kept for it)."""

    def __init__(self, progress: PushProgress) -> None:
        self._progress = progress
        self._started = time.monotonic()
        self.by_outcome: collections.Counter[str] = collections.Counter()
        # Failed results by index (those a later update of their invoice made moot leave).
        self.failures: dict[int, PushResult] = {}
        self.superseded_failures = 0
        # Per account (None: invalid items); the totals are their sums (one count per
        # result, not three).
        self.by_account: dict[str | None, _Counts] = {}

    @property
    def total(self) -> int:
        """Results counted."""
        return sum(counts.results for counts in self.by_account.values())

    @property
    def succeeded(self) -> int:
        """Results that are ``ok``."""
        return sum(counts.confirmed for counts in self.by_account.values())

    def add(self, result: PushResult) -> None:
        account = result.account
        counts = self.by_account.get(account)
        if counts is None:
            counts = self.by_account[account] = _Counts()
        receipt = result.receipt
        if receipt is not None and result.skipped is None:
            # Confirmed, the common result: ``result.outcome`` is then its status and
            # ``result.ok`` True (without calling them).
            self.by_outcome[str(receipt.status_code)] += 1
            counts.confirmed += 1
        else:
            self.by_outcome[result.outcome] += 1
            if result.ok:
                counts.confirmed += 1
            else:
                counts.others += 1
                self.failures[result.index] = result
        if result.supersedes:
            for index in result.supersedes:
                if self.failures.pop(index, None) is not None:
                    self.superseded_failures += 1

    def summary(self) -> PushSummary:
        started = min(self._started, self._progress.started_at)
        accounts = {}
        for name, counts in self.by_account.items():
            if name is None:  # invalid items belong to no account
                continue
            total, succeeded = counts.results, counts.confirmed
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
        total, succeeded = self.total, self.succeeded
        return PushSummary(
            total=total,
            succeeded=succeeded,
            failed=total - succeeded,
            by_outcome=dict(self.by_outcome),
            elapsed_s=time.monotonic() - started,
            failures=tuple(self.failures.values()),
            superseded_failures=self.superseded_failures,
            requests=self._progress.requests,
            by_account=accounts,
        )


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
