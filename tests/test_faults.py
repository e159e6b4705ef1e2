"""The fault matrix: the single call and ``push`` against each fault a server or network can
produce, over real sockets. Faults an HTTP server cannot produce (resets, half answers,
silence, trickles, oversized bodies) come from a raw asyncio TCP server.

For every fault: the documented error or result, inside the configured timeout, every pushed
item accounted for exactly once, and no tasks, threads or file descriptors left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pathlib
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import anyio
import orjson
import pytest
import trustme

from vtex_tracking import (
    RetryPolicy,
    ServerError,
    TrackingStatus,
    TrackingUpdate,
    TransportError,
    TransportTimeoutError,
    UnexpectedResponseError,
)
from vtex_tracking.cli import main

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio

#: The per-attempt timeout of every client here; a fault must end well inside a few of them.
TIMEOUT = 0.5
#: Attempts per call: the first answers fault, later ones may recover.
ATTEMPTS = 3
RETRY = RetryPolicy(max_attempts=ATTEMPTS, initial_backoff=0.001, max_backoff=0.01)
#: Updates per push in the bulk half of the matrix.
PUSHED = 12


@pytest.fixture
def client_options() -> dict[str, object]:
    """make_client's defaults here: the matrix's timeout and attempts."""
    return {"timeout": TIMEOUT, "retry": RETRY}

#: How a fault answers one request: given its request line (b"PUT /path HTTP/1.1") and the
#: connection's writer.
Respond = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


def _receipt(line: bytes) -> bytes:
    """A receipt naming the order of the request line, as VTEX's does (one naming another
    order is not a confirmation)."""
    order = line.split(b"/orders/", 1)[-1].split(b"/", 1)[0].decode()
    doc = {"date": "2026-11-23T10:00:00Z", "orderId": unquote(order), "receipt": "r-1"}
    return orjson.dumps(doc)


def _answer(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers, "", ""]
    return "\r\n".join(head).encode() + body


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one request; return its request line."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for line in lines:
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return lines[0]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN, as a crashed proxy does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultServer:
    """A raw HTTP/1.1 server on 127.0.0.1 answering each request with ``respond``. Its
    connection handlers end with it."""

    def __init__(self, respond: Respond, tls: ssl.SSLContext | None = None) -> None:
        self._respond = respond
        self._tls = tls
        self.requests = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while not writer.is_closing():
                line = await _read_request(reader)
                self.requests += 1
                await self._respond(line, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server is closing
        finally:
            writer.transport.abort()
            try:
                # Retrieve how the connection ended: asyncio reports a lost connection's error
                # ("Future exception was never retrieved": BrokenPipeError, failing the test)
                # when the garbage collector happens to free that future before its protocol.
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            finally:
                self._handlers.discard(task)

    async def __aenter__(self) -> FaultServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._tls)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        handlers = set(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            with anyio.fail_after(5):
                await asyncio.wait(handlers)
        await self._server.wait_closed()


# -- the faults ----------------------------------------------------------------------------------


async def reset_before_response(line: bytes, w: asyncio.StreamWriter) -> None:
    _reset(w)


async def reset_after_status_line(line: bytes, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\n")
    await w.drain()
    await asyncio.sleep(0.05)
    _reset(w)


async def never_answers(line: bytes, w: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


async def trickles(line: bytes, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n")
    for _ in range(500):
        # No drain(): a byte never fills the buffer, and a drain waiting when the client
        # hangs up races with the server's cancellation ("Future exception was never
        # retrieved": BrokenPipeError, reported to the test by anyio).
        if w.is_closing():
            return  # the client gave up (its timeout)
        w.write(b" ")
        await asyncio.sleep(0.2)


async def truncated_json(line: bytes, w: asyncio.StreamWriter) -> None:
    w.write(_answer("200 OK", _receipt(line)[:20], "Content-Type: application/json"))


async def html_200(line: bytes, w: asyncio.StreamWriter) -> None:
    page = b"<!DOCTYPE html><html><body>Entrar na sua conta</body></html>"
    w.write(_answer("200 OK", page, "Content-Type: text/html; charset=utf-8"))


async def huge_200(line: bytes, w: asyncio.StreamWriter) -> None:
    # 8 MiB, far past the 1 MiB read cap: the client must stop reading, not buffer it all.
    size = 8 * 1024 * 1024
    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    w.write(f"Content-Length: {size}\r\n\r\n".encode())
    chunk = b" " * 65536
    for _ in range(size // len(chunk)):
        w.write(chunk)
        await w.drain()


async def receipt_as_text_plain(line: bytes, w: asyncio.StreamWriter) -> None:
    w.write(_answer("200 OK", _receipt(line), "Content-Type: text/plain"))


def throttled_then_ok(retry_after: str | None) -> Respond:
    """The first attempt for each invoice gets a 429, the next a receipt."""
    seen: set[bytes] = set()

    async def respond(line: bytes, w: asyncio.StreamWriter) -> None:
        if line not in seen:
            seen.add(line)
            extra = [f"Retry-After: {retry_after}"] if retry_after is not None else []
            body = b'{"error":{"code":"429","message":"Too many requests"}}'
            json_type = "Content-Type: application/json"
            w.write(_answer("429 Too Many Requests", body, json_type, *extra))
        else:
            w.write(_answer("200 OK", _receipt(line), "Content-Type: application/json"))

    return respond


def server_errors_then_ok() -> Respond:
    """Each invoice gets 500/502/503 answers on all attempts but its last, then a receipt."""
    statuses = ("500 Internal Server Error", "502 Bad Gateway", "503 Service Unavailable")
    attempts: dict[bytes, int] = {}

    async def respond(line: bytes, w: asyncio.StreamWriter) -> None:
        n = attempts[line] = attempts.get(line, 0) + 1
        if n < ATTEMPTS:
            status = statuses[(n + len(attempts)) % len(statuses)]
            w.write(_answer(status, b"upstream trouble", "Content-Type: text/plain"))
        else:
            w.write(_answer("200 OK", _receipt(line), "Content-Type: application/json"))

    return respond


async def always_504(line: bytes, w: asyncio.StreamWriter) -> None:
    w.write(_answer("504 Gateway Timeout", b"<html>504</html>", "Content-Type: text/html"))


@dataclass(frozen=True)
class Fault:
    """A fault, and what every call against it must end in: the error type (None: success)
    and a phrase of its message."""

    make: Callable[[], Respond]  # a fresh responder (some keep state) per server
    error: type[Exception] | None
    says: str = ""  # a regex the error message matches


FAULTS = {
    "reset before any response": Fault(
        lambda: reset_before_response, TransportError, "reset|closed the connection"
    ),
    "reset after the status line": Fault(
        lambda: reset_after_status_line, TransportError, "reset|closed the connection|cut short"
    ),
    "accepts and never answers": Fault(lambda: never_answers, TransportTimeoutError, "timed out"),
    "body trickling slower than the timeout": Fault(
        lambda: trickles, TransportTimeoutError, "timed out"
    ),
    "truncated JSON": Fault(lambda: truncated_json, UnexpectedResponseError, "not JSON"),
    "200 with an HTML body": Fault(lambda: html_200, UnexpectedResponseError, "HTML"),
    "200 with an 8 MiB body": Fault(lambda: huge_200, UnexpectedResponseError, "1 MiB"),
    "receipt with a text/plain content type": Fault(lambda: receipt_as_text_plain, None),
    "429 with Retry-After in seconds": Fault(lambda: throttled_then_ok("0"), None),
    "429 with Retry-After as an HTTP-date": Fault(
        lambda: throttled_then_ok("Wed, 21 Oct 2015 07:28:00 GMT"), None
    ),
    "429 without Retry-After": Fault(lambda: throttled_then_ok(None), None),
    "429 with a garbage Retry-After": Fault(lambda: throttled_then_ok("soon-ish"), None),
    "bursts of 500/502/503": Fault(server_errors_then_ok, None),
    "504 on every attempt": Fault(lambda: always_504, ServerError, "504 .* an HTML page\\.$"),
}


# -- resource accounting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    tasks: int
    threads: int
    fds: int

    @classmethod
    async def now(cls) -> Resources:
        for _ in range(3):  # let closed transports finish closing
            await asyncio.sleep(0.01)
        gc.collect()
        fds = len(os.listdir("/proc/self/fd"))
        return cls(len(asyncio.all_tasks()), threading.active_count(), fds)


@contextlib.asynccontextmanager
async def nothing_leaks() -> AsyncIterator[None]:
    """No task, thread or file descriptor outlives the block."""
    before = await Resources.now()
    yield
    after = await Resources.now()
    assert after == before


# -- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAULTS))
async def test_single_call_meets_each_fault(
    name: str, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """One call ends in the fault's documented error (or its receipt) within the attempts'
    timeouts, and leaves nothing open behind it."""
    fault = FAULTS[name]
    async with (
        nothing_leaks(),
        FaultServer(fault.make()) as server,
        make_client(server.url) as client,
    ):
        started = time.monotonic()
        if fault.error is None:
            receipt = await client.update_tracking_status("o", "NF-1", status)
            assert receipt.receipt == "r-1"
        else:
            with pytest.raises(fault.error, match=fault.says) as info:
                await client.update_tracking_status("o", "NF-1", status)
            assert info.value.order_id == "o"  # type: ignore[attr-defined]
        elapsed = time.monotonic() - started
    assert elapsed < ATTEMPTS * TIMEOUT + 2.0


@pytest.mark.parametrize("name", list(FAULTS))
async def test_push_accounts_for_every_item_under_each_fault(
    name: str, status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A push against the fault gives exactly one result per item, each the fault's
    documented outcome, and leaves nothing open behind it."""
    fault = FAULTS[name]
    updates = [TrackingUpdate(f"o-{i}", "NF-1", status) for i in range(PUSHED)]
    async with (
        nothing_leaks(),
        FaultServer(fault.make()) as server,
        make_client(server.url, max_concurrency=4) as client,
    ):
        with anyio.fail_after(PUSHED * ATTEMPTS * TIMEOUT + 10):
            async with client.push(updates, adaptive=False) as stream:
                results = [result async for result in stream]
    assert sorted(r.index for r in results) == list(range(PUSHED))
    for result in results:
        if fault.error is None:
            assert result.ok, result.error
        else:
            assert isinstance(result.error, fault.error), result.error


async def test_a_tls_host_with_an_untrusted_certificate_fails_closed(
    status: TrackingStatus,
    make_client: ClientFactory,
) -> None:
    """A certificate no trusted CA signed is refused before anything is sent."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    async with (
        nothing_leaks(),
        FaultServer(receipt_as_text_plain, tls=server_tls) as server,
        make_client(server.url) as client,
    ):
        with pytest.raises(TransportError, match="certificate"):
            await client.update_tracking_status("o", "NF-1", status)
    assert server.requests == 0


# -- the CLI column --------------------------------------------------------------------------------


@contextlib.contextmanager
def _threaded(respond: Respond) -> Iterator[str]:
    """A FaultServer on an event loop of its own thread, for the (synchronous) CLI."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FaultServer(respond)
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
    try:
        yield server.url
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize("name", list(FAULTS))
def test_cli_accounts_for_every_line_under_each_fault(
    name: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`vtex-tracking push` against the fault: exit 0 or 1 as the fault calls for, the JSON
    summary counts every line once, and the failures file holds each failed line exactly once
    with the fault's documented reason."""
    fault = FAULTS[name]
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "updates.jsonl"
    event = {"city": "Recife", "state": "PE", "description": "Postado", "date": "2026-11-02"}
    lines = [
        {"orderId": f"o-{i}", "invoiceNumber": "NF-1", "isDelivered": False, "events": [event]}
        for i in range(PUSHED)
    ]
    source.write_text("".join(orjson.dumps(line).decode() + "\n" for line in lines))
    argv = ["push", str(source), "--json", "--concurrency", "4", "--timeout", str(TIMEOUT)]
    argv += ["--max-attempts", str(ATTEMPTS), "--app-key", "key", "--app-token", "token"]
    with _threaded(fault.make()) as url:
        started = time.monotonic()
        code = main([*argv, "--account", "acme", "--base-url", url])
        elapsed = time.monotonic() - started
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    failed_file = tmp_path / "updates.failed.jsonl"
    assert summary["total"] == PUSHED
    # Backoff between attempts is the default policy's (up to 0.5 s, then 1 s), not the tests'.
    # 429s also engage the CLI's adaptive pacing: a server that refused every first request
    # looks saturated, so the push restarts at the probe floor and speeds up from there.
    bound = PUSHED / 4 * (ATTEMPTS * TIMEOUT + 1.5) + 5 if "429" not in name else 40
    assert elapsed < bound
    if fault.error is None:
        assert (code, summary["succeeded"]) == (0, PUSHED)
        assert not failed_file.exists()
    else:
        assert (code, summary["failed"]) == (1, PUSHED)
        records = [orjson.loads(line) for line in failed_file.read_text().splitlines()]
        assert sorted(r["orderId"] for r in records) == sorted(f"o-{i}" for i in range(PUSHED))
        assert all(re.search(fault.says, r["error"]) for r in records), records[0]["error"]
