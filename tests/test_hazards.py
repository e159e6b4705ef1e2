"""Concurrency hazards: many threads against a flaky server, fork, cancellation, Ctrl-C.

(Interpreter exit with an unclosed client: ``test_sync.py::test_forgotten_close_exits_promptly_
and_quietly``.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import anyio
import pytest

from vtex_tracking import (
    AsyncTrackingClient,
    RetryPolicy,
    TrackingClient,
    TrackingStatus,
    VtexTrackingError,
)
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN

#: How long the 32 threads hammer the client (the issue asks 30 s; shorten locally with the env).
THREADS_SECONDS = float(os.environ.get("VTEX_HAZARD_SECONDS", "30"))
THREADS = 32
#: Calls per thread at most, so the loop is bounded by count as well as by time.
MAX_CALLS_PER_THREAD = 5_000


def test_32_threads_against_a_flaky_server_lose_nothing(status: TrackingStatus) -> None:
    """32 threads share one sync client for 30 s against a server answering 503s, 429s and
    dropping connections: every call returns (no deadlock) with a receipt or a documented
    error, and every receipt matches exactly one update the server accepted."""
    retry = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.02)
    with FakeOMS(fail_rate=0.1, fail_status=503, rate_limit=800, burst=50, retry_after="0") as oms:
        client = TrackingClient(
            "acme", APP_KEY, APP_TOKEN, base_url=oms.url, retry=retry, max_concurrency=16
        )
        # 429s for sure, however slowly a busy machine runs the threads (800 req/s may never
        # be reached); the bucket adds more where it is.
        oms.fail_next(20, 429, headers={"Retry-After": "0"})
        deadline = time.monotonic() + THREADS_SECONDS
        receipts: list[list[str]] = [[] for _ in range(THREADS)]
        errors: list[Counter[str]] = [Counter() for _ in range(THREADS)]
        calls = [0] * THREADS
        unexpected: list[BaseException] = []

        def work(n: int) -> None:
            try:
                while time.monotonic() < deadline and calls[n] < MAX_CALLS_PER_THREAD:
                    order_id = f"t{n}-{calls[n]}"
                    calls[n] += 1
                    if calls[n] % 50 == 0:
                        oms.drop_next(1)
                    try:
                        receipt = client.update_tracking_status(order_id, "NF-1", status)
                    except VtexTrackingError as exc:
                        errors[n][type(exc).__name__] += 1
                    else:
                        assert receipt.order_id == order_id
                        receipts[n].append(order_id)
            except BaseException as exc:  # anything else is a defect: report it
                unexpected.append(exc)

        threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + 30)
        hung = [t.name for t in threads if t.is_alive()]
        client.close()

    assert hung == [], f"threads still blocked in a call: {hung}"
    assert unexpected == []
    total_calls = sum(calls)
    confirmed = [order for chunk in receipts for order in chunk]
    assert total_calls == len(confirmed) + sum(sum(c.values()) for c in errors)
    assert total_calls > THREADS * 10  # the threads really ran
    accepted = Counter(order for order, _ in oms.updates for _ in oms.updates[(order, "NF-1")])
    assert all(accepted[order] == 1 for order in confirmed)
    assert set(accepted) <= {f"t{n}-{i}" for n in range(THREADS) for i in range(calls[n])}
    answers = Counter(r.status for r in oms.requests)
    assert answers[503] > 0 and answers[429] > 0  # the server really was flaky


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_client_made_before_fork_works_in_4_children_at_once(
    fake_oms: FakeOMS, status: TrackingStatus
) -> None:
    """Celery prefork: a client created (and used) in the parent, then used by 4 forked
    children at the same time, each from 4 threads; the parent's client still works."""
    client = TrackingClient("acme", APP_KEY, APP_TOKEN, base_url=fake_oms.url, timeout=5)
    client.update_tracking_status("parent-0", "1", status)
    children = []
    for child in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                code = _child_work(client, child, status)
            finally:
                os._exit(code)
        children.append(pid)
    deadline = time.monotonic() + 30
    codes = {}
    while len(codes) < len(children) and time.monotonic() < deadline:
        for pid in children:
            if pid not in codes:
                done, exit_status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(exit_status)
        time.sleep(0.02)
    for pid in children:
        if pid not in codes:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert sorted(codes.values()) == [0, 0, 0, 0], f"exit codes {codes} (missing: hung)"
    assert client.update_tracking_status("parent-1", "1", status).order_id == "parent-1"
    client.close()
    sent = {order for order, _ in fake_oms.updates}
    assert {f"c{c}-{t}-{i}" for c in range(4) for t in range(4) for i in range(10)} <= sent


def _child_work(client: TrackingClient, child: int, status: TrackingStatus) -> int:
    failures: list[BaseException] = []

    def calls(thread: int) -> None:
        try:
            for i in range(10):
                order_id = f"c{child}-{thread}-{i}"
                assert client.update_tracking_status(order_id, "1", status).order_id == order_id
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=calls, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    client.close()
    return 0 if not failures and not any(t.is_alive() for t in threads) else 3


@pytest.mark.anyio
async def test_cancelling_calls_mid_request_leaves_the_pool_usable(
    status: TrackingStatus,
) -> None:
    """Calls cancelled while waiting for the answer release their connection and their slot:
    with a pool and a limit of one, a single leak would make the next call wait forever."""
    async with (
        FakeOMS(latency=0.3) as oms,
        AsyncTrackingClient(
            "acme", APP_KEY, APP_TOKEN, base_url=oms.url, max_concurrency=1, timeout=5
        ) as client,
    ):
        for i in range(10):
            call = asyncio.ensure_future(client.update_tracking_status(f"c-{i}", "1", status))
            await asyncio.sleep(0.02 + 0.025 * i)  # cut at different points of the request
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        oms.latency = 0.0
        with anyio.fail_after(5):
            receipts = [
                await client.update_tracking_status(f"ok-{i}", "1", status) for i in range(5)
            ]
    assert [r.order_id for r in receipts] == [f"ok-{i}" for i in range(5)]
    assert len(oms.requests) >= 10 + 5  # the cancelled requests had reached the server


_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import datetime as dt, os, signal, threading, time
    from vtex_tracking import TrackingClient, TrackingEvent, TrackingStatus
    from vtex_tracking.testing import FakeOMS

    # Python's own Ctrl-C handler, even if this process was started with SIGINT ignored (a
    # shell's background job): the test is about the SDK under it, not the parent's choice.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = TrackingStatus([TrackingEvent("Recife", "PE", "Postado", dt.date(2026, 1, 2))])
    with FakeOMS(latency=5.0) as oms:
        client = TrackingClient(
            "acme", oms.app_key, oms.app_token, base_url=oms.url, max_concurrency=1
        )
        sent = []

        def ctrl_c_once_the_request_is_in_flight():
            # Bounded wait: a busy machine may take a while to send; SIGINT before the call
            # began would not test the call at all.
            deadline = time.monotonic() + 20
            while oms.in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=ctrl_c_once_the_request_is_in_flight).start()
        try:
            client.update_tracking_status("slow", "1", status)
        except KeyboardInterrupt:
            print(f"interrupted after {time.monotonic() - sent[0]:.1f} s")
        oms.latency = 0.0
        print(client.update_tracking_status("after", "1", status).order_id)
        client.close()
    """
)


def test_ctrl_c_during_a_sync_call_cancels_it_and_the_client_still_works() -> None:
    """Ctrl-C in a sync call raises KeyboardInterrupt at once (not after the 5 s answer), and
    the same client, limited to one request at a time, sends the next call. The signal comes
    once the request is in the server's hands, so a busy machine cannot send it too early."""
    result = subprocess.run(
        [sys.executable, "-c", _CTRL_C_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    interrupted, after = result.stdout.split("\n")[:2]
    assert interrupted.startswith("interrupted after")
    assert float(interrupted.split()[2]) < 2.0
    assert after == "after"
