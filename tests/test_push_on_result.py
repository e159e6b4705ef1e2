"""``push(on_result=...)``: called once per result, with the very result the stream then
delivers (a confirmed one carrying the failures it made moot), before it is delivered."""

from __future__ import annotations

import pytest

from vtex_tracking import PushResult, TrackingUpdate
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory, history

pytestmark = pytest.mark.anyio


async def test_on_result_sees_each_result_once_before_the_consumer(
    make_client: ClientFactory,
) -> None:
    updates: list[object] = [
        TrackingUpdate("ups-1", "NF-1", history(0)),
        "not an update",
        TrackingUpdate("ups-2", "NF-1", history(0)),
        TrackingUpdate("ups-1", "NF-1", history(1)),
    ]
    seen: list[PushResult] = []
    delivered: list[PushResult] = []
    async with FakeOMS() as oms, make_client(oms, max_concurrency=1) as client:
        oms.fail_next(2, 400)
        async with client.push(updates, on_result=seen.append) as stream:  # type: ignore[arg-type]
            async for result in stream:
                assert result is seen[len(delivered)]  # told first, then delivered
                delivered.append(result)
    assert len(seen) == len(delivered) == 4
    by_index = {r.index: r for r in seen}
    assert by_index[1].outcome == "invalid"
    assert [by_index[i].outcome for i in (0, 2, 3)] == ["400", "400", "200"]
    assert by_index[3].supersedes == (0,)
    assert by_index[3].sent == ("events",)


async def test_results_made_after_the_consumer_left_are_unfinished(
    make_client: ClientFactory,
) -> None:
    """A consumer that leaves while results are still being made (here: invalid items, each
    a result at once) finds every item read either delivered or in ``unfinished``."""
    async with FakeOMS() as oms, make_client(oms) as client:
        stream = client.push(["not an update"] * 3000, concurrency=4)  # type: ignore[list-item]
        delivered = []
        async for result in stream:
            delivered.append(result)
            if len(delivered) == 10:
                break
        await stream.aclose()
    indexes = sorted(r.index for r in [*delivered, *stream.unfinished])
    assert indexes == list(range(len(indexes)))  # one result per item read, none twice
    assert len(indexes) > 10
