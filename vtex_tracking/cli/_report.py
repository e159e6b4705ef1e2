"""What ``push`` shows and writes while it runs: messages and progress on stderr, and the
failures file. (The summary at the end is ``_summary``'s.)"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import attrs
import orjson

# tqdm for the bar: small, pure Python, no dependencies of its own, and it handles what a bar
# needs (terminal width, refresh rate, rates); rich would bring far more than a bar.
from tqdm import tqdm

from vtex_tracking import PushProgress

from .._input._readers import InputError

#: Seconds between progress lines when stderr is not a terminal (logs, CI, pipes).
PLAIN_PROGRESS_EVERY = 2.0
#: Seconds between refreshes of the bar on a terminal.
BAR_REFRESH_EVERY = 0.2
#: Failures echoed on stderr one by one (all of them with -v); all are in the failures file.
MAX_FAILURES_SHOWN = 20
#: Seconds of results the ETA's rate is measured over: recent enough to follow the pace as
#: it changes (the slow start, a store's Retry-After), long enough not to jump at each pause.
ETA_WINDOW_S = 60.0


class Console:
    """Every line written to stderr goes through here, so messages never tear the bar.

    ``quiet`` (``-q``, for cron) keeps only what a person must act on: ``warn`` lines and
    errors; notes and failures one by one are dropped (failures are all in the failures file,
    which the summary names).
    """

    def __init__(self, *, verbose: bool, quiet: bool = False) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self.bar: tqdm[Any] | None = None
        self._failures_shown = 0

    def note(self, text: str) -> None:
        """Write one line to stderr, unless quiet."""
        if not self.quiet:
            self.warn(text)

    def warn(self, text: str) -> None:
        """Write one line to stderr, even when quiet."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def failure(self, text: str) -> None:
        """Report one failed record, up to ``MAX_FAILURES_SHOWN`` of them unless verbose;
        none when quiet."""
        self._failures_shown += 1
        if self.quiet:
            return
        if self.verbose or self._failures_shown <= MAX_FAILURES_SHOWN:
            self.note(text)
        elif self._failures_shown == MAX_FAILURES_SHOWN + 1:
            self.note("(more failures: see the failures file, or use -v to show them all)")


class ConsoleLogHandler(logging.Handler):
    """Sends the ``vtex_tracking`` logger's records (``-v``) to the console."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.warn(self.format(record))
        except Exception:
            self.handleError(record)


@attrs.define
class AccountTally:
    """One store's counts within a run."""

    total: int = 0
    succeeded: int = 0
    requests: int = 0
    throttled: int = 0
    #: Seconds from the start of the push to the store's last result.
    elapsed_s: float = 0.0
    stopped: str | None = None

    @property
    def failed(self) -> int:
        """Updates of this store that did not succeed."""
        return self.total - self.succeeded

    def as_json(self) -> dict[str, Any]:
        """The store's entry in the ``--json`` summary."""
        rate = self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "requests": self.requests,
            "throttled": self.throttled,
            "updates_per_s": round(rate, 1),
            "stopped": self.stopped,
        }


@attrs.define
class Tally:
    """The counts of one run, for progress and the summary."""

    total: int = 0
    succeeded: int = 0
    outcomes: Counter[str] = attrs.field(factory=Counter)
    requests: int = 0
    throttled: int = 0
    dry_run: bool = False
    interrupted: bool = False
    stopped_for_auth: bool = False
    #: When reading stopped before the end: the last record read (None: nothing was read).
    unread_after: str | None = None
    reading_stopped: bool = False
    #: The run could send to several stores (``--accounts``): the summary lists them.
    multi_account: bool = False
    #: Per store, for updates whose store is known (not for malformed records).
    accounts: dict[str, AccountTally] = attrs.field(factory=dict)
    #: What the reading told the user once (a file read as cp1252), for the JSON summary.
    notices: list[str] = attrs.field(factory=list)
    #: Failures with a hint (``_hints``): how many, and the hint, by what VTEX answered.
    hinted: Counter[str] = attrs.field(factory=Counter)
    hints: dict[str, str] = attrs.field(factory=dict)

    @property
    def failed(self) -> int:
        """Records that did not succeed."""
        return self.total - self.succeeded

    def add(self, outcome: str, *, ok: bool, account: str | None = None) -> None:
        """Count one record's outcome (and its store's, when it has one)."""
        self.total += 1
        self.outcomes[outcome] += 1
        if ok:
            self.succeeded += 1
        if account is not None:
            account_tally = self.accounts.get(account)
            if account_tally is None:
                account_tally = self.accounts[account] = AccountTally()
            account_tally.total += 1
            account_tally.succeeded += ok

    def add_hint(self, what: str, hint: str) -> None:
        """Count one failure that ``hint`` explains (VTEX answered ``what``)."""
        self.hinted[what] += 1
        self.hints[what] = hint

    def add_account_counts(self, progress: PushProgress) -> None:
        """Take each store's requests, throttles, stop and finishing time from the push."""
        for name, counts in progress.accounts.items():
            account_tally = self.accounts.setdefault(name, AccountTally())
            account_tally.requests, account_tally.throttled = counts.requests, counts.throttled
            account_tally.stopped = counts.stopped
            if counts.last_result_at:
                account_tally.elapsed_s = counts.last_result_at - progress.started_at


class InputShare:
    """How far through the input files a push is: the bytes read (for a percentage) and the
    bytes of records that have their result (for an ETA, at the rate of the last
    ``ETA_WINDOW_S`` seconds). ``total`` is None when it is unknown (stdin, a pipe): then
    neither is shown."""

    def __init__(self, files: list[str]) -> None:
        self.total: int | None = _total_size(files)
        self.read = 0
        self.done = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def take(self, offset: int) -> int:
        """A record was taken that ends at ``offset``: returns its bytes (to pass to
        ``finish`` when its result is known)."""
        size = max(0, offset - self.read)
        self.read += size
        return size

    def finish(self, size: int) -> None:
        """A record of ``size`` bytes has its result."""
        self.done += size

    def percent_read(self) -> int | None:
        """Percent of the input read, or None when its size is unknown."""
        if not self.total:
            return None
        return min(100, self.read * 100 // self.total)

    def eta(self, now: float, started_at: float) -> float | None:
        """Seconds left at the recent rate of bytes done; None before any rate is known."""
        if not self.total:
            return None
        samples = self._samples
        if not samples:
            samples.append((started_at, 0))
        samples.append((now, self.done))
        while len(samples) > 2 and now - samples[1][0] >= ETA_WINDOW_S:
            samples.popleft()
        since, done_then = samples[0]
        if self.done >= self.total:
            return 0.0
        if now <= since or self.done <= done_then:
            return None
        return (self.total - self.done) * (now - since) / (self.done - done_then)

    def describe(self, now: float, started_at: float) -> str:
        """``42% read, ETA 01:05`` (``ETA ?`` before a rate is known); "" without a size."""
        percent = self.percent_read()
        if percent is None:
            return ""
        eta = self.eta(now, started_at)
        return f"{percent}% read, ETA {'?' if eta is None else tqdm.format_interval(eta)}"


def _total_size(files: list[str]) -> int | None:
    """The bytes of the input files; None if one is stdin or not a regular file."""
    total = 0
    for name in files:
        try:
            status = os.stat(name) if name != "-" else None
        except OSError:
            return None
        if status is None or not stat.S_ISREG(status.st_mode):
            return None
        total += status.st_size
    return total


class Progress:
    """A tqdm bar on a terminal; otherwise a plain line every ``PLAIN_PROGRESS_EVERY`` seconds;
    nothing at all when the console is quiet.

    Refreshed by a timer rather than per result, so that it keeps moving (and showing the
    throttled pace) when results are slow to come, as during a long ``Retry-After``.
    """

    def __init__(
        self, console: Console, tally: Tally, counters: PushProgress, share: InputShare
    ) -> None:
        self._console = console
        self._tally = tally
        self._counters = counters
        self._share = share
        self._bar: tqdm[Any] | None = None
        if sys.stderr.isatty() and not console.quiet:
            self._bar = tqdm(unit=" updates", file=sys.stderr, dynamic_ncols=True)
            console.bar = self._bar

    async def run(self) -> None:
        """Refresh until cancelled (at once when quiet)."""
        if self._console.quiet:
            return
        every = BAR_REFRESH_EVERY if self._bar is not None else PLAIN_PROGRESS_EVERY
        while True:
            await asyncio.sleep(every)
            self.refresh()

    def refresh(self) -> None:
        """Show the current counts."""
        t, c = self._tally, self._counters
        limit = f"{c.rate_limit:.3g}/s" if c.rate_limit else "none"
        if t.multi_account:
            limit = "per store"
        # A slow store whose buffer is full holds up the reading: say which one.
        waiting = f", reading waits for store {c.bottleneck}" if c.bottleneck else ""
        share = self._share.describe(time.monotonic(), c.started_at)
        if self._bar is None:
            self._console.note(
                f"progress: {share + ', ' if share else ''}{t.total} done ({t.succeeded} ok,"
                f" {t.failed} failed), {c.in_flight} in flight, {c.send_rate:.1f} requests/s"
                f" (limit {limit}), {c.throttled} throttled, {c.elapsed_s:.0f} s{waiting}"
            )
            return
        self._bar.set_postfix_str(
            (f"{share} " if share else "")
            + f"ok={t.succeeded} failed={t.failed} in flight={c.in_flight} limit={limit}"
            + (f" waiting for {c.bottleneck}" if c.bottleneck else ""),
            refresh=False,
        )
        if t.total > self._bar.n:
            self._bar.update(t.total - self._bar.n)
        else:
            self._bar.refresh()  # the clock moves even when no result came

    def close(self) -> None:
        """Remove the bar (the summary follows on stdout)."""
        if self._bar is not None:
            self.refresh()
            self._bar.close()
            self._console.bar = None


class FailuresFile:
    """Every record that did not succeed, as JSONL that ``push`` reads again.

    Each record is written with one unbuffered write as soon as it is known, so even a crash
    loses at most the record being written. ``--failed FILE`` is truncated when the run starts
    writing and is created (empty) even when nothing failed, so it always describes the last
    run. The default, ``<first input stem>.failed.jsonl`` in the current directory, is created
    only when something failed and never overwrites a file: if the name is taken (an earlier
    run's failures, or the very file being retried) the next of ``.failed-2.jsonl``,
    ``.failed-3.jsonl``... is used.

    A failed update made moot later in the run (a newer update of its invoice was confirmed:
    resending the older one would roll the invoice back) is passed to ``leave_out``: the file
    keeps it until ``finish``, which rewrites the file without such records, atomically (a
    temporary file in the same directory, then ``os.replace``; a crash before that leaves
    them in, as before). A default file left with nothing to resend is removed; ``--failed
    FILE`` stays, empty. ``count`` is the records left to resend, ``left_out`` those taken
    out.
    """

    def __init__(self, path: str | None, inputs: list[str]) -> None:
        self.explicit = path is not None
        self._stem = default_stem(inputs[0])
        self.path = path if path is not None else f"{self._stem}.failed.jsonl"
        self.count = 0
        self.left_out = 0
        self.rewrite_error: OSError | None = None
        # Numbers (0 for the first record written) of the records to take out at the end.
        self._moot: set[int] = set()
        self._written = 0
        self._file: IO[bytes] | None = None
        self._check(inputs)

    def _check(self, inputs: list[str]) -> None:
        if not self.explicit:
            if not os.access(".", os.W_OK):
                raise InputError(".: the current directory is not writable; pass --failed FILE")
            return
        target = Path(self.path)
        if target.is_dir() or not os.access(target.parent, os.W_OK):
            raise InputError(f"{self.path}: cannot write the failures file there")
        for name in inputs:
            if name != "-" and target.exists() and os.path.samefile(name, target):
                raise InputError(f"{self.path}: the failures file cannot be one of the inputs")

    def add(self, record: dict[str, Any]) -> int:
        """Write one record; returns its number in the file (0 for the first)."""
        if self._file is None:
            self._file = self._create()
        # orjson escapes newlines inside strings: one record, one line.
        self._file.write(orjson.dumps(record) + b"\n")
        self.count += 1
        self._written += 1
        return self._written - 1

    def leave_out(self, number: int) -> None:
        """Record ``number`` is not to be resent: ``finish`` takes it out of the file."""
        if number not in self._moot:
            self._moot.add(number)
            self.count -= 1

    def _create(self) -> IO[bytes]:
        if self.explicit:
            return open(self.path, "wb", buffering=0)
        for n in itertools.count(1):
            candidate = f"{self._stem}.failed{'' if n == 1 else f'-{n}'}.jsonl"
            try:
                stream = open(candidate, "xb", buffering=0)  # noqa: SIM115 - kept open
            except FileExistsError:
                continue
            self.path = candidate
            return stream
        raise AssertionError("unreachable")  # pragma: no cover

    def finish(self) -> None:
        """The run is over: take out the records left out, and make sure an explicit
        failures file exists (possibly empty). When the file cannot be rewritten,
        ``rewrite_error`` says why: it then still holds every record, and ``count`` says so."""
        if self._file is None and self.explicit:
            self._file = self._create()
        if self._moot:
            try:
                self._rewrite()
            except OSError as exc:
                self.rewrite_error = exc

    def _rewrite(self) -> None:
        """Replace the file by one without the records left out (or remove a default file
        left with nothing to resend); on ``OSError`` the file is as it was."""
        assert self._file is not None
        self._file.close()
        moot, self._moot = self._moot, set()
        temporary = None
        try:
            if self.count == 0 and not self.explicit:
                os.remove(self.path)  # created by this run: nothing in it is left to resend
            else:
                directory = os.path.dirname(os.path.abspath(self.path))
                fd, temporary = tempfile.mkstemp(
                    prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory
                )
                with open(fd, "wb") as out, open(self.path, "rb") as kept:
                    for number, line in enumerate(kept):
                        if number not in moot:
                            out.write(line)
                    out.flush()
                    os.fsync(out.fileno())
                shutil.copymode(self.path, temporary)
                os.replace(temporary, self.path)
        except OSError:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.remove(temporary)
            self.count += len(moot)
            raise
        self.left_out = len(moot)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()


def default_stem(first_input: str) -> str:
    """The name a default failures file starts with: ``day.csv`` -> ``day``, and a failures
    file being retried (``day.failed.jsonl``, ``day.failed-2.jsonl``) -> ``day`` as well."""
    if first_input == "-":
        return "stdin"
    return re.sub(r"\.failed(-\d+)?$", "", Path(first_input).stem) or "input"
