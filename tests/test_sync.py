"""TrackingClient: the sync facade over the loop its callers drive, against FakeOMS."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from vtex_tracking import (
    ClientClosedError,
    NotFoundError,
    RetryPolicy,
    TrackingReceipt,
    TrackingStatus,
    ValidationError,
)
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory


def _loop_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "vtex-tracking-loop")


def test_sync_call_returns_the_receipt(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A plain synchronous call sends the update and returns VTEX's receipt."""
    with make_client.sync(fake_oms) as client:
        receipt = client.update_tracking_status("o-1", "NF 1", status)
    assert isinstance(receipt, TrackingReceipt)
    assert receipt.order_id == "o-1"
    assert fake_oms.requests[-1].invoice_number == "NF 1"


def test_exceptions_reach_the_caller_unchanged(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """API errors arrive in the caller's thread with their class and attributes."""
    fake_oms.fail_next(1, 404)
    with make_client.sync(fake_oms) as client, pytest.raises(NotFoundError) as info:
        client.update_tracking_status("o-404", "1", status)
    assert info.value.order_id == "o-404"
    assert info.value.status_code == 404


def test_bad_input_fails_before_the_loop(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """Validation errors are raised in the caller's thread and nothing is sent."""
    with make_client.sync(fake_oms) as client, pytest.raises(ValidationError, match="order_id"):
        client.update_tracking_status("", "1", status)
    assert fake_oms.requests == []


def test_twenty_threads_share_one_client(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """Twenty threads calling at once all get their own receipt, sharing one loop (and so one
    concurrency budget) that they drive in turn: no background thread is started."""
    before = _loop_threads()
    with make_client.sync(fake_oms, max_concurrency=8) as client:

        def work(n: int) -> list[str]:
            return [
                client.update_tracking_status(f"o-{n}-{i}", "1", status).order_id for i in range(5)
            ]

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(work, range(20)))
        assert _loop_threads() == before
    assert sorted(o for chunk in results for o in chunk) == sorted(
        f"o-{n}-{i}" for n in range(20) for i in range(5)
    )
    assert len(fake_oms.updates) == 100
    assert fake_oms.max_in_flight <= 8


def test_works_inside_a_running_event_loop(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """Sync code called from async code (or a notebook cell) still works."""
    with make_client.sync(fake_oms) as client:

        async def handler() -> str:
            # Blocking this loop is the caller's choice; the call must not deadlock or fail.
            return client.update_tracking_status("o-loop", "1", status).order_id

        assert asyncio.run(handler()) == "o-loop"


def test_close_stops_the_thread_and_refuses_calls(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """close() closes the client's loop; later calls raise ClientClosedError."""
    client = make_client.sync(fake_oms)
    client.update_tracking_status("o", "1", status)
    loop = client._driver().loop
    client.close()
    client.close()
    assert loop.is_closed()
    with pytest.raises(ClientClosedError):
        client.update_tracking_status("o", "1", status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_client_works_in_a_forked_child(
    fake_oms: FakeOMS, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A client used in the parent works in a forked child (Celery prefork) instead of hanging."""
    client = make_client.sync(fake_oms, retry=RetryPolicy.disabled(), timeout=5)
    client.update_tracking_status("o-parent", "1", status)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            receipt = client.update_tracking_status("o-child", "1", status)
            code = 0 if receipt.order_id == "o-child" else 2
            client.close()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 15
    while True:
        done, exit_status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(exit_status) == 0
    # The parent's client still works after the fork.
    assert client.update_tracking_status("o-parent-2", "1", status).order_id == "o-parent-2"
    client.close()
    assert ("o-child", "1") in fake_oms.updates


_FORGETFUL_SCRIPT = textwrap.dedent(
    """
    import datetime as dt
    from vtex_tracking import TrackingClient, TrackingEvent, TrackingStatus
    from vtex_tracking.testing import FakeOMS

    oms = FakeOMS().__enter__()
    client = TrackingClient(
        "acme", "vtexappkey-fake-oms", "fake-oms-app-token", base_url=oms.url
    )
    status = TrackingStatus([TrackingEvent("Recife", "PE", "Entregue", dt.date(2026, 1, 2))])
    print(client.update_tracking_status("o", "1", status).order_id)
    {ending}
    oms.__exit__(None, None, None)
    """
)


#: asyncio's debug-mode report of a slow loop step (one line).
_SLOW_STEP = re.compile(r"^Executing <.*> took \d+\.\d+ seconds\n", re.M)


@pytest.mark.parametrize(
    "ending",
    ["", "del client", "import gc; del client; gc.collect()"],
    ids=["exit", "del", "gc"],
)
def test_forgotten_close_exits_promptly_and_quietly(ending: str) -> None:
    """A script that never closes its client exits at once, without warnings or tracebacks."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", _FORGETFUL_SCRIPT.format(ending=ending)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "o"
    # -X dev turns on asyncio's debug mode, which logs any loop step slower than 0.1 s: a
    # timing diagnostic (a cold linecache on a busy CI machine), not a warning or a traceback.
    assert _SLOW_STEP.sub("", result.stderr) == ""
    assert elapsed < 15
