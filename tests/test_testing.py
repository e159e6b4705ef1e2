"""vtex_tracking.testing: FakeOMS behaves like VTEX's endpoint, and set_testing skips sleeps."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import aiohttp
import pytest
from multidict import CIMultiDict

from vtex_tracking import AsyncTrackingClient, RetryPolicy, TrackingStatus
from vtex_tracking.testing import FakeOMS, set_testing, validate_receipt, validate_request_body

from .conftest import APP_KEY, APP_TOKEN

pytestmark = pytest.mark.anyio

PATH = "/api/oms/pvt/orders/o-1/invoice/NF-1/tracking"
AUTH = {"X-VTEX-API-AppKey": APP_KEY, "X-VTEX-API-AppToken": APP_TOKEN}
BODY = {
    "isDelivered": False,
    "deliveredDate": None,
    "events": [{"city": "Recife", "state": "PE", "description": "Postado", "date": "2026-11-02"}],
}


async def _put(
    oms: FakeOMS, body: object = BODY, headers: dict[str, str] | None = None, path: str = PATH
) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            oms.url + path, json=body, headers=AUTH if headers is None else headers
        ) as response,
    ):
        return response.status, CIMultiDict(response.headers), await response.read()


async def test_valid_request_gets_a_schema_valid_receipt() -> None:
    """A valid PUT answers 200 with a receipt matching VTEX's response schema."""
    async with FakeOMS() as oms:
        status, headers, body = await _put(oms)
        assert oms.accepted("o-1", "NF-1") == [BODY]
    receipt = json.loads(body)
    assert status == 200
    assert validate_receipt(receipt) == []
    assert receipt["orderId"] == "o-1"
    assert len(receipt["date"].split(".")[1]) == len("0521233+00:00")
    assert headers["Content-Type"].startswith("application/json")
    assert headers["X-Request-Id"]


@pytest.mark.parametrize(
    "headers",
    [{}, {**AUTH, "X-VTEX-API-AppToken": "wrong"}, {"VtexIdclientAutCookie": "not-configured"}],
)
async def test_bad_credentials_get_401(headers: dict[str, str]) -> None:
    """Missing or wrong credentials are refused with 401 and nothing is recorded as accepted."""
    async with FakeOMS() as oms:
        status, _, _ = await _put(oms, headers=headers)
        assert oms.updates == {}
    assert status == 401


async def test_user_token_is_accepted_when_configured() -> None:
    """The VtexIdclientAutCookie header authenticates when FakeOMS has a user token."""
    async with FakeOMS(user_token="jwt-1") as oms:
        status, _, _ = await _put(oms, headers={"VtexIdclientAutCookie": "jwt-1"})
    assert status == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "isDelivered": "no"}, "isDelivered: expected boolean"),
        ({"isDelivered": False, "events": []}, "deliveredDate: required field missing"),
        ({**BODY, "events": [{"city": "Recife"}]}, "events[0].state: required field missing"),
        ({**BODY, "events": [{**BODY["events"][0], "date": None}]}, "events[0].date"),  # type: ignore[index, dict-item]
        ([1, 2], "expected object"),
    ],
)
async def test_invalid_body_gets_vtex_shaped_400(body: object, field: str) -> None:
    """A body breaking VTEX's schema answers 400 {"error": {...}} naming the field."""
    async with FakeOMS() as oms:
        status, _, raw = await _put(oms, body=body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert field in error["message"]
    assert set(error) == {"code", "message", "exception"}


def test_schema_validator_is_driven_by_the_openapi_file() -> None:
    """The validator accepts the OpenAPI example and rejects a nullable misuse."""
    assert validate_request_body(BODY) == []
    assert validate_request_body({**BODY, "deliveredDate": None}) == []
    assert validate_request_body({**BODY, "events": None}) == ["events: expected array, got null"]


async def test_strict_mode_knows_only_registered_invoices() -> None:
    """In strict mode unknown invoices get VTEX's 404 'Invoice Not Found'."""
    async with FakeOMS(strict=True, known_invoices=[("o-1", "NF-1")]) as oms:
        assert (await _put(oms))[0] == 200
        status, _, raw = await _put(oms, path=PATH.replace("NF-1", "NF-2"))
    assert status == 404
    assert json.loads(raw)["error"]["message"] == "Invoice Not Found"


async def test_unknown_paths_and_methods_are_refused() -> None:
    """Other paths get 404, other methods on the tracking path 405."""
    async with FakeOMS() as oms:
        assert (await _put(oms, path="/api/oms/pvt/orders/o-1"))[0] == 404
        async with (
            aiohttp.ClientSession() as session,
            session.post(oms.url + PATH, json=BODY, headers=AUTH) as response,
        ):
            assert response.status == 405


async def test_rate_limit_answers_429_with_retry_after() -> None:
    """Past the burst, the token bucket answers 429 with the configured Retry-After."""
    async with FakeOMS(rate_limit=1, burst=2, retry_after="7") as oms:
        statuses = [(await _put(oms))[0] for _ in range(3)]
        _, headers, _ = await _put(oms)
    assert statuses == [200, 200, 429]
    assert headers["Retry-After"] == "7"


async def test_fail_rate_is_deterministic_for_a_seed() -> None:
    """fail_rate fails about that fraction of requests, the same ones for the same seed."""
    runs = []
    for _ in range(2):
        async with FakeOMS(fail_rate=0.3, fail_status=502, seed=42) as oms:
            runs.append([(await _put(oms))[0] for _ in range(40)])
    assert runs[0] == runs[1]
    assert 4 <= runs[0].count(502) <= 20
    assert set(runs[0]) == {200, 502}


async def test_fail_next_queues_statuses_bodies_and_headers() -> None:
    """fail_next answers the next requests as told, in order, then normal service resumes."""
    async with FakeOMS() as oms:
        oms.fail_next(1, 503, headers={"Retry-After": "0"})
        oms.fail_next(1, 200, body="<html>login</html>", content_type="text/html")
        first, second, third = [await _put(oms) for _ in range(3)]
    assert first[0] == 503 and first[1]["Retry-After"] == "0"
    assert second[0] == 200 and second[2] == b"<html>login</html>"
    assert second[1]["Content-Type"].startswith("text/html")
    assert third[0] == 200 and validate_receipt(json.loads(third[2])) == []


async def test_drop_next_closes_the_connection_without_answer() -> None:
    """drop_next makes the client see a disconnection; the requests are recorded with status 0."""
    async with FakeOMS() as oms:
        # Two drops: aiohttp itself resends an idempotent request once after a disconnect.
        oms.drop_next(2)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.put(oms.url + PATH, json=BODY, headers=AUTH):
                    pass
        assert 1 <= len(oms.requests) <= 2
        assert all(request.status == 0 for request in oms.requests)


def test_threaded_fake_oms_serves_sync_code() -> None:
    """`with FakeOMS()` runs in a thread, so plain urllib code can call it."""
    with FakeOMS() as oms:
        request = urllib.request.Request(
            oms.url + PATH,
            data=json.dumps(BODY).encode(),
            method="PUT",
            headers={**AUTH, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(
                urllib.request.Request(oms.url + PATH, data=b"{}", method="PUT"), timeout=5
            )
        info.value.close()
        assert info.value.code == 401
        assert len(oms.requests) == 2


def test_repr_hides_credentials() -> None:
    """Neither FakeOMS nor its recorded requests show the credentials they hold."""
    with FakeOMS(app_token="TOP-SECRET-TOKEN", user_token="TOP-SECRET-JWT") as oms:
        with urllib.request.urlopen(
            urllib.request.Request(
                oms.url + PATH,
                data=json.dumps(BODY).encode(),
                method="PUT",
                headers={
                    "X-VTEX-API-AppKey": oms.app_key,
                    "X-VTEX-API-AppToken": "TOP-SECRET-TOKEN",
                    "Content-Type": "application/json",
                },
            ),
            timeout=5,
        ) as response:
            assert response.status == 200
        texts = [repr(oms), str(oms), repr(oms.requests[0])]
    for text in texts:
        assert "TOP-SECRET" not in text


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
    assert elapsed < 2.0


def test_fake_oms_fixture_is_registered(fake_oms: FakeOMS) -> None:
    """The pytest plugin provides a running FakeOMS as `fake_oms`."""
    assert fake_oms.url.startswith("http://127.0.0.1:")
    assert fake_oms.requests == []
