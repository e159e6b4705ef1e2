"""Shared fixtures: the anyio backend, sample data, and a client factory bound to FakeOMS."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from vtex_tracking import (
    APIError,
    AsyncTrackingClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    PushResult,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TrackingClient,
    TrackingEvent,
    TrackingStatus,
    _throttle,
)
from vtex_tracking.testing import FakeOMS

from .redis_server import RedisServer

#: Credentials FakeOMS accepts by default (see vtex_tracking.testing.FakeOMS).
APP_KEY = "vtexappkey-fake-oms"
APP_TOKEN = "fake-oms-app-token"

#: The documented error class of each HTTP status VTEX gives a meaning to.
ERROR_FOR_STATUS: list[tuple[int, type[APIError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (429, RateLimitError),
    (500, ServerError),
    (503, ServerError),
]

#: Retries without noticeable sleeps, for tests of what is retried (not of how long).
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01)


#: The rate a new account starts at in tests of everything but the start itself. The SDK's
#: (``_throttle.START_RATE``, 2/s) makes a new account's first seconds slow on purpose, to
#: spare small stores; hundreds of tests each pushing a few updates to a fresh account would
#: each wait for it. Tests of the start take the real one (``@pytest.mark.real_start``).
TEST_START_RATE = 1000.0


# The suite predates the tracking number: its servers apply every PUT, numbered or not, unless
# a test asks for VTEX's trap (``require_tracking_number=True``); the default itself (on) is
# pinned in tests/test_tracking_number.py. Set at import, before any fixture makes a server.
FakeOMS.REQUIRE_TRACKING_NUMBER = False


@pytest.fixture(autouse=True)
def _fast_start(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """New accounts start at ``TEST_START_RATE`` unless the test is ``real_start``."""
    if request.node.get_closest_marker("real_start") is None:
        monkeypatch.setattr(_throttle, "START_RATE", TEST_START_RATE)


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture
def status() -> TrackingStatus:
    """A realistic two-event status, not yet delivered."""
    return TrackingStatus(
        [
            TrackingEvent(
                "Rio de Janeiro", "RJ", "Coletado pela transportadora", dt.date(2026, 11, 2)
            ),
            TrackingEvent("São Paulo", "SP", "Em trânsito para Curitiba", dt.date(2026, 11, 3)),
        ]
    )


class Clock:
    """A manual monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ClientFactory:
    """Makes clients bound to a FakeOMS (or any URL) and closes them all at teardown.

    ``make_client(oms)`` is an ``AsyncTrackingClient``, ``make_client.sync(oms)`` a
    ``TrackingClient``, both for account ``acme`` with FakeOMS's default credentials and the
    ``client_options`` fixture's arguments; keyword arguments override any of them.
    """

    def __init__(self, defaults: dict[str, Any]) -> None:
        self._defaults = defaults
        self._async: list[AsyncTrackingClient] = []
        self._sync: list[TrackingClient] = []

    def _arguments(self, target: FakeOMS | str, options: dict[str, Any]) -> dict[str, Any]:
        url = target if isinstance(target, str) else target.url
        defaults = {"app_key": APP_KEY, "app_token": APP_TOKEN, **self._defaults, "base_url": url}
        return defaults | options

    def __call__(
        self, target: FakeOMS | str, account_name: str = "acme", **options: Any
    ) -> AsyncTrackingClient:
        """An ``AsyncTrackingClient`` sending to ``target`` (a FakeOMS or a base URL)."""
        client = AsyncTrackingClient(account_name, **self._arguments(target, options))
        self._async.append(client)
        return client

    def sync(
        self, target: FakeOMS | str, account_name: str = "acme", **options: Any
    ) -> TrackingClient:
        """A ``TrackingClient`` sending to ``target`` (a FakeOMS or a base URL)."""
        client = TrackingClient(account_name, **self._arguments(target, options))
        self._sync.append(client)
        return client

    def close_all(self) -> None:
        """Close every client made (closing twice is harmless; a pool whose event loop has
        ended is let go, not closed through a dead loop)."""
        for sync_client in self._sync:
            sync_client.close()

        async def close_async() -> None:
            for client in self._async:
                await client.aclose()

        if self._async:
            asyncio.run(close_async())


@pytest.fixture
def client_options() -> dict[str, Any]:
    """Arguments every client ``make_client`` makes gets unless the call overrides them; a
    test module overrides this fixture to change its own defaults."""
    return {"retry": FAST_RETRY}


@pytest.fixture
def make_client(client_options: dict[str, Any]) -> Iterator[ClientFactory]:
    """The client factory: ``make_client(oms, **options)``, ``make_client.sync(...)``; every
    client it made is closed when the test ends."""
    factory = ClientFactory(client_options)
    yield factory
    factory.close_all()


@pytest.fixture
def oms(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOMS]:
    """A threaded FakeOMS whose credentials are in the VTEX_* environment variables (the CLI
    tests' server; modules that need another kind define their own ``oms``)."""
    with FakeOMS() as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", server.app_key)
        monkeypatch.setenv("VTEX_APP_TOKEN", server.app_token)
        monkeypatch.delenv("VTEX_USER_TOKEN", raising=False)
        monkeypatch.delenv("VTEX_ACCOUNTS", raising=False)
        yield server


def history(step: int) -> TrackingStatus:
    """A growing history: ``step + 1`` events (a later step is a newer snapshot)."""
    return TrackingStatus(
        [
            TrackingEvent("Campinas", "SP", f"Evento {n}", dt.date(2026, 11, 1))
            for n in range(step + 1)
        ]
    )


def history_line(order: str, step: int = 0, invoice: str = "NF-1") -> str:
    """``history(step)`` of one invoice as a JSONL line of the CLI's input."""
    events = [
        {"city": "Campinas", "state": "SP", "description": f"Evento {n}", "date": "2026-11-01"}
        for n in range(step + 1)
    ]
    return json.dumps({"orderId": order, "invoiceNumber": invoice, "events": events})


def write_lines(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    """Write ``lines`` as a UTF-8 text file, one per line."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


async def push_results(client: Any, updates: Any, **options: Any) -> list[PushResult]:
    """Every result of ``client.push(updates, **options)``, in input order."""
    results = []
    async with client.push(updates, **options) as stream:
        async for result in stream:
            results.append(result)
    return sorted(results, key=lambda r: r.index)


def read_records(path: pathlib.Path) -> list[dict[str, Any]]:
    """The JSON lines of a file the CLI wrote (a failures file), as dicts."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for one test (stopped afterwards); the
    test may ``stop()`` and ``start()`` it to play an outage."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[Any]:
    """A plain redis-py client on the test's Redis, to read or write what a peer (or a
    hostile one) would."""
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()
