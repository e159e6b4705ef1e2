"""A hub's pace: new accounts start near the smallest limits and climb on their successes, a
small account is measured on enough answers and probed rarely, learned limits are kept (a
file for one process, Redis for many) bound to their target and taken lower when old, and a
shared pace leases by time (few Redis calls) and waits for a late Redis instead of sending
alone."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from vtex_tracking import TrackingStatus, TrackingUpdate
from vtex_tracking._answer import Answer, classify
from vtex_tracking._constants import LIMIT_FRESH, LIMIT_HALF_LIFE
from vtex_tracking._limits_file import LimitsFile
from vtex_tracking._throttle import (
    BETA,
    MAX_QUIET,
    MEASURE_ANSWERS,
    QUIET_ANSWERS,
    SCALE,
    START_DOUBLING,
    START_RATE,
    AdaptiveRate,
    TokenBucket,
    cubic_rate,
)
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory, Clock
from .redis_server import RedisServer

pytestmark = pytest.mark.anyio


def _adaptive(clock: Clock) -> tuple[TokenBucket, AdaptiveRate]:
    bucket = TokenBucket(None, clock=clock)
    return bucket, AdaptiveRate(bucket, clock=clock, rtt=lambda: 0.15)


def _updates(n: int, status: TrackingStatus, tag: str = "o") -> list[TrackingUpdate]:
    return [TrackingUpdate(f"{tag}-{i}", "NF-1", status) for i in range(n)]


def _statuses(oms: FakeOMS) -> Counter[int]:
    return Counter(r.status for r in oms.requests)


# -- one meaning per answer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "answer"),
    [
        (200, None, Answer.CONFIRMED),
        (204, None, Answer.CONFIRMED),
        (429, None, Answer.THROTTLED),
        (429, 1.0, Answer.THROTTLED),
        (503, 1.0, Answer.THROTTLED),
        (503, None, Answer.FAILED),
        (500, None, Answer.FAILED),
        (404, None, Answer.FAILED),
        (401, None, Answer.REFUSED),
        (403, None, Answer.REFUSED),
        (None, None, Answer.NO_ANSWER),
    ],
)
def test_each_answer_has_one_meaning(
    status: int | None, retry_after: float | None, answer: Answer
) -> None:
    """A bare 503 is a server error (retried, not a reason to slow down); a 503 with
    Retry-After is VTEX's circuit breaker asking for less, as a 429 is."""
    assert classify(status, retry_after) is answer


async def test_metrics_count_a_bare_503_as_an_error_not_a_throttle(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """metrics() and the pace agree: a 503 without Retry-After is an error, not throttled."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 503)
        await client.update_tracking_status("o-1", "NF-1", status)
        metrics = client.metrics()["acme"]
    assert metrics.throttled == 0
    assert metrics.errors == 1
    assert metrics.confirmed == 1


# -- the start -----------------------------------------------------------------------------------


@pytest.mark.real_start
def test_a_new_account_starts_at_the_smallest_limits_and_climbs_only_on_successes() -> None:
    """start(): START_RATE; time alone raises nothing; successes double the rate in about
    START_DOUBLING seconds' worth of them (rate x START_DOUBLING successes)."""
    clock = Clock()
    bucket, adaptive = _adaptive(clock)
    adaptive.start()
    assert adaptive.state == "start"
    assert bucket.rate == START_RATE
    clock.now += 60.0
    assert bucket.rate == START_RATE  # no answers, no climb
    for _ in range(round(START_RATE * START_DOUBLING / math.log(2) * math.log(2))):
        adaptive.on_success()
    assert bucket.rate is not None and 1.5 * START_RATE < bucket.rate < 2.5 * START_RATE


def test_the_first_throttle_of_the_start_measures_below_it() -> None:
    """The first 429 of the start holds a lower rate and measures the server's own."""
    clock = Clock()
    bucket, adaptive = _adaptive(clock)
    adaptive.start()
    for _ in range(30):
        clock.now += 0.05
        adaptive.on_success()
    reached = bucket.rate
    assert reached is not None
    adaptive.on_throttle()
    assert adaptive.state == "measure"
    assert bucket.rate is not None and bucket.rate < reached


def test_a_measure_at_two_per_second_waits_for_enough_answers() -> None:
    """At 2 req/s a 0.3 s measure holds no answer at all; it lasts MEASURE_ANSWERS answers,
    and measures about 2/s, not the floor (0.5/s) a measure of none gave."""
    clock = Clock()
    bucket = TokenBucket(3.0, clock=clock)
    adaptive = AdaptiveRate(bucket, clock=clock, rtt=lambda: 0.15)
    adaptive.resume(3.0)
    clock.now += 100
    adaptive.on_throttle()
    assert adaptive.state == "measure"
    for i in range(MEASURE_ANSWERS):
        clock.now += 0.25
        adaptive.on_throttle()  # the server is saturated: throttles keep coming
        clock.now += 0.25
        adaptive.on_success()  # ...and it answers 2 a second
        if i < MEASURE_ANSWERS - 1:
            assert adaptive.state == "measure", i
    assert adaptive.state == "cubic"
    assert bucket.rate == pytest.approx(2.0 * BETA, rel=0.15)


def test_cubic_probes_a_small_account_rarely_and_a_large_one_as_before() -> None:
    """Past a measure of 2/s the rate stays under it for QUIET_ANSWERS / 2 seconds' worth of
    answers; at 300/s the curve is CUBIC's own (K from SCALE)."""
    k_small = min(QUIET_ANSWERS / 2.0, MAX_QUIET)
    assert cubic_rate(2.0, 0.0, SCALE) == pytest.approx(2.0 * BETA)
    assert cubic_rate(2.0, k_small * 0.99, SCALE) <= 2.0
    assert cubic_rate(2.0, 2 * k_small, SCALE) == pytest.approx(2.0 * (2 - BETA))
    k_large = (300 * (1 - BETA) / SCALE) ** (1 / 3)
    assert k_large > QUIET_ANSWERS / 300
    assert cubic_rate(300.0, k_large, SCALE) == pytest.approx(300.0)
    assert cubic_rate(300.0, k_large + 1, SCALE) == pytest.approx(300.0 + SCALE)


@pytest.mark.real_start
async def test_a_small_store_is_not_hammered_at_first_contact(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A new account limited to 3 req/s (burst 5, Retry-After 1, 50 ms away): everything is
    confirmed, with few 429s (a start at 20/s, or an unpaced window, met dozens)."""
    async with (
        FakeOMS(rate_limit=3, burst=5, retry_after="1", latency=0.05) as oms,
        make_client(oms) as client,
    ):
        with anyio.fail_after(60):
            summary = await client.push_all(_updates(30, status))
    statuses = _statuses(oms)
    assert summary.succeeded == 30
    assert statuses[429] <= 8, statuses


# -- learned limits kept on disk -----------------------------------------------------------------


@pytest.mark.real_start
async def test_a_limit_learned_is_kept_in_the_limits_file_and_used_next_run(
    make_client: ClientFactory, status: TrackingStatus, tmp_path: Path
) -> None:
    """A first client learns a store's limit (10/s) and writes it on close, under the URL its
    requests went to; the next client with the file starts just below it (not at 2/s) and
    meets almost no 429; a client of another URL starts from the slow start."""
    path = tmp_path / "limits.json"
    async with FakeOMS(rate_limit=10, burst=5, retry_after="1", latency=0.02) as oms:
        async with make_client(oms, limits_file=path) as first:
            with anyio.fail_after(60):
                assert (await first.push_all(_updates(120, status))).succeeded == 120
        kept = json.loads(path.read_text())["limits"]
        assert list(kept) == [oms.url]
        assert 6.0 <= kept[oms.url]["rate"] <= 12.0, kept
        oms.reset()
        await anyio.sleep(1.0)  # the server's bucket refills
        async with make_client(oms, limits_file=path) as second:
            pace = second._sender_for("acme").pace
            assert pace.rate is not None and pace.rate >= 0.9 * kept[oms.url]["rate"]
            with anyio.fail_after(60):
                assert (await second.push_all(_updates(60, status, "b"))).succeeded == 60
        assert _statuses(oms)[429] <= 3, _statuses(oms)
        async with FakeOMS() as elsewhere, make_client(elsewhere, limits_file=path) as other:
            assert other._sender_for("acme").pace.rate == START_RATE


def test_an_old_limit_is_taken_lower_and_a_stale_one_dropped(tmp_path: Path) -> None:
    """A day old: whole; a day and a half-life: half; past the keeping time: none."""
    path = tmp_path / "limits.json"
    now = [1_000_000_000.0]
    limits = LimitsFile(path, clock=lambda: now[0])
    limits.remember("https://acme.example", 20.0)
    limits.save()
    now[0] += LIMIT_FRESH
    assert LimitsFile(path, clock=lambda: now[0]).limit_for("https://acme.example") == 20.0
    now[0] += LIMIT_HALF_LIFE
    assert LimitsFile(path, clock=lambda: now[0]).limit_for(
        "https://acme.example"
    ) == pytest.approx(10.0)
    now[0] += 60 * 24 * 3600
    assert LimitsFile(path, clock=lambda: now[0]).limit_for("https://acme.example") is None


@pytest.mark.parametrize(
    "content",
    [
        b"not json at all",
        b'{"format": 99, "limits": {}}',
        b'{"format": 1, "limits": {"https://acme.example": {"rate": "fast", "at": 1}}}',
        b'{"format": 1, "limits": {"https://acme.example": {"rate": 5, "at": 9e99}}}',
        b'{"format": 1, "limits": {"https://acme.example": {"rate": -5, "at": 1}}}',
    ],
    ids=["garbage", "other-format", "not-a-number", "from-the-future", "negative"],
)
def test_a_damaged_limits_file_is_ignored_with_one_warning_and_replaced(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing fails: the entry (or file) is ignored, once said, and the next save writes a
    good file."""
    path = tmp_path / "limits.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="vtex_tracking"):
        limits = LimitsFile(path)
        assert limits.limit_for("https://acme.example") is None
    assert len([r for r in caplog.records if "limits file" in r.getMessage()]) == 1
    limits.remember("https://acme.example", 7.0)
    limits.save()
    assert LimitsFile(path).limit_for("https://acme.example") == pytest.approx(7.0)


def test_a_limits_file_that_cannot_be_written_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only place: the limits are not kept, and the log says so; nothing raises."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    limits = LimitsFile(blocker / "limits.json")
    limits.remember("https://acme.example", 7.0)
    with caplog.at_level(logging.WARNING, logger="vtex_tracking"):
        limits.save()
    assert any("could not write" in r.getMessage() for r in caplog.records)


# -- learned limits kept in Redis, leases, lag -----------------------------------------------------


def _limit_keys(direct: Any) -> list[str]:
    return sorted(str(k) for k in direct.keys("vtex-tracking:pace:*:limit:*"))


@pytest.mark.real_start
async def test_a_shared_limit_outlives_the_accounts_state_and_starts_the_next_run(
    redis_server: RedisServer,
    direct: Any,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """The limit measured through the shared pace is kept in its own key (30 days), bound
    to the URL the requests go to: with the account's state gone (it expires after 15 idle
    minutes), the next client starts just below the limit, while a client of the same
    account at another URL starts from the slow start."""
    async with FakeOMS(rate_limit=10, burst=5, retry_after="1", latency=0.02) as oms:
        async with make_client(oms, shared_pace=redis_server.url) as first:
            with anyio.fail_after(60):
                assert (await first.push_all(_updates(120, status))).succeeded == 120
        keys = _limit_keys(direct)
        assert len(keys) == 1
        rate, _at = direct.get(keys[0]).split()
        assert 6.0 <= float(rate) <= 12.0
        assert direct.pttl(keys[0]) > 29 * 24 * 3600 * 1000
        direct.delete("vtex-tracking:pace:acme.vtexcommercestable")  # as if expired
        oms.reset()
        await anyio.sleep(1.0)
        async with make_client(oms, shared_pace=redis_server.url) as second:
            with anyio.fail_after(60):
                assert (await second.push_all(_updates(40, status, "b"))).succeeded == 40
            rate_now = second.metrics()["acme"].rate
        assert rate_now is not None and rate_now >= 0.8 * float(rate)
        assert _statuses(oms)[429] <= 3, _statuses(oms)
        direct.delete("vtex-tracking:pace:acme.vtexcommercestable")
        async with FakeOMS() as elsewhere, make_client(
            elsewhere, shared_pace=redis_server.url
        ) as other:
            await other.update_tracking_status("o-x", "NF-1", status)
            assert other.metrics()["acme"].rate is not None
            assert other.metrics()["acme"].rate < 0.8 * float(rate)


def _script_calls(direct: Any) -> int:
    stats = direct.info("commandstats")
    return sum(
        int(stats[name]["calls"]) for name in ("cmdstat_evalsha", "cmdstat_eval") if name in stats
    )


@pytest.mark.real_start
async def test_a_slow_accounts_lease_serves_many_requests(
    redis_server: RedisServer,
    direct: Any,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """At 8 req/s a lease covers a second of requests: far fewer Redis calls than requests
    (one per request before)."""
    async with FakeOMS(rate_limit=8, burst=5, retry_after="1") as oms:
        async with make_client(oms, shared_pace=redis_server.url) as client:
            await client.update_tracking_status("warm-up", "NF-1", status)
            direct.config_resetstat()
            with anyio.fail_after(60):
                assert (await client.push_all(_updates(60, status))).succeeded == 60
            calls = _script_calls(direct)
        requests = len(oms.requests) - 1
    assert calls <= 0.5 * requests, (calls, requests)


@pytest.mark.real_start
async def test_a_lagging_process_waits_for_redis_instead_of_sending_alone(
    redis_server: RedisServer,
    make_client: ClientFactory,
    status: TrackingStatus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The event loop blocked 0.3 s at a time (a busy process): Redis' answers are read
    late, but that is no outage: the pace stays shared, and no 'did not answer' warning."""
    stop = asyncio.Event()

    async def busy() -> None:
        while not stop.is_set():
            time.sleep(0.3)  # noqa: ASYNC251 - the point: a loop that lags
            await asyncio.sleep(0.02)

    states: set[str | None] = set()
    async with (
        FakeOMS(rate_limit=20, burst=5, retry_after="1") as oms,
        make_client(oms, shared_pace=redis_server.url) as client,
    ):
        await client.update_tracking_status("warm-up", "NF-1", status)

        async def watch() -> None:
            while not stop.is_set():
                states.add(client.metrics()["acme"].shared_pace)
                await asyncio.sleep(0.05)

        with caplog.at_level(logging.WARNING, logger="vtex_tracking"):
            lag = asyncio.get_running_loop().create_task(busy())
            try:
                with anyio.fail_after(90):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(watch)
                        summary = await client.push_all(_updates(40, status))
                        stop.set()
            finally:
                stop.set()
                await lag
    assert summary.succeeded == 40
    assert states == {"shared"}
    assert not [r for r in caplog.records if "did not answer" in r.getMessage()]


@pytest.mark.real_start
async def test_two_processes_sharing_a_store_settle_at_its_limit_without_bursts(
    redis_server: RedisServer,
    direct: Any,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """Two clients (as two processes) share a 17.6 req/s store 150 ms away through Redis:
    once the limit is found, every second carries about the limit (no burst, no stall), and
    the account never leaves for a blind probe. Before, each dropped or bunched the tokens
    it leased when the rate fell (seconds sent at twice the limit, or nothing at all), and a
    measure that met no 429 went on to a probe doubling on time alone (600 req/s into a
    17 req/s store)."""
    limit = 17.6
    async with (
        FakeOMS(rate_limit=limit, burst=5, retry_after="1", latency=0.15) as oms,
        make_client(oms, shared_pace=redis_server.url) as a,
        make_client(oms, shared_pace=redis_server.url) as b,
    ):
            rates: list[float] = []

            async def watch() -> None:
                while True:
                    raw = direct.hget("vtex-tracking:pace:acme.vtexcommercestable", "rate")
                    if raw is not None:
                        rates.append(float(raw))
                    await anyio.sleep(0.05)

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                with anyio.fail_after(90):
                    pushes = [a.push_all(_updates(140, status, "a")),
                              b.push_all(_updates(140, status, "b"))]  # fmt: skip
                    summaries = await asyncio.gather(*pushes)
                tg.cancel_scope.cancel()
    assert [s.succeeded for s in summaries] == [140, 140]
    start = oms.requests[0].received_at
    per_second = Counter(int(r.received_at - start) for r in oms.requests)
    last = max(per_second)
    # From the eighth second (the limit found) to the last but one: every second carries
    # about the limit; none a burst over it, none a stall (tokens dropped or held back).
    steady = [per_second.get(second, 0) for second in range(8, last - 1)]
    assert steady and max(steady) <= limit + 4, sorted(per_second.items())
    assert min(steady) >= limit / 2, sorted(per_second.items())
    assert max(rates) < 4 * limit, max(rates)
