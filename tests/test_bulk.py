"""The bulk push engine against FakeOMS: order, accounting, stopping, throttling."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest

from vtex_tracking import (
    AsyncTrackingClient,
    AuthenticationError,
    PushResult,
    PushStoppedError,
    RetryPolicy,
    TrackingClient,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
    ValidationError,
)
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN, FAST_RETRY, ClientFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
def client_options() -> dict[str, object]:
    """make_client's defaults here: fast retries, 16 requests in flight."""
    return {"retry": FAST_RETRY, "max_concurrency": 16}


def _status(step: int) -> TrackingStatus:
    return TrackingStatus(
        [
            TrackingEvent("Campinas", "SP", f"Evento {n}", dt.date(2026, 11, 1))
            for n in range(step + 1)
        ]
    )


def _updates(count: int, invoices: int) -> Iterator[TrackingUpdate]:
    """`count` updates spread round-robin over `invoices` invoices, each a growing history."""
    for i in range(count):
        yield TrackingUpdate(f"order-{i % invoices}", "NF-1", _status(i // invoices))


async def test_updates_of_one_invoice_are_sent_in_order_never_overlapping(
    make_client: ClientFactory
) -> None:
    """Per invoice: input order, one at a time; different invoices run concurrently."""
    async with FakeOMS(latency=0.005) as oms, make_client(oms) as client:
        summary = await client.push_all(_updates(200, invoices=10), concurrency=16)
        assert oms.overlaps == 0
        assert oms.max_in_flight > 1
        for invoice in range(10):
            accepted = oms.accepted(f"order-{invoice}", "NF-1")
            assert [len(body["events"]) for body in accepted] == list(range(1, 21))
    assert (summary.total, summary.succeeded, summary.failed) == (200, 200, 0)


async def test_hot_invoice_does_not_stall_the_others(make_client: ClientFactory) -> None:
    """One invoice with many updates runs serially while the others finish alongside."""

    def mixed() -> Iterator[TrackingUpdate]:
        for i in range(40):
            yield TrackingUpdate("hot", "1", _status(i))
            yield TrackingUpdate(f"cold-{i}", "1", _status(0))

    finished: list[str] = []
    async with FakeOMS(latency=0.01) as oms, make_client(oms) as client:
        async for result in client.push(mixed(), concurrency=8):
            finished.append(result.update.order_id)
        assert oms.overlaps == 0
    # All 40 cold invoices finish before the hot one's 40th update.
    assert finished.index("cold-39") < len(finished) - 1 - finished[::-1].index("hot")
    assert finished[-1] == "hot"


async def test_every_item_gets_exactly_one_result_under_faults(make_client: ClientFactory) -> None:
    """With 5xx, 429 and dropped connections injected, each item has one result, and every
    ok result was accepted by the server."""
    async with (
        FakeOMS(fail_rate=0.2, fail_status=503, seed=3) as oms,
        make_client(
            oms, retry=RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.005)
        ) as client,
    ):
        oms.fail_next(5, 429, headers={"Retry-After": "0"})
        oms.drop_next(5)
        results = [r async for r in client.push(_updates(300, invoices=300), concurrency=16)]
        accepted = {key for key, bodies in oms.updates.items() if bodies}
    assert sorted(r.index for r in results) == list(range(300))
    ok = [r for r in results if r.ok]
    assert {r.update.key for r in ok} <= accepted
    assert len(ok) == len(accepted)
    assert all(r.error is not None for r in results if not r.ok)
    assert len(ok) > 250  # most survive three attempts at a 20 % failure rate


async def test_invalid_items_are_their_own_failures(make_client: ClientFactory) -> None:
    """Items that are not TrackingUpdates fail alone; the push goes on."""
    items: list[object] = [*_updates(3, 3), {"orderId": "x"}, None, *_updates(2, 2)]
    async with FakeOMS() as oms, make_client(oms) as client:
        summary = await client.push_all(items)  # type: ignore[arg-type]
    assert (summary.total, summary.succeeded, summary.failed) == (7, 5, 2)
    assert summary.by_outcome == {"200": 5, "invalid": 2}
    bad = sorted(summary.failures, key=lambda r: r.index)
    assert [r.index for r in bad] == [3, 4]
    assert all(isinstance(r.error, ValidationError) for r in bad)
    assert "item[3]" in str(bad[0].error)


async def test_push_all_counts_by_outcome(make_client: ClientFactory) -> None:
    """The summary counts successes and failures by status, with throughput and failures."""
    async with FakeOMS() as oms, make_client(oms, retry=RetryPolicy.disabled()) as client:
        oms.fail_next(3, 404)
        summary = await client.push_all(_updates(20, 20), concurrency=1)
    assert summary.total == 20
    assert summary.succeeded == 17
    assert summary.by_outcome == {"200": 17, "404": 3}
    assert len(summary.failures) == 3
    assert summary.throughput > 0
    assert summary.elapsed_s > 0
    assert summary.requests == 20


async def test_revoked_key_stops_the_push_and_reports_the_rest() -> None:
    """After repeated 401s nothing more is sent; every item is reported with that cause."""
    async with (
        FakeOMS() as oms,
        AsyncTrackingClient(
            "acme", APP_KEY, "revoked-token", base_url=oms.url, max_concurrency=64
        ) as client,
    ):
        summary = await client.push_all(_updates(1000, 1000), concurrency=64)
        sent = len(oms.requests)
    assert sent <= 5
    assert summary.total == 1000
    assert summary.succeeded == 0
    assert summary.by_outcome["401"] >= 3
    assert summary.by_outcome["401"] + summary.by_outcome["auth"] == 1000
    stopped = [r for r in summary.failures if isinstance(r.error, PushStoppedError)]
    assert len(stopped) == summary.by_outcome["auth"]
    assert all(r.error.reason == "auth" for r in stopped)  # type: ignore[union-attr]
    assert all(isinstance(r.error.cause, AuthenticationError) for r in stopped)  # type: ignore[union-attr]
    # Items never sent say so; at most the few cut off in flight may have reached VTEX.
    assert sum(1 for r in stopped if r.error.in_flight) <= sent - 3  # type: ignore[union-attr]


async def test_breaking_out_stops_sending_and_accounts_for_the_rest(
    make_client: ClientFactory
) -> None:
    """Leaving the loop early cancels the push; read items without a delivered result are
    in `unfinished`, and the input is not read much further."""
    read = itertools.count()

    def counted() -> Iterator[TrackingUpdate]:
        for update in _updates(10_000, 10_000):
            next(read)
            yield update

    async with FakeOMS(latency=0.02) as oms, make_client(oms) as client:
        stream = client.push(counted(), concurrency=8, read_ahead=32)
        received: list[PushResult] = []
        async for result in stream:
            received.append(result)
            if len(received) == 10:
                break
        await stream.aclose()
        requests_at_close = len(oms.requests)
        await anyio.sleep(0.1)
        assert len(oms.requests) == requests_at_close  # nothing sent after closing
    items_read = next(read)
    # Read ahead: 32 items without a result, plus up to 8 (the concurrency) results waiting
    # in the stream's buffer for the consumer.
    assert items_read <= 10 + 32 + 8 + 1
    assert len(received) + len(stream.unfinished) == items_read
    assert {r.index for r in received}.isdisjoint(r.index for r in stream.unfinished)
    # Unfinished: results produced but never received (some ok), or stopped ones.
    assert all(r.ok or isinstance(r.error, PushStoppedError) for r in stream.unfinished)
    assert any(isinstance(r.error, PushStoppedError) for r in stream.unfinished)


async def test_stop_lets_every_read_item_report(make_client: ClientFactory) -> None:
    """stop() sends nothing new; iteration ends with one result for every item read."""
    async with FakeOMS(latency=0.05) as oms, make_client(oms) as client:
        stream = client.push(_updates(1000, 1000), concurrency=4, read_ahead=20)
        results: list[PushResult] = []
        async for result in stream:
            results.append(result)
            if len(results) == 5:
                stream.stop()
    assert len(results) == stream.progress.read
    assert sorted(r.index for r in results) == list(range(len(results)))
    stopped = [r for r in results if isinstance(r.error, PushStoppedError)]
    assert stopped and all(r.error.reason == "stopped" for r in stopped)  # type: ignore[union-attr]
    assert stream.unfinished == []


async def test_cancelling_the_consumer_keeps_account_of_everything(
    make_client: ClientFactory
) -> None:
    """Cancelling the task that iterates leaves every read item in results or unfinished."""
    async with FakeOMS(latency=0.05) as oms, make_client(oms) as client:
        stream = client.push(_updates(500, 500), concurrency=4, read_ahead=16)
        received: list[PushResult] = []

        async def consume() -> None:
            async for result in stream:
                received.append(result)

        with anyio.move_on_after(0.3):
            await consume()
        await stream.aclose()
    assert received  # some finished before the cancellation
    assert len(received) + len(stream.unfinished) == stream.progress.read
    assert stream.progress.in_flight == 0


async def test_async_iterables_are_accepted(make_client: ClientFactory) -> None:
    """An async generator of updates works like a list."""

    async def source() -> AsyncIterator[TrackingUpdate]:
        for update in _updates(30, 30):
            await anyio.lowlevel.checkpoint()
            yield update

    async with FakeOMS() as oms, make_client(oms) as client:
        summary = await client.push_all(source())
    assert summary.succeeded == 30


async def test_rate_limit_caps_the_send_rate(make_client: ClientFactory) -> None:
    """rate_limit paces requests: 30 at 60/s take about half a second, not milliseconds."""
    async with FakeOMS() as oms, make_client(oms) as client:
        started = time.monotonic()
        summary = await client.push_all(_updates(30, 30), rate_limit=60)
        elapsed = time.monotonic() - started
    assert summary.succeeded == 30
    assert elapsed >= 0.3


@pytest.mark.real_start
async def test_adaptive_throttle_slows_down_on_429(make_client: ClientFactory) -> None:
    """Against a server limited to 50/s, the push finishes with few 429s."""
    async with (
        FakeOMS(rate_limit=50, burst=10, retry_after="1") as oms,
        make_client(oms, max_concurrency=32, retry=RetryPolicy(max_attempts=10)) as client,
    ):
        summary = await client.push_all(_updates(150, 150), concurrency=32)
        throttled = sum(1 for r in oms.requests if r.status == 429)
    assert summary.succeeded == 150
    assert throttled < 0.25 * len(oms.requests)


def test_sync_push_streams_results_as_they_complete() -> None:
    """TrackingClient.push yields the first result long before the last one is done."""
    with (
        FakeOMS(latency=0.05) as oms,
        TrackingClient("acme", APP_KEY, APP_TOKEN, base_url=oms.url, retry=FAST_RETRY) as client,
    ):
        started = time.monotonic()
        stamps = [time.monotonic() - started for _ in client.push(_updates(40, 40), concurrency=2)]
    assert len(stamps) == 40
    assert stamps[0] < stamps[-1] / 4


def test_sync_push_all_and_early_exit() -> None:
    """push_all works synchronously; breaking out of push cancels the rest."""
    with (
        FakeOMS(latency=0.02) as oms,
        TrackingClient("acme", APP_KEY, APP_TOKEN, base_url=oms.url, retry=FAST_RETRY) as client,
    ):
        assert client.push_all(_updates(25, 5)).succeeded == 25
        stream = client.push(_updates(1000, 1000), concurrency=4, read_ahead=16)
        first = next(iter(stream))
        stream.close()
        assert first.index >= 0
        assert 1 + len(stream.unfinished) == stream.progress.read


async def test_concurrency_and_rate_arguments_are_validated() -> None:
    """Bad push arguments raise ValidationError naming the argument."""
    client = AsyncTrackingClient("acme", APP_KEY, APP_TOKEN)
    with pytest.raises(ValidationError, match="concurrency"):
        client.push([], concurrency=0)
    with pytest.raises(ValidationError, match="rate_limit"):
        client.push([], rate_limit=-1)
    with pytest.raises(ValidationError, match="updates"):
        client.push("not updates")  # type: ignore[arg-type]
    await client.aclose()
    await asyncio.sleep(0)


async def test_summary_after_the_loop_totals_every_delivered_result(
    make_client: ClientFactory
) -> None:
    """summary() after an `async for` counts the results the loop received, and iterating a
    finished stream again simply ends."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(2, 404)
        async with client.push(_updates(10, invoices=10)) as stream:
            received = [result async for result in stream]
            assert [result async for result in stream] == []
            summary = await stream.summary()
    assert len(received) == 10
    assert (summary.total, summary.succeeded, summary.failed) == (10, 8, 2)
    assert {r.index for r in summary.failures} == {r.index for r in received if not r.ok}


def test_sync_summary_after_the_loop_totals_every_delivered_result() -> None:
    """The same for the sync facade, with a summary taken halfway through."""
    with FakeOMS() as oms:
        oms.fail_next(1, 409)
        client = TrackingClient("acme", APP_KEY, APP_TOKEN, base_url=oms.url, retry=FAST_RETRY)
        with client, client.push(_updates(6, invoices=6), concurrency=1) as stream:
            first = [next(stream), next(stream)]
            summary = stream.summary()
            assert list(stream) == []
    assert first[0].index == 0
    assert (summary.total, summary.succeeded, summary.failed) == (6, 5, 1)
