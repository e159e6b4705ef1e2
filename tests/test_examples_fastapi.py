"""The FastAPI recipe (examples/fastapi_app.py) served by a real uvicorn on 127.0.0.1, with
FakeOMS as VTEX: requests are forwarded, errors mapped, and the client closed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import pathlib
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from vtex_tracking import (
    AsyncTrackingClient,
    ClientClosedError,
    RetryPolicy,
    TrackingEvent,
    TrackingStatus,
)
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN

RECIPE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "fastapi_app.py"
BODY = {
    "isDelivered": False,
    "deliveredDate": None,
    "events": [
        {"city": "Rio de Janeiro", "state": "RJ", "description": "Coletado", "date": "2026-11-02"},
        {"city": "São Paulo", "state": "SP", "description": "Em trânsito", "date": "2026-11-03"},
    ],
}
TRACKING = "/orders/{}/invoices/{}/tracking"


def load_example(path: pathlib.Path) -> ModuleType:
    """Import ``examples/<name>.py`` as the module ``<name>`` (examples/ is no package)."""
    name = path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


recipe = load_example(RECIPE)


class LiveServer:
    """A uvicorn server in a thread on a free port of 127.0.0.1; ``stop()`` ends it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        # log_config=None: leave the process's logging configuration alone.
        config = uvicorn.Config(
            app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, name="uvicorn"
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        # uvicorn offers no event for "started", only a flag: poll it, bounded.
        while not self.server.started:
            assert self._thread.is_alive(), "uvicorn stopped during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)

    def stop(self) -> None:
        """Ask uvicorn to exit (runs the lifespan's shutdown) and join its thread."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "uvicorn did not stop within 15 s"
        self._socket.close()


@pytest.fixture
def oms(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOMS]:
    """FakeOMS as VTEX, and the environment the recipe configures its client from."""
    with FakeOMS() as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", APP_KEY)
        monkeypatch.setenv("VTEX_APP_TOKEN", APP_TOKEN)
        monkeypatch.setenv("VTEX_BASE_URL", server.url)
        monkeypatch.delenv("VTEX_USER_TOKEN", raising=False)
        yield server


@contextlib.contextmanager
def serving(**client_options: Any) -> Iterator[LiveServer]:
    """The recipe's app (``client_options`` passed to ``create_app``) served until the
    block ends."""
    live = LiveServer(recipe.create_app(**client_options))
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def live(oms: FakeOMS) -> Iterator[LiveServer]:
    """The recipe's app, as shipped, served by uvicorn."""
    with serving() as server:
        yield server


@pytest.fixture
def live_once(oms: FakeOMS) -> Iterator[LiveServer]:
    """The recipe's app with one attempt per call, so one injected failure is the answer."""
    with serving(retry=RetryPolicy.disabled()) as server:
        yield server


def _client(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.url, trust_env=False, timeout=30)


def _vtex_connections(port: int) -> int:
    """Established TCP connections from this machine to 127.0.0.1:``port`` (Linux)."""
    count = 0
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[3] == "01":  # 01: ESTABLISHED
            count += 1
    return count


def test_put_forwards_the_body_to_vtex_and_returns_the_receipt(
    live: LiveServer, oms: FakeOMS
) -> None:
    """A valid PUT reaches VTEX unchanged, as the invoice's history, and answers the receipt."""
    with _client(live) as http:
        answer = http.put(TRACKING.format("1172452900788-01", "000030711"), json=BODY)
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["orderId"] == "1172452900788-01"
    assert receipt["attempts"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", receipt["requestId"])  # FakeOMS's X-Request-Id
    assert len(receipt["receipt"]) == 32
    assert oms.accepted("1172452900788-01", "000030711") == [BODY]
    assert oms.requests[0].headers["X-VTEX-API-AppKey"] == APP_KEY


def test_concurrent_requests_share_the_one_client(live: LiveServer, oms: FakeOMS) -> None:
    """24 requests at once are all forwarded through the client the lifespan opened."""
    shared = live.app.state.tracking
    assert isinstance(shared, AsyncTrackingClient)

    def put(n: int) -> int:
        with _client(live) as http:
            return http.put(TRACKING.format(f"o-{n}", "NF-1"), json=BODY).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(24)))
    assert statuses == [200] * 24
    assert sorted(oms.updates) == sorted((f"o-{n}", "NF-1") for n in range(24))
    assert live.app.state.tracking is shared


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({**BODY, "isDelivered": "maybe"}, ["body", "isDelivered"]),
        ({"isDelivered": False, "deliveredDate": None}, ["body", "events"]),
        ({**BODY, "isDelivred": True}, ["body", "isDelivred"]),
        ({**BODY, "events": [{"city": "Recife"}]}, ["body", "events", 0, "state"]),
    ],
    ids=["wrong-type", "missing-events", "unknown-field", "incomplete-event"],
)
def test_a_body_not_in_vtex_shape_gets_422_and_nothing_is_sent(
    live: LiveServer, oms: FakeOMS, body: dict[str, Any], where: list[Any]
) -> None:
    """A body that is not VTEX's shape is refused by FastAPI with 422 naming the field."""
    with _client(live) as http:
        answer = http.put(TRACKING.format("o-1", "NF-1"), json=body)
    assert answer.status_code == 422
    assert where in [error["loc"] for error in answer.json()["detail"]]
    assert oms.requests == []


def test_a_value_the_sdk_refuses_gets_422_naming_the_field(
    live: LiveServer, oms: FakeOMS
) -> None:
    """A well-shaped body the models refuse (a 5,001-character description) answers 422
    with the SDK's field and message, and nothing is sent."""
    event = {**BODY["events"][0], "description": "x" * 5001}  # type: ignore[index]
    with _client(live) as http:
        answer = http.put(TRACKING.format("o-1", "NF-1"), json={**BODY, "events": [event]})
    assert answer.status_code == 422
    error = answer.json()
    assert error["error"] == "ValidationError"
    assert error["field"] == "TrackingEvent.description"
    assert "5000" in error["message"].replace(",", "")
    assert oms.requests == []


@pytest.mark.parametrize(
    ("vtex_status", "headers", "status", "retry_after"),
    [
        (404, {}, 404, None),
        (429, {"Retry-After": "7"}, 503, "7"),
        (429, {}, 503, "30"),
        (500, {}, 502, None),
        (401, {}, 502, None),
        (403, {}, 502, None),
    ],
)
def test_vtex_errors_map_to_http_answers(
    live_once: LiveServer,
    oms: FakeOMS,
    vtex_status: int,
    headers: dict[str, str],
    status: int,
    retry_after: str | None,
) -> None:
    """VTEX's refusals become 404 (unknown invoice), 503 with Retry-After (rate limit) or
    502 (anything else), carrying VTEX's status and request id."""
    oms.fail_next(1, vtex_status, headers=headers)
    with _client(live_once) as http:
        answer = http.put(TRACKING.format("o-1", "NF-1"), json=BODY)
    assert answer.status_code == status
    assert answer.headers.get("Retry-After") == retry_after
    error = answer.json()
    assert error["vtexStatus"] == vtex_status
    assert re.fullmatch(r"[0-9a-f]{32}", error["vtexRequestId"])
    assert APP_TOKEN not in answer.text
    assert len(oms.requests) == 1


def test_an_unreachable_vtex_gets_502(oms: FakeOMS, monkeypatch: pytest.MonkeyPatch) -> None:
    """When nothing listens at VTEX's address the caller gets 502, not a traceback."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("VTEX_BASE_URL", f"http://127.0.0.1:{port}")
    with serving(retry=RetryPolicy.disabled()) as live, _client(live) as http:
        answer = http.put(TRACKING.format("o-1", "NF-1"), json=BODY)
    assert answer.status_code == 502
    assert answer.json()["error"] == "ConnectError"  # a TransportError: no connection made


def test_shutdown_closes_the_client_and_its_connections(oms: FakeOMS) -> None:
    """Stopping uvicorn runs the lifespan's exit: the pooled connection to VTEX is closed
    and the client refuses further calls without sending anything."""
    live = LiveServer(recipe.create_app())
    live.start()
    try:
        with _client(live) as http:
            assert http.put(TRACKING.format("o-1", "NF-1"), json=BODY).status_code == 200
        client = live.app.state.tracking
        assert _vtex_connections(oms.port) >= 1  # kept alive in the client's pool
    finally:
        live.stop()
    deadline = time.monotonic() + 5
    while _vtex_connections(oms.port) and time.monotonic() < deadline:
        time.sleep(0.01)  # the kernel has no event to await for a socket's state
    assert _vtex_connections(oms.port) == 0
    status = TrackingStatus([TrackingEvent("Recife", "PE", "Postado", "2026-11-02")])
    with pytest.raises(ClientClosedError):
        asyncio.run(client.update_tracking_status("o-2", "NF-1", status))
    assert len(oms.requests) == 1
