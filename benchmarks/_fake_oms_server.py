"""``FakeOMS`` with a rate limit, in a process of its own, for the rate-limited scenario.

Prints its URL, then answers one JSON line per command read from stdin: ``reset`` (forget
requests and wait until the token bucket is full again) and ``statuses`` (answers given per
HTTP status since the last reset). Exits at EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys

from vtex_tracking.testing import FakeOMS


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate-limit", type=float, required=True)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--retry-after", default="1")
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    async with FakeOMS(
        rate_limit=args.rate_limit, burst=args.burst, retry_after=args.retry_after
    ) as oms:
        print(oms.url, flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = line.strip()
            if command == "reset":
                oms.reset()
                # Idle until the bucket is full again, so every run starts from the same state.
                await asyncio.sleep(args.burst / args.rate_limit + 0.05)
                answer: object = {"ok": True}
            elif command == "statuses":
                answer = collections.Counter(str(r.status) for r in oms.requests)
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
