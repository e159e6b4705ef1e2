"""What the push command shows and writes: progress, the summary, the failures file."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import IO, Any

import orjson
from tqdm import tqdm

from vtex_tracking import PushProgress, TrackingUpdate

# The wire form of a status comes from the SDK's one converter, so a failures file is exactly
# the JSONL input format (the CLI's only use of a private module).
from vtex_tracking._serde import encode_status

#: Seconds between progress lines when stderr is not a terminal.
PLAIN_PROGRESS_EVERY = 2.0


def update_record(update: TrackingUpdate) -> dict[str, Any]:
    """An update in the JSONL input format."""
    record: dict[str, Any] = {"orderId": update.order_id, "invoiceNumber": update.invoice_number}
    record.update(orjson.loads(encode_status(update.status)))
    return record


class FailuresFile:
    """Collects every update that did not succeed into a JSONL file that ``push`` re-reads.

    The file is created on the first failure, so a clean run leaves nothing behind.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self._stream: IO[str] | None = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._stream is None:
            self._stream = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def add_update(self, update: TrackingUpdate, error: str) -> None:
        """An update that was refused, failed or never sent."""
        self._write({**update_record(update), "error": error})

    def add_malformed(self, source: str, raw: str | None, error: str) -> None:
        """A line that could not be read: kept verbatim so nothing is lost."""
        self._write({"source": source, "raw": raw, "error": error})

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class Progress:
    """A tqdm bar on a terminal; plain periodic lines otherwise (logs, CI, pipes)."""

    def __init__(self, progress: PushProgress, *, enabled: bool) -> None:
        self._progress = progress
        self._enabled = enabled
        # tqdm: small, pure Python, no dependencies of its own, and it handles terminal
        # width and refresh rate; rich would bring far more than a bar.
        self._bar: tqdm[Any] | None = None
        if enabled and sys.stderr.isatty():
            self._bar = tqdm(unit="upd", file=sys.stderr, dynamic_ncols=True, leave=True)
        self._last_line = time.monotonic()

    def tick(self) -> None:
        """Called after each result."""
        if not self._enabled:
            return
        p = self._progress
        if self._bar is not None:
            self._bar.update(p.done - self._bar.n)
            self._bar.set_postfix(ok=p.succeeded, failed=p.failed, rate=f"{p.send_rate:.0f}/s",
                                  refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_PROGRESS_EVERY:
            self._last_line = now
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        p = self._progress
        limit = f"{p.rate_limit:.0f}/s" if p.rate_limit else "none"
        return (
            f"progress: read {p.read}, succeeded {p.succeeded}, failed {p.failed},"
            f" in flight {p.in_flight}, sending {p.send_rate:.0f}/s (limit {limit})"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def print_summary(
    *,
    total: int,
    succeeded: int,
    outcomes: Counter[str],
    elapsed: float,
    failures: FailuresFile,
    interrupted: bool,
    as_json: bool,
) -> None:
    """The human summary on stdout, and with ``--json`` a last line for machines."""
    failed = total - succeeded
    rate = succeeded / elapsed if elapsed > 0 else 0.0
    head = "Interrupted: " if interrupted else ""
    print(
        f"{head}{total} updates in {elapsed:.1f} s: {succeeded} succeeded, {failed} failed"
        f" ({rate:.1f} updates/s)."
    )
    if outcomes:
        print("By outcome: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    if failures.count:
        print(
            f"{failures.count} failed updates written to {failures.path};"
            f" retry them with: vtex-tracking push {failures.path}"
        )
    if as_json:
        print(
            json.dumps(
                {
                    "total": total,
                    "succeeded": succeeded,
                    "failed": failed,
                    "elapsed_s": round(elapsed, 3),
                    "by_outcome": dict(sorted(outcomes.items())),
                    "failures_file": failures.path if failures.count else None,
                    "interrupted": interrupted,
                }
            )
        )
