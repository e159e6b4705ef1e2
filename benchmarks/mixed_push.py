"""A carrier's whole day from a file: tracking numbers and events mixed in one push.

    python -m benchmarks.mixed_push                        # 100,000 lines at 1,000 req/s
    python -m benchmarks.mixed_push --lines 5000 --rate 500 --out /tmp/mixed.json

A JSONL file of ``--lines`` lines, a quarter each of: the tracking number alone; events
alone; both on one line; both on two consecutive lines of one invoice (the number, then the
events). Read with ``read_updates`` and pushed by one ``AsyncTrackingClient`` against
``FakeOMS`` in a process of its own, limited to ``--rate`` requests per second (burst
``--burst``, ``Retry-After: 1``), which the client's adaptive pace has to find
(``--known-limit R`` gives the client ``rate_limit=R`` instead: the engine alone).

Checked at the end: every line got exactly one result, which says what VTEX confirmed
(``PushResult.sent``); the server accepted one PATCH per number and one PUT per events; no
invoice had its events accepted before its number (per-invoice order across kinds and
lines); the time over the ideal ``(requests needed - burst) / rate``; the push's peak memory
(``ru_maxrss``) at 10 % of the results and at the end. Printed as JSON, and written to
``--out``. Bounded: ``--timeout`` seconds for the push (default 600).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from vtex_tracking import AsyncTrackingClient, read_updates

from ._server import fake_oms_server
from ._workload import invoice_number, order_id

#: FakeOMS's own credentials (the server process serves its default account).
APP_KEY, APP_TOKEN = "vtexappkey-fake-oms", "fake-oms-app-token"
EVENTS = [
    {"city": "Recife", "state": "PE", "description": "Objeto postado", "date": "2026-11-02"},
    {"city": "Olinda", "state": "PE", "description": "Saiu para entrega", "date": "2026-11-03"},
]


def _number(k: int) -> dict[str, Any]:
    return {"trackingNumber": f"BR{k:09d}", "trackingUrl": f"https://rastreio.example.com/{k}",
            "courier": "Transportadora Exemplo"}  # fmt: skip


def write_day(path: Path, count: int) -> int:
    """Write the day's ``count`` lines to ``path``, one at a time (the file is never whole
    in memory, so the peak memory measured later is the push's); the requests they need."""
    requests = written = 0
    k = 0
    with path.open("wb") as out:
        while written < count:
            requests += _write_invoice(out, k, count - written)
            written += 1 if k % 4 != 3 else min(2, count - written)
            k += 1
    return requests


def _write_invoice(out: Any, k: int, room: int) -> int:
    """Invoice ``k``'s lines (at most ``room``); the requests they need."""
    ids = {"orderId": order_id(k), "invoiceNumber": invoice_number(k)}
    kind = k % 4
    if kind == 0:
        docs = [{**ids, **_number(k)}]
    elif kind == 1:
        docs = [{**ids, "isDelivered": False, "deliveredDate": None, "events": EVENTS}]
    elif kind == 2:
        docs = [{**ids, **_number(k), "isDelivered": False, "events": EVENTS}]
    else:  # the number, then the events, on two lines of one invoice
        docs = [{**ids, **_number(k)}, {**ids, "isDelivered": False, "events": EVENTS}]
    requests = 0
    for doc in docs[:room]:
        out.write(orjson.dumps(doc) + b"\n")
        requests += 2 if "trackingNumber" in doc and "events" in doc else 1
    return requests


def _rss_mb() -> float:
    # Linux reports kilobytes; the peak since the process started.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def push(
    path: Path, url: str, count: int, seconds: float, known: float | None = None
) -> dict[str, Any]:
    sent: collections.Counter[str] = collections.Counter()
    results = ok = 0
    # One byte per line, allocated before the push: a set of indexes would grow with the
    # results and pass for the push's memory.
    seen = bytearray(count)
    repeated = 0
    rss_at_tenth = None
    async with AsyncTrackingClient(
        "fake", app_key=APP_KEY, app_token=APP_TOKEN, base_url=url, allow_insecure_http=True,
        rate_limit=known,
    ) as client:
        started = time.monotonic()
        async with client.push(read_updates(path)) as stream:
            with anyio.fail_after(seconds):
                async for result in stream:
                    results += 1
                    repeated += seen[result.index]
                    seen[result.index] = 1
                    ok += result.ok
                    sent["+".join(result.sent) or "nothing"] += 1
                    if results == count // 10:
                        rss_at_tenth = _rss_mb()
        elapsed = time.monotonic() - started
    return {
        "results": results,
        "distinct_indexes": sum(seen),
        "repeated_indexes": repeated,
        "ok": ok,
        "sent": dict(sent),
        "elapsed_s": elapsed,
        "rss_mb_at_10pct": rss_at_tenth,
        "rss_mb_at_end": _rss_mb(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vtex-mixed-") as tmp:
        path = Path(tmp) / "day.jsonl"
        requests = write_day(path, args.lines)
        with fake_oms_server(args.rate, args.burst, "1") as oms:
            oms.reset()
            figures = asyncio.run(
                push(path, oms.url, args.lines, args.timeout, args.known_limit)
            )
            patches, puts, early = oms._ask("flow")
            statuses = oms.statuses()
    ideal = max(requests - args.burst, 1) / args.rate
    tenth, end = figures["rss_mb_at_10pct"], figures["rss_mb_at_end"]
    return {
        "lines": args.lines,
        "requests_needed": requests,
        "rate": args.rate,
        "burst": args.burst,
        "client_rate_limit": args.known_limit,
        **figures,
        "server": {"patches_accepted": patches, "puts_accepted": puts, "statuses": statuses},
        "events_before_number": early,
        "ideal_s": ideal,
        "time_over_ideal": figures["elapsed_s"] / ideal,
        "rss_growth_after_10pct": end / tenth if tenth else None,
        "checks": {
            "one_result_per_line": figures["results"] == args.lines == figures["distinct_indexes"]
            and figures["repeated_indexes"] == 0,
            "every_line_ok": figures["ok"] == args.lines,
            "requests_as_needed": patches + puts == requests,
            "number_before_events": early == 0,
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mixed_push")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="the server's limit, req/s")
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the push")
    parser.add_argument(
        "--known-limit", type=float, default=None,
        help="give the client this rate_limit (the limit known): the engine without learning",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
