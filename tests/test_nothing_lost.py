"""Nothing lost, nothing wrong: remembered state (journal, skip-unchanged) never vouches for an
update VTEX did not confirm, at the target that confirmed it; failures stay contained.

Each test is one way an operator met a silently skipped update or a push that failed as a
whole; the number in its docstring is the item of the issue it pins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import redis

from vtex_tracking import (
    Accounts,
    ConfigurationError,
    ConnectError,
    PushResult,
    PushStoppedError,
    RetryPolicy,
    TrackingUpdate,
    UnchangedState,
    UnexpectedResponseError,
)
from vtex_tracking._remember import is_redis_url
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN, ClientFactory, history, push_results
from .redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def client_options() -> dict[str, object]:
    """No retries: a failure planted with ``fail_next`` is the item's result."""
    return {"retry": RetryPolicy(max_attempts=1), "max_concurrency": 8}


def _ups(orders: range, step: int = 0) -> list[TrackingUpdate]:
    return [TrackingUpdate(f"ups-{i}", "NF-1", history(step)) for i in orders]


def _outcomes(results: list[PushResult]) -> Counter[str]:
    return Counter(r.outcome for r in results)


# -- 1. the journal and a shifted input ------------------------------------------------------


async def test_journal_never_skips_a_shifted_input_whose_bodies_changed(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """(1) Day 2 drops invoice 0 and gives invoices 1-9 a new event, same journal path and
    no input_id: all 9 are sent (positions shifted, bodies changed: nothing is vouched for)."""
    journal = tmp_path / "ativos.journal"
    async with FakeOMS() as oms, make_client(oms) as client:
        first = await push_results(client, _ups(range(10)), journal=journal)
        assert _outcomes(first) == {"200": 10}
        oms.reset()
        second = await push_results(client, _ups(range(1, 10), step=1), journal=journal)
    assert _outcomes(second) == {"200": 9}
    assert sorted(r.order_id for r in oms.requests) == [f"ups-{i}" for i in range(1, 10)]


async def test_journal_skips_only_bodies_vtex_confirmed_for_that_invoice_in_any_order(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """(1) The same updates reordered, plus one changed: the unchanged ones are already done
    wherever they now stand, the changed one is sent."""
    journal = tmp_path / "j"
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, _ups(range(6)), journal=journal)
        oms.reset()
        again = _ups(range(5, -1, -1))
        again[2] = TrackingUpdate("ups-3", "NF-1", history(2))
        second = await push_results(client, again, journal=journal)
    assert [r.outcome for r in second] == ["already_done"] * 2 + ["200"] + ["already_done"] * 3
    assert [r.order_id for r in oms.requests] == ["ups-3"]


# -- 2. state bound to its target ------------------------------------------------------------


async def test_skip_unchanged_of_one_target_never_skips_at_another(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """(2) A rehearsal against one server (a fake, staging) then the real push against
    another, same state file: the real push sends everything."""
    state = tmp_path / "state.db"
    async with FakeOMS() as rehearsal, FakeOMS() as production:
        async with make_client(rehearsal) as client:
            assert _outcomes(await push_results(client, _ups(range(5)), skip_unchanged=state)) == {
                "200": 5
            }
            # At the same target, the state does its job.
            assert _outcomes(await push_results(client, _ups(range(5)), skip_unchanged=state)) == {
                "unchanged": 5
            }
        async with make_client(production) as client:
            results = await push_results(client, _ups(range(5)), skip_unchanged=state)
    assert _outcomes(results) == {"200": 5}
    assert len(production.requests) == 5


async def test_a_journal_of_one_target_never_vouches_for_another(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """(2) A journal written against staging, then the same input against production:
    nothing is reported already done."""
    journal = tmp_path / "push.journal"
    async with FakeOMS() as staging, FakeOMS() as production:
        async with make_client(staging) as client:
            await push_results(client, _ups(range(4)), journal=journal)
        async with make_client(production) as client:
            results = await push_results(client, _ups(range(4)), journal=journal)
    assert _outcomes(results) == {"200": 4}
    assert len(production.requests) == 4


async def test_redis_skip_state_of_one_target_never_skips_at_another(
    make_client: ClientFactory, redis_server: RedisServer
) -> None:
    """(2) The fleet's Redis state, written through one target, says nothing at another."""
    state = UnchangedState(redis_server.url)
    async with FakeOMS() as staging, FakeOMS() as production:
        async with make_client(staging) as client:
            await push_results(client, _ups(range(3)), skip_unchanged=state)
            again = await push_results(client, _ups(range(3)), skip_unchanged=state)
            assert _outcomes(again) == {"unchanged": 3}
        async with make_client(production) as client:
            results = await push_results(client, _ups(range(3)), skip_unchanged=state)
    assert _outcomes(results) == {"200": 3}


# -- 3. a failure made moot by a newer confirmation ------------------------------------------


async def test_a_failure_superseded_by_a_newer_confirmed_update_is_not_a_failure_to_resend(
    make_client: ClientFactory,
) -> None:
    """(3) X1 fails with 400, X2 (newer, same invoice) is confirmed: X2's result names X1,
    and the summary's failures leave X1 out (counted apart), so resending them cannot roll
    the invoice back."""
    updates = [
        TrackingUpdate("ups-1", "NF-1", history(0)),
        TrackingUpdate("ups-2", "NF-1", history(0)),
        TrackingUpdate("ups-1", "NF-1", history(1)),
    ]
    async with FakeOMS() as oms, make_client(oms, max_concurrency=1) as client:
        oms.fail_next(2, 400)
        results = await push_results(client, updates)
        oms.reset()
        oms.fail_next(2, 400)
        summary = await client.push_all(updates, concurrency=1)
    assert [r.outcome for r in results] == ["400", "400", "200"]
    assert results[2].supersedes == (0,)
    assert summary.failed == 2
    assert [r.index for r in summary.failures] == [1]
    assert summary.superseded_failures == 1


# -- 4 and 5. a 2xx answer is a confirmation only when it is one, and holds no secrets ------


@pytest.mark.parametrize(
    "body",
    [
        {"date": "2026-11-02T10:00:00.0000000+00:00", "orderId": "another", "receipt": "r"},
        {"error": {"code": "OMS007", "message": "Order Not Found", "exception": None}},
    ],
    ids=["another-order", "error-object"],
)
async def test_a_2xx_that_does_not_confirm_the_update_is_never_remembered(
    make_client: ClientFactory, tmp_path: Path, body: dict[str, object]
) -> None:
    """(4) A 200 naming another order, or carrying an error object: the result fails with
    UnexpectedResponseError saying why, and neither the journal nor the skip state records
    it, so the next push sends it."""
    journal, state = tmp_path / "j", tmp_path / "s"
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 200, body=body)
        first = await push_results(client, _ups(range(1)), journal=journal, skip_unchanged=state)
        assert isinstance(first[0].error, UnexpectedResponseError)
        assert "does not confirm" in str(first[0].error) or "carries an error" in str(
            first[0].error
        )
        second = await push_results(client, _ups(range(1)), journal=journal, skip_unchanged=state)
    assert [r.outcome for r in second] == ["200"]


async def test_secrets_echoed_in_a_2xx_answer_are_redacted_from_the_receipt(
    make_client: ClientFactory,
) -> None:
    """(5) A proxy echoes the credentials in a 200's headers and body: the receipt keeps
    neither."""
    body = {
        "date": "2026-11-02T10:00:00.0000000+00:00",
        "orderId": "ups-0",
        "receipt": "r1",
        "echo": {"X-VTEX-API-AppKey": APP_KEY, "X-VTEX-API-AppToken": APP_TOKEN},
    }
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 200, body=body, headers={"X-Echo": f"{APP_KEY} {APP_TOKEN}"})
        receipt = await client.update_tracking_status("ups-0", "NF-1", history(0))
    assert receipt.receipt == "r1"
    for secret in (APP_KEY, APP_TOKEN):
        assert secret.encode() not in receipt.content
        assert all(secret not in value for value in receipt.headers.values())
    assert b"<redacted>" in receipt.content


# -- 7. garbage in Redis ---------------------------------------------------------------------


async def test_garbage_in_a_redis_skip_key_means_changed_and_warns_once(
    make_client: ClientFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """(7) Every skip-unchanged key overwritten with "not-a-number": the push sends both
    updates instead of raising, and one warning says so."""
    state = UnchangedState(redis_server.url)
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, _ups(range(2)), skip_unchanged=state)
        keys = redis.Redis.from_url(redis_server.url)
        try:
            found = list(keys.scan_iter(match=f"{state.prefix}:*"))
            assert len(found) == 2
            for key in found:
                keys.set(key, "not-a-number")
        finally:
            keys.close()
        oms.reset()
        with caplog.at_level(logging.WARNING, logger="vtex_tracking"):
            results = await push_results(client, _ups(range(2)), skip_unchanged=state)
    assert _outcomes(results) == {"200": 2}
    assert len([r for r in caplog.records if "does not hold a body digest" in r.message]) == 1


# -- 9. damaged files ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["header", "pages"])
async def test_a_damaged_journal_is_a_configuration_error_naming_the_file(
    make_client: ClientFactory, tmp_path: Path, where: str
) -> None:
    """(9) A journal whose header or pages were overwritten: push() refuses it with a
    ConfigurationError that names the file and how to start over; nothing is sent."""
    journal = tmp_path / "push.journal"
    async with FakeOMS() as oms, make_client(oms) as client:
        await push_results(client, _ups(range(2000)), journal=journal)
        with contextlib.closing(sqlite3.connect(journal)) as db, db:  # fold the WAL into the file
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = bytearray(journal.read_bytes())
        start = 0 if where == "header" else 4096
        data[start : start + 8192] = b"\xa5" * 8192
        journal.write_bytes(bytes(data))
        oms.reset()
        with pytest.raises(ConfigurationError, match=r"push\.journal: .*start over"):
            client.push(_ups(range(2000)), journal=journal)
    assert oms.requests == []


# -- 12. an account that cannot be reached ---------------------------------------------------


async def test_an_unreachable_account_is_stopped_and_the_others_go_on(
    make_client: ClientFactory,
) -> None:
    """(12) A wrong port for one account: after two updates end in ConnectError, its other
    updates end at once as PushStoppedError("unreachable") naming the likely causes, while
    the reachable account's updates are all confirmed."""
    dead = f"http://127.0.0.1:{free_port()}"
    async with (
        FakeOMS() as oms,
        make_client(
            dead, retry=RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001)
        ) as client,
    ):
        results = await push_results(client, _ups(range(30)), concurrency=1)
        good = make_client(oms)
        confirmed = await push_results(good, _ups(range(5)))
    assert _outcomes(confirmed) == {"200": 5}
    errors = [r.error for r in results]
    # Two ended the account; a few more may already have been on their way (a sender
    # backing off lends its turn to another).
    failed = sum(isinstance(e, ConnectError) for e in errors)
    assert 2 <= failed <= 6
    stopped = [e for e in errors if isinstance(e, PushStoppedError)]
    assert len(stopped) == 30 - failed
    assert all(e.reason == "unreachable" for e in stopped)
    assert "VTEX_ACCOUNT_NAME" in str(stopped[0]) and "base URL" in str(stopped[0])


async def test_a_hub_push_stops_only_the_unreachable_account(make_client: ClientFactory) -> None:
    """(12) One push over two accounts, one of them unreachable: the reachable one's updates
    are all confirmed, the other's are stopped after two connection failures."""
    dead = f"http://127.0.0.1:{free_port()}"
    async with FakeOMS() as oms:
        accounts = Accounts.from_mapping(
            {
                "good": {"app_key": APP_KEY, "app_token": APP_TOKEN, "base_url": oms.url},
                "typo": {"app_key": APP_KEY, "app_token": APP_TOKEN, "base_url": dead},
            }
        )
        retry = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001)
        async with make_client(oms, "good", accounts=accounts, retry=retry) as client:
            updates = [
                TrackingUpdate(f"o-{i}", "NF-1", history(0), account_name=("good", "typo")[i % 2])
                for i in range(40)
            ]
            summary = await client.push_all(updates, concurrency=2)
    assert summary.by_account["good"].succeeded == 20
    assert summary.by_account["typo"].stopped == "unreachable"
    assert summary.by_outcome["unreachable"] >= 15
    assert summary.by_outcome["unreachable"] + summary.by_outcome["ConnectError"] == 20


# -- 13. a Redis URL in capitals -------------------------------------------------------------


async def test_a_redis_url_in_capitals_is_a_url_and_its_password_stays_out_of_logs(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """(13) ``REDIS://:pw@host`` is Redis, not a file: with Redis down the push sends
    everything, and neither a file named after it nor any message shows the password."""
    assert is_redis_url("REDIS://:pw@host:6379/0") and is_redis_url("Rediss://h")
    url = f"REDIS://:hunter2-secret@127.0.0.1:{free_port()}/0"
    async with FakeOMS() as oms, make_client(oms) as client:
        with caplog.at_level(logging.DEBUG, logger="vtex_tracking"):
            results = await push_results(client, _ups(range(2)), skip_unchanged=url)
    assert _outcomes(results) == {"200": 2}
    assert "hunter2-secret" not in caplog.text
    assert "hunter2-secret" not in repr(UnchangedState(url))
    assert not list(Path.cwd().glob("REDIS*"))


# -- 10. a disk that fills up mid-push --------------------------------------------------------

_FULL_DISK_CHILD = """
import asyncio, json, logging, resource, signal, sys
from vtex_tracking import AsyncTrackingClient, TrackingEvent, TrackingStatus, TrackingUpdate
import datetime as dt
import json

url, journal, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
# Past the limit a write fails with EFBIG (instead of the default: the process killed).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
status = TrackingStatus([TrackingEvent("Campinas", "SP", "Coletado", dt.date(2026, 11, 1))])

async def main():
    async with AsyncTrackingClient(
        "acme", "vtexappkey-fake-oms", "fake-oms-app-token", base_url=url
    ) as client:
        updates = (TrackingUpdate(f"o-{i}", "NF-1", status) for i in range(5000))
        summary = await client.push_all(updates, journal=journal)
    print(json.dumps({"total": summary.total, "succeeded": summary.succeeded}))

asyncio.run(main())
"""


def test_a_disk_that_fills_up_mid_push_stops_the_journal_not_the_push(tmp_path: Path) -> None:
    """(10) The journal's file may not grow past 64 KiB (RLIMIT_FSIZE, in a child process):
    all 5,000 updates are confirmed, the push ends with its summary, and one warning says
    the journal stopped (those updates would only be sent again next time)."""
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(_FULL_DISK_CHILD, encoding="utf-8")
    with FakeOMS() as oms:
        done = subprocess.run(
            [sys.executable, str(script), oms.url, str(tmp_path / "push.journal"), "65536"],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        confirmed = sum(1 for r in oms.requests if r.status == 200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"total": 5000, "succeeded": 5000}
    assert confirmed == 5000
    warnings = [line for line in done.stderr.splitlines() if "no longer used" in line]
    assert len(warnings) == 1, done.stderr[-3000:]
