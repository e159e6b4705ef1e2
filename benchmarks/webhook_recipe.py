"""The webhook recipe (``examples/webhook_fastapi.py``) under a carrier's traffic, end to end.

    python -m benchmarks.webhook_recipe                     # 10,000 checkpoints, SQLite
    python -m benchmarks.webhook_recipe --store redis       # histories and state in Redis
    python -m benchmarks.webhook_recipe --invoices 100      # smaller

1,000 invoices x 10 checkpoints each (the last one "delivered"), posted as webhooks by 32
concurrent senders, interleaved at random across invoices; 10 % of the checkpoints arrive
after their invoice's next one (out of order), and 20 % are delivered a second time, after
the first delivery was answered (a carrier that did not see the answer). The recipe runs in
uvicorn in a process of its own; ``FakeOMS`` plays VTEX in this one; all on 127.0.0.1.

Checked at the end, from what FakeOMS accepted: every invoice's last accepted body is its
whole history (10 events, date-ordered, delivered); no accepted body has fewer events than
the one before it (no rollback); no PUT repeated the body VTEX had just accepted for its
invoice; every redelivery was answered "unchanged" (it sent nothing). Printed as JSON and
written to ``--out``. Bounded: ``--timeout`` seconds for the whole run (default 600).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from vtex_tracking.testing import FakeOMS

ROOT = Path(__file__).resolve().parent.parent
#: The first checkpoint's day; the others follow a day apart (in the past: VTEX's checks
#: refuse deliveries dated in the future).
FIRST_DAY = dt.date(2025, 3, 1)
ACCOUNT = "acme"
WEBHOOK = "/webhooks/checkpoint"


@dataclasses.dataclass
class Delivery:
    """One webhook post: checkpoint ``step`` of invoice ``invoice``; ``original`` is the
    index of the delivery it repeats (a redelivery is sent after that one was answered)."""

    invoice: int
    step: int
    payload: bytes
    original: int | None = None
    late: bool = False


@dataclasses.dataclass
class Answer:
    status: int
    outcome: str | None
    seconds: float


def order_id(invoice: int) -> str:
    return f"bench-{invoice:05d}-01"


def invoice_number(invoice: int) -> str:
    return f"NF{invoice:05d}"


def checkpoint(invoice: int, step: int, steps: int) -> dict[str, Any]:
    """The webhook body of checkpoint ``step`` (of ``steps``) of an invoice."""
    day = FIRST_DAY + dt.timedelta(days=step)
    last = step == steps - 1
    return {
        "orderId": order_id(invoice),
        "invoiceNumber": invoice_number(invoice),
        "event": {
            "city": "Recife" if last else "Campinas",
            "state": "PE" if last else "SP",
            "description": "Entregue ao destinatário" if last else f"Em trânsito ({step + 1})",
            "date": day.isoformat(),
        },
        "delivered": last,
        "deliveredDate": f"{day.isoformat()} 14:30" if last else None,
    }


def expected_history(invoice: int, steps: int) -> dict[str, Any]:
    """The body VTEX must end with for an invoice: every checkpoint, in date order."""
    points = [checkpoint(invoice, step, steps) for step in range(steps)]
    return {
        "events": [point["event"] for point in points],
        "isDelivered": True,
        "deliveredDate": points[-1]["deliveredDate"],
    }


def make_plan(
    invoices: int, steps: int, redelivered: float, out_of_order: float, seed: int = 24
) -> list[Delivery]:
    """The webhooks in the order they are posted (see the module's docstring)."""
    rng = random.Random(seed)
    owners = [i for i in range(invoices) for _ in range(steps)]
    rng.shuffle(owners)
    next_step = [0] * invoices
    stream: list[tuple[int, int]] = []
    for owner in owners:
        stream.append((owner, next_step[owner]))
        next_step[owner] += 1
    # Out of order: a checkpoint swaps places with its invoice's next one.
    where = {point: position for position, point in enumerate(stream)}
    candidates = [(i, s) for i in range(invoices) for s in range(steps - 1)]
    rng.shuffle(candidates)
    wanted = round(out_of_order * len(stream))
    late: set[tuple[int, int]] = set()
    touched: set[tuple[int, int]] = set()
    for i, s in candidates:
        if len(late) >= wanted:
            break
        if (i, s) in touched or (i, s + 1) in touched:
            continue
        a, b = where[(i, s)], where[(i, s + 1)]
        stream[a], stream[b] = stream[b], stream[a]
        touched |= {(i, s), (i, s + 1)}
        late.add((i, s))
    # Redeliveries: a copy of a delivery, some positions later.
    keyed: list[tuple[float, int, int, bool]] = [
        (float(p), i, s, False) for p, (i, s) in enumerate(stream)
    ]
    for p in rng.sample(range(len(stream)), round(redelivered * len(stream))):
        i, s = stream[p]
        keyed.append((p + rng.uniform(1, 64), i, s, True))
    keyed.sort()
    plan: list[Delivery] = []
    first: dict[tuple[int, int], int] = {}
    for _, i, s, again in keyed:
        payload = orjson.dumps(checkpoint(i, s, steps))
        original = first[(i, s)] if again else None
        if not again:
            first[(i, s)] = len(plan)
        plan.append(Delivery(i, s, payload, original, late=(i, s) in late and not again))
    return plan


async def post_all(
    url: str, plan: list[Delivery], concurrency: int, timeout: float = 60.0
) -> list[Answer]:
    """Post every webhook of ``plan`` to ``url`` with ``concurrency`` senders, in plan order
    (a redelivery after its original's answer); one ``Answer`` each."""
    answered = [asyncio.Event() for _ in plan]
    answers: list[Answer | None] = [None] * len(plan)
    queue = iter(range(len(plan)))
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    limits = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=limits) as session:

        async def sender() -> None:
            for index in queue:
                delivery = plan[index]
                if delivery.original is not None:
                    await answered[delivery.original].wait()
                began = time.perf_counter()
                try:
                    async with session.post(url, data=delivery.payload, headers=headers) as r:
                        body = await r.read()
                        outcome = orjson.loads(body).get("outcome") if r.status == 200 else None
                        answers[index] = Answer(r.status, outcome, time.perf_counter() - began)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    answers[index] = Answer(0, type(exc).__name__, time.perf_counter() - began)
                finally:
                    answered[index].set()

        await asyncio.gather(*(sender() for _ in range(concurrency)))
    return [a if a is not None else Answer(0, "not sent", 0.0) for a in answers]


def check(oms: FakeOMS, plan: list[Delivery], answers: list[Answer], steps: int) -> dict[str, Any]:
    """What VTEX (FakeOMS) ended with, against what it must hold (module docstring)."""
    invoices = sorted({d.invoice for d in plan})
    complete = rollbacks = repeats = 0
    for invoice in invoices:
        bodies = oms.accepted(order_id(invoice), invoice_number(invoice))
        if bodies and bodies[-1] == expected_history(invoice, steps):
            complete += 1
        for before, after in itertools.pairwise(bodies):
            rollbacks += len(after["events"]) < len(before["events"])
            repeats += after == before
    puts = [r for r in oms.requests if r.method == "PUT"]
    redeliveries = [a for d, a in zip(plan, answers, strict=True) if d.original is not None]
    originals = [a for d, a in zip(plan, answers, strict=True) if d.original is None]
    seconds = sorted(a.seconds for a in answers)
    ok = (
        complete == len(invoices)
        and rollbacks == 0
        and repeats == 0
        and all(a.outcome == "unchanged" for a in redeliveries)
        and all(a.status == 200 for a in answers)
        and len(puts) <= len(originals)
    )
    return {
        "ok": ok,
        "invoices": len(invoices),
        "complete_histories": complete,
        "webhooks": len(plan),
        "checkpoints": len(originals),
        "redeliveries": len(redeliveries),
        "out_of_order": sum(d.late for d in plan),
        "webhook_statuses": dict(collections.Counter(str(a.status) for a in answers)),
        "original_outcomes": dict(collections.Counter(str(a.outcome) for a in originals)),
        "redelivery_outcomes": dict(collections.Counter(str(a.outcome) for a in redeliveries)),
        "puts": len(puts),
        "put_statuses": dict(collections.Counter(str(r.status) for r in puts)),
        "rollbacks": rollbacks,
        "repeated_bodies": repeats,
        "latency_ms": {
            "p50": round(1000 * statistics.median(seconds), 2) if seconds else None,
            "p95": round(1000 * seconds[int(0.95 * (len(seconds) - 1))], 2) if seconds else None,
            "p99": round(1000 * seconds[int(0.99 * (len(seconds) - 1))], 2) if seconds else None,
            "max": round(1000 * seconds[-1], 2) if seconds else None,
        },
    }


# -- the run with uvicorn in a process of its own -------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _recipe_process(oms: FakeOMS, history: str, unchanged: str) -> Iterator[tuple[str, int]]:
    """uvicorn serving the recipe on a free loopback port; stopped (SIGTERM: the lifespan
    closes the client and the history) on the way out."""
    port = _free_port()
    env = dict(os.environ)
    env.update(
        VTEX_ACCOUNT_NAME=ACCOUNT,
        VTEX_APP_KEY=oms.app_key,
        VTEX_APP_TOKEN=oms.app_token,
        VTEX_BASE_URL=oms.url,
        TRACKING_HISTORY=history,
        TRACKING_UNCHANGED=unchanged,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    env.pop("VTEX_USER_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.webhook_fastapi:app", "--host",
         "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start serving the recipe within 20 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One measured run, as a JSON-ready dict."""
    plan = make_plan(args.invoices, args.steps, args.redelivered, args.out_of_order, args.seed)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vtex-webhooks-")))
        if args.store == "redis":
            from ._redis_server import RedisServer

            redis = stack.enter_context(RedisServer())
            history = unchanged = redis.url
        else:
            history, unchanged = str(tmp / "history.db"), str(tmp / "unchanged.db")
        # The recipe sends events only (numbers come from the carrier's dispatch step).
        oms = stack.enter_context(FakeOMS(require_tracking_number=False))
        url, pid = stack.enter_context(_recipe_process(oms, history, unchanged))
        cpu_before = _cpu_seconds(pid)
        began = time.perf_counter()
        answers = asyncio.run(
            asyncio.wait_for(post_all(url + WEBHOOK, plan, args.concurrency), args.timeout)
        )
        elapsed = time.perf_counter() - began
        cpu_after = _cpu_seconds(pid)
        result = check(oms, plan, answers, args.steps)
    result.update(
        store=args.store,
        concurrency=args.concurrency,
        seconds=round(elapsed, 2),
        webhooks_per_s=round(len(plan) / elapsed, 1),
    )
    if cpu_before is not None and cpu_after is not None:
        result["recipe_cpu_ms_per_webhook"] = round(1000 * (cpu_after - cpu_before) / len(plan), 3)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhook_recipe")
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10, help="checkpoints per invoice")
    parser.add_argument("--redelivered", type=float, default=0.2)
    parser.add_argument("--out-of-order", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32, help="webhooks in flight")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the run")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
