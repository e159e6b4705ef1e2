"""A shared account whose Redis went away (stopped, or restarted empty) while its slow start
was still climbing: the rate heard last is no measured limit, so the processes alone, and the
account once Redis is back, climb on from it. Resumed as CUBIC towards it, the plateau held
a 50/s account at the 16/s its start had reached for the rest of an 8 s push."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from vtex_tracking import TrackingStatus
from vtex_tracking._throttle import AdaptiveRate, TokenBucket
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory, Clock
from .redis_server import RedisServer
from .test_shared_auth_generations import _SCRIPT, _call

pytestmark = pytest.mark.anyio

KEY = "vtex-tracking:pace:acme.vtexcommercestable"


def _seed(direct: Any, state: dict[str, str]) -> None:
    """The account's hash as a run left it a moment ago (on Redis' clock)."""
    seconds, micros = direct.time()
    now = seconds + micros / 1e6
    direct.hset(KEY, mapping={**state, "since": str(now - 0.5), "at": str(now), "gen": "1"})


async def _calls(client: Any, status: TrackingStatus, tag: str, count: int) -> None:
    for i in range(count):
        await client.update_tracking_status(f"{tag}-{i}", "NF-1", status)


@pytest.mark.real_start
@pytest.mark.parametrize(
    ("state", "resumed"),
    [
        ({"st": "s", "rate": "20"}, "s"),  # a slow start: no limit measured yet
        ({"st": "c", "rate": "19", "wmax": "20"}, "c"),  # a measured limit of 20/s
    ],
)
async def test_an_account_redis_lost_resumes_as_it_was_learned(
    redis_server: RedisServer,
    direct: Any,
    make_client: ClientFactory,
    status: TrackingStatus,
    state: dict[str, str],
    resumed: str,
) -> None:
    """Redis lost the account's hash (restarted empty, or the key expired) while a process
    knew its rate: a start goes on starting from just below that rate; a measured rate
    goes on with CUBIC towards it, as before."""
    async with FakeOMS() as oms, make_client(oms, shared_pace=redis_server.url) as client:
        _seed(direct, state)
        await _calls(client, status, "before", 5)  # the process hears of the account's rate
        direct.delete(KEY)
        with anyio.fail_after(30):
            while direct.hget(KEY, "st") is None:  # the next lease makes the hash again
                await _calls(client, status, "after", 1)
        stored = direct.hgetall(KEY)
    assert stored["st"] == resumed, stored
    assert 17 <= float(stored["rate"]) <= 30, stored


def test_a_resumed_start_holds_still_until_every_process_is_back(direct: Any) -> None:
    """The first process back after Redis lost a starting account makes it again at 0.9 x
    the rate it knew; until the others (each asks within a second) are back, their
    throttles are not counted and their successes do not raise the rate; then the start
    climbs on. Before, their successes took it to twice the limit, or their throttles
    measured the account at the first process' crawl."""
    script = direct.register_script(_SCRIPT)
    resumed = _call(script, known_rate=20, starting=True)
    assert resumed[3] == 18_000 and resumed[11] == 1  # rate_milli, starting
    held = _call(script, ok=50, throttled=5, known_rate=20, starting=True)
    assert direct.hget(KEY, "st") == "s" and held[3] == 18_000, held
    time.sleep(1.1)  # the reconnect interval (1 s) and a round trip
    climbing = _call(script, ok=10, known_rate=18, starting=True)
    assert climbing[3] > 18_000, climbing
    measured = _call(script, ok=0, known_rate=20, starting=False)
    assert measured[11] == 1  # still starting: the caller's flag only matters to a new hash


@pytest.mark.real_start
async def test_a_process_alone_while_the_start_climbs_climbs_on(
    redis_server: RedisServer,
    direct: Any,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """Redis stopped while the account's slow start was at 20/s: the process goes on alone
    from its share (20/s, it is the only one) and keeps climbing on its successes (as CUBIC
    towards 20/s it stayed there)."""
    async with FakeOMS() as oms, make_client(oms, shared_pace=redis_server.url) as client:
        _seed(direct, {"st": "s", "rate": "20"})
        await _calls(client, status, "before", 5)
        await anyio.to_thread.run_sync(redis_server.stop)
        with anyio.fail_after(30):
            while client.metrics()["acme"].shared_pace != "local":
                await _calls(client, status, "outage", 1)
            fell_back_at = client.metrics()["acme"].rate
            await _calls(client, status, "alone", 40)
        alone = client.metrics()["acme"].rate
    assert fell_back_at is not None and 15 <= fell_back_at <= 30, fell_back_at
    # Each success of a start adds ln 2 / 0.5 s: 40 of them take 20/s past 60/s.
    assert alone is not None and alone > 2 * fell_back_at, (fell_back_at, alone)


@pytest.mark.real_start
@pytest.mark.parametrize(("starting", "state"), [(True, "start"), (False, "cubic")])
def test_restart_from_a_share(starting: bool, state: str) -> None:
    """A process' own pace goes on from its share: climbing if the shared start was, or as
    CUBIC towards it if the shared rate was measured."""
    clock = Clock()
    bucket = TokenBucket(None, clock=clock)
    adaptive = AdaptiveRate(bucket, clock=clock)
    adaptive.restart_from(20.0, starting=starting)
    assert adaptive.state == state
    for _ in range(20):
        clock.now += 1 / (bucket.rate or 1)
        adaptive.on_success()
    assert bucket.rate is not None
    if starting:
        assert bucket.rate > 40, bucket.rate
    else:
        assert 19 <= bucket.rate <= 22, bucket.rate
