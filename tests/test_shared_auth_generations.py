"""The shared auth stop cannot go stale: refusals seen before a success ended them (a key
restored meanwhile), or while a process could not reach Redis, never re-arm the stop when
they are reported late."""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis

from vtex_tracking import AuthCooldownError, RetryPolicy, SharedPace, TrackingStatus
from vtex_tracking.testing import FakeAccount, FakeOMS

from .conftest import ClientFactory
from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

#: The Redis key of account "acme" in the default environment, as the SDK names it.
KEY = "vtex-tracking:pace:acme.vtexcommercestable"
#: The account's credentials in FakeOMS (revocable, as after a key rotation).
STORE_KEY = "vtexappkey-acme"
STORE_TOKEN = "acme-app-token"
#: Seconds of quiet after which a client asks Redis before its next call (``STALE_AFTER``).
QUIET = 1.1
#: Each client's auth cooldown, short so the test waits little.
COOLDOWN = 1.5


def _stop_armed(direct: redis.Redis) -> bool:
    """Whether the account's hash holds an auth stop not over yet (on Redis' clock)."""
    sec, usec = direct.time()
    return float(direct.hget(KEY, "authu") or 0) > sec + usec / 1_000_000


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms, for at most 5 s."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def _send_when_allowed(client: Any, order: str, status: TrackingStatus) -> None:
    """Send one update, waiting out the client's own auth stop first (at most 5 s)."""
    with anyio.fail_after(5):
        while True:
            try:
                await client.update_tracking_status(order, "NF-1", status)
                return
            except AuthCooldownError as stopped:
                await anyio.sleep(stopped.retry_in + 0.05)


async def _late_refusals_scenario(
    redis_server: RedisServer,
    direct: redis.Redis,
    make_client: ClientFactory,
    status: TrackingStatus,
    *,
    stop_in_redis: bool,
) -> tuple[list[int], bool]:
    """Client "late" sees three refusals while Redis is frozen; the key is restored and
    client "peer" succeeds; then "late" rejoins and reports. Returns the statuses of every
    request sent after the restore, and whether Redis held an auth stop at the end."""
    account = FakeAccount(STORE_KEY, STORE_TOKEN)
    options: dict[str, Any] = {
        "app_key": STORE_KEY,
        "app_token": STORE_TOKEN,
        "shared_pace": SharedPace(url=redis_server.url, timeout=0.2),
        "auth_cooldown": COOLDOWN,
        "retry": RetryPolicy(max_attempts=1),
    }
    async with FakeOMS(accounts={"acme": account}) as oms:
        late = make_client(oms, **options)
        peer = make_client(oms, **options)
        for i in range(3):
            await late.update_tracking_status(f"warm-late-{i}", "NF-1", status)
            await peer.update_tracking_status(f"warm-peer-{i}", "NF-1", status)
        account.revoked = True
        if stop_in_redis:
            for i in range(3):  # the peer's refusals arm the shared stop
                with pytest.raises(Exception, match="401"):
                    await peer.update_tracking_status(f"refused-peer-{i}", "NF-1", status)
            await _until(lambda: _stop_armed(direct))
        redis_server.freeze()
        try:
            await anyio.sleep(QUIET)  # "late" must ask Redis first: it times out, goes alone
            for i in range(3):
                with pytest.raises(Exception, match="401"):
                    await late.update_tracking_status(f"refused-late-{i}", "NF-1", status)
            assert late.metrics()["acme"].shared_pace == "local"
        finally:
            redis_server.thaw()
        account.revoked = False
        restored = len(oms.requests)
        await _send_when_allowed(peer, "peer-after", status)  # its success ends the stop
        await _until(lambda: not _stop_armed(direct))
        # "late" rejoins once its own stop is over, reporting what it saw while alone.
        await _send_when_allowed(late, "late-after", status)
        await _until(lambda: late.metrics()["acme"].shared_pace == "shared")
        await anyio.sleep(QUIET)  # both clients ask Redis again before their next calls
        with anyio.fail_after(5):
            for i in range(3):
                await peer.update_tracking_status(f"peer-next-{i}", "NF-1", status)
                await late.update_tracking_status(f"late-next-{i}", "NF-1", status)
        statuses = [r.status for r in oms.requests[restored:]]
        return statuses, _stop_armed(direct)


async def test_refusals_seen_while_redis_was_away_do_not_restop_a_restored_key(
    redis_server: RedisServer,
    direct: redis.Redis,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """A shared stop ended by a success after the key came back is not re-armed by a client
    that reports, on rejoining, the refusals it saw while Redis was frozen."""
    started = time.monotonic()
    statuses, stopped = await _late_refusals_scenario(
        redis_server, direct, make_client, status, stop_in_redis=True
    )
    assert not stopped, "the restored key was stopped again by refusals reported late"
    assert statuses == [200] * 8, statuses
    assert time.monotonic() - started < 20


async def test_refusals_seen_only_while_redis_was_away_never_arm_a_shared_stop(
    redis_server: RedisServer,
    direct: redis.Redis,
    make_client: ClientFactory,
    status: TrackingStatus,
) -> None:
    """Refusals one client saw only while Redis was frozen (no stop in Redis, the key since
    restored and used) do not arm a shared stop when that client rejoins."""
    started = time.monotonic()
    statuses, stopped = await _late_refusals_scenario(
        redis_server, direct, make_client, status, stop_in_redis=False
    )
    assert not stopped, "the restored key was stopped by refusals reported late"
    assert statuses == [200] * 8, statuses
    assert time.monotonic() - started < 20


# -- the script itself, on a real Redis --------------------------------------------------------

_SCRIPT = importlib.resources.files("vtex_tracking").joinpath("_shared_script.lua").read_text()


def _call(
    script: Any,
    *,
    ok: int = 0,
    refused: int = 0,
    stops_known: int = 0,
    auth_gen: object = 0,
    throttled: int = 0,
    known_rate: float = 0,
    starting: bool = False,
) -> list[int]:
    """One call of the shared script for account "acme" (no lease), as the SDK makes it;
    ``known_rate``/``starting``: the rate the caller last heard of, and whether a slow start's."""
    args: list[object] = [
        0, ok, throttled, 0, refused, 0.01, 60_000, 3, 30.0, 0, 1, 1.0, 0.7, 0.1, 5.0, 1.0, 0.5,
        0.5, 0.2, 0, stops_known, 2.0, 0.5, "test-process", known_rate, 60.0, 1.0, auth_gen,
        64.0, 0.25, 4096.0, 0.6, 8, 1.25, 150, 2_592_000_000, 604_800.0, 86_400.0, 30.0,
        3, 0.1, 0.0, 0.5, 5.0, 1.25, 2.0, 1 if starting else 0, 1.0,
    ]  # fmt: skip
    return [int(v) for v in script(keys=[KEY], args=args)]


def test_the_script_counts_refusals_only_in_the_current_auth_generation(
    direct: redis.Redis,
) -> None:
    """Three refusals arm a stop; a success ends it and starts a new auth generation;
    refusals tagged with the old generation (or none, or garbage) are then ignored, and
    three tagged with the new one arm a stop again."""
    script = direct.register_script(_SCRIPT)
    first = _call(script, refused=3, auth_gen=0)
    assert first[5] > 0  # auth_ms: stopped
    cleared = _call(script, ok=1, stops_known=first[7])
    assert cleared[5] == 0
    for stale in (0, -1, "garbage", "nan"):
        late = _call(script, refused=3, auth_gen=stale)
        assert late[5] == 0, f"refusals tagged {stale!r} re-armed the stop"
    assert direct.hget(KEY, "authf") == "0"
    assert direct.hget(KEY, "authg") == "1" and late[9] == 1  # told to every caller
    again = _call(script, refused=3, auth_gen=1)
    assert again[5] > 0


def test_a_hash_without_or_with_a_garbled_auth_generation_starts_at_zero(
    direct: redis.Redis,
) -> None:
    """A hash written before auth generations existed (no field), or with a garbled one,
    counts as generation 0: refusals tagged 0 still arm a stop, and the field is rewritten."""
    script = direct.register_script(_SCRIPT)
    _call(script, ok=1)
    for garbled in (None, "garbage"):
        if garbled is None:
            direct.hdel(KEY, "authg")
        else:
            direct.hset(KEY, "authg", garbled)
        direct.hset(KEY, mapping={"authf": "0", "authu": "0"})
        answer = _call(script, refused=3, auth_gen=0)
        assert answer[5] > 0 and answer[9] == 0, (garbled, answer)
        assert direct.hget(KEY, "authg") == "0"
