"""A fleet sharing one account's pace (scale out): the first contact, the measure that
follows it, and leases that keep every process's tokens on one schedule."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import anyio
import pytest

from vtex_tracking import TrackingStatus, TrackingUpdate
from vtex_tracking._throttle import (
    START_DOUBLING,
    AdaptiveRate,
    TokenBucket,
    cubic_k,
    measured_rate,
)
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory, Clock
from .redis_server import RedisServer
from .test_hub_pace import _script_calls

pytestmark = pytest.mark.anyio


def _climb_to_first_throttle(clock: Clock) -> tuple[TokenBucket, AdaptiveRate, float]:
    """A new account's start, doubling on successes until its first 429; the rate then."""
    bucket = TokenBucket(None, clock=clock)
    adaptive = AdaptiveRate(bucket, clock=clock, rtt=lambda: 0.05)
    adaptive.start()
    while bucket.rate is not None and bucket.rate < 80:
        clock.now += 1 / bucket.rate
        adaptive.on_success()
    entry = bucket.rate
    assert entry is not None
    adaptive.on_throttle()
    assert adaptive.state == "measure"
    return bucket, adaptive, entry


@pytest.mark.real_start
def test_a_measure_below_the_limit_climbs_slowly_instead_of_doubling_again() -> None:
    """The start's first 429 came at `entry`; the measure below it met no other: the limit
    lies between. The rate climbs from there towards the middle of the two, slowly near it,
    and never doubles past the rate that was refused (before, the start resumed and doubled
    into the same wall every two seconds)."""
    clock = Clock()
    bucket, adaptive, entry = _climb_to_first_throttle(clock)
    held = bucket.rate
    assert held is not None and held < entry
    while adaptive.state == "measure":  # every request goes through
        clock.now += 1 / held
        adaptive.on_success()
    assert adaptive.state == "cubic"
    middle = math.sqrt(held * entry)
    rates = []
    for _ in range(2000):
        rate = bucket.rate
        assert rate is not None
        clock.now += 1 / rate
        adaptive.on_success()
        rates.append(bucket.rate)
        if clock.now > 3 * cubic_k(middle, 0.4):
            break
    assert rates[0] == pytest.approx(held, rel=0.25)
    # Half a doubling time later it is still well under where the start was refused.
    early = [r for r in rates[: int(held * START_DOUBLING / 2)]]
    assert max(early) < entry * 0.85, (max(early), entry)
    assert max(rates) < entry, (max(rates), entry)


@pytest.mark.real_start
def test_a_measure_the_server_refused_early_measures_the_server() -> None:
    """Many 429s at the start of a measure and none later (the refused requests wait out
    their Retry-After, so the fleet's demand fell): the server refused us, and what got
    through is its rate, not our own pace."""
    clock = Clock()
    bucket, adaptive, entry = _climb_to_first_throttle(clock)
    clock.now += 0.2  # past the echoes of the start's rate
    for _ in range(6):  # refused, early
        clock.now += 0.01
        adaptive.on_throttle()
    server = 30.0
    while adaptive.state == "measure":
        clock.now += 1 / server
        adaptive.on_success()
    assert adaptive.state == "cubic"
    assert bucket.rate is not None and bucket.rate < server
    assert bucket.rate < entry * 0.6


def test_a_measure_whose_demand_fell_takes_the_rate_while_it_was_refused() -> None:
    """14 successes in the first second with 429s until then, 10 more in the next second
    (the refused requests wait out their Retry-After): the server's rate is 14/s, not the
    12/s the whole measure averages; a refusal of a few milliseconds measures nothing."""
    assert measured_rate(24, 2.0, 14, 1.0) == pytest.approx(14.0)
    assert measured_rate(24, 2.0, 2, 0.05) == pytest.approx(12.0)
    assert measured_rate(30, 2.0, 10, 1.0) == pytest.approx(15.0)  # the whole is higher
    # Bounded to 1.25 x the whole: early answers of the faster rate before it still count.
    assert measured_rate(24, 2.0, 20, 1.0) == pytest.approx(15.0)


def _updates(n: int, status: TrackingStatus, tag: str) -> list[TrackingUpdate]:
    return [TrackingUpdate(f"{tag}-{i}", f"NF-{i}", status) for i in range(n)]


@pytest.mark.real_start
async def test_four_processes_sharing_a_new_store_find_its_limit_without_hammering_it(
    redis_server: RedisServer,
    direct: Any,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """Four clients (as four processes) push their share of one new store (40 req/s, burst
    10, 30 ms away) through one Redis: few 429s, the store busy at about its limit once
    found, and fewer Redis calls than requests. Before, each process leased a second of
    tokens whatever it had to send (expired unused: the store idled), rises of the rate
    moved the schedule but not the tokens leased (two processes' tokens on one moment: a
    burst at twice the limit), and a measure below the limit went back to doubling."""
    limit, per_client = 40.0, 110
    async with (
        FakeOMS(rate_limit=limit, burst=10, retry_after="1", latency=0.03) as oms,
        make_client(oms, shared_pace=redis_server.url) as a,
        make_client(oms, shared_pace=redis_server.url) as b,
        make_client(oms, shared_pace=redis_server.url) as c,
        make_client(oms, shared_pace=redis_server.url) as d,
    ):
        direct.config_resetstat()
        with anyio.fail_after(90):
            summaries = await asyncio.gather(
                *(client.push_all(_updates(per_client, status, tag))
                  for client, tag in ((a, "a"), (b, "b"), (c, "c"), (d, "d")))
            )  # fmt: skip
        calls = _script_calls(direct)
    assert [s.succeeded for s in summaries] == [per_client] * 4
    statuses = Counter(r.status for r in oms.requests)
    throttled = statuses[429] / len(oms.requests)
    assert throttled < 0.08, statuses
    start = oms.requests[0].received_at
    end = max(r.received_at for r in oms.requests)
    ideal = 4 * per_client / limit
    assert end - start < 1.6 * ideal, (end - start, ideal)
    assert calls < len(oms.requests), (calls, len(oms.requests))


@pytest.mark.real_start
def test_idle_time_does_not_move_one_process_along_cubics_curve() -> None:
    """Two pushes a minute apart: the second one's first answer finds the rate where the first
    left it, not where a minute of CUBIC's clock would put it (several times the limit)."""
    clock = Clock()
    bucket = TokenBucket(20.0, clock=clock)
    adaptive = AdaptiveRate(bucket, clock=clock, rtt=lambda: 0.05)
    adaptive.resume(20.0)
    for _ in range(40):
        clock.now += 0.05
        adaptive.on_success()
    before = bucket.rate
    assert before is not None and adaptive.state == "cubic"
    clock.now += 60.0
    adaptive.on_success()
    assert bucket.rate is not None and bucket.rate < before * 1.05, (before, bucket.rate)


async def test_idle_time_does_not_move_a_shared_account_along_cubics_curve(
    redis_server: RedisServer,
    direct: Any,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """An account's shared state as a run left it (CUBIC just past a measure of 20/s), its
    last call 90 s ago: the next run's first answer keeps the rate near 20/s (the idle time
    took it to ten times that before)."""
    key = "vtex-tracking:pace:acme.vtexcommercestable"
    async with FakeOMS() as oms, make_client(oms, shared_pace=redis_server.url) as client:
        await client.update_tracking_status("warm-up", "NF-1", status)  # the hash exists
        seconds, micros = direct.time()
        now = seconds + micros / 1e6
        direct.hset(key, mapping={
            "st": "c", "wmax": "20", "rate": "19", "since": str(now - 100),
            "at": str(now - 90), "gen": "5", "tat": str(now - 90),
        })  # fmt: skip
        await client.update_tracking_status("o-1", "NF-1", status)
        await client.update_tracking_status("o-2", "NF-1", status)
    rate = float(direct.hget(key, "rate"))
    assert rate < 22, rate
