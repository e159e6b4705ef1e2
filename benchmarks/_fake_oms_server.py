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
every process of this machine). A store's options may add ``fail_bursts``: ``[p, low, high]``,
a burst of ``low`` to ``high`` consecutive 503s (no ``Retry-After``) of that store starting,
with probability ``p``, at any of its answers past its token bucket (``BurstyOMS``, seeded by
store name, restarted by ``reset``); ``final`` answers ``[orderId, invoiceNumber, events of the
last accepted body, bodies accepted, rollbacks]`` per invoice (a rollback: an accepted body
with fewer events than the one accepted before it); ``flow`` answers ``[tracking numbers
accepted, events bodies accepted, invoices whose first accepted PUT came before their first
accepted PATCH although they had one]`` (the order the carrier's flow needs).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import random
import sys
import time
from typing import Any

from aiohttp import web

from vtex_tracking.testing import FakeAccount, FakeOMS

from ._workload import store_credentials


def _stores(spec: dict[str, dict[str, Any]]) -> dict[str, FakeAccount]:
    return {
        name: FakeAccount(*store_credentials(name), **{k: v for k, v in opts.items() if k != FB})
        for name, opts in spec.items()
    }


#: A store option of the benchmark server, not of ``FakeAccount``: see the module docstring.
FB = "fail_bursts"


class BurstyOMS(FakeOMS):
    """``FakeOMS`` whose stores with ``fail_bursts`` answer 503 in short bursts: after the
    store's token bucket (a 503 takes a token, a 429 does not), through ``fail_next``."""

    def __init__(self, bursts: dict[str, tuple[float, int, int]], **options: Any) -> None:
        super().__init__(**options)
        self.bursts = bursts
        self._restart()

    def _restart(self) -> None:
        self._left = dict.fromkeys(self.bursts, 0)
        self._rngs = {name: random.Random(name) for name in self.bursts}

    def reset(self) -> None:
        super().reset()
        self._restart()

    def _answer(self, request: Any, record: Any, ids: Any, *rest: Any) -> web.Response:
        store = self._store(request)
        name = store[0] if store is not None else None
        if name not in self.bursts or self._failures:
            return super()._answer(request, record, ids, *rest)
        p, low, high = self.bursts[name]
        left = self._left[name]
        if left == 0 and self._rngs[name].random() < p:
            left = self._rngs[name].randint(low, high)
        self._left[name] = left
        if left == 0:
            return super()._answer(request, record, ids, *rest)
        self.fail_next(1, 503)
        response = super()._answer(request, record, ids, *rest)
        if self._failures:  # refused before it (429): the burst waits for the next answer
            self._failures.clear()
        else:
            self._left[name] = left - 1
        return response


def _final(oms: FakeOMS) -> list[list[Any]]:
    rows = []
    for (order, invoice), docs in oms.updates.items():
        counts = [len(doc.get("events", ())) for doc in docs]
        rollbacks = sum(b < a for a, b in itertools.pairwise(counts))
        rows.append([order, invoice, counts[-1], len(counts), rollbacks])
    return rows


def _flow(oms: FakeOMS) -> list[int]:
    first_patch: dict[Any, int] = {}
    first_put: dict[Any, int] = {}
    for n, r in enumerate(oms.requests):
        if r.status == 200 and r.order_id is not None:
            seen = first_patch if r.method == "PATCH" else first_put
            seen.setdefault((r.order_id, r.invoice_number), n)
    early = sum(1 for key, n in first_patch.items() if first_put.get(key, n) < n)
    puts = sum(len(docs) for docs in oms.updates.values())
    return [sum(len(v) for v in oms.tracking_numbers.values()), puts, early]


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
    options: dict[str, Any] = {
        "rate_limit": args.rate_limit,
        "burst": args.burst,
        "retry_after": args.retry_after,
        "latency": args.latency,
        "accounts": _stores(args.stores),
        # The scenarios push events alone (the rate, not the flow, is measured) except
        # mixed_push, which checks the order itself.
        "require_tracking_number": False,
    }
    bursts = {name: tuple(o[FB]) for name, o in args.stores.items() if o.get(FB)}
    async with BurstyOMS(bursts, **options) if bursts else FakeOMS(**options) as oms:
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
            elif command == "final":
                answer = _final(oms)
            elif command == "flow":
                answer = _flow(oms)
            elif command == "timeline":
                answer = [[round(r.received_at, 4), r.status, r.account] for r in oms.requests]
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
