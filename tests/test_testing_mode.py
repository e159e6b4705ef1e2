"""The no-wait switch: ``set_testing``, ``no_waits()``, the ``vtex_testing`` fixture and marker
skip every wait of the SDK, from every thread."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from vtex_tracking import TrackingStatus, TrackingUpdate
from vtex_tracking.testing import FakeOMS, is_testing, no_waits, set_testing

from .conftest import ClientFactory

LONG = {"Retry-After": "30"}


@pytest.mark.vtex_testing
def test_the_marker_turns_the_switch_on() -> None:
    """@pytest.mark.vtex_testing alone (no fixture named) turns testing mode on."""
    assert is_testing()


def test_the_switch_is_off_unless_asked() -> None:
    """Tests that do not ask run with the SDK's real waits."""
    assert not is_testing()


def test_testing_blocks_nest_and_restore() -> None:
    """``with no_waits():`` restores what was there before, even nested and on errors."""
    with no_waits():
        with no_waits(False):
            assert not is_testing()
        assert is_testing()
        with pytest.raises(RuntimeError), no_waits():
            raise RuntimeError("boom")
        assert is_testing()
    assert not is_testing()


@pytest.mark.anyio
@pytest.mark.vtex_testing
async def test_a_long_retry_after_is_not_slept(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A 429 asking for 30 s is retried at once: the call ends in its second attempt."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 429, headers=LONG)
        with anyio.fail_after(10):
            receipt = await client.update_tracking_status("o-1", "NF-1", status)
    assert receipt.attempts == 2


@pytest.mark.anyio
async def test_a_push_does_not_pause_its_account_in_testing_mode(
    vtex_testing: None, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A push whose account gets long Retry-After answers (which pause the whole account)
    finishes without the pause, every update confirmed."""
    updates = [TrackingUpdate(f"o-{i}", f"NF-{i}", status) for i in range(40)]
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(3, 429, headers=LONG)
        with anyio.fail_after(10):
            summary = await client.push_all(updates)
    assert summary.succeeded == 40
    assert summary.by_outcome == {"200": 40}


@pytest.mark.anyio
@pytest.mark.vtex_testing
async def test_the_paces_tokens_are_not_waited_for(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """rate_limit=0.5 would space 20 calls over 40 s; in testing mode they all go at once."""
    async with FakeOMS() as oms, make_client(oms, rate_limit=0.5) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(client.update_tracking_status, f"o-{i}", "NF-1", status)
        assert len(oms.requests) == 20


def test_set_testing_from_one_thread_applies_to_the_sync_clients_thread(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """The switch is process-wide: turned on in another thread, it reaches the sync client's
    portal thread, and turned off it ends there too."""
    with FakeOMS() as oms:
        client = make_client.sync(oms)
        switcher = threading.Thread(target=set_testing, args=(True,))
        switcher.start()
        switcher.join()
        try:
            oms.fail_next(1, 503, headers=LONG)
            started = time.monotonic()
            receipt = client.update_tracking_status("o-1", "NF-1", status)
            assert receipt.attempts == 2
            assert time.monotonic() - started < 10  # not the 30 s asked for
        finally:
            set_testing(False)
    assert not is_testing()
