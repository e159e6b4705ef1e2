"""``FakeOMS``: a real HTTP server on 127.0.0.1 that behaves like VTEX's tracking endpoint.

Tests (ours and our users') talk to it over real sockets instead of mocking the HTTP library.
It checks credentials, validates bodies against VTEX's OpenAPI schema, answers receipts,
records what it accepted, and has knobs for the failures VTEX produces in production.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from multidict import CIMultiDict

from ._schema import validate_request_body

_PREFIX = ("", "api", "oms", "pvt", "orders")
_JSON = "application/json; charset=utf-8"


class RecordedRequest:
    """One request as FakeOMS received it. Header values are kept but never shown in repr
    (they hold credentials)."""

    __slots__ = (
        "body",
        "headers",
        "invoice_number",
        "method",
        "order_id",
        "raw_path",
        "received_at",
        "status",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        order_id: str | None,
        invoice_number: str | None,
        headers: CIMultiDict[str],
        body: bytes,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.order_id = order_id
        self.invoice_number = invoice_number
        self.headers = headers
        self.body = body
        self.status = 0  # what was answered; 0 while pending or when the connection was dropped
        self.received_at = time.monotonic()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return (
            f"RecordedRequest({self.method} {self.raw_path} -> {self.status},"
            f" headers=[{', '.join(self.headers)}])"
        )


def parse_tracking_path(raw_path: str) -> tuple[str, str] | None:
    """``(order_id, invoice_number)`` decoded from a raw tracking path, or None.

    aiohttp's router matches decoded paths, where ``NF%2F123`` would become two segments;
    splitting the raw path keeps each id one segment, as VTEX's contract has it.
    """
    parts = raw_path.split("?", 1)[0].split("/")
    if len(parts) != 9 or tuple(parts[:5]) != _PREFIX:
        return None
    if parts[6] != "invoice" or parts[8] != "tracking" or not parts[5] or not parts[7]:
        return None
    return unquote(parts[5]), unquote(parts[7])


def vtex_timestamp(now: dt.datetime | None = None) -> str:
    """Now in VTEX's receipt format: 7 fractional digits and an offset."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0+00:00"


def _error_body(status: int, message: str, code: str | None = None) -> bytes:
    """VTEX's OMS error shape: ``{"error": {"code", "message", "exception"}}``."""
    error = {"code": code or str(status), "message": message, "exception": None}
    return orjson.dumps({"error": error})


def _vtex_error(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _raw_response(status, _error_body(status, message, code), headers or {}, _JSON)


class FakeOMS:
    """A fake VTEX OMS tracking endpoint on 127.0.0.1 (ephemeral port by default).

    Use ``async with FakeOMS() as oms:`` in async code, ``with FakeOMS() as oms:`` (a background
    thread) in sync code, or the ``fake_oms`` pytest fixture. Point a client at ``oms.url`` with
    ``oms.app_key``/``oms.app_token``. Knobs are plain attributes, settable at any time:
    ``latency``, ``rate_limit``/``burst``/``retry_after``, ``fail_rate``/``fail_status``,
    ``strict``; plus ``fail_next()``, ``drop_next()`` and ``add_invoice()``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        app_key: str = "vtexappkey-fake-oms",
        app_token: str = "fake-oms-app-token",  # noqa: S107 - a test credential, on purpose
        user_token: str | None = None,
        strict: bool = False,
        known_invoices: Iterable[tuple[str, str]] = (),
        latency: float = 0.0,
        rate_limit: float | None = None,
        burst: int = 10,
        retry_after: str | None = "1",
        fail_rate: float = 0.0,
        fail_status: int = 503,
        seed: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.app_key = app_key
        self.app_token = app_token
        self.user_token = user_token
        self.strict = strict
        self.known_invoices: set[tuple[str, str]] = set(known_invoices)
        self.latency = latency
        self.rate_limit = rate_limit
        self.burst = burst
        self.retry_after = retry_after
        self.fail_rate = fail_rate
        self.fail_status = fail_status
        # Failure injection only needs to be repeatable, not secure.
        self._random = random.Random(seed)  # noqa: S311
        self.requests: list[RecordedRequest] = []
        self.updates: dict[tuple[str, str], list[Any]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.overlaps = 0
        self._active: collections.Counter[tuple[str, str]] = collections.Counter()
        self._failures: collections.deque[tuple[int, bytes | None, dict[str, str], str | None]] = (
            collections.deque()
        )
        self._drops = 0
        self._tokens = float(burst)
        self._tokens_at = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"FakeOMS(url={self.url if self._runner else None!r}, credentials=<redacted>)"

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:54321``."""
        if self._runner is None:
            raise RuntimeError("FakeOMS is not running")
        return f"http://{self.host}:{self.port}"

    # -- knobs -------------------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        body: bytes | str | Mapping[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Answer the next ``count`` authenticated requests with ``status`` (queued after any
        earlier ``fail_next``); ``body`` defaults to a VTEX-shaped JSON error."""
        if isinstance(body, str):
            raw: bytes | None = body.encode()
        elif isinstance(body, (dict, list, Mapping)):
            raw = orjson.dumps(body)
            content_type = content_type or _JSON
        else:
            raw = body
        for _ in range(count):
            self._failures.append((status, raw, dict(headers or {}), content_type))

    def drop_next(self, count: int) -> None:
        """Close the connection of the next ``count`` requests without answering."""
        self._drops += count

    def add_invoice(self, order_id: str, invoice_number: str) -> None:
        """Make an invoice known (for ``strict`` mode)."""
        self.known_invoices.add((order_id, invoice_number))

    def accepted(self, order_id: str, invoice_number: str) -> list[Any]:
        """The bodies accepted for one invoice, in arrival order."""
        return self.updates.get((order_id, invoice_number), [])

    def reset(self) -> None:
        """Forget recorded requests and updates, and queued failures and drops."""
        self.requests.clear()
        self.updates.clear()
        self._failures.clear()
        self._drops = 0
        self.max_in_flight = self.in_flight
        self.overlaps = 0

    # -- request handling --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        ids = parse_tracking_path(request.raw_path)
        record = RecordedRequest(
            request.method,
            request.raw_path,
            ids[0] if ids else None,
            ids[1] if ids else None,
            CIMultiDict(request.headers),
            body,
        )
        self.requests.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if ids is not None:
            if self._active[ids]:
                self.overlaps += 1
            self._active[ids] += 1
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if self._drops > 0:
                self._drops -= 1
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)  # never reaches the client
            response = self._answer(request, record, ids)
            response.headers["X-Request-Id"] = uuid.uuid4().hex
            record.status = response.status
            return response
        finally:
            self.in_flight -= 1
            if ids is not None:
                self._active[ids] -= 1
                if not self._active[ids]:
                    del self._active[ids]

    def _authorized(self, request: web.Request) -> bool:
        headers = request.headers
        if self.user_token is not None and headers.get("VtexIdclientAutCookie") == self.user_token:
            return True
        return (
            headers.get("X-VTEX-API-AppKey") == self.app_key
            and headers.get("X-VTEX-API-AppToken") == self.app_token
        )

    def _take_token(self) -> bool:
        if self.rate_limit is None:
            return True
        now = time.monotonic()
        refill = (now - self._tokens_at) * self.rate_limit
        self._tokens = min(float(self.burst), self._tokens + refill)
        self._tokens_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def _answer(
        self, request: web.Request, record: RecordedRequest, ids: tuple[str, str] | None
    ) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        if not self._take_token():
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return web.Response(status=429, text="Too Many Requests", headers=headers)
        if self._failures:
            status, body, headers, content_type = self._failures.popleft()
            if body is None:
                body, content_type = _error_body(status, "Injected failure"), content_type or _JSON
            return _raw_response(status, body, headers, content_type)
        if self.fail_rate > 0 and self._random.random() < self.fail_rate:
            return _vtex_error(self.fail_status, "Injected failure")
        if ids is None:
            return _vtex_error(404, "Resource not found")
        if request.method != "PUT":
            return _vtex_error(405, "Method not allowed", headers={"Allow": "PUT"})
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return _vtex_error(400, "Content-Type must be application/json")
        try:
            doc = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return _vtex_error(400, "The request body is not valid JSON")
        problems = validate_request_body(doc)
        if problems:
            return _raw_response(400, _error_body(400, "; ".join(problems)), {}, _JSON)
        if self.strict and ids not in self.known_invoices:
            return _vtex_error(404, "Invoice Not Found", "OMS007")
        self.updates.setdefault(ids, []).append(doc)
        receipt = {"date": vtex_timestamp(), "orderId": ids[0], "receipt": uuid.uuid4().hex}
        return _raw_response(200, orjson.dumps(receipt), {}, _JSON)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening in the running event loop."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown timeout: clients' idle keep-alive connections must not delay stop().
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeOMS:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> FakeOMS:
        """Run the server in a background thread with its own event loop."""
        ready = threading.Event()
        errors: list[BaseException] = []

        async def serve() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            await self._thread_stop.wait()
            await self.stop()

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve(),), name="fake-oms", daemon=True
        )
        self._thread.start()
        ready.wait()
        if errors:
            self._thread.join()
            raise errors[0]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is None or self._thread_loop is None or self._thread_stop is None:
            return
        self._thread_loop.call_soon_threadsafe(self._thread_stop.set)
        self._thread.join(timeout=10)
        self._thread = None


def _raw_response(
    status: int, body: bytes | None, headers: Mapping[str, str], content_type: str | None
) -> web.Response:
    response = web.Response(status=status, body=body or b"", headers=dict(headers))
    if content_type is not None:
        response.headers["Content-Type"] = content_type
    return response
