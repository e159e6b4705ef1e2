"""A flaky, rate-limited ``FakeOMS`` for the soak (``benchmarks/soak.py``), in its own process.

Flaky three ways: a token-bucket rate limit (429 with ``Retry-After``), a share of 503s, and one
dropped connection every ``--drop-every`` seconds. Once a second it folds what ``FakeOMS``
recorded into counters and forgets the records, so its own memory stays flat however long the
soak runs.

Prints its URL, then answers one JSON line per command read from stdin: ``tally`` gives the
answers per HTTP status and the accepted updates (count, distinct invoices, invoices accepted
more than once, and an order-independent digest of the accepted keys). Exits at EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time

from vtex_tracking.testing import FakeOMS

from ._soak_digest import KeyDigest


class Tally:
    """What the server answered and accepted, folded out of ``FakeOMS``'s records."""

    def __init__(self) -> None:
        self.answers: collections.Counter[str] = collections.Counter()
        self.accepted = KeyDigest()
        self.seen: set[tuple[str, str]] = set()
        self.duplicates = 0

    def fold(self, oms: FakeOMS) -> None:
        # Status 0: still being handled (kept for the next fold), or dropped on purpose long ago.
        stale = time.monotonic() - 30
        pending = [r for r in oms.requests if r.status == 0 and r.received_at > stale]
        self.answers.update(
            str(r.status) if r.status else "dropped"
            for r in oms.requests
            if r.status or r.received_at <= stale
        )
        oms.requests[:] = pending
        for key, bodies in oms.updates.items():
            for _ in bodies:
                if key in self.seen:
                    self.duplicates += 1
                else:
                    self.seen.add(key)
                    self.accepted.add(*key)
        oms.updates.clear()

    def as_json(self) -> dict[str, object]:
        return {
            "answers": dict(self.answers),
            "accepted": self.accepted.count,
            "digest": self.accepted.hexdigest(),
            "duplicates": self.duplicates,
        }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate-limit", type=float, required=True)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--drop-every", type=float, default=0.0, help="seconds; 0: never")
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    tally = Tally()
    async with FakeOMS(
        rate_limit=args.rate_limit, burst=args.burst, retry_after="1", fail_rate=args.fail_rate,
        require_tracking_number=False,  # the soak pushes events alone
    ) as oms:

        async def housekeeping() -> None:
            since_drop = 0.0
            while True:
                await asyncio.sleep(1.0)
                tally.fold(oms)
                since_drop += 1.0
                if args.drop_every and since_drop >= args.drop_every:
                    oms.drop_next(1)
                    since_drop = 0.0

        task = loop.create_task(housekeeping())
        print(oms.url, flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = line.strip()
            if command == "tally":
                tally.fold(oms)
                answer: object = tally.as_json()
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
