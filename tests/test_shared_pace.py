"""The shared pace: clients pointed at one real Redis share each account's rate, pause and
auth stop; when Redis goes away they keep sending on their own pace and rejoin."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
import pytest
import redis

from vtex_tracking import (
    AuthCooldownError,
    PaceTimeoutError,
    RetryPolicy,
    SharedPace,
    TrackingStatus,
    TrackingUpdate,
)
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN, ClientFactory
from .redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms, for at most 30 s."""
    for _ in range(3000):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def _burst(client: object, calls: int, status: TrackingStatus, tag: str) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(calls):
            tg.start_soon(client.update_tracking_status, f"{tag}-{i}", "NF-1", status)  # type: ignore[attr-defined]


async def test_two_clients_share_one_accounts_rate(
    redis_server: RedisServer, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """Two clients (two processes' worth) each set to 18 req/s (not adaptive) against an
    account that takes 20 req/s: with the shared pace together they stay under it (no 429);
    each on its own pace, in the same test, they overshoot it."""
    async with FakeOMS(rate_limit=20, burst=4, retry_after="0") as oms:
        fixed = {"rate_limit": 18, "adaptive": False}
        shared = [make_client(oms, **fixed, shared_pace=redis_server.url) for _ in range(2)]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n, client in enumerate(shared):
                    tg.start_soon(_burst, client, 30, status, f"shared{n}")
        shared_429 = sum(1 for r in oms.requests if r.status == 429)
        confirmed = sum(1 for r in oms.requests if r.status == 200)

        oms.requests.clear()
        alone = [make_client(oms, **fixed) for _ in range(2)]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n, client in enumerate(alone):
                    tg.start_soon(_burst, client, 30, status, f"alone{n}")
        alone_429 = sum(1 for r in oms.requests if r.status == 429)
    assert confirmed == 60
    assert shared_429 <= 1, f"{shared_429} answers 429 with a shared pace"
    assert alone_429 > shared_429 + 3, (alone_429, shared_429)


@pytest.mark.real_start
async def test_the_learned_rate_lives_in_redis_for_every_client(
    redis_server: RedisServer, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A rate learned from one client's 429s is what a new client starts from: its metrics
    show the shared rate before it sent anything."""
    async with FakeOMS(rate_limit=25, burst=5, retry_after="0") as oms:
        patient = RetryPolicy(max_attempts=10, initial_backoff=0.01, max_backoff=0.1)
        first = make_client(oms, shared_pace=redis_server.url, retry=patient)
        updates = [TrackingUpdate(f"o-{i}", "NF-1", status) for i in range(60)]
        with anyio.fail_after(60):
            summary = await first.push_all(updates)
        learned = first.metrics()["acme"]
        assert summary.succeeded == 60 and learned.rate is not None
        second = make_client(oms, shared_pace=redis_server.url)
        await second.update_tracking_status("late", "NF-1", status)
        joined = second.metrics()["acme"]
    assert learned.shared_pace == joined.shared_pace == "shared"
    assert joined.rate is not None and abs(joined.rate - learned.rate) < learned.rate * 0.5


async def test_an_auth_stop_reaches_every_client(
    redis_server: RedisServer, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """Three refusals seen by one client (a revoked key) stop the account for another client
    too: after a second of quiet it asks Redis before sending, fails fast with
    AuthCooldownError and sends nothing."""
    async with FakeOMS() as oms:
        first = make_client(oms, shared_pace=redis_server.url)
        second = make_client(oms, shared_pace=redis_server.url)
        await second.update_tracking_status("warm", "NF-1", status)  # joins the shared pace
        oms.app_token = "rotated-by-the-store"  # every request is refused from now on
        for i in range(3):
            with pytest.raises(Exception, match="401"):
                await first.update_tracking_status(f"o-{i}", "NF-1", status)
        await anyio.sleep(1.1)  # what the second client knows is now too old to send on
        with pytest.raises(AuthCooldownError) as caught:
            await second.update_tracking_status("blocked", "NF-1", status)
        assert not [r for r in oms.requests if r.order_id == "blocked"]
    assert caught.value.account == "acme" and caught.value.retry_in > 0


async def test_a_long_retry_after_pauses_the_account_for_every_client(
    redis_server: RedisServer, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A 429 asking for 8 s, seen by one client, holds another client's call: it gives up
    unsent (PaceTimeoutError) instead of knocking on VTEX."""
    async with FakeOMS() as oms:
        once = RetryPolicy(max_attempts=1)
        first = make_client(oms, shared_pace=redis_server.url, retry=once)
        second = make_client(oms, shared_pace=redis_server.url, pace_timeout=1.0)
        await second.update_tracking_status("warm", "NF-1", status)
        oms.fail_next(1, 429, headers={"Retry-After": "8"})
        with pytest.raises(Exception, match="429"):
            await first.update_tracking_status("o-1", "NF-1", status)
        await anyio.sleep(1.1)  # what the second client knows is now too old to send on
        with pytest.raises(PaceTimeoutError):
            await second.update_tracking_status("held", "NF-1", status)
        assert not [r for r in oms.requests if r.order_id == "held"]


async def test_a_push_goes_on_when_redis_stops_and_rejoins_when_it_is_back(
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stopped mid-push: every update is still confirmed, one warning says so, the
    account's metrics say "local"; Redis started again: the pace is shared again."""
    caplog.set_level(logging.WARNING, logger="vtex_tracking")
    async with FakeOMS(latency=0.01) as oms:
        # Eight in flight at 10 ms: about two seconds of pushing, long enough for an outage.
        client = make_client(oms, shared_pace=redis_server.url, max_concurrency=8)
        updates = [TrackingUpdate(f"o-{i}", "NF-1", status) for i in range(1500)]
        seen: list[str | None] = []

        async def outage() -> None:
            await _until(lambda: len(oms.requests) >= 100)
            await anyio.to_thread.run_sync(redis_server.stop)
            await _until(lambda: client.metrics()["acme"].shared_pace == "local")
            at_outage = len(oms.requests)
            await _until(lambda: len(oms.requests) >= at_outage + 200)  # sending goes on
            seen.append(client.metrics()["acme"].shared_pace)
            await anyio.to_thread.run_sync(redis_server.start)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(outage)
                summary = await client.push_all(updates)
        await anyio.sleep(1.5)  # the next check of Redis comes within a second
        await client.update_tracking_status("after", "NF-1", status)
        await client.update_tracking_status("after-2", "NF-1", status)
        back = client.metrics()["acme"].shared_pace
    assert summary.succeeded == 1500 and summary.failed == 0
    assert seen == ["local"]
    assert back == "shared"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("did not answer" in w for w in warnings) == 1, warnings
    assert sum("answers again" in w for w in warnings) == 1, warnings


async def test_an_unreachable_redis_never_fails_an_update(
    make_client: ClientFactory, status: TrackingStatus, caplog: pytest.LogCaptureFixture
) -> None:
    """With nothing listening at the Redis URL, calls and a push are all confirmed on the
    process's own pace, after one warning."""
    caplog.set_level(logging.WARNING, logger="vtex_tracking")
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with FakeOMS() as oms:
        client = make_client(oms, shared_pace=url)
        await client.update_tracking_status("o-1", "NF-1", status)
        summary = await client.push_all(
            [TrackingUpdate(f"p-{i}", "NF-1", status) for i in range(50)]
        )
        state = client.metrics()["acme"].shared_pace
    assert summary.succeeded == 50
    assert state == "local"
    assert sum("did not answer" in r.getMessage() for r in caplog.records) == 1


async def test_keys_are_namespaced_expire_and_hold_no_credentials(
    redis_server: RedisServer, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """One hash per account (name and environment) under the prefix, with a TTL, holding
    numbers and states only: neither the app key nor the token is anywhere in Redis."""
    pace = SharedPace(url=redis_server.url, prefix="test-prefix", key_ttl_ms=60_000)
    async with FakeOMS(rate_limit=30, burst=3, retry_after="0") as oms:
        client = make_client(oms, shared_pace=pace)
        with anyio.fail_after(30):
            await client.push_all([TrackingUpdate(f"o-{i}", "NF-1", status) for i in range(40)])
    direct = redis.Redis.from_url(redis_server.url)
    try:
        keys = [k.decode() for k in direct.keys("*")]
        assert keys == ["test-prefix:acme.vtexcommercestable"]
        ttl = direct.pttl(keys[0])
        assert 0 < ttl <= 60_000
        dump = str(direct.hgetall(keys[0]))
    finally:
        direct.close()
    assert APP_KEY not in dump and APP_TOKEN not in dump
    assert "rate" in dump


def test_a_shared_pace_needs_a_url_or_a_client_factory() -> None:
    """Misconfiguration fails at construction with a message that names the setting and
    never echoes a URL that may hold a password."""
    with pytest.raises(Exception, match="shared_pace"):
        SharedPace()
    with pytest.raises(Exception, match="shared_pace") as caught:
        SharedPace(url="http://user:s3cret@host")
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(SharedPace(url="redis://user:s3cret@host:6379/0"))
    assert SharedPace(url="redis://user:s3cret@host:6379/0").where == "host:6379"


def test_the_sync_client_uses_the_shared_pace(
    redis_server: RedisServer, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """TrackingClient(shared_pace=...) paces through Redis from its portal thread."""
    with FakeOMS() as oms:
        client = make_client.sync(oms, shared_pace=redis_server.url)
        client.update_tracking_status("o-1", "NF-1", status)
        assert client.metrics()["acme"].shared_pace == "shared"
    started = time.monotonic()
    direct = redis.Redis.from_url(redis_server.url)
    try:
        assert direct.keys("vtex-tracking:pace:*")
    finally:
        direct.close()
    assert time.monotonic() - started < 5


async def test_a_hung_redis_never_holds_a_call_for_long(
    redis_server: RedisServer, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """Redis frozen (it accepts nothing, closes nothing): calls go on within the Redis
    timeout on the process's own pace; thawed, the pace is shared again."""
    async with FakeOMS() as oms:
        client = make_client(oms, shared_pace=SharedPace(url=redis_server.url, timeout=0.2))
        await client.update_tracking_status("before", "NF-1", status)
        redis_server.freeze()
        try:
            await anyio.sleep(1.1)  # what the client knows is too old: it asks Redis first
            started = time.monotonic()
            with anyio.fail_after(5):
                for i in range(20):
                    await client.update_tracking_status(f"frozen-{i}", "NF-1", status)
            took = time.monotonic() - started
            frozen_state = client.metrics()["acme"].shared_pace
        finally:
            redis_server.thaw()
        for i in range(30):  # it checks Redis again at most once a second while sending
            await client.update_tracking_status(f"after-{i}", "NF-1", status)
            if client.metrics()["acme"].shared_pace == "shared":
                break
            await anyio.sleep(0.1)
        thawed_state = client.metrics()["acme"].shared_pace
    assert frozen_state == "local" and thawed_state == "shared"
    assert took < 3.0, f"20 calls took {took:.1f} s with Redis frozen"
