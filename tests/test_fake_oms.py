"""vtex_tracking.testing: FakeOMS, a real server on 127.0.0.1 that answers like VTEX's tracking
endpoint, its pytest fixture, the schema validator, and set_testing's no-sleep switch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
import anyio
import pytest
from multidict import CIMultiDict
from yarl import URL

from vtex_tracking import AsyncTrackingClient, RetryPolicy, TrackingStatus
from vtex_tracking.testing import FakeOMS, set_testing, validate_receipt, validate_request_body
from vtex_tracking.testing._schema import openapi

from .conftest import APP_KEY, APP_TOKEN

pytestmark = pytest.mark.anyio

AUTH = {"X-VTEX-API-AppKey": APP_KEY, "X-VTEX-API-AppToken": APP_TOKEN}
PATH = "/api/oms/pvt/orders/o-1/invoice/NF-1/tracking"
EVENT = {"city": "Recife", "state": "PE", "description": "Postado", "date": "2026-11-02"}
BODY = {"isDelivered": False, "deliveredDate": None, "events": [EVENT]}
VTEX_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00$")

Answer = tuple[int, CIMultiDict[str], bytes]


@pytest.fixture
async def oms() -> AsyncIterator[FakeOMS]:
    """A FakeOMS running in the test's own event loop."""
    async with FakeOMS() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real aiohttp client session, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


async def put(
    session: aiohttp.ClientSession,
    oms: FakeOMS,
    path: str = PATH,
    body: object = BODY,
    headers: Mapping[str, str] = AUTH,
    method: str = "PUT",
) -> Answer:
    """Send one JSON request to FakeOMS; the path is sent exactly as given (already encoded)."""
    url = URL(oms.url + path, encoded=True)
    async with session.request(method, url, json=body, headers=dict(headers)) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


def sync_put(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """A PUT from plain sync code (urllib, proxies ignored); returns the status."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, method="PUT", headers=dict(headers))
    try:
        with opener.open(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with contextlib.closing(error):
            return error.code


async def test_valid_put_gets_a_vtex_shaped_receipt(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """A valid PUT answers 200 with a schema-valid receipt in VTEX's date format."""
    status, headers, raw = await put(session, oms)
    receipt = json.loads(raw)
    assert status == 200
    assert validate_receipt(receipt) == []
    assert receipt["orderId"] == "o-1"
    assert VTEX_DATE.match(receipt["date"]), receipt["date"]
    assert re.fullmatch(r"[0-9a-f]{32}", receipt["receipt"])
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])


async def test_requests_and_accepted_updates_are_recorded(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """Every request is recorded with its headers and raw body; accepted bodies per invoice."""
    second = {**BODY, "events": [EVENT, {**EVENT, "date": "2026-11-03"}]}
    before = time.monotonic()
    await put(session, oms)
    await put(session, oms, body=second)
    await put(session, oms, path=PATH.replace("NF-1", "NF-2"))
    first = oms.requests[0]
    assert [r.status for r in oms.requests] == [200, 200, 200]
    assert (first.method, first.raw_path) == ("PUT", PATH)
    assert (first.order_id, first.invoice_number) == ("o-1", "NF-1")
    assert first.headers["x-vtex-api-appkey"] == APP_KEY  # case-insensitive lookups
    assert json.loads(first.body) == BODY == first.json()
    assert before <= first.received_at <= oms.requests[1].received_at
    assert oms.accepted("o-1", "NF-1") == [BODY, second]
    assert oms.updates == {("o-1", "NF-1"): [BODY, second], ("o-1", "NF-2"): [BODY]}
    assert oms.accepted("o-1", "unknown") == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-VTEX-API-AppKey": APP_KEY},
        {**AUTH, "X-VTEX-API-AppToken": "wrong"},
        {"VtexIdclientAutCookie": "no-user-token-configured"},
    ],
)
async def test_missing_or_wrong_credentials_get_401(
    oms: FakeOMS, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """Without the configured key and token the answer is a plain-text 401 and nothing is kept."""
    status, answer_headers, raw = await put(session, oms, headers=headers)
    assert (status, raw) == (401, b"Unauthorized")
    assert answer_headers["Content-Type"].startswith("text/plain")
    assert answer_headers["X-Request-Id"]
    assert oms.requests[0].status == 401
    assert oms.updates == {}


async def test_user_token_authenticates_when_configured(session: aiohttp.ClientSession) -> None:
    """VtexIdclientAutCookie equal to user_token is accepted; a different one is not."""
    async with FakeOMS(user_token="user-jwt") as oms:
        good = await put(session, oms, headers={"VtexIdclientAutCookie": "user-jwt"})
        bad = await put(session, oms, headers={"VtexIdclientAutCookie": "other-jwt"})
    assert (good[0], bad[0]) == (200, 401)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {**BODY, "events": [EVENT, {**EVENT, "date": None}]},
            "events[1].date: expected string, got null",
        ),
        ({**BODY, "isDelivered": "no"}, "isDelivered: expected boolean, got string"),
        ({"isDelivered": False, "events": []}, "deliveredDate: required field missing"),
        ({**BODY, "events": [{"city": "Recife"}]}, "events[0].state: required field missing"),
        ([1, 2], "body: expected object, got array"),
    ],
)
async def test_invalid_body_gets_400_naming_the_field(
    oms: FakeOMS, session: aiohttp.ClientSession, body: object, message: str
) -> None:
    """A body breaking the schema answers VTEX's error shape with the JSON path of the problem."""
    status, headers, raw = await put(session, oms, body=body)
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(raw)["error"]
    assert (set(error), error["code"], error["exception"]) == (
        {"code", "message", "exception"},
        "1",
        None,
    )
    assert message in error["message"].split("; ")
    assert oms.updates == {}


async def test_wrong_content_type_or_unparsable_json_gets_400(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """A non-JSON Content-Type and a body that is not JSON are both refused with 400."""
    url = oms.url + PATH
    async with session.put(url, data=json.dumps(BODY), headers=AUTH) as response:
        wrong_type = response.status, await response.json()
    headers = {**AUTH, "Content-Type": "application/json"}
    async with session.put(url, data=b"{not json", headers=headers) as response:
        not_json = response.status
    assert wrong_type[0] == 400
    assert "Content-Type" in wrong_type[1]["error"]["message"]
    assert not_json == 400
    assert oms.updates == {}


async def test_strict_mode_refuses_unknown_invoices(session: aiohttp.ClientSession) -> None:
    """In strict mode an unknown invoice gets 404 OMS007 'Invoice Not Found' until added."""
    async with FakeOMS(strict=True, known_invoices=[("o-1", "NF-1")]) as oms:
        known = await put(session, oms)
        unknown_path = PATH.replace("NF-1", "NF-2")
        unknown = await put(session, oms, path=unknown_path)
        oms.add_invoice("o-1", "NF-2")
        added = await put(session, oms, path=unknown_path)
    assert known[0] == 200
    assert unknown[0] == 404
    assert json.loads(unknown[2]) == {
        "error": {"code": "OMS007", "message": "Invoice Not Found", "exception": None}
    }
    assert added[0] == 200


@pytest.mark.parametrize(
    ("order_id", "invoice_number"),
    [("a#b?c", "NF/123"), ("pedido-ção 1", "nº 7 ü"), ("1172452900788-01", "000030711")],
)
async def test_path_segments_are_decoded_one_each(
    oms: FakeOMS, session: aiohttp.ClientSession, order_id: str, invoice_number: str
) -> None:
    """Percent-encoded ids (with /, #, ?, spaces, unicode) are decoded from one segment each
    when the account routes encoded slashes."""
    oms.routes_encoded_slash = True
    path = f"/api/oms/pvt/orders/{quote(order_id, safe='')}/invoice/"
    path += f"{quote(invoice_number, safe='')}/tracking?an=ignored-query"
    status, _, raw = await put(session, oms, path=path)
    assert status == 200
    assert json.loads(raw)["orderId"] == order_id
    assert (oms.requests[0].order_id, oms.requests[0].invoice_number) == (order_id, invoice_number)
    assert oms.accepted(order_id, invoice_number) == [BODY]


async def test_literal_encoded_path_from_the_contract_is_decoded(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """`a%23b%3Fc` and `NF%2F123` decode to order `a#b?c` and invoice `NF/123` (with
    routes_encoded_slash)."""
    oms.routes_encoded_slash = True
    status, _, _ = await put(
        session, oms, path="/api/oms/pvt/orders/a%23b%3Fc/invoice/NF%2F123/tracking"
    )
    assert status == 200
    assert list(oms.updates) == [("a#b?c", "NF/123")]


@pytest.mark.parametrize("slash", ["%2F", "%2f"])
async def test_an_encoded_slash_matches_no_route_by_default(
    oms: FakeOMS, session: aiohttp.ClientSession, slash: str
) -> None:
    """Like VTEX, an invoice number with an encoded '/' gets 404 and nothing is kept."""
    path = f"/api/oms/pvt/orders/o-1/invoice/NF{slash}123/tracking"
    status, _, _ = await put(session, oms, path=path)
    assert status == 404
    assert oms.requests[0].invoice_number is None
    assert oms.updates == {}


async def test_other_paths_get_404_and_other_methods_405(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """Paths other than the tracking route and the invoice's answer 404; other methods than
    PUT on the tracking route (PATCH on the invoice's) answer 405."""
    not_found = await put(session, oms, path="/api/oms/pvt/orders/o-1/invoice")
    extra_slash = await put(session, oms, path="/api/oms/pvt/orders/o-1/x/invoice/NF-1/tracking")
    post = await put(session, oms, method="POST")
    put_invoice = await put(session, oms, path="/api/oms/pvt/orders/o-1/invoice/NF-1")
    assert (not_found[0], extra_slash[0], post[0], put_invoice[0]) == (404, 404, 405, 405)
    assert post[1]["Allow"] == "PUT"
    assert put_invoice[1]["Allow"] == "PATCH"
    assert all(answer[1]["X-Request-Id"] for answer in (not_found, extra_slash, post))
    assert oms.requests[0].order_id is None
    assert oms.updates == {} and oms.tracking_numbers == {}


async def test_fail_next_queues_statuses_bodies_and_headers(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """fail_next answers authenticated requests as queued, in order, then service resumes."""
    oms.fail_next(1, 503, headers={"Retry-After": "0"})
    oms.fail_next(2, 200, body="<html>login</html>", content_type="text/html")
    oms.fail_next(1, 409, body={"error": {"code": "X", "message": "busy", "exception": None}})
    unauthenticated = await put(session, oms, headers={})
    answers = [await put(session, oms) for _ in range(5)]
    assert unauthenticated[0] == 401  # auth comes first and does not consume the queue
    assert [a[0] for a in answers] == [503, 200, 200, 409, 200]
    assert answers[0][1]["Retry-After"] == "0"
    assert json.loads(answers[0][2])["error"]["code"] == "503"
    assert answers[1][2] == answers[2][2] == b"<html>login</html>"
    assert answers[1][1]["Content-Type"].startswith("text/html")
    assert json.loads(answers[3][2])["error"]["message"] == "busy"
    assert validate_receipt(json.loads(answers[4][2])) == []
    assert len(oms.accepted("o-1", "NF-1")) == 1


async def test_fail_rate_is_roughly_honoured_and_repeatable(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """fail_rate fails about that fraction of requests, the same ones again for the same seed."""
    oms.fail_rate, oms.fail_status = 0.3, 502
    runs = []
    for _ in range(2):
        oms.seed = 42  # restarts the generator
        runs.append([(await put(session, oms))[0] for _ in range(40)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 502}
    assert 4 <= runs[0].count(502) <= 20


async def test_drop_next_closes_the_connection_without_answer(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """A dropped request gets its connection closed with no response at all."""
    oms.drop_next(1)
    reader, writer = await asyncio.open_connection("127.0.0.1", oms.port)
    writer.write(f"PUT {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    assert received == b""
    assert [r.status for r in oms.requests] == [0]
    assert (await put(session, oms))[0] == 200  # only one was dropped


async def test_drop_next_makes_aiohttp_raise_a_connection_error(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """An aiohttp client sees a disconnection (two drops: aiohttp resends a PUT once itself)."""
    oms.drop_next(2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await put(session, oms)
    assert oms.requests and all(r.status == 0 for r in oms.requests)
    assert oms.updates == {}


async def test_rate_limit_answers_429_with_retry_after(session: aiohttp.ClientSession) -> None:
    """Past the burst the token bucket answers 429 with Retry-After; the knob can be lifted."""
    async with FakeOMS(rate_limit=1, burst=2, retry_after="7") as oms:
        statuses = [(await put(session, oms))[0] for _ in range(3)]
        _, headers, _ = await put(session, oms)
        oms.retry_after = None
        _, no_header, _ = await put(session, oms)
        oms.rate_limit = None
        lifted = await put(session, oms)
    assert statuses == [200, 200, 429]
    assert headers["Retry-After"] == "7"
    assert "Retry-After" not in no_header
    assert lifted[0] == 200


async def test_in_flight_counts_concurrent_requests_under_latency(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """With latency, concurrent requests overlap: max_in_flight sees them all, different
    invoices are not overlaps, and in_flight returns to zero."""
    oms.latency = 0.3
    started = time.monotonic()
    answers = await asyncio.gather(
        *(put(session, oms, path=PATH.replace("NF-1", f"NF-{i}")) for i in range(5))
    )
    elapsed = time.monotonic() - started
    assert [a[0] for a in answers] == [200] * 5
    assert oms.max_in_flight == 5
    assert oms.in_flight == 0
    assert oms.overlaps == 0
    assert 0.3 <= elapsed < 1.5  # concurrent, not serial


async def test_overlaps_count_concurrent_requests_for_one_invoice(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """Requests for an invoice arriving while another for it is handled are counted as overlaps."""
    oms.latency = 0.3
    await asyncio.gather(*(put(session, oms) for _ in range(3)))
    assert oms.overlaps == 2
    await put(session, oms)  # sequential: no overlap
    assert oms.overlaps == 2


async def test_reset_forgets_records_and_queued_failures(
    oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """reset() clears requests, updates, counters and queued failures and drops."""
    await put(session, oms)
    oms.fail_next(1, 500)
    oms.drop_next(1)
    oms.reset()
    status, _, _ = await put(session, oms)
    assert status == 200
    assert len(oms.requests) == 1
    assert oms.accepted("o-1", "NF-1") == [BODY]
    assert oms.overlaps == 0


async def test_stop_is_prompt_with_open_connections(session: aiohttp.ClientSession) -> None:
    """Stopping waits neither for idle keep-alive connections nor for slow handlers."""
    oms = FakeOMS()
    await oms.start()
    assert (await put(session, oms))[0] == 200  # leaves a pooled keep-alive connection
    oms.latency = 30.0
    pending = asyncio.ensure_future(put(session, oms, path=PATH.replace("NF-1", "NF-2")))
    with anyio.fail_after(5):
        # FakeOMS offers no arrival event (it may live in another thread): poll its counter.
        while oms.in_flight == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    started = time.monotonic()
    await oms.stop()
    assert time.monotonic() - started < 2.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending
    assert oms.in_flight == 0
    with pytest.raises(RuntimeError):
        _ = oms.url


def test_sync_with_block_serves_plain_sync_code() -> None:
    """`with FakeOMS()` serves from a background thread and stops and joins it on exit."""
    threads_before = set(threading.enumerate())
    with FakeOMS() as oms:
        url = oms.url + PATH
        headers = {**AUTH, "Content-Type": "application/json"}
        ok = sync_put(url, json.dumps(BODY).encode(), headers)
        refused = sync_put(url, json.dumps(BODY).encode(), {"Content-Type": "application/json"})
        accepted = oms.accepted("o-1", "NF-1")
    assert (ok, refused) == (200, 401)
    assert accepted == [BODY]
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(urllib.error.URLError):
        sync_put(url, b"{}", headers)


def test_fake_oms_fixture_serves_sync_tests(fake_oms: FakeOMS) -> None:
    """The plugin's fake_oms fixture is a fresh running server on 127.0.0.1, usable from
    sync code."""
    assert fake_oms.url.startswith("http://127.0.0.1:")
    assert fake_oms.requests == []
    body = json.dumps(BODY).encode()
    headers = {**AUTH, "Content-Type": "application/json"}
    assert sync_put(fake_oms.url + PATH, body, headers) == 200
    assert fake_oms.accepted("o-1", "NF-1") == [BODY]


async def test_fake_oms_fixture_serves_async_tests(
    fake_oms: FakeOMS, session: aiohttp.ClientSession
) -> None:
    """The fake_oms fixture runs in its own thread, so async tests can await it too."""
    status, _, _ = await put(session, fake_oms)
    assert status == 200
    assert len(fake_oms.requests) == 1


def test_repr_hides_credentials() -> None:
    """Neither FakeOMS nor a recorded request shows the tokens it holds."""
    with FakeOMS(app_token="TOP-SECRET-TOKEN", user_token="TOP-SECRET-JWT") as oms:
        headers = {
            **AUTH,
            "X-VTEX-API-AppToken": "TOP-SECRET-TOKEN",
            "Content-Type": "application/json",
        }
        status = sync_put(oms.url + PATH, json.dumps(BODY).encode(), headers)
        texts = [repr(oms), str(oms), repr(oms.requests[0]), str(oms.requests)]
    assert status == 200
    for text in texts:
        assert "TOP-SECRET" not in text
    assert "x-vtex-api-apptoken" in texts[2].lower()  # names are shown, values are not


def test_schema_validator_is_driven_by_the_openapi_file() -> None:
    """The validator accepts the contract's own examples and reports problems with paths."""
    operation = openapi()["paths"]["/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"]
    put_operation = operation["put"]
    request_example = put_operation["requestBody"]["content"]["application/json"]["example"]
    receipt_example = put_operation["responses"]["200"]["content"][
        "application/json; charset=utf-8"
    ]["example"]
    assert validate_request_body(request_example) == []
    assert validate_receipt(receipt_example) == []
    assert validate_request_body({**BODY, "deliveredDate": None}) == []  # nullable
    assert validate_request_body({**BODY, "events": None}) == ["events: expected array, got null"]
    assert validate_request_body({"isDelivered": 1, "events": [[]]}) == [
        "deliveredDate: required field missing",
        "isDelivered: expected boolean, got integer",
        "events[0]: expected object, got array",
    ]
    assert validate_receipt({"date": "x", "orderId": None}) == [
        "receipt: required field missing",
        "orderId: expected string, got null",
    ]


async def test_set_testing_removes_backoff_sleeps(status: TrackingStatus) -> None:
    """With set_testing(True), retries with long backoffs finish at once."""
    policy = RetryPolicy(max_attempts=3, initial_backoff=5.0, max_backoff=5.0)
    async with (
        FakeOMS() as oms,
        AsyncTrackingClient("acme", APP_KEY, APP_TOKEN, base_url=oms.url, retry=policy) as client,
    ):
        oms.fail_next(2, 500)
        set_testing(True)
        try:
            started = time.monotonic()
            receipt = await client.update_tracking_status("o", "1", status)
            elapsed = time.monotonic() - started
        finally:
            set_testing(False)
    assert receipt.attempts == 3
    assert len(oms.requests) == 3
    assert elapsed < 2.0
