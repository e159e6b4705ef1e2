"""Soak: push for minutes through a flaky, rate-limited FakeOMS and check that nothing drifts.

    python -m benchmarks.soak                    # 5 minutes (the published figures)
    python -m benchmarks.soak --duration 20      # the CI variant

One ``push`` reads a lazily generated stream of updates (one per invoice, so the server can
count each acceptance) until the duration is up, against ``_soak_server.py``: rate-limited
(429 + ``Retry-After``), a share of 503s and a dropped connection every few seconds. Every few
seconds it samples this process's RSS, open file descriptors, threads and asyncio tasks.

It fails (exit 1) when exactly-once accounting breaks (an input without exactly one result,
an update confirmed but not accepted or accepted twice) or when, after the warm-up, RSS grows
more than ``--max-rss-growth`` MB, threads or tasks keep growing, or file descriptors exceed
the pool while it runs or are not back to their start once the client closed. Bounded:
at most ``--duration`` seconds of input plus a drain deadline, and at most
``rate x duration x 2`` updates.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from vtex_tracking import (
    AsyncTrackingClient,
    PushResult,
    RetryPolicy,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
)

from ._measure import rss_mb
from ._server import read_line, start_python_server, stop_process
from ._soak_digest import KeyDigest

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "soak.json"
STATUS = TrackingStatus(
    [
        TrackingEvent("Recife", "PE", "Objeto postado", dt.date(2026, 11, 2)),
        TrackingEvent("Olinda", "PE", "Saiu para entrega", dt.date(2026, 11, 3)),
    ]
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--rate-limit", type=float, default=400.0, help="server's requests/s")
    parser.add_argument("--fail-rate", type=float, default=0.03, help="share answered 503")
    parser.add_argument("--drop-every", type=float, default=3.0, help="seconds between drops")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the duration")
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="MB after warm-up")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: no reliable count
        return -1


class SoakServer:
    """``_soak_server.py`` in a subprocess, asked for its tally over stdin."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.process, self.url = start_python_server(
            "_soak_server",
            [
                *("--rate-limit", str(args.rate_limit)),
                *("--fail-rate", str(args.fail_rate)),
                *("--drop-every", str(args.drop_every)),
            ],
        )

    def tally(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"tally\n")
        self.process.stdin.flush()
        line = read_line(self.process.stdout, time.monotonic() + 30)
        if line is None:
            raise RuntimeError("the soak server did not answer")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        stop_process(self.process)


async def soak(args: argparse.Namespace, server: SoakServer) -> dict[str, Any]:
    max_items = int(args.rate_limit * args.duration * 2) + 1000
    delivered = bytearray(max_items)  # results per input index: must end all 1 up to `read`
    confirmed = KeyDigest()
    outcomes: collections.Counter[str] = collections.Counter()
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    deadline = started + args.duration
    produced = 0

    def updates() -> Iterator[TrackingUpdate]:
        nonlocal produced
        for index in range(max_items):
            if time.monotonic() >= deadline:
                return
            produced = index + 1
            yield TrackingUpdate(f"soak-{index}", "NF-1", STATUS)

    def sample(stream_progress: Any) -> None:
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "rss_mb": round(rss_mb() or 0.0, 2),
                "fds": _fds(),
                "threads": threading.active_count(),
                "tasks": len(asyncio.all_tasks()),
                "done": stream_progress.done,
                "queued": stream_progress.queued,
            }
        )

    retry = RetryPolicy(max_attempts=10, initial_backoff=0.05, max_backoff=2.0)
    client = AsyncTrackingClient(
        "soak",
        "vtexappkey-fake-oms",
        "fake-oms-app-token",
        base_url=server.url,
        retry=retry,
        max_concurrency=args.concurrency,
        timeout=10,
    )
    async with client, client.push(updates()) as stream:

        async def sampler() -> None:
            while True:
                sample(stream.progress)
                await anyio.sleep(args.sample_every)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sampler)
            # Input stops at the deadline; the rest drains within a generous bound.
            with anyio.fail_after(args.duration + 120):
                async for result in stream:
                    _account(result, delivered, confirmed, outcomes)
            sample(stream.progress)
            tg.cancel_scope.cancel()
        progress = stream.progress
        requests = progress.requests
    # Once the client is closed every connection it opened must be gone: the leak check for
    # file descriptors (while it runs, their number follows the pool's churn, up to
    # ``--concurrency`` connections, and says little).
    await anyio.sleep(0.2)  # closed transports release their sockets on the next loop turns
    sample(progress)
    samples[-1]["closed"] = 1
    elapsed = time.monotonic() - started
    return _verdict(args, server.tally(), produced, delivered, confirmed, outcomes, samples) | {
        "elapsed_s": round(elapsed, 1),
        "requests": requests,
    }


def _account(
    result: PushResult,
    delivered: bytearray,
    confirmed: KeyDigest,
    outcomes: collections.Counter[str],
) -> None:
    delivered[result.index] = min(delivered[result.index] + 1, 255)
    outcomes[result.outcome] += 1
    if result.ok:
        confirmed.add(result.update.order_id, result.update.invoice_number)


def _verdict(
    args: argparse.Namespace,
    server: dict[str, Any],
    produced: int,
    delivered: bytearray,
    confirmed: KeyDigest,
    outcomes: collections.Counter[str],
    samples: list[dict[str, float]],
) -> dict[str, Any]:
    problems: list[str] = []
    missing = sum(1 for i in range(produced) if delivered[i] == 0)
    repeated = sum(1 for i in range(produced) if delivered[i] > 1)
    extra = sum(1 for i in range(produced, len(delivered)) if delivered[i])
    if missing or repeated or extra:
        problems.append(f"results: {missing} missing, {repeated} repeated, {extra} unknown")
    if (confirmed.count, confirmed.hexdigest()) != (server["accepted"], server["digest"]):
        problems.append(
            f"confirmed {confirmed.count} updates but the server accepted {server['accepted']}"
            " (or a different set)"
        )
    if server["duplicates"]:
        problems.append(f"the server accepted {server['duplicates']} updates twice")

    warm = [s for s in samples if s["t"] >= args.duration * args.warmup] or samples
    base = warm[0]
    growth = {
        key: max(s[key] for s in warm) - base[key] for key in ("rss_mb", "fds", "threads", "tasks")
    }
    if growth["rss_mb"] > args.max_rss_growth:
        problems.append(f"RSS grew {growth['rss_mb']:.1f} MB after the warm-up")
    running = [s for s in samples if not s.get("closed")] or samples
    for key, allowed in (("threads", 0), ("tasks", 2)):
        end = running[-1][key] - base[key]
        if end > allowed:
            problems.append(f"{key} grew by {end:g} after the warm-up")
    # Descriptors: at most the pool's connections above the start while running, and back
    # to the start (give or take the server's pipes and the loop's own) once closed.
    peak_fds = max(s["fds"] for s in warm)
    if peak_fds - samples[0]["fds"] > args.concurrency + 4:
        problems.append(f"fds reached {peak_fds:g}, more than the pool's {args.concurrency}")
    if samples[-1]["fds"] - samples[0]["fds"] > 2:
        problems.append(
            f"fds: {samples[-1]['fds']:g} open after the client closed, {samples[0]['fds']:g}"
            " before it started"
        )
    return {
        "ok": not problems,
        "problems": problems,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "updates": produced,
        "results": sum(delivered),
        "outcomes": dict(outcomes),
        "confirmed": confirmed.count,
        "server": server,
        "growth_after_warmup": {k: round(v, 2) for k, v in growth.items()},
        "first_sample": samples[0],
        "warm_sample": base,
        "last_sample": running[-1],
        "closed_sample": samples[-1],
        "peak_rss_mb": max(s["rss_mb"] for s in samples),
        "samples": samples,
    }


def _print(report: dict[str, Any]) -> None:
    answers = report["server"]["answers"]
    total = sum(answers.values()) or 1
    warm, last = report["warm_sample"], report["last_sample"]
    print(
        f"soak: {report['updates']:,} updates in {report['elapsed_s']} s,"
        f" {report['requests']:,} requests; outcomes {report['outcomes']}"
    )
    print(
        "server answers: "
        + ", ".join(f"{k}: {v:,} ({v / total:.1%})" for k, v in sorted(answers.items()))
        + f"; accepted {report['server']['accepted']:,}, twice {report['server']['duplicates']}"
    )
    for key, unit in (("rss_mb", " MB"), ("fds", ""), ("threads", ""), ("tasks", "")):
        print(
            f"{key:>8}: start {report['first_sample'][key]:g}{unit},"
            f" after warm-up {warm[key]:g}{unit}, end {last[key]:g}{unit},"
            f" max growth after warm-up {report['growth_after_warmup'][key]:g}{unit}"
        )
    print(f"     fds after the client closed: {report['closed_sample']['fds']:g}")
    print("PASS" if report["ok"] else "FAIL: " + "; ".join(report["problems"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # One warning per retry would flood the terminal; retries show in the outcome counts.
    logging.getLogger("vtex_tracking").setLevel(logging.ERROR)
    server = SoakServer(args)
    try:
        report = asyncio.run(soak(args, server))
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    _print(report)
    print(f"written to {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
