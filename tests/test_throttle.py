"""Pacing primitives with a fake clock: the token bucket, the adaptive rate's states, the
budget. (The queue of waiting requests is the account pace's: ``test_pace.py``.)"""

from __future__ import annotations

import asyncio

import anyio
import pytest

from vtex_tracking._throttle import MEASURE_TIME, AdaptiveRate, Budget, TokenBucket

from .conftest import Clock

pytestmark = pytest.mark.anyio


def test_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    """A bucket at 10/s holds 1 token (its burst) and refills one per 0.1 s."""
    clock = Clock()
    bucket = TokenBucket(10.0, clock=clock)
    assert bucket.wait_time() == 0.0
    bucket._tokens -= 1
    assert bucket.wait_time() == pytest.approx(0.1)
    clock.now += 0.05
    assert bucket.wait_time() == pytest.approx(0.05)


def test_pause_holds_every_sender_until_the_deadline() -> None:
    """pause_until makes the wait at least the remaining pause, even when unlimited."""
    clock = Clock()
    bucket = TokenBucket(None, clock=clock)
    bucket.pause_until(clock.now + 3)
    assert bucket.wait_time() == pytest.approx(3.0)
    clock.now += 3
    assert bucket.wait_time() == 0.0


def test_adaptive_rate_probes_measures_and_settles_under_the_limit() -> None:
    """unlimited -> probe (from what got through) -> measure -> cubic at BETA x measured."""
    clock = Clock()
    bucket = TokenBucket(None, clock=clock)
    adaptive = AdaptiveRate(bucket, clock=clock)
    for _ in range(20):
        adaptive.on_success()
    clock.now += 0.5
    adaptive.on_throttle()
    assert adaptive.state == "probe"
    assert bucket.rate == pytest.approx(20.0)  # 20 successes, over at least one second
    clock.now += 1.0
    adaptive.on_success()
    assert bucket.rate is not None and bucket.rate > 100  # doubled several times
    adaptive.on_throttle()
    assert adaptive.state == "measure"
    # The server accepts 100/s: 20 successes in 0.2 s while more 429s arrive.
    for _ in range(20):
        clock.now += MEASURE_TIME / 20
        adaptive.on_success()
        adaptive.on_throttle()
    assert adaptive.state == "cubic"
    assert bucket.rate == pytest.approx(90.0, rel=0.15)


def test_adaptive_rate_respects_the_fixed_ceiling() -> None:
    """With rate_limit set, the adaptive rate never exceeds it."""
    clock = Clock()
    bucket = TokenBucket(50.0, clock=clock)
    adaptive = AdaptiveRate(bucket, ceiling=50.0, clock=clock)
    for _ in range(500):
        adaptive.on_success()
    clock.now += 1
    adaptive.on_throttle()
    clock.now += 10
    for _ in range(100):
        adaptive.on_success()
    assert bucket.rate is not None and bucket.rate <= 50.0


async def test_budget_serves_waiters_in_order_and_survives_cancellation() -> None:
    """The multi-store budget: FIFO hand-over, a cancelled waiter leaves the queue, and a
    waiter cancelled after being handed a slot gives it back (no slot is ever lost)."""
    budget = Budget(1)
    await budget.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        await budget.acquire()
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "first")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as gone:
            gone.cancel()
            await budget.acquire()  # cancelled while waiting: must leave the queue
        tg.start_soon(take, "second")
        await anyio.wait_all_tasks_blocked()
        budget.release()  # to "first"
        await anyio.wait_all_tasks_blocked()
        budget.release()  # to "second"
    assert order == ["first", "second"]
    assert budget.value == 0
    budget.release()
    assert budget.value == 1

    # Handed a slot, then cancelled before it resumed: the slot comes back.
    await budget.acquire()
    task = asyncio.get_running_loop().create_task(take("never"))
    await anyio.wait_all_tasks_blocked()
    budget.release()  # hands the slot to the waiter...
    task.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert order == ["first", "second"]
    assert budget.value == 1


async def test_a_waiter_cancelled_then_skipped_by_a_release_leaves_quietly() -> None:
    """Cancelled while waiting, then passed over by a release() before it resumes: the
    waiter raises CancelledError (not ValueError), and the slot stays free."""
    budget = Budget(0)
    task = asyncio.get_running_loop().create_task(budget.acquire())
    await anyio.wait_all_tasks_blocked()
    task.cancel()  # its future is cancelled at once...
    budget.release()  # ...and this release skips it before the task runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.value == 1


def test_a_probe_without_a_throttle_for_an_hour_does_not_overflow() -> None:
    """A stray 429 on an unlimited account starts a probe; hours of successes after it
    (no limit ever found) keep a finite rate instead of raising OverflowError."""
    clock = Clock()
    bucket = TokenBucket(None, clock=clock)
    adaptive = AdaptiveRate(bucket, clock=clock)
    for _ in range(20):
        adaptive.on_success()
    clock.now += 0.5
    adaptive.on_throttle()
    assert adaptive.state == "probe"
    for _ in range(3_600):
        clock.now += 1.0
        adaptive.on_success()
    assert adaptive.state == "probe"
    assert bucket.rate is not None and 1e6 < bucket.rate < float("inf")
