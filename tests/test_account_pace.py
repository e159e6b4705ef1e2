"""One pace per account for every call, over real sockets (FakeOMS on 127.0.0.1): single
calls are smoothed under a limit, pushes and calls share it, ``Retry-After`` and the auth
cool-down hold everyone, the window follows latency, and the push scheduler is fair."""

from __future__ import annotations

import datetime as dt
import inspect
import threading
import time
from collections import Counter

import anyio
import pytest

from vtex_tracking import (
    Accounts,
    AsyncTrackingClient,
    AuthCooldownError,
    AuthenticationError,
    PaceTimeoutError,
    PushStoppedError,
    RetryPolicy,
    TrackingClient,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
)
from vtex_tracking.testing import FakeAccount, FakeOMS

from .conftest import APP_KEY, APP_TOKEN, ClientFactory

pytestmark = pytest.mark.anyio

STATUS = TrackingStatus([TrackingEvent("Recife", "PE", "Postado", dt.date(2026, 11, 2))])
# Generous attempts: a 429 is retried after Retry-After, as in production.
RETRY = RetryPolicy(max_attempts=10, initial_backoff=0.01, max_backoff=0.1)


@pytest.fixture
def client_options() -> dict[str, object]:
    """make_client's defaults here: generous retries."""
    return {"retry": RETRY}


def _statuses(oms: FakeOMS) -> Counter[int]:
    return Counter(r.status for r in oms.requests)


def _max_in_any_second(oms: FakeOMS) -> int:
    """The most requests the server received within any one-second span."""
    times = sorted(r.received_at for r in oms.requests)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.real_start
async def test_a_burst_of_single_calls_is_smoothed_instead_of_answered_429(
    make_client: ClientFactory
) -> None:
    """64 coroutines making 150 calls against a 50 req/s limit: every call succeeds, and
    the account's pace keeps 429s rare (unpaced, most requests would be refused)."""
    async with FakeOMS(rate_limit=50, burst=5, retry_after="1") as oms, make_client(oms) as client:
        calls = iter(range(150))
        failures: list[BaseException] = []

        async def handler() -> None:
            for n in calls:
                try:
                    await client.update_tracking_status(f"o-{n}", "1", STATUS)
                except Exception as exc:
                    failures.append(exc)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(64):
                    tg.start_soon(handler)
    statuses = _statuses(oms)
    assert failures == []
    assert statuses[200] == 150
    assert statuses[429] <= 0.15 * sum(statuses.values()), statuses


@pytest.mark.real_start
def test_single_calls_from_many_threads_share_one_pace() -> None:
    """16 threads on one TrackingClient (Django, Celery threads) against a 50 req/s limit:
    all succeed, and few requests are refused."""
    with FakeOMS(rate_limit=50, burst=5, retry_after="1") as oms, TrackingClient(
        "acme", APP_KEY, APP_TOKEN, base_url=oms.url, retry=RETRY
    ) as client:
        calls = iter(range(120))
        lock = threading.Lock()
        failures: list[BaseException] = []

        def worker() -> None:
            while True:
                with lock:
                    n = next(calls, None)
                if n is None:
                    return
                try:
                    client.update_tracking_status(f"o-{n}", "1", STATUS)
                except Exception as exc:
                    failures.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
    statuses = _statuses(oms)
    assert failures == []
    assert statuses[200] == 120
    assert statuses[429] <= 0.15 * sum(statuses.values()), statuses


async def test_a_push_and_single_calls_share_the_account_rate(make_client: ClientFactory) -> None:
    """With rate_limit=40 on the account, a push and 8 coroutines of single calls together
    never send more than the limit (plus its small burst) in any second."""
    async with FakeOMS() as oms, make_client(oms, rate_limit=40) as client:
        failures: list[BaseException] = []

        async def calls(first: int) -> None:
            for n in range(first, first + 5):
                try:
                    await client.update_tracking_status(f"call-{n}", "1", STATUS)
                except Exception as exc:
                    failures.append(exc)

        async def push() -> None:
            summary = await client.push_all(
                TrackingUpdate(f"push-{n}", "1", STATUS) for n in range(60)
            )
            assert summary.succeeded == 60

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(push)
                for k in range(8):
                    tg.start_soon(calls, k * 5)
    assert failures == []
    assert len(oms.requests) == 100
    assert _max_in_any_second(oms) <= 40 + 4 + 1  # rate + burst, one of rounding
    # 100 requests at 40/s after a burst of 4: about 2.4 s, whoever sent them.
    times = sorted(r.received_at for r in oms.requests)
    assert times[-1] - times[0] >= 2.0


async def test_a_long_retry_after_on_a_single_call_pauses_a_push_too(
    make_client: ClientFactory
) -> None:
    """A 429 with Retry-After: 5 on a single call holds the account: a push started right
    after sends nothing until the pause is over."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 429, headers={"Retry-After": "5"})

        async def call() -> None:
            await client.update_tracking_status("o-call", "1", STATUS)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.sleep(0.3)  # the 429 has arrived (answers take milliseconds)
                assert [r.status for r in oms.requests] == [429]
                summary = await client.push_all(
                    TrackingUpdate(f"o-{n}", "1", STATUS) for n in range(5)
                )
    assert summary.succeeded == 5
    first_429 = oms.requests[0]
    assert first_429.status == 429
    later = [r for r in oms.requests[1:]]
    assert len(later) == 6
    assert min(r.received_at for r in later) - first_429.received_at >= 4.8


async def test_repeated_401s_make_single_calls_fail_fast_then_try_again(
    make_client: ClientFactory
) -> None:
    """After three 401s in a row the account's calls fail with AuthCooldownError without
    reaching VTEX; after the cool-down the next call tries again and, the key fixed,
    succeeds."""
    async with FakeOMS() as oms, make_client(oms, auth_cooldown=0.5) as client:
        oms.fail_next(3, 401)
        for n in range(3):
            with pytest.raises(AuthenticationError):
                await client.update_tracking_status(f"o-{n}", "1", STATUS)
        with pytest.raises(AuthCooldownError) as caught:
            await client.update_tracking_status("o-3", "1", STATUS)
        assert len(oms.requests) == 3  # refused locally, VTEX never saw it
        assert caught.value.account == "acme"
        assert isinstance(caught.value.cause, AuthenticationError)
        assert "not sent" in str(caught.value) and "3 times in a row" in str(caught.value)
        await anyio.sleep(0.6)
        receipt = await client.update_tracking_status("o-4", "1", STATUS)
    assert receipt.attempts == 1
    assert len(oms.requests) == 4


async def test_a_push_meets_an_account_already_cooling_down(make_client: ClientFactory) -> None:
    """A push started while the account cools down sends nothing for it and reports every
    update as stopped by the refused credentials."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(3, 401)
        for n in range(3):
            with pytest.raises(AuthenticationError):
                await client.update_tracking_status(f"o-{n}", "1", STATUS)
        summary = await client.push_all(TrackingUpdate(f"p-{n}", "1", STATUS) for n in range(10))
    assert len(oms.requests) == 3
    assert summary.failed == 10
    assert summary.by_outcome == {"auth": 10}


async def test_a_call_that_waits_too_long_for_its_turn_is_never_sent(
    make_client: ClientFactory
) -> None:
    """pace_timeout bounds the wait; the error says the SDK throttled it, and the server
    never saw the request."""
    async with FakeOMS() as oms, make_client(oms, rate_limit=1, pace_timeout=0.2) as client:
        results = []
        async with anyio.create_task_group() as tg:

            async def call(n: int) -> None:
                try:
                    results.append(await client.update_tracking_status(f"o-{n}", "1", STATUS))
                except PaceTimeoutError as exc:
                    results.append(exc)

            for n in range(3):
                tg.start_soon(call, n)
    errors = [r for r in results if isinstance(r, PaceTimeoutError)]
    assert len(errors) == 2
    assert len(oms.requests) == 1
    for error in errors:
        assert isinstance(error, TimeoutError)
        assert error.attempts == 0
        assert error.account == "acme"
        assert "not sent" in str(error) and "not refused by VTEX" in str(error)


async def test_without_adaptive_pacing_calls_are_not_held_back(make_client: ClientFactory) -> None:
    """adaptive=False with no rate_limit is the opt-out for callers who pace themselves:
    64 calls go out at once (no slow start), and a 429 comes back as it is."""
    async with FakeOMS(latency=0.2) as oms, make_client(
        oms, adaptive=False, retry=RetryPolicy.disabled()
    ) as client, anyio.create_task_group() as tg:
        for n in range(64):
            tg.start_soon(client.update_tracking_status, f"o-{n}", "1", STATUS)
    assert oms.max_in_flight == 64


@pytest.mark.real_start
async def test_a_push_that_paces_itself_is_not_held_at_a_new_accounts_slow_start(
    make_client: ClientFactory
) -> None:
    """push(adaptive=False) on an account never used: the push's own pace is capped by the
    account's configured limit only, not by the adaptive pace's rate of the moment (a new
    account's is the slow start's 2 req/s, which held such a push at 2 req/s)."""
    async with FakeOMS(latency=0.2) as oms, make_client(oms) as client:
        with anyio.fail_after(20):
            summary = await client.push_all(
                (TrackingUpdate(f"o-{n}", "1", STATUS) for n in range(64)),
                adaptive=False,
                concurrency=32,
            )
    assert summary.succeeded == 64
    assert oms.max_in_flight >= 16, oms.max_in_flight


async def test_a_push_that_paces_itself_keeps_the_accounts_configured_limit(
    make_client: ClientFactory
) -> None:
    """push(adaptive=False) still obeys the rate_limit the application set for the account."""
    async with FakeOMS() as oms, make_client(oms, rate_limit=20) as client:
        with anyio.fail_after(20):
            summary = await client.push_all(
                (TrackingUpdate(f"o-{n}", "1", STATUS) for n in range(60)), adaptive=False
            )
    assert summary.succeeded == 60
    assert _max_in_any_second(oms) <= 20 + 2, _max_in_any_second(oms)


async def test_the_window_grows_with_latency_past_the_old_default(
    make_client: ClientFactory
) -> None:
    """Against a server 100 ms away, a push with default settings keeps far more than 16
    requests in flight (the old default), so a far account is not capped at 160/s."""
    async with FakeOMS(latency=0.1) as oms, make_client(oms) as client:
        with anyio.fail_after(30):
            summary = await client.push_all(
                TrackingUpdate(f"o-{n}", "1", STATUS) for n in range(1500)
            )
    assert summary.succeeded == 1500
    assert oms.max_in_flight >= 100


async def test_a_fast_account_does_not_take_a_slow_ones_share() -> None:
    """Two accounts through 4 senders: an unlimited one with a big backlog, and one
    limited to 10 req/s. The slow one still gets its full rate."""
    stores = {
        "fast": FakeAccount("vtexappkey-fast", "token-fast"),
        "slow": FakeAccount("vtexappkey-slow", "token-slow"),
    }
    async with FakeOMS(accounts=stores, latency=0.02) as oms:
        registry = Accounts.from_mapping(
            {name: {"app_key": f"vtexappkey-{name}", "app_token": f"token-{name}",
                    "base_url": oms.url} | ({"rate_limit": 10} if name == "slow" else {})
             for name in ("fast", "slow")}
        )  # fmt: skip
        async with AsyncTrackingClient.from_accounts(registry, retry=RETRY) as client:
            updates = [
                TrackingUpdate(f"s-{n}", "1", STATUS, account_name="slow") for n in range(20)
            ]
            updates += [
                TrackingUpdate(f"f-{n}", "1", STATUS, account_name="fast") for n in range(1000)
            ]
            started = time.monotonic()
            slow_done = None
            with anyio.fail_after(30):
                async with client.push(updates, concurrency=4) as stream:
                    async for result in stream:
                        assert result.ok, result.error
                        if result.account == "slow" and result.update.order_id == "s-19":
                            slow_done = time.monotonic() - started
    assert slow_done is not None
    # 20 updates at 10/s after a burst of 1: about 1.9 s; fast's 1,000 updates (at 4 in
    # flight, 20 ms each: about 5 s) must not push the slow account back.
    assert slow_done < 3.0


def test_the_sync_client_mirrors_the_async_clients_public_signatures() -> None:
    """Every public method of AsyncTrackingClient has a TrackingClient twin with the same
    parameters (names, kinds, defaults); only the async-only session is left out."""
    for name, method in inspect.getmembers(AsyncTrackingClient, inspect.isfunction):
        if name.startswith("_") and name != "__init__":
            continue
        twin = getattr(TrackingClient, {"aclose": "close"}.get(name, name), None)
        assert twin is not None, f"TrackingClient has no {name}"
        params = [
            (p.name, p.kind, p.default)
            for p in inspect.signature(method).parameters.values()
            if p.name != "session"
        ]
        twin_params = [
            (p.name, p.kind, p.default) for p in inspect.signature(twin).parameters.values()
        ]
        assert params == twin_params, name
    for name in ("from_env", "from_accounts"):
        assert inspect.signature(getattr(AsyncTrackingClient, name)).parameters.keys() == (
            inspect.signature(getattr(TrackingClient, name)).parameters.keys()
        )


async def test_a_push_left_early_gives_back_every_admission_it_held(
    make_client: ClientFactory
) -> None:
    """Breaking out of a push cancels its requests and returns their places in the account's
    pace: single calls right after find the whole window free."""
    async with FakeOMS(latency=0.3) as oms, make_client(
        oms, adaptive=False, max_concurrency=4, pace_timeout=1.0
    ) as client:
        stream = client.push(TrackingUpdate(f"p-{n}", "1", STATUS) for n in range(40))
        async with stream:
            async for _ in stream:
                break  # three more requests were in flight, more admissions queued
        pace = client._sender_for(None).pace
        assert pace.in_flight == 0
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for n in range(4):  # all four at once: a leaked place would time one out
                    tg.start_soon(client.update_tracking_status, f"c-{n}", "1", STATUS)
    assert sum(1 for r in oms.requests if r.order_id and r.order_id.startswith("c-")) == 4


async def test_stopping_a_push_over_many_accounts_reports_every_update_as_stopped() -> None:
    """stop() in the middle of a push over three accounts: every update still gets exactly
    one result, confirmed or PushStoppedError (never an internal error)."""
    names = ["a", "b", "c"]
    stores = {n: FakeAccount(f"vtexappkey-{n}", f"token-{n}") for n in names}
    async with FakeOMS(accounts=stores, latency=0.05) as oms:
        registry = Accounts.from_mapping(
            {n: {"app_key": f"vtexappkey-{n}", "app_token": f"token-{n}", "base_url": oms.url}
             for n in names}
        )  # fmt: skip
        async with AsyncTrackingClient.from_accounts(registry, retry=RETRY) as client:
            updates = [
                TrackingUpdate(f"o-{i}", "1", STATUS, account_name=names[i % 3])
                for i in range(300)
            ]
            results = []
            async with client.push(updates, concurrency=6) as stream:
                async for result in stream:
                    results.append(result)
                    if len(results) == 20:
                        stream.stop()
    assert sorted(r.index for r in results) == list(range(300))
    for result in results:
        assert result.ok or isinstance(result.error, PushStoppedError), result.error
    assert sum(1 for r in results if r.ok) >= 20


async def test_a_sender_waiting_out_a_retry_lends_its_turn(make_client: ClientFactory) -> None:
    """concurrency bounds requests in flight, not waits: while two updates wait out a
    Retry-After of 1 s, the push's other updates keep going."""
    async with FakeOMS(latency=0.01) as oms, make_client(oms, adaptive=False) as client:
        oms.fail_next(2, 429, headers={"Retry-After": "1"})
        started = time.monotonic()
        confirmed_at = []
        async with client.push(
            (TrackingUpdate(f"o-{n}", "1", STATUS) for n in range(20)), concurrency=2
        ) as stream:
            async for result in stream:
                assert result.ok, result.error
                confirmed_at.append(time.monotonic() - started)
    assert len(confirmed_at) == 20
    assert sum(1 for t in confirmed_at if t < 0.8) == 18  # all but the two retried


def test_a_client_reused_across_event_loops_keeps_its_pace_working() -> None:
    """A module-level client used by one asyncio.run() per job: each new loop finds the pace
    with no request left over from the loop that ended, and what it learned kept."""
    import asyncio

    with FakeOMS() as oms:
        client = AsyncTrackingClient(
            "acme", APP_KEY, APP_TOKEN, base_url=oms.url, rate_limit=40, retry=RETRY
        )
        for job in range(3):
            receipt = asyncio.run(client.update_tracking_status(f"o-{job}", "1", STATUS))
            assert receipt.attempts == 1
        pace = client._sender_for(None).pace
        assert pace.in_flight == 0
        assert pace.bucket.rate == 40
        asyncio.run(client.aclose())
    assert len(oms.requests) == 3
