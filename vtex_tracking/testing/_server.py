"""``FakeOMS``: a real HTTP server on 127.0.0.1 that behaves like VTEX's tracking endpoint.

Tests (ours and our users') talk to it over real sockets instead of mocking the HTTP library.
It checks credentials, validates bodies against VTEX's OpenAPI schema, answers receipts,
records what it received and accepted, and has knobs for the failures VTEX produces.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import http
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import orjson
from aiohttp import web
from multidict import CIMultiDict

from .._log import logger
from ._schema import (
    parse_invoice_path,
    parse_order_path,
    parse_tracking_path,
    validate_request_body,
    validate_tracking_number_body,
)

_JSON = "application/json; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"


@dataclasses.dataclass(repr=False, eq=False)
class RecordedRequest:
    """One request as FakeOMS received it, for assertions in tests.

    ``headers`` is a case-insensitive copy; its values are never shown in ``repr`` because
    they hold credentials. ``order_id``/``invoice_number`` are decoded from the path (None when
    it is not the tracking path); ``status`` is what was answered (0 while pending or when the
    connection was dropped); ``received_at`` is ``time.monotonic()`` at arrival.
    """

    method: str
    raw_path: str
    order_id: str | None
    invoice_number: str | None
    headers: CIMultiDict[str]
    body: bytes
    status: int = 0
    received_at: float = dataclasses.field(default_factory=time.monotonic)
    #: The store whose credentials came with it (``FakeOMS.accounts``), None for the server's
    #: own credentials or unknown ones.
    account: str | None = None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return (
            f"RecordedRequest({self.method} {self.raw_path} -> {self.status},"
            f" headers=[{', '.join(self.headers)}], body={len(self.body)} bytes)"
        )


@dataclasses.dataclass
class FakeAccount:
    """One more store served by a ``FakeOMS``, told apart by its credentials.

    ``rate_limit``/``burst`` give it its own token bucket (429 past it, with the server's
    ``retry_after``); ``revoked`` answers 401 to its key, as after a key rotation.
    """

    app_key: str
    app_token: str
    rate_limit: float | None = None
    burst: int = 10
    revoked: bool = False

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._tokens_at = time.monotonic()

    def __repr__(self) -> str:
        return (
            f"FakeAccount(app_key={self.app_key!r}, rate_limit={self.rate_limit},"
            f" revoked={self.revoked}, app_token=<redacted>)"
        )

    def take_token(self) -> bool:
        """One token from this store's bucket."""
        return _take_token(self)


class _Bucket(Protocol):
    rate_limit: float | None
    burst: int
    _tokens: float
    _tokens_at: float


def _take_token(bucket: _Bucket) -> bool:
    """One token from a bucket refilled at ``rate_limit``/s and capped at ``burst``."""
    if bucket.rate_limit is None:
        return True
    now = time.monotonic()
    refill = (now - bucket._tokens_at) * bucket.rate_limit
    bucket._tokens = min(float(bucket.burst), bucket._tokens + refill)
    bucket._tokens_at = now
    if bucket._tokens >= 1:
        bucket._tokens -= 1
        return True
    return False


def vtex_timestamp(now: dt.datetime | None = None) -> str:
    """``now`` (default: the current time) in VTEX's receipt format: 7 fractional digits and
    an offset, e.g. ``2017-03-29T18:04:31.0521233+00:00``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0+00:00"


def _error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    """VTEX's OMS error shape: ``{"error": {"code", "message", "exception"}}``; the message
    defaults to the status's reason phrase."""
    if message is None:
        try:
            message = http.HTTPStatus(status).phrase
        except ValueError:
            message = "Injected failure"
    error = {"code": code or str(status), "message": message, "exception": None}
    return orjson.dumps({"error": error})


def _response(
    status: int, body: bytes, content_type: str | None, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = web.Response(status=status, body=body, headers=dict(headers or {}))
    if content_type is not None:
        response.headers["Content-Type"] = content_type
    return response


def _vtex_error(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _response(status, _error_body(status, message, code), _JSON, headers)


class FakeOMS:
    """A fake VTEX OMS tracking endpoint on 127.0.0.1 (ephemeral port by default).

    Use ``async with FakeOMS() as oms:`` in async code, ``with FakeOMS() as oms:`` (a daemon
    thread with its own event loop) in sync code, or the ``fake_oms`` pytest fixture. Point a
    client at ``oms.url`` with ``oms.app_key``/``oms.app_token``. Knobs are plain attributes,
    settable at any time: ``latency``, ``rate_limit``/``burst``/``retry_after``,
    ``fail_rate``/``fail_status``/``seed``, ``strict``/``known_invoices``, ``user_token``,
    ``routes_encoded_slash`` (VTEX answers 404 to invoice numbers with ``/``; True accepts them),
    ``require_tracking_number`` (on by default, as on VTEX: events PUT to an invoice without
    a tracking number are answered 200 and not applied; they are listed in ``unapplied``,
    left out of ``updates`` and of "Get order", and logged once per server; set it False, or
    ``FakeOMS.REQUIRE_TRACKING_NUMBER = False`` for a whole test suite written before the
    tracking number, to apply every PUT).

    It serves the events' PUT (``updates``, ``accepted``) and the tracking number's PATCH of
    the invoice (``tracking_numbers``, ``tracking_number``), each body checked against VTEX's
    contract.

    Each request goes through: record it; sleep ``latency`` (so failures are slow too, like a
    loaded VTEX); ``drop_next``; credentials (401); token bucket (429); ``fail_next`` queue;
    ``fail_rate``; path (404) and method (405); Content-Type (400); schema (400); ``strict``
    unknown invoice (404 OMS007); accept (200 receipt). Every answer carries ``X-Request-Id``.
    Like aiohttp by default, a handler is not cancelled when its client gives up: a request
    the client timed out on may still be accepted, as on the real service.

    Counters for tests: ``in_flight``/``max_in_flight`` (requests being handled at once) and
    ``overlaps`` (arrivals for an invoice while another request for it was being handled).
    """

    #: The default of ``require_tracking_number`` for new servers.
    REQUIRE_TRACKING_NUMBER: bool = True

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
        accounts: Mapping[str, FakeAccount] | None = None,
        routes_encoded_slash: bool = False,
        require_tracking_number: bool | None = None,
        read_delay: float = 0.0,
        read_forbidden: bool = False,
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
        self.seed = seed
        #: Like VTEX, an invoice number with "/" (sent as %2F) matches no route (404) unless
        #: this is True (an account whose OMS routes them).
        self.routes_encoded_slash = routes_encoded_slash
        #: As operators report of VTEX: events PUT to an invoice that has no tracking number
        #: yet are answered 200 and not applied (listed in ``unapplied``).
        self.require_tracking_number = (
            self.REQUIRE_TRACKING_NUMBER
            if require_tracking_number is None
            else require_tracking_number
        )
        #: Seconds before a write shows in "Get order" (VTEX: a few seconds).
        self.read_delay = read_delay
        #: Answer "Get order" 403, as for a key without the "View order" resource.
        self.read_forbidden = read_forbidden
        # Every applied write, for reads: (monotonic time, invoice, "number" | "events", body).
        self._writes: list[tuple[float, tuple[str, str], str, dict[str, Any]]] = []
        #: More stores, by account name, each with its own credentials, bucket and key state.
        self.accounts: dict[str, FakeAccount] = dict(accounts or {})
        self.requests: list[RecordedRequest] = []
        self.updates: dict[tuple[str, str], list[dict[str, Any]]] = {}
        #: The tracking-number bodies (PATCH) accepted per invoice, in arrival order.
        self.tracking_numbers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        #: Invoices whose events were answered 200 but not applied (``require_tracking_number``).
        self.unapplied: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.overlaps = 0
        self._active: collections.Counter[tuple[str, str]] = collections.Counter()
        self._failures: collections.deque[tuple[int, bytes, Mapping[str, str], str | None]] = (
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
        url = self.url if self._runner is not None else None
        return f"FakeOMS(url={url!r}, app_key={self.app_key!r}, tokens=<redacted>)"

    @property
    def seed(self) -> int:
        """Seed of the generator behind ``fail_rate``; setting it restarts the sequence."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = value
        # Failure injection only needs to be repeatable, not secure.
        self._random = random.Random(value)  # noqa: S311

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:54321`` (once started)."""
        if self._runner is None:
            raise RuntimeError("FakeOMS is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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
        """Answer the next ``count`` authenticated requests with ``status``, queued after any
        earlier ``fail_next``. ``body`` is sent as is (str as UTF-8 text, dict/list as JSON);
        by default a VTEX-shaped JSON error. ``headers`` are added (e.g. ``Retry-After``)."""
        if body is None:
            raw, content_type = _error_body(status), content_type or _JSON
        elif isinstance(body, str):
            raw, content_type = body.encode(), content_type or _TEXT
        elif isinstance(body, bytes):
            raw = body
        else:
            raw, content_type = orjson.dumps(body), content_type or _JSON
        for _ in range(count):
            self._failures.append((status, raw, dict(headers or {}), content_type))

    def drop_next(self, count: int) -> None:
        """Close the connection of the next ``count`` requests without answering, so clients
        see a disconnection. (aiohttp's client resends an idempotent PUT once by itself.)"""
        self._drops += count

    def add_invoice(self, order_id: str, invoice_number: str) -> None:
        """Make an invoice known, for ``strict`` mode."""
        self.known_invoices.add((order_id, invoice_number))

    def accepted(self, order_id: str, invoice_number: str) -> list[dict[str, Any]]:
        """The bodies accepted (200) for one invoice, parsed, in arrival order."""
        return self.updates.get((order_id, invoice_number), [])

    def tracking_number(self, order_id: str, invoice_number: str) -> dict[str, Any] | None:
        """The invoice's tracking number as last set (the PATCH's body, parsed), or None."""
        bodies = self.tracking_numbers.get((order_id, invoice_number))
        return bodies[-1] if bodies else None

    def reset(self) -> None:
        """Forget recorded requests, updates and counters, and queued failures and drops."""
        self.requests.clear()
        self.updates.clear()
        self.tracking_numbers.clear()
        self.unapplied.clear()
        self._writes.clear()
        self._failures.clear()
        self._drops = 0
        self.max_in_flight = self.in_flight
        self.overlaps = 0

    # -- request handling --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        slash = self.routes_encoded_slash
        ids = parse_tracking_path(request.raw_path, routes_encoded_slash=slash)
        on_invoice = False
        if ids is None:
            ids = parse_invoice_path(request.raw_path, routes_encoded_slash=slash)
            on_invoice = ids is not None
        order_read = parse_order_path(request.raw_path) if ids is None else None
        early: web.HTTPException | None = None
        try:
            body = await request.read()
        except web.HTTPException as exc:  # e.g. 413: a body over client_max_size
            body, early = b"", exc
        order_id, invoice_number = ids or (order_read, None)
        record = RecordedRequest(
            request.method,
            request.raw_path,
            order_id,
            invoice_number,
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
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=500)  # never reaches the client
            response: web.StreamResponse = early or self._answer(
                request, record, ids, on_invoice, order_read
            )
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

    def _store(self, request: web.Request) -> tuple[str, FakeAccount] | None:
        """The extra store whose credentials the request carries, if any."""
        key = request.headers.get("X-VTEX-API-AppKey")
        token = request.headers.get("X-VTEX-API-AppToken")
        for name, account in self.accounts.items():
            if account.app_key == key and account.app_token == token:
                return name, account
        return None


    def _answer(
        self,
        request: web.Request,
        record: RecordedRequest,
        ids: tuple[str, str] | None,
        on_invoice: bool = False,
        order_read: str | None = None,
    ) -> web.Response:
        store = self._store(request) if self.accounts else None
        if store is not None:
            record.account, account = store
            if account.revoked:
                return _response(401, b"Unauthorized", _TEXT)
            if not account.take_token():
                retry = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
                return _response(429, b"Too Many Requests", _TEXT, retry)
        elif not self._authorized(request):
            return _response(401, b"Unauthorized", _TEXT)
        elif not _take_token(self):
            retry = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return _response(429, b"Too Many Requests", _TEXT, retry)
        if self._failures:
            status, body, headers, content_type = self._failures.popleft()
            return _response(status, body, content_type, headers)
        if self.fail_rate > 0 and self._random.random() < self.fail_rate:
            return _response(self.fail_status, _error_body(self.fail_status), _JSON)
        if order_read is not None:
            return self._order(request, order_read)
        if ids is None:
            return _vtex_error(404, "Resource not found")
        method = "PATCH" if on_invoice else "PUT"
        if request.method != method:
            return _vtex_error(405, "Method not allowed", headers={"Allow": method})
        if request.content_type != "application/json":
            return _vtex_error(400, "Content-Type must be application/json")
        try:
            doc = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return _vtex_error(400, "The request body is not valid JSON")
        validate = validate_tracking_number_body if on_invoice else validate_request_body
        problems = validate(doc)
        if problems:
            return _vtex_error(400, "; ".join(problems), "1")
        if self.strict and ids not in self.known_invoices:
            return _vtex_error(404, "Invoice Not Found", "OMS007")
        if on_invoice:
            self.tracking_numbers.setdefault(ids, []).append(doc)
            self._writes.append((time.monotonic(), ids, "number", doc))
        elif self.require_tracking_number and not self.tracking_numbers.get(ids):
            if not self.unapplied:  # once per server: a whole file may lack numbers
                logger.warning(
                    "FakeOMS: events for order %s invoice %s (and any later invoice without a"
                    " tracking number) answered 200 and NOT applied, as VTEX does: send the"
                    " tracking number first (FakeOMS.unapplied lists them)",
                    *ids,
                )
            self.unapplied.append(ids)  # 200, and nothing changes: the trap VTEX sets
        else:
            self.updates.setdefault(ids, []).append(doc)
            self._writes.append((time.monotonic(), ids, "events", doc))
        receipt = {"date": vtex_timestamp(), "orderId": ids[0], "receipt": uuid.uuid4().hex}
        return _response(200, orjson.dumps(receipt), _JSON)

    def _order(self, request: web.Request, order_id: str) -> web.Response:
        """VTEX's "Get order", reduced to what tracking reads: one package per invoice
        written (or known), with its tracking number and events as of ``read_delay`` ago."""
        if request.method != "GET":
            return _vtex_error(405, "Method not allowed", headers={"Allow": "GET"})
        if self.read_forbidden:
            return _vtex_error(403, "Access denied: the key lacks the resource View order")
        visible_until = time.monotonic() - self.read_delay
        numbers: dict[str, dict[str, Any]] = {}
        events: dict[str, dict[str, Any]] = {}
        invoices: list[str] = [n for o, n in sorted(self.known_invoices) if o == order_id]
        for at, (written_order, invoice), kind, doc in self._writes:
            if written_order != order_id:
                continue
            if invoice not in invoices:
                invoices.append(invoice)
            if at <= visible_until:
                (numbers if kind == "number" else events)[invoice] = doc
        if not invoices:
            return _vtex_error(404, "Order Not Found", "OMS003")
        packages = [_package(n, numbers.get(n), events.get(n)) for n in invoices]
        order = {
            "orderId": order_id,
            "status": "invoiced",
            "packageAttachment": {"packages": packages},
        }
        return _response(200, orjson.dumps(order), _JSON)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening in the running event loop; ``url`` is valid afterwards."""
        if self._runner is not None:
            raise RuntimeError("FakeOMS is already running")
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(_add_request_id)
        # A short shutdown timeout: handlers still sleeping (latency) must not delay stop();
        # aiohttp cancels them after it, and their clients see a disconnection.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeOMS:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __enter__(self) -> FakeOMS:
        """Run the server in a daemon thread with its own event loop; return once listening."""
        ready = threading.Event()
        errors: list[BaseException] = []

        async def serve() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                errors.append(exc)
                return
            finally:
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
            self._thread = None
            raise errors[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the background server and join its thread."""
        thread, loop, stop = self._thread, self._thread_loop, self._thread_stop
        self._thread = self._thread_loop = self._thread_stop = None
        if thread is None or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


def _package(
    invoice: str, number: dict[str, Any] | None, status: dict[str, Any] | None
) -> dict[str, Any]:
    """One ``packageAttachment.packages[]`` entry as VTEX shapes it."""
    number = number or {}
    courier_status = None
    if status is not None:
        courier_status = {
            "status": "ok" if number else None,
            "finished": bool(status.get("isDelivered")),
            "data": [
                {"city": e.get("city"), "state": e.get("state"),
                 "description": e.get("description"), "createDate": e.get("date"),
                 "lastChange": vtex_timestamp()}
                for e in status.get("events", [])
            ],
        }  # fmt: skip
        if status.get("deliveredDate") is not None:
            courier_status["deliveredDate"] = status["deliveredDate"]
    return {
        "invoiceNumber": invoice,
        "trackingNumber": number.get("trackingNumber"),
        "trackingUrl": number.get("trackingUrl"),
        "courier": number.get("courier"),
        "type": "Output",
        "issuanceDate": vtex_timestamp(),
        "courierStatus": courier_status,
    }


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Give every answer, errors included, an ``X-Request-Id`` like VTEX's."""
    response.headers.setdefault("X-Request-Id", uuid.uuid4().hex)
