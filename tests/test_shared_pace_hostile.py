"""The shared pace against hostile, garbled or clock-skewed state in a real Redis: a client
never waits longer than its own bounds on what Redis says, keeps asking Redis while it
waits, and the script treats times it could never have set, and non-numbers, as garbage."""

from __future__ import annotations

import logging
import time

import anyio
import pytest
import redis

from vtex_tracking import AuthCooldownError, RetryPolicy, TrackingStatus
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory
from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

#: The Redis key of account "acme" in the default environment, as the SDK names it.
KEY = "vtex-tracking:pace:acme.vtexcommercestable"
#: Far beyond any wait the SDK could set (about 31 million years from now, in seconds).
FAR = "1e15"
#: Seconds of quiet after which a client asks Redis before its next call: leased tokens lie
#: at most a lease ahead and are dropped a second after their moment (``TOKEN_EXPIRY``).
QUIET = 1.5
#: A step back of Redis' clock, in seconds.
STEP_BACK = 3600.0


async def _warm(client: object, status: TrackingStatus, calls: int = 5) -> None:
    """Send a few updates, so the account's hash exists and the client knows its rate."""
    for i in range(calls):
        await client.update_tracking_status(f"warm-{i}", "NF-1", status)  # type: ignore[attr-defined]


async def _timed(client: object, order: str, status: TrackingStatus) -> float:
    """Seconds one update took (bounded: at most 12 s)."""
    started = time.monotonic()
    with anyio.fail_after(12):
        await client.update_tracking_status(order, "NF-1", status)  # type: ignore[attr-defined]
    return time.monotonic() - started


def _redis_now(direct: redis.Redis) -> float:
    """Redis' TIME, in seconds."""
    sec, usec = direct.time()
    return float(sec + usec / 1_000_000)


def _step_back_redis_clock(direct: redis.Redis, seconds: float) -> None:
    """Make the account's hash what the script sees after Redis' clock stepped back
    ``seconds``: every stored time (a value within a day of Redis' TIME) ``seconds`` later."""
    now = _redis_now(direct)
    for field, value in direct.hgetall(KEY).items():
        try:
            number = float(value)
        except ValueError:
            continue
        if abs(number - now) < 86_400:
            direct.hset(KEY, field, repr(number + seconds))


async def test_a_hostile_pause_holds_a_client_no_longer_than_its_max_retry_after(
    direct: redis.Redis,
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """A pause written to Redis 1e15 s ahead holds a client's call at most its own
    max_retry_after (2 s here), then the call is sent."""
    async with FakeOMS() as oms:
        retry = RetryPolicy(
            max_attempts=4, initial_backoff=0.01, max_backoff=0.1, max_retry_after=2.0
        )
        client = make_client(oms, shared_pace=redis_server.url, retry=retry)
        await _warm(client, status)
        direct.hset(KEY, "pu", FAR)
        await anyio.sleep(QUIET)  # the client asks Redis before its next call
        took = await _timed(client, "held", status)
        sent = [r for r in oms.requests if r.order_id == "held"]
    assert len(sent) == 1 and sent[0].status == 200
    assert took < 4.0, f"held {took:.1f} s by a pause its max_retry_after bounds to 2 s"


async def test_a_waiting_client_asks_redis_again_and_goes_on_once_the_pause_is_gone(
    direct: redis.Redis,
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """A client held by a hostile pause (bounded to its max_retry_after, 60 s) asks Redis
    again within a few seconds: deleting the account's key lets its call go at once."""
    async with FakeOMS() as oms:
        client = make_client(oms, shared_pace=redis_server.url)
        await _warm(client, status)
        direct.hset(KEY, "pu", FAR)
        await anyio.sleep(QUIET)
        took: list[float] = []

        async def held() -> None:
            took.append(await _timed(client, "held", status))

        async with anyio.create_task_group() as tg:
            tg.start_soon(held)
            await anyio.sleep(1.0)
            assert not [r for r in oms.requests if r.order_id == "held"], "the pause was ignored"
            direct.delete(KEY)
            deleted = time.monotonic()
        after_delete = time.monotonic() - deleted
    assert took and after_delete < 4.0, f"went {after_delete:.1f} s after the key was deleted"


async def test_a_hostile_schedule_does_not_hold_the_account(
    direct: redis.Redis,
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """A token schedule (tat) written 1e15 s ahead is forgiven: the client's next calls go
    within a few seconds, and the pace stays shared."""
    async with FakeOMS() as oms:
        client = make_client(oms, shared_pace=redis_server.url)
        await _warm(client, status)
        direct.hset(KEY, "tat", FAR)
        await anyio.sleep(QUIET)
        took = [await _timed(client, f"next-{i}", status) for i in range(5)]
        state = client.metrics()["acme"].shared_pace
    assert sum(took) < 4.0, f"5 calls took {sum(took):.1f} s after a hostile schedule"
    assert state == "shared"


async def test_a_hostile_auth_stop_lasts_no_longer_than_the_clients_auth_cooldown(
    direct: redis.Redis,
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """An auth stop written 1e15 s ahead (with its count, so no earlier success ends it)
    fails a client's calls fast for at most its own auth_cooldown (2 s here); after that
    its calls are sent again."""
    async with FakeOMS() as oms:
        client = make_client(oms, shared_pace=redis_server.url, auth_cooldown=2.0)
        await _warm(client, status)
        direct.hset(KEY, mapping={"authu": FAR, "authn": "1"})
        await anyio.sleep(QUIET)
        with anyio.fail_after(5), pytest.raises(AuthCooldownError) as caught:
            await client.update_tracking_status("stopped", "NF-1", status)
        assert caught.value.retry_in <= 2.0
        await anyio.sleep(caught.value.retry_in + 0.1)
        took = await _timed(client, "after", status)
        sent = [r for r in oms.requests if r.order_id == "after"]
    assert not [r for r in oms.requests if r.order_id == "stopped"]
    assert len(sent) == 1 and sent[0].status == 200
    assert took < 3.0, f"the call after the bounded stop took {took:.1f} s"


@pytest.mark.parametrize("garbage", ["garbage", "nan", "inf", "-inf", "1e400", ""])
async def test_garbage_in_every_field_is_treated_as_absent(
    garbage: str,
    direct: redis.Redis,
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every field of the account's hash overwritten with a non-number: the script still
    answers (no error, no fallback to the local pace, no warning) and calls go on."""
    caplog.set_level(logging.WARNING, logger="vtex_tracking")
    async with FakeOMS() as oms:
        client = make_client(oms, shared_pace=redis_server.url)
        await _warm(client, status)
        fields = direct.hkeys(KEY)
        direct.hset(KEY, mapping=dict.fromkeys(fields, garbage))
        await anyio.sleep(QUIET)
        took = [await _timed(client, f"next-{i}", status) for i in range(5)]
        state = client.metrics()["acme"].shared_pace
        stored = direct.hgetall(KEY)
    assert state == "shared"
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(took) < 4.0, f"5 calls took {sum(took):.1f} s"
    assert garbage not in stored.values(), stored


async def test_a_step_back_of_redis_clock_keeps_the_accounts_pace(
    direct: redis.Redis,
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """Redis' clock stepped back an hour: the account's schedule and learned rate are kept
    (calls go on at once, not an hour later, and the rate is not set back).

    Redis' TIME cannot be set from a test, but the script only ever compares the times it
    stored with TIME: a step back of D seconds looks, to the script, exactly like every
    stored time having moved D seconds ahead, which is what the test writes."""
    async with FakeOMS() as oms:
        client = make_client(oms, shared_pace=redis_server.url)
        await _warm(client, status, calls=20)
        before = client.metrics()["acme"].rate
        _step_back_redis_clock(direct, STEP_BACK)
        await anyio.sleep(QUIET)
        took = [await _timed(client, "next-0", status)]
        after = client.metrics()["acme"].rate  # as Redis answered the first call after
        took += [await _timed(client, f"next-{i}", status) for i in range(1, 20)]
    assert sum(took) < 4.0, f"20 calls took {sum(took):.1f} s after the step back"
    # Not set back: without the fix the fast start begins again from 20/s.
    assert before is not None and after is not None and after >= before * 0.9, (before, after)


async def test_a_step_back_of_redis_clock_does_not_lengthen_a_pause(
    direct: redis.Redis,
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """A 5 s pause (Retry-After 5 seen by one client) still holds another client after Redis'
    clock stepped back an hour (emulated as in the test above), and for no longer than its
    length after the client asks (the 1.5 s since the last call cannot be told from the
    step), not an hour."""
    async with FakeOMS() as oms:
        first = make_client(oms, shared_pace=redis_server.url, retry=RetryPolicy(max_attempts=1))
        second = make_client(oms, shared_pace=redis_server.url)
        await _warm(second, status)
        oms.fail_next(1, 429, headers={"Retry-After": "5"})
        with pytest.raises(Exception, match="429"):
            await first.update_tracking_status("o-1", "NF-1", status)
        paused = time.monotonic()
        for _ in range(500):  # the client reports the pause in its next call
            if float(direct.hget(KEY, "pu") or 0) > _redis_now(direct):
                break
            await anyio.sleep(0.01)
        else:
            raise AssertionError("the pause never reached Redis")
        _step_back_redis_clock(direct, STEP_BACK)
        await anyio.sleep(QUIET)
        await _timed(second, "held", status)
        went = time.monotonic() - paused
    # At most the pause's 5 s after the call at QUIET, with room for round trips.
    assert 4.5 <= went < QUIET + 5.0 + 1.0, f"a 5 s pause held the call {went:.1f} s"
