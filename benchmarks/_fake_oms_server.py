"""``FakeOMS`` with rate limits, in a process of its own, for the rate-limited and many-store
scenarios.

Prints its URL, then answers one JSON line per command read from stdin: ``reset`` (forget
requests and wait until the token buckets are full again), ``limit RATE`` (the rate limit
from now on, ``None`` for none), ``statuses`` (answers given per
HTTP status since the last reset) and ``statuses_by_store`` (the same, per store). Exits at
EOF. ``--latency`` delays every answer by that many seconds (FakeOMS's ``latency``).
``--stores`` serves several stores (``{"name": {"rate_limit": 50, "burst": 10, "revoked":
false}, ...}``), each told apart by its credentials (``store_credentials``). ``--ports N``
listens on N loopback ports (one URL each, on the first line, space-separated), so each store
can have a host of its own as on VTEX (``{account}.vtexcommercestable.com.br``); ``timeline``
answers ``[received_at, status, store]`` per request (``time.monotonic()``: the same clock as
every process of this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from typing import Any

from aiohttp import web

from vtex_tracking.testing import FakeAccount, FakeOMS

from ._workload import store_credentials


def _stores(spec: dict[str, dict[str, Any]]) -> dict[str, FakeAccount]:
    return {name: FakeAccount(*store_credentials(name), **opts) for name, opts in spec.items()}


async def _drain(oms: FakeOMS, timeout: float) -> None:
    """Wait until no request is being handled, at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    drained_by = loop.time() + timeout
    while oms.in_flight and loop.time() < drained_by:  # noqa: ASYNC110 - polls a counter
        await asyncio.sleep(0.01)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate-limit", type=float, default=None)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to answers")
    parser.add_argument("--stores", type=json.loads, default={}, help="JSON: name -> options")
    parser.add_argument("--ports", type=int, default=1, help="loopback ports to listen on")
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    async with FakeOMS(
        rate_limit=args.rate_limit,
        burst=args.burst,
        retry_after=args.retry_after,
        latency=args.latency,
        accounts=_stores(args.stores),
    ) as oms:
        runner = oms._runner  # the same app on more ports: one host per store, as on VTEX
        assert runner is not None
        for _ in range(args.ports - 1):
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        urls = [oms.url] + [f"http://127.0.0.1:{a[1]}" for a in runner.addresses[1:]]
        print(" ".join(urls), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = line.strip()
            # Requests of the last run still sleeping out the latency have no status yet, and
            # after a reset would take tokens from the refilled buckets: let them finish.
            await _drain(oms, args.latency + 2.0)
            if command == "reset":
                oms.reset()
                oms.accounts = _stores(args.stores)  # full buckets
                # Idle until the bucket is full again, so every run starts from the same state.
                if args.rate_limit:
                    await asyncio.sleep(args.burst / args.rate_limit + 0.05)
                answer: object = {"ok": True}
            elif command.startswith("limit "):
                value = command.split(" ", 1)[1]
                oms.rate_limit = None if value == "None" else float(value)
                oms._tokens, oms._tokens_at = float(oms.burst), time.monotonic()
                answer = {"ok": True}
            elif command == "statuses":
                answer = collections.Counter(str(r.status) for r in oms.requests)
            elif command == "statuses_by_store":
                by_store: dict[str, collections.Counter[str]] = {}
                for r in oms.requests:
                    by_store.setdefault(r.account or "", collections.Counter())[str(r.status)] += 1
                answer = by_store
            elif command == "timeline":
                answer = [[round(r.received_at, 4), r.status, r.account] for r in oms.requests]
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
