"""Sending less: the resume journal, skipping unchanged resends and merging queued snapshots
of one invoice, through real pushes to FakeOMS (and real SQLite files)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis

from vtex_tracking import (
    Accounts,
    ConfigurationError,
    Journal,
    JournalMismatchError,
    PushResult,
    RetryPolicy,
    TrackingUpdate,
    UnchangedState,
)
from vtex_tracking._journal import JournalFile, UnchangedFile
from vtex_tracking.testing import FakeAccount, FakeOMS

from .conftest import APP_KEY, APP_TOKEN, ClientFactory, history, push_results
from .redis_server import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def client_options() -> dict[str, object]:
    """No retries: a failure planted with ``fail_next`` is the item's result."""
    return {"retry": RetryPolicy(max_attempts=1), "max_concurrency": 8}


def _updates(count: int, invoices: int | None = None, step: int = 0) -> list[TrackingUpdate]:
    """``count`` updates; with ``invoices``, spread round robin over that many invoices, each
    a growing history."""
    invoices = invoices or count
    return [
        TrackingUpdate(f"order-{i % invoices}", "NF-1", history(step + i // invoices))
        for i in range(count)
    ]


def _sent(oms: FakeOMS) -> list[tuple[str | None, int]]:
    """(order, number of events) of each PUT the server answered 200."""
    return [(r.order_id, len(r.json()["events"])) for r in oms.requests if r.status == 200]


# -- the resume journal ----------------------------------------------------------------------


async def test_journal_resends_only_what_was_not_confirmed(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """A first run whose 5 updates fail: the second run sends those 5 only, and reports the
    other 45 as already done, counted apart."""
    journal = tmp_path / "push.journal"
    updates = _updates(50)
    async with FakeOMS() as oms, make_client(oms, max_concurrency=1) as client:
        oms.fail_next(5, 500)
        first = await push_results(client, updates, journal=journal)
        assert Counter(r.outcome for r in first) == {"200": 45, "500": 5}
        failed = {r.update.order_id for r in first if not r.ok}
        oms.reset()
        second = await push_results(client, updates, journal=journal)
    assert Counter(r.outcome for r in second) == {"already_done": 45, "200": 5}
    assert {r.order_id for r in oms.requests} == failed
    done = [r for r in second if r.skipped]
    assert all(r.ok and r.receipt is None and r.attempts == 0 for r in done)


async def test_journal_resumes_a_stopped_push_without_resending_confirmed(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """Stopped half way (as a crash would): the resumed push sends each update that was not
    confirmed exactly once, and none that was. (The server may have accepted a few more than
    the push confirmed: answers cut off by the stop. Those are sent again, at least once, as
    nothing told the user they arrived.)"""
    journal = tmp_path / "push.journal"
    updates = _updates(400)
    seen_ok: set[str] = set()
    async with FakeOMS(latency=0.002) as oms, make_client(oms) as client:
        async with client.push(updates, journal=journal) as stream:
            async for result in stream:
                if result.ok:
                    seen_ok.add(result.update.order_id)
                if result.index >= 150:
                    stream.stop()
                    break
        accepted_first = {r.order_id for r in oms.requests if r.status == 200}
        assert 150 <= len(accepted_first) < 400
        oms.reset()
        second = await push_results(client, updates, journal=journal)
    resent = [r.order_id for r in oms.requests]
    already = {r.update.order_id for r in second if r.skipped}
    assert seen_ok <= already <= accepted_first  # confirmed: never again; skipped: really there
    assert len(seen_ok) >= 50  # the first run did confirm a good part
    assert not already & set(resent)
    assert len(resent) == len(set(resent)) == 400 - len(already)
    assert Counter(r.outcome for r in second) == {
        "already_done": len(already),
        "200": 400 - len(already),
    }


async def test_journal_resends_a_failed_update_and_every_later_one_of_its_invoice(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """An invoice's first update failed and its second was confirmed: VTEX never confirmed
    the first, so resuming sends it, and then the second again (the first changed what VTEX
    holds), so VTEX ends with the newest."""
    journal = tmp_path / "push.journal"
    updates = [
        TrackingUpdate("order-1", "NF-1", history(0)),
        TrackingUpdate("order-1", "NF-1", history(1)),
    ]
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 400)
        first = await push_results(client, updates, journal=journal)
        assert [r.outcome for r in first] == ["400", "200"]
        oms.reset()
        second = await push_results(client, updates, journal=journal)
    assert [r.outcome for r in second] == ["200", "200"]
    assert _sent(oms) == [("order-1", 1), ("order-1", 2)]


async def test_journal_of_another_input_is_refused(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """A journal written for input A, used for input B: refused before anything is sent."""
    path = tmp_path / "push.journal"
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, _updates(3), journal=Journal(path, input_id="a.jsonl 300 1"))
        with pytest.raises(JournalMismatchError, match=r"another input \(a\.jsonl 300 1\)"):
            client.push(_updates(3), journal=Journal(path, input_id="b.jsonl 300 2"))
        assert len(oms.requests) == 3


async def test_journal_sends_an_update_that_differs_from_the_one_confirmed_there(
    make_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Same position, another body (the input changed): sent, and said once."""
    journal = tmp_path / "push.journal"
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, _updates(4), journal=journal)
        oms.reset()
        changed = _updates(4)
        changed[2] = TrackingUpdate("order-2", "NF-1", history(5))
        with caplog.at_level(logging.WARNING, logger="vtex_tracking"):
            second = await push_results(client, changed, journal=journal)
    assert [r.outcome for r in second] == ["already_done", "already_done", "200", "already_done"]
    assert _sent(oms) == [("order-2", 6)]
    assert [r.message for r in caplog.records if "differs from the body" in r.message]


async def test_journal_file_holds_no_ids_bodies_or_credentials(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "push.journal"
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, _updates(20), journal=path)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # noqa: ASYNC240
    for secret in (APP_KEY, APP_TOKEN, "order-1", "Campinas", "acme"):
        assert secret.encode() not in data
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert db.execute("SELECT count(*) FROM confirmed").fetchone() == (20,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_bad_journal_paths_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="journal: expected a file path"):
        Journal("")
    with pytest.raises(ConfigurationError, match="journal: expected a file path, got a URL"):
        Journal("redis://localhost:6379/0")
    with pytest.raises(ConfigurationError, match="skip_unchanged: expected a file path"):
        UnchangedState(42)  # type: ignore[arg-type]
    (tmp_path / "not.db").write_text("this is not a database, just text\n" * 100)
    with pytest.raises(ConfigurationError, match=r"not\.db: the journal file cannot be read"):
        JournalFile(Journal(tmp_path / "not.db"))
    state = tmp_path / "state.db"
    UnchangedFile(UnchangedState(state)).close()
    with pytest.raises(ConfigurationError, match="not a journal file"):
        JournalFile(Journal(state))
    with pytest.raises(ConfigurationError, match="max_entries: expected a number > 0"):
        UnchangedState(state, max_entries=0)


def test_sync_client_takes_the_same_options(make_client: ClientFactory, tmp_path: Path) -> None:
    with FakeOMS() as oms:
        client = make_client.sync(oms)
        first = client.push_all(_updates(10), journal=tmp_path / "j", skip_unchanged=tmp_path / "s")
        second = client.push_all(
            _updates(10), journal=tmp_path / "j2", skip_unchanged=tmp_path / "s"
        )
    assert first.by_outcome == {"200": 10}
    assert second.by_outcome == {"unchanged": 10}
    assert second.succeeded == 10 and second.failed == 0


# -- skipping unchanged resends ----------------------------------------------------------------


async def test_unchanged_updates_are_not_sent_again(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """The second run of the same export sends only what changed; --force sends all (and
    still remembers)."""
    state = tmp_path / "unchanged.db"
    updates = _updates(30)
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, updates, skip_unchanged=state)
        oms.reset()
        updates[7] = TrackingUpdate("order-7", "NF-1", history(3))
        second = await push_results(client, updates, skip_unchanged=state)
        assert Counter(r.outcome for r in second) == {"unchanged": 29, "200": 1}
        assert _sent(oms) == [("order-7", 4)]
        oms.reset()
        forced = await push_results(
            client, updates, skip_unchanged=UnchangedState(state, force=True)
        )
        assert Counter(r.outcome for r in forced) == {"200": 30}
        oms.reset()
        third = await push_results(client, updates, skip_unchanged=state)
    assert Counter(r.outcome for r in third) == {"unchanged": 30}
    assert oms.requests == []


async def test_unchanged_is_judged_against_vtex_not_against_a_queued_update(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """A, then B, then A again for one invoice, with A confirmed by an earlier run: the first A
    is skipped, B is sent, and the last A is sent too (VTEX holds B by then)."""
    state = tmp_path / "unchanged.db"
    a = TrackingUpdate("order-1", "NF-1", history(0))
    b = TrackingUpdate("order-1", "NF-1", history(1))
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, [a], skip_unchanged=state)
        oms.reset()
        results = await push_results(client, [a, b, a], skip_unchanged=state)
    assert [r.outcome for r in results] == ["unchanged", "200", "200"]
    assert _sent(oms) == [("order-1", 2), ("order-1", 1)]


async def test_unchanged_state_expires_and_stays_bounded(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    state = tmp_path / "unchanged.db"
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(
            client, _updates(20), skip_unchanged=UnchangedState(state, max_entries=8)
        )
        with contextlib.closing(sqlite3.connect(state)) as db, db:
            assert db.execute("SELECT count(*) FROM last_body").fetchone() == (8,)
            db.execute("UPDATE last_body SET at = at - 100")  # confirmed 100 s earlier
        oms.reset()
        results = await push_results(
            client, _updates(20), skip_unchanged=UnchangedState(state, max_age=50)
        )
    assert Counter(r.outcome for r in results) == {"200": 20}


# -- merging queued snapshots ----------------------------------------------------------------


async def test_newer_snapshots_replace_the_waiting_one(make_client: ClientFactory) -> None:
    """Ten snapshots of one invoice and two of another: while one is in flight, the newest
    waiting one replaces the others behind it; one still unsent in the ready queue is
    replaced in place; each replaced one's result is its carrier's."""
    updates = [
        *_updates(10, invoices=1),
        TrackingUpdate("order-9", "NF-1", history(0)),
        TrackingUpdate("order-9", "NF-1", history(1)),
    ]
    async with FakeOMS(latency=0.05) as oms, make_client(oms) as client:
        results = await push_results(
            client, _after_first_request(oms, updates), merge_snapshots=True
        )
    sent_order0 = [n for order, n in _sent(oms) if order == "order-0"]
    assert sent_order0 == [1, 10]  # the first was in flight; the newest is what VTEX ends with
    assert [n for order, n in _sent(oms) if order == "order-9"] == [2]
    superseded = [r for r in results if r.skipped == "superseded"]
    assert len(superseded) == 12 - len(sent_order0) - 1
    by_index = {r.index: r for r in results}
    for r in superseded:
        carrier = by_index[r.superseded_by]  # type: ignore[index]
        assert carrier.index > r.index and carrier.skipped is None
        assert r.ok and r.receipt == carrier.receipt and r.account == "acme"
    assert sorted(r.index for r in results) == list(range(12))


async def test_merging_never_crosses_accounts(make_client: ClientFactory) -> None:
    """The same order and invoice in two stores are two invoices: each store gets its own."""
    stores = {n: FakeAccount(f"vtexappkey-{n}", f"token-{n}") for n in ("north", "south")}
    async with FakeOMS(accounts=stores, latency=0.05) as oms:
        registry = Accounts.from_mapping(
            {
                name: {"app_key": a.app_key, "app_token": a.app_token, "base_url": oms.url}
                for name, a in stores.items()
            }
        )
        async with make_client(oms, "hub", accounts=registry) as client:
            updates = [
                TrackingUpdate("order-1", "NF-1", history(n), account_name=name)
                for n, name in enumerate(["north", "south", "north", "south", "north"])
            ]
            results = await push_results(client, updates, merge_snapshots=True)
    # All are read before any is sent: north's fifth replaces its first and third, south's
    # fourth its second (nothing of north's may replace south's).
    assert [r.skipped for r in results] == ["superseded"] * 3 + [None, None]
    assert [r.superseded_by for r in results[:3]] == [4, 3, 4]
    sent = sorted((r.account, len(r.json()["events"])) for r in oms.requests)
    assert sent == [("north", 5), ("south", 4)]


async def test_a_failed_carrier_fails_what_it_superseded(make_client: ClientFactory) -> None:
    """The replaced updates' results say what happened to the data they handed over."""
    updates = _updates(4, invoices=1)
    async with (
        FakeOMS(latency=0.2) as oms,
        make_client(oms) as client,
        client.push(_after_first_request(oms, updates), merge_snapshots=True) as stream,
    ):
        # The first is answered: the next request (the carrier of the rest) is refused.
        # (FakeOMS picks an answer after its latency, so this lands before the carrier's.)
        with anyio.fail_after(5):
            while not oms.requests or not oms.requests[0].status:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        oms.fail_next(1, 400)
        results = sorted([r async for r in stream], key=lambda r: r.index)
    assert [r.outcome for r in results] == ["200", "superseded", "superseded", "400"]
    assert [r.ok for r in results] == [True, False, False, False]
    assert results[1].error is results[3].error and results[1].superseded_by == 3


async def _after_first_request(
    oms: FakeOMS, updates: list[TrackingUpdate]
) -> AsyncIterator[TrackingUpdate]:
    """``updates``, the rest only once the first one's request reached the server (so the
    rest arrive while it is in flight)."""
    yield updates[0]
    with anyio.fail_after(5):
        while not oms.requests:  # noqa: ASYNC110 - FakeOMS records requests, no event
            await anyio.sleep(0.005)
    for update in updates[1:]:
        yield update


def _never_ending() -> Iterator[TrackingUpdate]:
    n = 0
    while True:
        yield TrackingUpdate("order-1", "NF-1", history(n % 50))
        n += 1


async def test_a_stopped_push_still_gives_each_superseded_update_one_result(
    make_client: ClientFactory,
) -> None:
    async with FakeOMS(latency=0.05) as oms, make_client(oms) as client:
        seen: list[PushResult] = []
        async with client.push(_never_ending(), merge_snapshots=True, read_ahead=64) as stream:
            async for result in stream:
                seen.append(result)
                if len(seen) >= 3:
                    stream.stop()
        seen += stream.unfinished
    indexes = sorted(r.index for r in seen)
    assert indexes == list(range(len(indexes)))
    assert len(oms.requests) < len(indexes)


async def test_a_state_file_locked_by_another_process_delays_commits_and_loses_nothing(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """Another writer holds the unchanged state while a push confirms updates: the commits
    wait (the push does not), and every confirmation lands once the file is free."""
    state = tmp_path / "unchanged.db"
    results = []
    async with FakeOMS(latency=0.002) as oms, make_client(oms) as client:
        push = client.push(_updates(300), skip_unchanged=state)  # opens the file
        other = sqlite3.connect(state, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        async with push as stream:
            async for result in stream:
                results.append(result)
                if len(results) == 150:
                    await anyio.sleep(0.05)  # a few commit attempts
                    assert other.execute("SELECT count(*) FROM last_body").fetchone() == (0,)
                    other.execute("ROLLBACK")
        other.close()
    assert len(results) == 300 and all(r.ok for r in results)
    with contextlib.closing(sqlite3.connect(state)) as db, db:
        assert db.execute("SELECT count(*) FROM last_body").fetchone() == (300,)


# -- the unchanged state in Redis, shared by a fleet --------------------------------------------


async def test_a_fleet_shares_the_unchanged_state_through_redis(
    make_client: ClientFactory, redis_server: RedisServer
) -> None:
    """What one pusher confirmed, another (a client of its own, as another process would have)
    does not send again; keys expire, hold no ids, bodies or credentials."""
    state = UnchangedState(redis_server.url, max_age=3600)
    updates = _updates(40)
    async with FakeOMS() as oms:
        async with make_client(oms) as first:
            await push_results(first, updates, skip_unchanged=state)
        assert len(oms.requests) == 40
        oms.reset()
        updates[9] = TrackingUpdate("order-9", "NF-1", history(2))
        async with make_client(oms) as second:
            results = await push_results(second, updates, skip_unchanged=redis_server.url)
    assert Counter(r.outcome for r in results) == {"unchanged": 39, "200": 1}
    assert _sent(oms) == [("order-9", 3)]
    client = redis.Redis.from_url(redis_server.url)
    try:
        keys = client.keys("*")
        assert len(keys) == 40
        assert all(k.startswith(b"vtex-tracking:unchanged:") for k in keys)
        # Each key expires max_age after its confirmation: one hour for the first push's,
        # the default 30 days for the one the second push (a plain URL) confirmed.
        ttls = sorted(client.pttl(k) / 1000 for k in keys)
        assert all(3000 < t <= 3600 for t in ttls[:39])
        assert 29 * 86_400 < ttls[39] <= 30 * 86_400
        dump = b" ".join(keys + [client.get(k) or b"" for k in keys])
        for secret in (APP_KEY, APP_TOKEN, "order-1", "Campinas", "acme"):
            assert secret.encode() not in dump
    finally:
        client.close()


async def test_redis_down_sends_everything_and_warns_once(
    make_client: ClientFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis never fails an update: stopped, every update is treated as changed."""
    url = redis_server.url
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, _updates(10), skip_unchanged=url)
        redis_server.stop()
        oms.reset()
        with caplog.at_level(logging.WARNING, logger="vtex_tracking"):
            results = await push_results(client, _updates(10), skip_unchanged=url)
    assert Counter(r.outcome for r in results) == {"200": 10}
    warnings = [r.message for r in caplog.records if "skip_unchanged: Redis" in r.message]
    assert len(warnings) == 1


def test_the_redis_password_stays_out_of_reprs() -> None:
    state = UnchangedState("redis://:s3cret-pass@cache.internal:6379/2")
    assert "s3cret" not in repr(state) and "cache.internal:6379/2" in repr(state)


async def test_a_rerun_of_a_finished_journal_adds_no_rows(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """Running a finished push again reports everything already done and leaves the journal
    as it was (no row per rerun)."""
    path = tmp_path / "push.journal"
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, _updates(20), journal=path)
        again = await push_results(client, _updates(20), journal=path)
        assert {r.outcome for r in again} == {"already_done"}
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert db.execute("SELECT count(*) FROM confirmed").fetchone() == (20,)


async def test_snapshots_faster_than_the_rate_merge_in_the_queue(
    make_client: ClientFactory,
) -> None:
    """Three rounds of snapshots of 100 invoices arrive faster than the account's 20 req/s:
    a newer snapshot replaces the older one wherever it waits unsent (in the account's
    queue, not only behind a request in flight), so at most 1.1 requests go per invoice,
    each invoice ends with its newest history, and every update still gets one result."""

    async def rounds() -> AsyncIterator[TrackingUpdate]:
        for step in range(3):
            for i in range(100):
                yield TrackingUpdate(f"order-{i}", "NF-1", history(step))
            await anyio.sleep(0.05)

    async with FakeOMS() as oms, make_client(oms) as client:
        results = await push_results(
            client, rounds(), merge_snapshots=True, rate_limit=20, read_ahead=400
        )
    assert sorted(r.index for r in results) == list(range(300))
    assert all(r.ok for r in results)
    assert len(oms.requests) <= 110
    for i in range(100):
        assert len(oms.accepted(f"order-{i}", "NF-1")[-1]["events"]) == 3


async def test_a_broken_input_while_a_superseded_result_waits_loses_nothing(
    make_client: ClientFactory,
) -> None:
    """The input breaks while a sender waits to hand over the result of an update that a
    newer one replaced (the consumer is not reading): the push's cancellation must not lose
    the newer one's result with it. Every update read is delivered or in ``unfinished``."""
    updates = [TrackingUpdate("order-1", "NF-1", history(n)) for n in range(3)]

    async def feed(stream_progress: Callable[[], int]) -> AsyncIterator[TrackingUpdate]:
        async for update in _after_first_request(oms, updates):
            yield update
        # The first result fills the buffer (concurrency 1: a buffer of one); the replaced
        # update's result is counted, then waits to be handed over.
        with anyio.fail_after(5):
            while stream_progress() < 2:  # noqa: ASYNC110 - polling the live counters
                await anyio.sleep(0.005)
        await anyio.sleep(0.05)
        raise RuntimeError("the input broke")

    async with FakeOMS(latency=0.1) as oms, make_client(oms) as client:
        stream = client.push(
            feed(lambda: stream.progress.succeeded), merge_snapshots=True, concurrency=1
        )
        delivered = []
        with pytest.raises(RuntimeError, match="the input broke"):
            async with stream:
                # Not reading until the input has broken (it breaks 0.05 s after the count).
                with anyio.fail_after(5):
                    while stream.progress.succeeded < 2:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                await anyio.sleep(0.3)
                with anyio.fail_after(5):
                    async for result in stream:
                        delivered.append(result)
    results = sorted([*delivered, *stream.unfinished], key=lambda r: r.index)
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.skipped for r in results] == [None, "superseded", None]
    assert len(oms.requests) == 2  # the first, then the newest in place of the second
