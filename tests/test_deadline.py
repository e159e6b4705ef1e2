"""An attempt's time limit (``_deadline``): a timeout is raised for the transport's own
expiry only; anyone else's cancellation stays a cancellation, and nothing is left pending."""

from __future__ import annotations

import asyncio
import sys
import time

import anyio
import pytest

from vtex_tracking import RetryPolicy, TrackingStatus, TransportTimeoutError
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio


def _cancelling() -> int:
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling() if sys.version_info >= (3, 11) else 0


async def test_a_timeout_leaves_no_cancellation_behind(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """After a timed-out attempt the task is not cancelling: the next awaits run, and an
    enclosing anyio scope with a longer limit is not triggered."""
    async with (
        FakeOMS(latency=5.0) as oms,
        make_client(oms, timeout=0.3, retry=RetryPolicy.disabled()) as client,
    ):
        with anyio.fail_after(10):
            started = time.monotonic()
            with pytest.raises(TransportTimeoutError, match="timed out"):
                await client.update_tracking_status("o", "1", status)
            elapsed = time.monotonic() - started
            assert _cancelling() == 0
            await anyio.sleep(0.01)  # would raise if a cancellation were still pending
    assert 0.3 <= elapsed < 1.5


async def test_a_cancellation_before_the_limit_stays_a_cancellation(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    async with (
        FakeOMS(latency=5.0) as oms,
        make_client(oms, timeout=2.0, retry=RetryPolicy.disabled()) as client,
    ):
        task = asyncio.create_task(client.update_tracking_status("o", "1", status))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 cannot count cancellations")
async def test_a_cancellation_with_the_expiry_stays_a_cancellation(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """Cancelled by the application in the same instant the limit passes: the application's
    cancellation wins (its task ends cancelled, not with a timeout)."""
    async with (
        FakeOMS(latency=5.0) as oms,
        make_client(oms, timeout=0.3, retry=RetryPolicy.disabled()) as client,
    ):
        task = asyncio.create_task(client.update_tracking_status("o", "1", status))
        # Spin until the sweep has cancelled the task (it is then cancelling once), and
        # cancel it too before it runs again.
        deadline = time.monotonic() + 5
        while task.cancelling() == 0 and not task.done():
            assert time.monotonic() < deadline
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_anyio_cancel_scope_around_a_request_still_cancels(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    async with (
        FakeOMS(latency=5.0) as oms,
        make_client(oms, timeout=2.0, retry=RetryPolicy.disabled()) as client,
    ):
        started = time.monotonic()
        with anyio.move_on_after(0.2) as scope:
            await client.update_tracking_status("o", "1", status)
        assert scope.cancelled_caught
        assert time.monotonic() - started < 1.5


async def test_many_attempts_in_flight_each_time_out(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """One sweep serves every attempt in flight: all of them end with a timeout."""
    async with (
        FakeOMS(latency=5.0) as oms,
        make_client(oms, timeout=0.3, retry=RetryPolicy.disabled(), max_concurrency=8) as client,
    ):
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(client.update_tracking_status(f"o{i}", "1", status) for i in range(8)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
    assert all(isinstance(o, TransportTimeoutError) for o in outcomes), outcomes
    assert elapsed < 1.5


async def test_a_short_limit_is_kept_beside_a_long_one(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """Every client of an event loop shares one sweep: a client with a 0.3 s limit started
    after one with 20 s still times out near 0.3 s (the sweep ticks for the shortest)."""
    async with (
        FakeOMS(latency=5.0) as oms,
        make_client(oms, timeout=20.0, retry=RetryPolicy.disabled()) as patient,
        make_client(oms, timeout=0.3, retry=RetryPolicy.disabled()) as hasty,
    ):
        slow = asyncio.create_task(patient.update_tracking_status("o1", "1", status))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(TransportTimeoutError):
            await hasty.update_tracking_status("o2", "1", status)
        elapsed = time.monotonic() - started
        assert not slow.done()  # the long limit is not cut short
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
    assert 0.3 <= elapsed < 1.0


async def test_each_attempt_of_a_task_gets_its_own_limit(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A task's attempts are watched one after another: after a timed-out attempt, its retry
    starts clean, times out in turn, and leaves the task not cancelling."""
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001)
    async with (
        FakeOMS(latency=5.0) as oms,
        make_client(oms, timeout=0.3, retry=retry) as client,
    ):
        with anyio.fail_after(10):
            started = time.monotonic()
            with pytest.raises(TransportTimeoutError, match="after 2 attempts") as caught:
                await client.update_tracking_status("o", "1", status)
            elapsed = time.monotonic() - started
            assert caught.value.attempts == 2
            assert _cancelling() == 0
            await anyio.sleep(0.01)  # would raise if a cancellation were still pending
    assert 0.6 <= elapsed < 2.5
