"""An account's pace on its own: the queue of waiting requests, the window, the auth cool-down.

No network here: the pace is driven the way the sender drives it (acquire, release with a
status). The behaviour over real sockets is in ``test_account_pace.py``.
"""

from __future__ import annotations

import asyncio
import time

import anyio
import anyio.lowlevel
import pytest

from vtex_tracking import AuthCooldownError
from vtex_tracking._answer import Answer
from vtex_tracking._constants import AUTH_FAILURES_TO_STOP, INITIAL_WINDOW
from vtex_tracking._pace import AccountPace

from .conftest import Clock

pytestmark = pytest.mark.anyio


def _pace(**options: object) -> AccountPace:
    settings: dict[str, object] = {
        "rate_limit": None,
        "adaptive": True,
        "max_concurrency": 512,
        "max_retry_after": 60.0,
    }
    settings.update(options)
    pace = AccountPace("acme", **settings)  # type: ignore[arg-type]
    pace.bind(asyncio.get_running_loop())
    return pace


async def test_waiting_requests_are_admitted_in_arrival_order() -> None:
    """The pace is fair: requests that queue for tokens get them first come, first served."""
    pace = _pace(rate_limit=200.0)
    pace.bucket._tokens = 0.0
    served: list[int] = []

    async def request(n: int) -> None:
        assert await pace.acquire(None)
        served.append(n)
        pace.release(Answer.CONFIRMED, None, 0.01)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(request, n)
                await anyio.lowlevel.checkpoint()  # queue them in a known order
    assert served == list(range(20))
    assert pace.in_flight == 0


async def test_lowering_the_rate_applies_to_requests_already_waiting() -> None:
    """A waiter keeps no slot reserved at the old rate: a new rate applies to it at once."""
    pace = _pace(rate_limit=1000.0, adaptive=False)
    pace.bucket._tokens = 0.0
    pace.bucket.set_rate(0.5)  # now a token takes two seconds
    assert not await pace.acquire(0.3)  # still waiting: the new, slower rate applies
    assert pace.in_flight == 0
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pace.acquire, None)
            await anyio.wait_all_tasks_blocked()
            started = time.monotonic()
            pace.bucket.set_rate(1000.0)  # lets the waiter go at once, not in 2 s
    assert time.monotonic() - started < 0.5
    assert pace.in_flight == 1


async def test_a_rate_change_costs_one_check_not_one_per_waiter() -> None:
    """Only the head of the queue is looked at: 100 rate changes with 50 requests waiting
    cost about 100 checks of the clock, not 5,000 (the adaptive rate changes it on every
    success)."""
    pace = _pace(rate_limit=0.5, adaptive=False)
    pace.bucket._tokens = 0.0
    checks = 0
    wait_time = pace.bucket.wait_time

    def counting_wait_time() -> float:
        nonlocal checks
        checks += 1
        return wait_time()

    pace.bucket.wait_time = counting_wait_time  # type: ignore[method-assign]
    with anyio.move_on_after(0.5):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(pace.acquire, None)
            await anyio.wait_all_tasks_blocked()
            checks = 0
            for _ in range(100):
                pace.bucket.set_rate(0.5)  # a change that still leaves everyone waiting
                await anyio.lowlevel.checkpoint()
            changes_checked = checks
            tg.cancel_scope.cancel()
    assert 100 <= changes_checked <= 150
    assert pace.in_flight == 0


async def test_a_call_that_gives_up_waiting_holds_nothing() -> None:
    """acquire(timeout) answers False after the timeout; the pace is as if it never came."""
    pace = _pace(max_concurrency=1, adaptive=False)
    assert await pace.acquire(None)
    assert not await pace.acquire(0.05)  # the window of one is taken
    pace.release(Answer.CONFIRMED, None, 0.01)
    assert pace.in_flight == 0
    assert await pace.acquire(0.05)  # the timed-out waiter left no trace in the queue


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    """A caller cancelled while waiting takes nothing; one cancelled just after being
    admitted gives its admission back."""
    pace = _pace(max_concurrency=1, adaptive=False)
    assert await pace.acquire(None)
    with anyio.move_on_after(0.05):
        await pace.acquire(None)
    task = asyncio.get_running_loop().create_task(pace.acquire(None))
    await anyio.wait_all_tasks_blocked()
    pace.release(Answer.CONFIRMED, None, 0.01)  # admits the task...
    task.cancel()  # ...which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pace.in_flight == 0


async def test_the_window_slow_starts_and_follows_rate_times_round_trip() -> None:
    """The window starts small, grows one per success, and with a known rate settles at
    about rate x round trip x headroom: more requests in flight for a far account."""
    near, far = _pace(rate_limit=500.0), _pace(rate_limit=500.0)
    assert near.window == INITIAL_WINDOW
    for _ in range(1000):
        near.in_flight += 1  # as if admitted (the bucket is not the point here)
        near.release(Answer.CONFIRMED, None, 0.005)
        far.in_flight += 1
        far.release(Answer.CONFIRMED, None, 0.25)
    assert near.window <= 10  # 500/s x 5 ms = 2.5 in flight needed
    assert 150 <= far.window <= 200  # 500/s x 250 ms = 125 in flight needed


async def test_without_a_rate_the_window_grows_to_max_concurrency() -> None:
    """Unlimited accounts are bounded by max_concurrency alone once warmed up."""
    pace = _pace(max_concurrency=300)
    for _ in range(400):
        pace.in_flight += 1
        pace.release(Answer.CONFIRMED, None, 0.25)
    assert pace.window == 300


async def test_repeated_auth_failures_fail_fast_until_the_cool_down_ends() -> None:
    """After AUTH_FAILURES_TO_STOP 401s in a row, requests are refused with
    AuthCooldownError (queued ones too) until the cool-down passes; then one may try."""
    clock = Clock()
    pace = AccountPace(
        "acme",
        rate_limit=None,
        adaptive=True,
        max_concurrency=16,
        max_retry_after=60.0,
        auth_cooldown=30.0,
        clock=clock,
    )
    pace.bind(asyncio.get_running_loop())
    for _ in range(AUTH_FAILURES_TO_STOP):
        clock.now += 1.0  # a new account starts slowly: a token a half second
        assert await pace.acquire(None)
        pace.release(Answer.REFUSED, None, 0.01)
    with pytest.raises(AuthCooldownError) as caught:
        await pace.acquire(None)
    assert caught.value.account == "acme"
    assert caught.value.retry_in == pytest.approx(30.0)
    assert "acme" in str(caught.value) and "not sent" in str(caught.value)
    refused: list[BaseException | None] = []
    pace.enqueue(refused.append)  # a push's queued request is refused the same way
    assert isinstance(refused[0], AuthCooldownError)
    clock.now += 31
    assert await pace.acquire(None)  # cooled down: one may try again
    pace.release(Answer.CONFIRMED, None, 0.01)
    assert not pace.auth_stopped
    assert pace.in_flight == 0


async def test_a_long_retry_after_pauses_every_request_of_the_account() -> None:
    """A 429 with Retry-After >= 5 s holds the whole account, not only its request."""
    clock = Clock()
    pace = AccountPace(
        "acme", rate_limit=None, adaptive=True, max_concurrency=16, max_retry_after=60.0,
        clock=clock,
    )  # fmt: skip
    pace.bind(asyncio.get_running_loop())
    assert pace.try_admit()
    pace.release(Answer.THROTTLED, 7.0, 0.01)
    assert not pace.try_admit()
    assert pace.bucket.wait_time() == pytest.approx(7.0)
    clock.now += 7.0
    assert pace.try_admit()
