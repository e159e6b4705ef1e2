"""The pacing contenders: single calls, mixed push and calls, pushes against a slow server, and
the CLI. Run like every contender (``python -m benchmarks._contenders NAME '{json}'``: one
``RESULT {json}`` line); ``_contenders.CONTENDERS`` includes ``PACE_CONTENDERS``.

Only the package's public API is used (``from vtex_tracking import ...``) so these keep
working while its internals change. Each builds its client with the SDK's defaults except what
the scenario names (``max_attempts``, ``max_concurrency``); the server is FakeOMS in its own
process (``_fake_oms_server``), which the scenario asks for its statuses afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ._measure import Window, window_figures
from ._workload import (
    APP_KEY,
    APP_TOKEN,
    EVENTS,
    invoice_number,
    order_id,
    store_credentials,
    store_name,
)

Params = dict[str, Any]

#: The account name of the single-store contenders (FakeOMS's own credentials).
ACCOUNT = "bench"
#: Seconds the CLI gets to write its summary after SIGTERM before it is killed.
CLI_STOP_TIMEOUT = 15.0
#: The CLI's outcomes for what an interrupt left unsent or cut off in flight.
CLI_STOP_OUTCOMES = ("not sent", "cancelled in flight")


def _status() -> Any:
    from vtex_tracking import TrackingEvent, TrackingStatus

    return TrackingStatus([TrackingEvent(*event) for event in EVENTS])


def _updates(indices: Iterable[int], stores: list[str] | None = None) -> Iterator[Any]:
    """TrackingUpdates for ``indices`` (spread over ``stores`` in turn when given), lazily."""
    from vtex_tracking import TrackingUpdate

    status = _status()
    for i in indices:
        account = stores[i % len(stores)] if stores else None
        yield TrackingUpdate(order_id(i), invoice_number(i), status, account_name=account)


def _retry(p: Params) -> Any:
    """``RetryPolicy(max_attempts=...)`` when the scenario names one, else None (default)."""
    from vtex_tracking import RetryPolicy

    return RetryPolicy(max_attempts=p["max_attempts"]) if p.get("max_attempts") else None


def _client(p: Params, cls: Any = None) -> Any:
    """A client with the SDK's defaults but ``base_url`` and what ``p`` names."""
    from vtex_tracking import AsyncTrackingClient

    options: dict[str, Any] = {"base_url": p["url"]}
    if p.get("max_attempts"):
        options["retry"] = _retry(p)
    if p.get("max_concurrency"):
        options["max_concurrency"] = p["max_concurrency"]
    return (cls or AsyncTrackingClient)(ACCOUNT, APP_KEY, APP_TOKEN, **options)


def _hub_client(p: Params, names: list[str]) -> Any:
    """``AsyncTrackingClient.from_accounts`` over the stores ``names``, defaults otherwise."""
    from vtex_tracking import Accounts, AsyncTrackingClient

    settings = {}
    for name in names:
        key, token = store_credentials(name)
        settings[name] = {"app_key": key, "app_token": token, "base_url": p["url"]}
    options: dict[str, Any] = {}
    if p.get("max_attempts"):
        options["retry"] = _retry(p)
    if p.get("max_concurrency"):
        options["max_concurrency"] = p["max_concurrency"]
    return AsyncTrackingClient.from_accounts(Accounts.from_mapping(settings), **options)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95 and max of ``values`` (seconds), None when there are none."""
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": at(0.50), "p95": at(0.95), "max": ordered[-1]}


class _Calls:
    """What single calls gave: outcomes, exception classes, durations and attempts."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.failed_by_class: Counter[str] = Counter()
        self.durations: list[float] = []
        self.attempts = 0
        self.lock = threading.Lock()

    def ok(self, receipt: Any, started: float) -> None:
        with self.lock:
            self.statuses[str(receipt.status_code)] += 1
            self.durations.append(time.perf_counter() - started)
            self.attempts += receipt.attempts

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            name = type(exc).__name__
            self.statuses[name] += 1
            self.failed_by_class[name] += 1

    def figures(self, window: Window, n: int) -> Params:
        ok = sum(v for k, v in self.statuses.items() if k.isdigit() and k.startswith("2"))
        result = window_figures(window, n, ok, self.statuses)
        result.update(
            failed=n - ok,
            failed_by_class=dict(self.failed_by_class),
            call_s=_percentiles(self.durations),
            client_attempts_ok=self.attempts,
        )
        return result


async def _call_async(client: Any, status: Any, shared: Iterator[int], calls: _Calls) -> None:
    """One coroutine's share of the single calls: indices from ``shared`` until it ends."""
    for i in shared:
        started = time.perf_counter()
        try:
            receipt = await client.update_tracking_status(order_id(i), invoice_number(i), status)
        except Exception as exc:  # every failure is a figure, whatever its class
            calls.failed(exc)
        else:
            calls.ok(receipt, started)


async def pace_single_async(p: Params) -> Params:
    """``tasks`` coroutines sharing one ``AsyncTrackingClient``, ``n`` single calls in all."""
    n, tasks = p["n"], p["tasks"]
    status = _status()
    calls = _Calls()
    async with _client(p) as client:
        shared = iter(range(n))
        with Window() as window:
            workers = [_call_async(client, status, shared, calls) for _ in range(tasks)]
            await asyncio.gather(*workers)
    return calls.figures(window, n)


def pace_single_threads(p: Params) -> Params:
    """``threads`` threads sharing one ``TrackingClient`` (sync), ``n`` single calls in all."""
    from vtex_tracking import TrackingClient

    n, threads = p["n"], p["threads"]
    status = _status()
    calls = _Calls()
    shared, lock = iter(range(n)), threading.Lock()
    with _client(p, TrackingClient) as client:

        def worker() -> None:
            while True:
                with lock:
                    i = next(shared, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    receipt = client.update_tracking_status(order_id(i), invoice_number(i), status)
                except Exception as exc:  # every failure is a figure, whatever its class
                    calls.failed(exc)
                else:
                    calls.ok(receipt, started)

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
        with Window() as window:
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
    return calls.figures(window, n)


async def pace_mixed(p: Params) -> Params:
    """One ``push_all`` of ``push_n`` updates and ``tasks`` coroutines making ``single_n``
    single calls, at once, on one client."""
    push_n, single_n, tasks = p["push_n"], p["single_n"], p["tasks"]
    status = _status()
    calls = _Calls()
    ends: dict[str, float] = {}
    async with _client(p) as client:
        started = time.perf_counter()

        async def push() -> Any:
            summary = await client.push_all(_updates(range(push_n)))
            ends["push"] = time.perf_counter() - started
            return summary

        async def singles() -> None:
            shared = iter(range(push_n, push_n + single_n))
            workers = [_call_async(client, status, shared, calls) for _ in range(tasks)]
            await asyncio.gather(*workers)
            ends["singles"] = time.perf_counter() - started

        with Window() as window:
            summary, _ = await asyncio.gather(push(), singles())
    push_failed = summary.total - summary.succeeded
    singles_failed = sum(calls.failed_by_class.values())
    statuses = calls.statuses + Counter({str(k): v for k, v in summary.by_outcome.items()})
    ok = summary.succeeded + single_n - singles_failed
    result = window_figures(window, push_n + single_n, ok, statuses)
    result.update(
        failed=push_failed + singles_failed,
        push_failed=push_failed,
        singles_failed=singles_failed,
        failed_by_class=dict(calls.failed_by_class),
        push_s=ends.get("push"),
        singles_s=ends.get("singles"),
        call_s=_percentiles(calls.durations),
        push_requests=summary.requests,
    )
    return result


def _throughput(times: list[float], steady_after: float) -> dict[str, float | None]:
    """Confirmed updates per second over the whole run (to the last confirmation) and over
    the steady part (confirmations after ``steady_after`` seconds)."""
    if not times:
        return {"rps_whole": 0.0, "rps_steady": None, "last_ok_s": None}
    end = max(times)
    steady = [t for t in times if t > steady_after]
    return {
        "rps_whole": len(times) / end if end > 0 else None,
        "rps_steady": len(steady) / (end - steady_after) if steady and end > steady_after else None,
        "last_ok_s": end,
    }


async def pace_push_timed(p: Params) -> Params:
    """``push`` of ``n`` updates (spread over ``stores`` stores when given) with the client's
    defaults; stopped after ``deadline_s`` so a slow client cannot stall the suite. Figures
    are counted from each confirmation's time (``on_result``)."""
    from vtex_tracking import PushStoppedError

    n, deadline, steady_after = p["n"], p["deadline_s"], p["steady_after_s"]
    names = [store_name(k) for k in range(p["stores"])] if p.get("stores") else None
    times: list[float] = []
    outcomes: Counter[str] = Counter()
    unsent = Counter[str]()  # results of the deadline's stop, not failures
    started = 0.0

    def on_result(result: Any) -> None:
        if result.ok:
            times.append(time.perf_counter() - started)
        if isinstance(result.error, PushStoppedError):
            unsent["stopped"] += 1
        else:
            outcomes[result.outcome] += 1

    client = _hub_client(p, names) if names else _client(p)
    async with client:
        with Window() as window:
            started = time.perf_counter()
            stream = client.push(_updates(range(n), names), on_result=on_result)
            timer = asyncio.get_running_loop().call_later(deadline, stream.stop)
            async with stream:
                summary = await stream.summary()
            timer.cancel()
    result = window_figures(window, n, summary.succeeded, outcomes)
    result.update(
        _throughput(times, steady_after),
        stopped=len(times) < n and window.wall_s >= deadline,
        stopped_results=unsent["stopped"],
        push_requests=summary.requests,
        failed=sum(outcomes.values()) - summary.succeeded,
    )
    # The rps of run_contender's log line: what counts, confirmations per second.
    result["rps"] = result["rps_whole"] or 0.0
    return result


def _cli_command() -> list[str]:
    """The ``vtex-tracking`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("vtex-tracking")
    if script.exists():
        return [str(script)]
    found = shutil.which("vtex-tracking")
    if found:
        return [found]
    return [sys.executable, "-m", "vtex_tracking.cli"]


def _jsonl_line(i: int) -> str:
    events = [
        {"city": city, "state": state, "description": description, "date": date}
        for city, state, description, date in EVENTS
    ]
    return json.dumps(
        {
            "orderId": order_id(i),
            "invoiceNumber": invoice_number(i),
            "isDelivered": False,
            "deliveredDate": None,
            "events": events,
        },
        ensure_ascii=False,
    )


def _last_json(stdout: str) -> Params | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)  # type: ignore[no-any-return]
    return None


def pace_cli(p: Params) -> Params:
    """``vtex-tracking push FILE --base-url URL --json`` (defaults otherwise) on ``n``
    updates, credentials in the environment; SIGTERM after ``deadline_s`` (the CLI then
    prints its summary of what it confirmed)."""
    n, deadline = p["n"], p["deadline_s"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTEX_")}
    env.update(VTEX_ACCOUNT_NAME=ACCOUNT, VTEX_APP_KEY=APP_KEY, VTEX_APP_TOKEN=APP_TOKEN)
    with tempfile.TemporaryDirectory(prefix="vtex-bench-cli-") as tmp:
        source = Path(tmp) / "updates.jsonl"
        with source.open("w", encoding="utf-8") as out:
            for i in range(n):
                out.write(_jsonl_line(i) + "\n")
        command = [*_cli_command(), "push", str(source), "--base-url", p["url"], "--json",
                   "--failed", str(Path(tmp) / "failed.jsonl")]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stopped = False
        with Window() as window:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=tmp,
            )
            try:
                stdout, stderr = process.communicate(timeout=deadline)
            except subprocess.TimeoutExpired:
                stopped = True
                process.send_signal(signal.SIGTERM)
                try:
                    stdout, stderr = process.communicate(timeout=CLI_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    stdout, stderr = process.communicate()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = _last_json(stdout)
    if summary is None:
        tail = (stderr.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
        raise RuntimeError(f"the CLI printed no JSON summary: {tail}")
    succeeded, elapsed = int(summary["succeeded"]), float(summary["elapsed_s"])
    outcomes = Counter({str(k): int(v) for k, v in summary.get("by_outcome", {}).items()})
    result = window_figures(window, n, succeeded, outcomes)
    # What SIGTERM left unsent or cut off in flight is not a failure of the push.
    unsent = {k: v for k, v in outcomes.items() if k in CLI_STOP_OUTCOMES}
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result.update(
        cpu_s=cpu_s,
        cpu_us_per_req=cpu_s / max(1, succeeded) * 1e6,
        rps=succeeded / elapsed if elapsed > 0 else 0.0,
        rps_whole=succeeded / elapsed if elapsed > 0 else 0.0,
        rps_process=succeeded / window.wall_s if window.wall_s > 0 else 0.0,
        cli_elapsed_s=elapsed,
        cli_exit_status=process.returncode,
        cli_peak_rss_mb=after.ru_maxrss / 1024,
        stopped=stopped,
        interrupted=summary.get("interrupted"),
        stopped_results=sum(unsent.values()),
        failed=sum(outcomes.values()) - succeeded - sum(unsent.values()),
        command=" ".join(["vtex-tracking", *command[len(_cli_command()) :]]),
    )
    return result


PACE_CONTENDERS: dict[str, Callable[[Params], Any]] = {
    "pace_single_async": pace_single_async,
    "pace_single_threads": pace_single_threads,
    "pace_mixed": pace_mixed,
    "pace_push_timed": pace_push_timed,
    "pace_cli": pace_cli,
}
