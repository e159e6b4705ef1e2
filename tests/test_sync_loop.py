"""TrackingClient's loop, driven by its callers in turn: a second caller while one drives,
the loop handed over, a push stream iterated while other threads call, Ctrl-C in either role.

(The basics, fork, a forgotten close and a call from inside a running event loop are in
``test_sync.py``; Ctrl-C with a single caller in ``test_hazards.py``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from vtex_tracking import TrackingStatus, TrackingUpdate
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory


def _loop_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "vtex-tracking-loop")


def test_a_second_caller_runs_alongside_and_takes_the_loop_over(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A call made while another thread drives the loop runs at the same time as that one
    (one loop, two requests in flight); the driver returns as soon as its own call is done
    (not held until the other one ends), and the other call finishes with the loop handed
    over to its thread."""
    with FakeOMS(latency=0.6) as oms:
        client = make_client.sync(oms)
        client.update_tracking_status("warm", "1", status)
        before = _loop_threads()
        finished: dict[str, float] = {}
        orders: dict[str, str] = {}

        def call(name: str) -> None:
            orders[name] = client.update_tracking_status(name, "1", status).order_id
            finished[name] = time.monotonic()

        started = time.monotonic()
        first = threading.Thread(target=call, args=("first",))
        first.start()
        time.sleep(0.3)  # the first thread drives, its request is at the server
        second = threading.Thread(target=call, args=("second",))
        second.start()
        first.join(10)
        second.join(10)
        assert _loop_threads() == before
    assert orders == {"first": "first", "second": "second"}
    assert oms.max_in_flight == 2
    # The two calls overlapped (one after the other would take 1.2 s) ...
    assert finished["second"] - started < 1.15
    # ... and the first returned about when its answer came, before the second's came.
    assert finished["first"] < finished["second"] - 0.15


def test_calls_from_other_threads_while_a_push_stream_is_read(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A push keeps sending while its reader is busy elsewhere (a background thread runs the
    loop for it), and other threads' calls go through meanwhile; the thread ends with it."""
    before = _loop_threads()
    with FakeOMS(latency=0.01) as oms:
        client = make_client.sync(oms, adaptive=False)
        updates = [TrackingUpdate(f"p-{i}", "1", status) for i in range(60)]
        stream = client.push(updates, concurrency=4)
        results = [next(stream)]
        assert _loop_threads() == before + 1
        sent_at_first = len(oms.requests)
        time.sleep(0.5)  # not reading: the push goes on without this thread
        assert len(oms.requests) > sent_at_first

        side_orders: list[str] = []

        def side_calls() -> None:
            for i in range(5):
                side_orders.append(client.update_tracking_status(f"s-{i}", "1", status).order_id)

        side = threading.Thread(target=side_calls)
        side.start()
        results.extend(stream)
        side.join(10)
        summary_ok = sum(1 for r in results if r.outcome == "200")
        deadline = time.monotonic() + 5
        while _loop_threads() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _loop_threads() == before
    assert summary_ok == 60
    assert side_orders == [f"s-{i}" for i in range(5)]


_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import datetime as dt, os, signal, threading, time
    from vtex_tracking import TrackingClient, TrackingEvent, TrackingStatus
    from vtex_tracking.testing import FakeOMS

    # Python's own Ctrl-C handler, even if this process was started with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = TrackingStatus([TrackingEvent("Recife", "PE", "Postado", dt.date(2026, 1, 2))])
    with FakeOMS(latency=3.0) as oms:
        client = TrackingClient("acme", oms.app_key, oms.app_token, base_url=oms.url)
        other = {{}}

        def other_thread():
            other["order"] = client.update_tracking_status("other", "1", status).order_id

        worker = threading.Thread(target=other_thread)
        if {main_drives}:
            threading.Timer(0.3, worker.start).start()
        else:
            worker.start()
            time.sleep(0.3)
        sent = []

        def ctrl_c_once_both_calls_are_in_flight():
            # Bounded; a busy machine may start them late, and a timer could fire first.
            deadline = time.monotonic() + 20
            while oms.in_flight < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=ctrl_c_once_both_calls_are_in_flight).start()
        try:
            client.update_tracking_status("main", "1", status)
        except KeyboardInterrupt:
            print(f"interrupted after {{time.monotonic() - sent[0]:.1f}} s")
        worker.join(20)
        print(other.get("order"))
        oms.latency = 0.0
        print(client.update_tracking_status("after", "1", status).order_id)
        client.close()
    """
)


def _run_ctrl_c(main_drives: bool) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _CTRL_C_SCRIPT.format(main_drives=main_drives)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[:3]


def test_ctrl_c_in_the_driving_thread_hands_the_loop_to_the_waiting_one() -> None:
    """Ctrl-C while the main thread drives the loop (another thread's call waiting on it):
    KeyboardInterrupt at once, the other call still gets its receipt, the client works."""
    interrupted, other, after = _run_ctrl_c(main_drives=True)
    assert interrupted.startswith("interrupted after")
    assert float(interrupted.split()[2]) < 2.0
    assert other == "other"
    assert after == "after"


def test_ctrl_c_in_a_waiting_thread_leaves_the_driver_alone() -> None:
    """Ctrl-C while the main thread waits on a loop another thread drives: KeyboardInterrupt
    at once, the driver's call is not disturbed, the client works."""
    interrupted, other, after = _run_ctrl_c(main_drives=False)
    assert interrupted.startswith("interrupted after")
    assert float(interrupted.split()[2]) < 2.0
    assert other == "other"
    assert after == "after"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_leaves_the_parents_loop_able_to_wake(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A child forked while the parent's loop is idle must not close it on its way out: the
    two share the loop's epoll set, and closing would unregister the parent's wake-up pipe, so
    a call handed to the parent's running loop would wait for unrelated I/O to start."""
    client = make_client.sync(fake_oms, timeout=10)
    client.update_tracking_status("parent-0", "1", status)
    inherited = client._driver().loop
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            client.update_tracking_status("child", "1", status)
            client.close()
            # What the loop's __del__ does when the child exits normally (Celery recycling a
            # worker): it must close nothing of the parent's.
            inherited.close()
            code = 0
        finally:
            os._exit(code)
    _, exit_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(exit_status) == 0
    fake_oms.latency = 1.5
    sent_before = len(fake_oms.requests)
    driver = threading.Thread(target=client.update_tracking_status, args=("slow", "1", status))
    driver.start()
    time.sleep(0.3)  # the driver's request waits at the server: its loop sleeps in epoll
    waiter = threading.Thread(target=client.update_tracking_status, args=("handed", "1", status))
    waiter.start()
    time.sleep(0.6)  # the handed call must have started long before the driver's answer
    reached = len(fake_oms.requests) - sent_before
    driver.join(10)
    waiter.join(10)
    assert reached == 2


def test_many_short_calls_from_many_threads_never_strand_one(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """Calls finishing in the same loop turn as the driver's own (which ends the driver's
    run) are handed the loop, not left waiting for a driver that is gone: 8 threads making
    100 quick calls each all finish."""
    client = make_client.sync(fake_oms, adaptive=False)
    failures: list[BaseException] = []

    def calls(n: int) -> None:
        try:
            for i in range(100):
                client.update_tracking_status(f"m-{n}-{i}", "1", status)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=calls, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [t.name for t in threads if t.is_alive()] == []
    assert failures == []
    assert len(fake_oms.updates) == 8 * 100
