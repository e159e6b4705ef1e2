"""The ``hub_day`` scenario's day of work and its sender processes.

``day(p)``: a logistics hub's day for ``stores`` small accounts, the same in every process
(seeded): each store gets ``burst + limit x ideal_s`` invoices (so every store's ideal time is
``ideal_s``), each invoice 1 to 4 snapshots (2.2 on average) of its growing history, the last
one delivered; each invoice belongs to one process (order per invoice is that process's), and
each process's input is ordered by a virtual clock over the day, a later snapshot of an invoice
a fraction of a virtual second after the earlier one: it is read while the earlier one still
waits, so ``merge_snapshots`` can take its place.

A sender (``python -m benchmarks._contenders_hub '{json}'``) builds its work, prints ``READY``,
sleeps until the common start read from stdin, pushes, and prints one ``RESULT {json}`` line:

* ``sdk``: ``AsyncTrackingClient.from_accounts(...)`` (SDK defaults, ``shared_pace=SharedPace(url)``
  when the run shares), ``push(..., merge_snapshots=True, journal=...)``, stopped after
  ``deadline_s``;
* ``cli``: the ``vtex-tracking`` command's own entry point (``vtex_tracking.cli.main``, what
  the console script runs), in this process so that importing it is not on the clock:
  ``push FILE.jsonl --accounts stores.toml [--shared-pace URL] --merge-snapshots --journal
  FILE --json -q``, tokens in environment variables (``app_token_env``); SIGTERM (its
  interrupt: everything unconfirmed goes to its failures file) after ``deadline_s``.

Both report their CPU time (``time.process_time()`` around the push: every thread of the
process), requests sent, and results by kind. ``run_hub_fleet`` runs them together with
``_contenders_scale``'s fleet machinery (ready, one start time, stragglers killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ._contenders_scale import (
    READY_TIMEOUT,
    START_DELAY,
    Fleet,
    _end,
    _result,
    _sender_env,
    _tail,
    _wait,
)
from ._server import read_line, stop_process
from ._workload import invoice_number, order_id, store_credentials, store_name

Params = dict[str, Any]

#: An invoice's history, one more event per snapshot; the fourth is the delivery.
STEPS = (
    ("Rio de Janeiro", "RJ", "Coletado pela transportadora", "2026-11-02"),
    ("São Paulo", "SP", "Em trânsito para Curitiba", "2026-11-03"),
    ("Curitiba", "PR", "Saiu para entrega", "2026-11-04"),
    ("Curitiba", "PR", "Entregue ao destinatário", "2026-11-04"),
)
DELIVERED_DATE = "2026-11-04 15:42"
#: Snapshots per invoice, 1 to 4, and their weights (2.2 on average).
SNAPSHOTS, WEIGHTS = (1, 2, 3, 4), (0.30, 0.35, 0.20, 0.15)
#: Virtual seconds between two snapshots of an invoice in the input.
GAP_S = (0.05, 0.5)
#: Invoice ids of store k are k x STRIDE + j: distinct per store.
STRIDE = 100_000

_ROOT = Path(__file__).resolve().parent.parent


# -- the day -------------------------------------------------------------------------------------


def limits(p: Params) -> list[float]:
    """Each store's limit (requests per second), drawn uniformly, seeded."""
    rng = random.Random(p["seed"])
    return [round(rng.uniform(p["low"], p["high"]), 1) for _ in range(p["stores"])]


def invoices_of(limit: float, p: Params) -> int:
    """A store's invoices: its burst, then ``ideal_s`` seconds at its limit."""
    return int(p["burst"] + round(limit * p["ideal_s"]))


def day(p: Params) -> list[tuple[int, int, int, int, int]]:
    """Every update of the day, ``(process, store, invoice id, events, snapshots of its
    invoice)``, each process's in its input order."""
    rng = random.Random(p["seed"] + 1)
    entries = []
    for k, limit in enumerate(limits(p)):
        n = invoices_of(limit, p)
        for j in range(n):
            count = rng.choices(SNAPSHOTS, WEIGHTS)[0]
            t = (j + rng.random()) / n * p["ideal_s"]
            for events in range(1, count + 1):
                entries.append((t, (j + k) % p["processes"], k, k * STRIDE + j, events, count))
                t += rng.uniform(*GAP_S)
    entries.sort()
    return [e[1:] for e in entries]


def _events(n: int) -> list[dict[str, str]]:
    keys = ("city", "state", "description", "date")
    return [dict(zip(keys, step, strict=True)) for step in STEPS[:n]]


# -- the SDK sender ------------------------------------------------------------------------------


def _client_settings(p: Params) -> dict[str, dict[str, str]]:
    settings = {}
    for k in range(p["stores"]):
        key, token = store_credentials(store_name(k))
        settings[store_name(k)] = {"app_key": key, "app_token": token, "base_url": p["urls"][k]}
    return settings


def _sdk_updates(work: list[tuple[int, int, int, int, int]]) -> list[Any]:
    from vtex_tracking import TrackingEvent, TrackingStatus, TrackingUpdate

    statuses = {
        n: TrackingStatus(
            [TrackingEvent(*step) for step in STEPS[:n]],
            is_delivered=n == len(STEPS),
            delivered_date=DELIVERED_DATE if n == len(STEPS) else None,
        )
        for n in SNAPSHOTS
    }
    return [
        TrackingUpdate(order_id(i), invoice_number(i), statuses[n], account_name=store_name(k))
        for _, k, i, n, _ in work
    ]


async def _push_sdk(p: Params, updates: list[Any]) -> Params:
    from vtex_tracking import Accounts, AsyncTrackingClient, PushStoppedError, SharedPace

    kinds: Counter[str] = Counter()
    failed_by_outcome: Counter[str] = Counter()

    def on_result(result: Any) -> None:
        if result.ok:
            kinds["ok"] += 1
        elif isinstance(result.error, PushStoppedError):
            kinds["stopped"] += 1
        else:
            kinds["failed"] += 1
            failed_by_outcome[result.outcome] += 1

    options: dict[str, Any] = {}
    if p["shared_pace"]:
        options["shared_pace"] = SharedPace(p["shared_pace"])
    accounts = Accounts.from_mapping(_client_settings(p))
    async with AsyncTrackingClient.from_accounts(accounts, **options) as client:
        cpu, wall = time.process_time(), time.monotonic()
        stream = client.push(
            updates, on_result=on_result, merge_snapshots=True, journal=p["journal"]
        )
        timer = asyncio.get_running_loop().call_later(p["deadline_s"], stream.stop)
        async with stream:
            summary = await stream.summary()
        timer.cancel()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        rates = {name: m.rate for name, m in client.metrics().items()}
    return {
        "kind": "sdk",
        "n": len(updates),
        "results": summary.total,
        "ok": kinds["ok"],
        "failed": kinds["failed"],
        "stopped": kinds["stopped"],
        "failed_by_outcome": dict(failed_by_outcome),
        "by_outcome": dict(summary.by_outcome),
        "requests": summary.requests,
        "cpu_s": cpu,
        "wall_s": wall,
        "rate_at_end": rates,
    }


# -- the CLI sender ------------------------------------------------------------------------------


def _cli_files(p: Params, work: list[tuple[int, int, int, int, int]], tmp: Path) -> list[str]:
    """Write the input and the accounts file, set the tokens' variables; the command line."""
    with (tmp / "day.jsonl").open("w", encoding="utf-8") as out:
        for _, k, i, n, _ in work:
            record = {
                "orderId": order_id(i),
                "invoiceNumber": invoice_number(i),
                "isDelivered": n == len(STEPS),
                "deliveredDate": DELIVERED_DATE if n == len(STEPS) else None,
                "events": _events(n),
                "accountName": store_name(k),
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    tables = []
    for name, s in _client_settings(p).items():
        variable = "HUB_TOKEN_" + name.upper().replace("-", "_")
        os.environ[variable] = s["app_token"]
        tables.append(
            f'["{name}"]\napp_key = "{s["app_key"]}"\napp_token_env = "{variable}"\n'
            f'base_url = "{s["base_url"]}"\n'
        )
    (tmp / "stores.toml").write_text("\n".join(tables), encoding="utf-8")
    argv = ["push", str(tmp / "day.jsonl"), "--accounts", str(tmp / "stores.toml"),
            "--merge-snapshots", "--journal", p["journal"], "--failed",
            str(tmp / "failed.jsonl"), "--json", "-q"]  # fmt: skip
    return argv + (["--shared-pace", p["shared_pace"]] if p["shared_pace"] else [])


def _push_cli(p: Params, argv: list[str], n: int) -> Params:
    from vtex_tracking.cli import main as cli

    # Its interrupt (SIGTERM) at the deadline: it stops and files what was not confirmed.
    timer = threading.Timer(p["deadline_s"], os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    out = io.StringIO()
    cpu, wall = time.process_time(), time.monotonic()
    timer.start()
    with contextlib.redirect_stdout(out):
        code = cli(argv)
    timer.cancel()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    lines = out.getvalue().strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    skipped = sum(summary.get("skipped", {}).values())
    by_outcome = summary.get("by_outcome", {})
    stopped = by_outcome.get("not sent", 0) + by_outcome.get("cancelled in flight", 0)
    return {
        "kind": "cli",
        "exit": code,
        "n": n,
        "results": summary.get("total", 0),
        "ok": summary.get("succeeded", 0),
        "failed": summary.get("failed", 0) - stopped,
        "stopped": stopped,
        "skipped": skipped,
        "by_outcome": by_outcome,
        "requests": summary.get("requests", 0),
        "throttled": summary.get("throttled", 0),
        "cpu_s": cpu,
        "wall_s": wall,
    }


# -- a sender's process --------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    p = json.loads(argv[0])
    import vtex_tracking  # imported before READY, so the start is fair

    if p["kind"] == "cli":
        import vtex_tracking.cli  # noqa: F401
    if p["shared_pace"]:
        import redis.asyncio  # noqa: F401

    work = [w for w in day(p) if w[0] == p["index"]]
    with tempfile.TemporaryDirectory(prefix="vtex-bench-hub-") as tmp:
        if p["kind"] == "cli":
            cli_argv = _cli_files(p, work, Path(tmp))
        else:
            updates = _sdk_updates(work)
        print("READY", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return 1  # the fleet gave up before the start
        delay = float(line) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if p["kind"] == "cli":
            result = _push_cli(p, cli_argv, len(work))
        else:
            result = asyncio.run(_push_sdk(p, updates))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# -- the fleet -----------------------------------------------------------------------------------


def run_hub_fleet(params: list[Params], timeout: float) -> Fleet:
    """``_contenders_scale.run_fleet`` for these senders: one per ``params``, one start time,
    every sender still running ``timeout`` s after the start killed."""
    env = _sender_env()
    fleet = Fleet(results=[None] * len(params), start_at=None)
    with tempfile.TemporaryDirectory(prefix="vtex-bench-hub-fleet-") as tmp:
        processes: list[subprocess.Popen[bytes]] = []
        errs = [Path(tmp) / f"sender-{k}.err" for k in range(len(params))]
        try:
            for p, err in zip(params, errs, strict=True):
                with err.open("wb") as err_file:
                    processes.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "benchmarks._contenders_hub", json.dumps(p)],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=err_file,
                            cwd=_ROOT,
                            env=env,
                            start_new_session=True,
                        )
                    )
            ready_by = time.monotonic() + READY_TIMEOUT
            for k, process in enumerate(processes):
                assert process.stdout is not None
                line = read_line(process.stdout, ready_by)
                if line != "READY":
                    fleet.failures.append(f"sender {k} not ready: {line!r} {_tail(errs[k])}")
            if not fleet.failures:
                fleet.start_at = start_at = time.monotonic() + START_DELAY
                for process in processes:
                    assert process.stdin is not None
                    process.stdin.write(f"{start_at!r}\n".encode())
                    process.stdin.close()
                _wait(processes, start_at, timeout, [], fleet)
                for process in processes:
                    _end(process)
                fleet.results = [_result(pr, k, errs[k], fleet) for k, pr in enumerate(processes)]
        finally:
            for process in processes:
                stop_process(process)
    return fleet


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
