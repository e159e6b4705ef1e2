"""The ``scale_out`` scenario's sender processes, and the fleet that runs them together.

A sender (``python -m benchmarks._contenders_scale '{json}'``) pushes its share of every
store with ``AsyncTrackingClient.from_accounts(...)`` and ``push``: SDK defaults but
``RetryPolicy(max_attempts=...)`` and, when the scenario names one, ``shared_pace``. It
builds its work, prints ``READY``, reads the common start time (``time.monotonic()``, the
same clock in every process of this machine) from stdin, sleeps until then, pushes (stopped
after ``deadline_s``), and prints one ``RESULT {json}`` line: per store what it confirmed and
when its last confirmation came, what failed, the SDK's ``metrics()`` at the end, and when each
store's ``shared_pace`` state changed ("shared"/"local", sampled every ``sample_s``).

``run_fleet`` starts the senders, waits until all are ready, gives them one start time, runs
timed events meanwhile (stopping and starting Redis), and kills whatever outlives its limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._measure import Window
from ._server import STOP_TIMEOUT, child_env, read_line, stop_process
from ._workload import EVENTS, invoice_number, order_id, store_credentials

Params = dict[str, Any]

#: Seconds every sender gets to import the SDK and build its work before the start.
READY_TIMEOUT = 60.0
#: Seconds between the last READY and the common start.
START_DELAY = 0.5

_ROOT = Path(__file__).resolve().parent.parent


# -- a sender ------------------------------------------------------------------------------------


def sender_work(p: Params) -> list[tuple[str, int]]:
    """``(store, update index)`` of sender ``index`` of ``processes``: every ``processes``-th
    update of each store from ``index`` on, stores taken in turn; indices are distinct over
    all stores and senders (store k owns ``k * per_store`` to ``(k + 1) * per_store - 1``)."""
    stores, per_store = p["stores"], p["per_store"]
    step, first = p["processes"], p["index"]
    work = []
    for j in range(first, per_store, step):
        for k, name in enumerate(stores):
            work.append((name, k * per_store + j))
    return work


def _client(p: Params) -> Any:
    from vtex_tracking import Accounts, AsyncTrackingClient, RetryPolicy

    urls = p["urls"]
    settings = {}
    for k, name in enumerate(p["stores"]):
        key, token = store_credentials(name)
        url = urls[k] if len(urls) > 1 else urls[0]
        settings[name] = {"app_key": key, "app_token": token, "base_url": url}
    options: dict[str, Any] = {"retry": RetryPolicy(max_attempts=p["max_attempts"])}
    if p.get("shared_pace"):
        options["shared_pace"] = p["shared_pace"]
    return AsyncTrackingClient.from_accounts(Accounts.from_mapping(settings), **options)


async def _sample(client: Any, states: dict[str, list[Any]], every: float) -> None:
    """Record each store's ``shared_pace`` state whenever it changes."""
    while True:
        now = time.monotonic()
        for name, m in client.metrics().items():
            seen = states.setdefault(name, [])
            if not seen or seen[-1][1] != m.shared_pace:
                seen.append([now, m.shared_pace])
        await asyncio.sleep(every)


async def _push(p: Params, work: list[tuple[str, int]]) -> Params:
    import attrs

    from vtex_tracking import PushStoppedError, TrackingEvent, TrackingStatus, TrackingUpdate

    status = TrackingStatus([TrackingEvent(*event) for event in EVENTS])
    by_store = {name: {"sent": 0, "succeeded": 0, "failed": 0, "last_ok_at": None}
                for name in p["stores"]}  # fmt: skip
    for name, _ in work:
        by_store[name]["sent"] += 1
    failed_by_outcome: Counter[str] = Counter()
    stopped = Counter[str]()
    states: dict[str, list[Any]] = {}

    def on_result(result: Any) -> None:
        store = by_store.get(result.account or "")
        if result.ok:
            if store is not None:
                store["succeeded"] += 1
                store["last_ok_at"] = time.monotonic()
        elif isinstance(result.error, PushStoppedError):
            stopped["stopped"] += 1
        else:
            failed_by_outcome[result.outcome] += 1
            if store is not None:
                store["failed"] += 1

    updates = (
        TrackingUpdate(order_id(i), invoice_number(i), status, account_name=name)
        for name, i in work
    )
    async with _client(p) as client:
        sampler = asyncio.create_task(_sample(client, states, p["sample_s"]))
        with Window() as window:
            stream = client.push(updates, on_result=on_result)
            timer = asyncio.get_running_loop().call_later(p["deadline_s"], stream.stop)
            async with stream:
                summary = await stream.summary()
            timer.cancel()
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        metrics = {name: attrs.asdict(m) for name, m in client.metrics().items()}
    return {
        "n": len(work),
        "succeeded": summary.succeeded,
        "requests": summary.requests,
        "failed": sum(failed_by_outcome.values()),
        "failed_by_outcome": dict(failed_by_outcome),
        "stopped_results": stopped["stopped"],
        "by_store": by_store,
        "metrics": metrics,
        "shared_pace_states": states,
        "wall_s": window.wall_s,
        "cpu_s": window.cpu_s,
    }


def main(argv: list[str]) -> int:
    p = json.loads(argv[0])
    import vtex_tracking  # noqa: F401 - imported before READY, so the start is fair

    if p.get("shared_pace"):
        import redis.asyncio  # noqa: F401

    work = sender_work(p)
    print("READY", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 1  # the fleet gave up before the start
    delay = float(line) - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    result = asyncio.run(_push(p, work))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# -- the fleet -----------------------------------------------------------------------------------


@dataclass
class Fleet:
    """What a fleet run gave: each sender's result (None when it failed or was killed), the
    common start and the moments of the timed events (``time.monotonic()``)."""

    results: list[Params | None]
    start_at: float | None
    events_at: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    ended_at: float = 0.0


def _sender_env() -> dict[str, str]:
    # No VTEX_* settings from the caller's environment (VTEX_SHARED_PACE above all).
    return {k: v for k, v in child_env().items() if not k.startswith("VTEX_")}


def _tail(stderr: Path) -> str:
    lines = stderr.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def run_fleet(
    params: list[Params],
    timeout: float,
    events: list[tuple[float, str, Callable[[], None]]] | None = None,
) -> Fleet:
    """Run one sender per ``params`` at once; ``events`` are ``(seconds after the start,
    label, action)``; every sender still running ``timeout`` s after the start is killed."""
    env = _sender_env()
    fleet = Fleet(results=[None] * len(params), start_at=None)
    with tempfile.TemporaryDirectory(prefix="vtex-bench-fleet-") as tmp:
        processes: list[subprocess.Popen[bytes]] = []
        errs = [Path(tmp) / f"sender-{k}.err" for k in range(len(params))]
        try:
            for p, err in zip(params, errs, strict=True):
                with err.open("wb") as err_file:
                    processes.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "benchmarks._contenders_scale", json.dumps(p)],
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
                start_at = time.monotonic() + START_DELAY
                fleet.start_at = start_at
                for process in processes:
                    assert process.stdin is not None
                    process.stdin.write(f"{start_at!r}\n".encode())
                    process.stdin.close()
                _wait(processes, start_at, timeout, list(events or []), fleet)
                for process in processes:
                    _end(process)
                fleet.results = [_result(pr, k, errs[k], fleet) for k, pr in enumerate(processes)]
        finally:
            for process in processes:
                stop_process(process)
    return fleet


def _wait(
    processes: list[subprocess.Popen[bytes]],
    start_at: float,
    timeout: float,
    events: list[tuple[float, str, Callable[[], None]]],
    fleet: Fleet,
) -> None:
    """Run the events on time until every sender exited or the limit passed; events still
    due after the senders are done run anyway (so a stopped Redis is started again)."""
    events.sort(key=lambda e: e[0])
    kill_at = start_at + timeout
    while time.monotonic() < kill_at:
        while events and time.monotonic() >= start_at + events[0][0]:
            _, label, action = events.pop(0)
            fleet.events_at[label] = time.monotonic()
            action()
        if all(process.poll() is not None for process in processes):
            break
        time.sleep(0.02)
    else:
        fleet.failures.append(f"senders still running {timeout:.0f} s after the start: killed")
    fleet.ended_at = time.monotonic()
    for offset, label, action in events:
        time.sleep(max(0.0, start_at + offset - time.monotonic()))
        fleet.events_at[label] = time.monotonic()
        action()


def _end(process: subprocess.Popen[bytes]) -> None:
    """Stop a sender still running (SIGTERM, then SIGKILL), keeping its output to read."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


def _result(process: subprocess.Popen[bytes], k: int, err: Path, fleet: Fleet) -> Params | None:
    out = b""
    if process.stdout is not None:
        with contextlib.suppress(OSError, ValueError):
            out = process.stdout.read()
    lines = [x for x in out.decode(errors="replace").splitlines() if x.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        fleet.failures.append(f"sender {k}: exit {process.returncode}: {_tail(err)}")
        return None
    result: Params = json.loads(lines[-1][len("RESULT ") :])
    result["stderr_tail"] = _tail(err)
    result["warnings"] = err.read_text(errors="replace").count("shared pace:")
    return result


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
