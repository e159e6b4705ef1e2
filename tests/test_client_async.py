"""AsyncTrackingClient against FakeOMS over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
import time

import aiohttp
import anyio
import orjson
import pytest

from vtex_tracking import (
    APIError,
    AsyncTrackingClient,
    AuthenticationError,
    Checks,
    ClientClosedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TrackingEvent,
    TrackingStatus,
    TransportError,
    TransportTimeoutError,
    UnexpectedResponseError,
)
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN, ERROR_FOR_STATUS, FAST_RETRY, ClientFactory

pytestmark = pytest.mark.anyio


async def test_sends_vtex_json_and_headers(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """The server receives the documented JSON body, auth, content type and accept headers."""
    async with FakeOMS() as oms, make_client(oms) as client:
        receipt = await client.update_tracking_status("1172452900788-01", "000030711", status)
        request = oms.requests[-1]
    assert request.method == "PUT"
    assert request.raw_path == "/api/oms/pvt/orders/1172452900788-01/invoice/000030711/tracking"
    assert orjson.loads(request.body) == {
        "isDelivered": False,
        "deliveredDate": None,
        "events": [
            {
                "city": "Rio de Janeiro",
                "state": "RJ",
                "description": "Coletado pela transportadora",
                "date": "2026-11-02",
            },
            {
                "city": "São Paulo",
                "state": "SP",
                "description": "Em trânsito para Curitiba",
                "date": "2026-11-03",
            },
        ],
    }
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["x-vtex-api-appkey"] == APP_KEY
    assert headers["x-vtex-api-apptoken"] == APP_TOKEN
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith("vtex-tracking-python/")
    assert "vtexidclientautcookie" not in headers
    assert receipt.order_id == "1172452900788-01"
    assert receipt.status_code == 200
    assert receipt.attempts == 1
    assert receipt.request_id == headers.get("x-request-id", receipt.request_id)
    assert receipt.request_id
    assert receipt.content_type.startswith("application/json")
    assert receipt.timestamp is not None
    assert oms.accepted("1172452900788-01", "000030711") == [orjson.loads(request.body)]


async def test_user_token_replaces_key_and_token(status: TrackingStatus) -> None:
    """A user token is sent as VtexIdclientAutCookie, without the key/token pair."""
    async with (
        FakeOMS(user_token="user-jwt") as oms,
        AsyncTrackingClient("acme", user_token="user-jwt", base_url=oms.url) as client,
    ):
        await client.update_tracking_status("o", "1", status)
        headers = {k.lower(): v for k, v in oms.requests[-1].headers.items()}
    assert headers["vtexidclientautcookie"] == "user-jwt"
    assert "x-vtex-api-appkey" not in headers and "x-vtex-api-apptoken" not in headers


@pytest.mark.parametrize(
    ("order_id", "invoice", "raw_segments"),
    [
        ("a#b?c", "NF/123", ("a%23b%3Fc", "NF%2F123")),
        ("pedido-ção", "NF 12%", ("pedido-%C3%A7%C3%A3o", "NF%2012%25")),
        ("..", ".", ("..", ".")),
    ],
)
async def test_ids_are_sent_as_one_path_segment_each(
    status: TrackingStatus,
    order_id: str,
    invoice: str,
    raw_segments: tuple[str, str],
    make_client: ClientFactory,
) -> None:
    """Order ids and invoice numbers are percent-encoded and arrive decoded, unchanged (a
    '/' too, for an account that routes it)."""
    allow_slash = Checks(allow_slash_in_invoice=True)
    async with (
        FakeOMS(routes_encoded_slash=True) as oms,
        make_client(oms, checks=allow_slash) as client,
    ):
        await client.update_tracking_status(order_id, invoice, status)
        request = oms.requests[-1]
    assert (request.order_id, request.invoice_number) == (order_id, invoice)
    assert request.raw_path == (
        f"/api/oms/pvt/orders/{raw_segments[0]}/invoice/{raw_segments[1]}/tracking"
    )


@pytest.mark.parametrize(
    ("status_code", "cls"), [*ERROR_FOR_STATUS, (422, APIError)]
)
async def test_each_status_raises_its_error(
    status: TrackingStatus, status_code: int, cls: type[APIError], make_client: ClientFactory
) -> None:
    """Every failure status raises its APIError subclass with status, ids and attempts."""
    async with FakeOMS() as oms, make_client(oms, retry=RetryPolicy.disabled()) as client:
        oms.fail_next(1, status_code)
        with pytest.raises(cls) as info:
            await client.update_tracking_status("o-1", "NF-1", status)
    error = info.value
    assert type(error) is cls
    assert error.status_code == status_code
    assert (error.order_id, error.invoice_number, error.attempts) == ("o-1", "NF-1", 1)
    assert error.request_id


@pytest.mark.parametrize("status_code", [400, 401, 403, 404])
async def test_client_errors_are_never_retried(
    status: TrackingStatus, status_code: int, make_client: ClientFactory
) -> None:
    """400, 401, 403 and 404 are answered once, however many attempts the policy allows."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(3, status_code)
        with pytest.raises(APIError):
            await client.update_tracking_status("o", "1", status)
        assert len(oms.requests) == 1


@pytest.mark.parametrize("status_code", [408, 425, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_to_success(
    status: TrackingStatus, status_code: int, make_client: ClientFactory
) -> None:
    """Transient statuses are retried; the receipt counts the attempts."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(2, status_code, headers={"Retry-After": "0"})
        receipt = await client.update_tracking_status("o", "1", status)
        assert len(oms.requests) == 3
    assert receipt.attempts == 3


async def test_retries_stop_at_max_attempts(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """When every attempt fails, the last error is raised with the attempt count."""
    async with (
        FakeOMS() as oms,
        make_client(oms, retry=RetryPolicy(max_attempts=3, initial_backoff=0.001)) as client,
    ):
        oms.fail_next(5, 502)
        with pytest.raises(ServerError) as info:
            await client.update_tracking_status("o", "1", status)
        assert len(oms.requests) == 3
    assert info.value.attempts == 3
    assert "after 3 attempts" in str(info.value)


async def test_429_with_seconds_retry_after_waits(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A 429 with Retry-After: 0.3 delays the next attempt by about that long."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 429, headers={"Retry-After": "0.3"})
        await client.update_tracking_status("o", "1", status)
        first, second = oms.requests[0], oms.requests[1]
    assert second.received_at - first.received_at >= 0.3


@pytest.mark.real_start
async def test_429_with_http_date_retry_after_waits(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A 429 with an HTTP-date Retry-After waits until that date."""
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 429, headers={"Retry-After": when})
        await client.update_tracking_status("o", "1", status)
        first, second = oms.requests[0], oms.requests[1]
    # HTTP dates have one-second resolution: the wait is between 1 and 2 seconds.
    assert 1.0 <= second.received_at - first.received_at <= 3.0


async def test_retry_after_is_capped_by_policy(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A Retry-After beyond max_retry_after is cut to max_retry_after."""
    policy = RetryPolicy(max_attempts=2, max_retry_after=0.1)
    async with FakeOMS() as oms, make_client(oms, retry=policy) as client:
        oms.fail_next(1, 429, headers={"Retry-After": "3600"})
        started = time.monotonic()
        await client.update_tracking_status("o", "1", status)
    assert time.monotonic() - started < 2.0


async def test_exhausted_429_reports_retry_after(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """The final RateLimitError carries the server's Retry-After."""
    async with FakeOMS() as oms, make_client(oms, retry=RetryPolicy.disabled()) as client:
        oms.fail_next(1, 429, headers={"Retry-After": "7"})
        with pytest.raises(RateLimitError) as info:
            await client.update_tracking_status("o", "1", status)
    assert info.value.retry_after == 7.0


async def test_dropped_connection_is_retried(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A connection closed without an answer is retried (the PUT is idempotent)."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.drop_next(2)
        receipt = await client.update_tracking_status("o", "1", status)
        assert len(oms.requests) == 3
    # aiohttp itself resends an idempotent request once when a reused keep-alive connection
    # turns out closed, so the SDK may count one attempt fewer than the server saw.
    assert receipt.attempts in (2, 3)
    assert receipt.order_id == "o"


async def test_dropped_connections_exhaust_into_transport_error(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """When every attempt is dropped, TransportError (a ConnectionError) says so."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.drop_next(10)
        with pytest.raises(TransportError) as info:
            await client.update_tracking_status("o", "1", status)
    assert isinstance(info.value, ConnectionError)
    assert info.value.attempts == 4
    assert "'o'" in str(info.value)


async def test_connection_refused_is_a_transport_error(status: TrackingStatus) -> None:
    """Nobody listening gives TransportError after the retries."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AsyncTrackingClient(
        "acme", APP_KEY, APP_TOKEN, base_url=f"http://127.0.0.1:{port}", retry=FAST_RETRY
    )
    async with client:
        with pytest.raises(TransportError, match="cannot connect"):
            await client.update_tracking_status("o", "1", status)


async def test_slow_server_times_out_within_the_timeout(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A server slower than `timeout` raises TransportTimeoutError (also a TimeoutError)."""
    async with (
        FakeOMS(latency=2.0) as oms,
        make_client(oms, timeout=0.2, retry=RetryPolicy.disabled()) as client,
    ):
        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            await client.update_tracking_status("o", "1", status)
        elapsed = time.monotonic() - started
    assert isinstance(info.value, TransportTimeoutError)
    assert elapsed < 1.5


async def test_html_200_is_an_unexpected_response(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A 200 with an HTML login page raises UnexpectedResponseError, not a decoder error."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 200, body="<html><body>Login</body></html>", content_type="text/html")
        with pytest.raises(UnexpectedResponseError, match="HTML"):
            await client.update_tracking_status("o", "1", status)


async def test_concurrency_never_exceeds_max_concurrency(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """However many coroutines call at once, at most max_concurrency are in flight."""
    async with FakeOMS(latency=0.05) as oms, make_client(oms, max_concurrency=3) as client:
        async with anyio.create_task_group() as tg:
            for i in range(15):
                tg.start_soon(client.update_tracking_status, f"o-{i}", "1", status)
        assert oms.max_in_flight == 3
        assert len(oms.requests) == 15


async def test_borrowed_session_is_not_closed(status: TrackingStatus) -> None:
    """A caller's aiohttp session is used and left open on aclose()."""
    async with FakeOMS() as oms, aiohttp.ClientSession() as session:
        client = AsyncTrackingClient("acme", APP_KEY, APP_TOKEN, base_url=oms.url, session=session)
        await client.update_tracking_status("o", "1", status)
        await client.aclose()
        assert not session.closed
        headers = {k.lower() for k in oms.requests[-1].headers}
    assert "x-vtex-api-apptoken" in headers


async def test_closed_client_refuses_to_send(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """After aclose(), calls raise ClientClosedError; aclose() may be repeated."""
    async with FakeOMS() as oms:
        client = make_client(oms)
        await client.update_tracking_status("o", "1", status)
        await client.aclose()
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await client.update_tracking_status("o", "1", status)


def test_client_survives_consecutive_asyncio_runs(
    status: TrackingStatus, make_client: ClientFactory
) -> None:
    """A client reused across asyncio.run() calls gets a fresh pool for the new loop."""
    with FakeOMS() as oms:
        client = make_client(oms)

        async def call() -> str:
            return (await client.update_tracking_status("o", "1", status)).order_id

        assert asyncio.run(call()) == "o"
        assert asyncio.run(call()) == "o"

        async def close() -> None:
            await client.aclose()

        asyncio.run(close())


async def test_logs_attempts_and_retries_without_secrets(
    status: TrackingStatus, caplog: pytest.LogCaptureFixture, make_client: ClientFactory
) -> None:
    """Debug per attempt, info per retry (a handled 503 needs no person), and no credential
    in any record."""
    caplog.set_level(logging.DEBUG, logger="vtex_tracking")
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 503, headers={"Retry-After": "0"})
        await client.update_tracking_status("o", "1", status)
    records = [r for r in caplog.records if r.name == "vtex_tracking"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.INFO, logging.DEBUG]
    assert "503" in records[0].getMessage() and "attempt 1" in records[0].getMessage()
    assert "retrying" in records[1].getMessage()
    for text in caplog.text, *(r.getMessage() for r in records):
        assert APP_TOKEN not in text and APP_KEY not in text


async def test_errors_never_contain_secrets(status: TrackingStatus) -> None:
    """Neither the message nor the repr of an auth failure shows the key or token."""
    async with (
        FakeOMS() as oms,
        AsyncTrackingClient(
            "acme", "vtexappkey-acme-WRONG", "WRONG-SECRET-TOKEN", base_url=oms.url
        ) as client,
    ):
        with pytest.raises(AuthenticationError) as info:
            await client.update_tracking_status("o", "1", status)
    for text in (str(info.value), repr(info.value), repr(info.value.__cause__)):
        assert "WRONG-SECRET-TOKEN" not in text and "vtexappkey-acme-WRONG" not in text


async def test_a_body_trickling_slower_than_the_timeout_times_out() -> None:
    """The per-attempt timeout bounds reading the body too, not only waiting for headers: a
    server that sends its headers and then one byte every 0.2 s fails within the timeout."""
    done, finished = anyio.Event(), anyio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _trickle(reader, writer)
        finally:
            writer.close()
            finished.set()

    async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read(65536)  # the body (small: it arrived with the headers or just after)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 1000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            while not done.is_set() and not writer.is_closing():
                writer.write(b" ")
                await writer.drain()
                await anyio.sleep(0.2)

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    retry = RetryPolicy(max_attempts=1)
    client = AsyncTrackingClient(
        "acme", "key", "token", base_url=f"http://127.0.0.1:{port}", timeout=0.6, retry=retry
    )
    status = TrackingStatus([TrackingEvent("Recife", "PE", "Postado", "2026-11-20")])
    try:
        started = time.monotonic()
        with pytest.raises(TransportTimeoutError):
            await client.update_tracking_status("1-01", "NF-1", status)
        assert time.monotonic() - started < 3.0  # the 0.6 s timeout, not the 200 s trickle
    finally:
        done.set()
        await client.aclose()
        with anyio.fail_after(5):
            await finished.wait()  # the handler closed its side (3.11 does not wait for it)
        server.close()
        await server.wait_closed()
