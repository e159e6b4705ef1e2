"""The tracking number (VTEX's PATCH of the invoice): the call on both clients, its wire form
checked against VTEX's contract, its checks, and the fake server's trap for events sent to an
invoice without one."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
from typing import Any

import jsonschema
import pytest

from vtex_tracking import (
    InvoiceTracking,
    PermissionDeniedError,
    TrackingNumberUpdate,
    TrackingStatus,
    ValidationError,
)
from vtex_tracking.testing import FakeOMS
from vtex_tracking.testing._schema import flow_openapi

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio

_INVOICE = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}"


def _json_schema(openapi_schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.0 schema of the flow excerpt as JSON Schema (``nullable`` becomes a
    ``null`` type), with the excerpt's components alongside so ``$ref`` resolves."""

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: convert(v) for k, v in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            return node
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    doc = flow_openapi()
    return convert({**copy.deepcopy(openapi_schema), "components": doc["components"]})


def _patch_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    operation = flow_openapi()["paths"][_INVOICE]["patch"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    response = next(iter(operation["responses"]["200"]["content"].values()))["schema"]
    return _json_schema(request), _json_schema(response)


async def test_the_async_client_sends_the_tracking_number_as_vtex_describes_it(
    make_client: ClientFactory,
) -> None:
    """``send_tracking_number`` PATCHes the invoice with the four fields VTEX's contract
    requires (the unset ones null); the request and the receipt conform to the excerpt."""
    request_schema, receipt_schema = _patch_schemas()
    async with FakeOMS() as oms, make_client(oms) as client:
        receipt = await client.send_tracking_number(
            "1172452900000-01",
            "NF 30700",
            "BR123456789",
            tracking_url="https://rastreio.example.com/BR123456789",
            courier="Transportadora Exemplo",
            dispatched_date=dt.datetime(2026, 11, 2, 14, 30, tzinfo=dt.timezone.utc),
        )
        receipt_only = await client.send_tracking_number("1172452900000-01", "NF-2", "X1")
    first, second = oms.requests
    assert first.method == "PATCH"
    assert first.raw_path == "/api/oms/pvt/orders/1172452900000-01/invoice/NF%2030700"
    assert first.headers["Content-Type"] == "application/json"
    assert first.json() == {
        "trackingNumber": "BR123456789",
        "trackingUrl": "https://rastreio.example.com/BR123456789",
        "courier": "Transportadora Exemplo",
        "dispatchedDate": "2026-11-02T14:30:00+00:00",
    }
    assert second.json() == {
        "trackingNumber": "X1", "trackingUrl": None, "courier": None, "dispatchedDate": None
    }  # fmt: skip
    for request in (first, second):
        jsonschema.validate(request.json(), request_schema)
    assert oms.tracking_number("1172452900000-01", "NF 30700") == first.json()
    assert receipt.order_id == "1172452900000-01" and receipt.receipt
    jsonschema.validate(json.loads(receipt.content), receipt_schema)
    assert receipt_only.attempts == 1


def test_the_sync_client_sends_it_too(make_client: ClientFactory) -> None:
    """The sync facade's call is the same request, through the same account sender."""
    with FakeOMS() as oms:
        client = make_client.sync(oms)
        receipt = client.send_tracking_number("o-1", "NF-1", "BR1", courier="Correios")
        update = TrackingNumberUpdate("o-2", "NF-2", InvoiceTracking("BR2"))
        again = client.send(update)
    assert [r.method for r in oms.requests] == ["PATCH", "PATCH"]
    assert oms.tracking_number("o-1", "NF-1") == {
        "trackingNumber": "BR1", "trackingUrl": None, "courier": "Correios",
        "dispatchedDate": None,
    }  # fmt: skip
    assert oms.tracking_number("o-2", "NF-2") is not None
    assert receipt.order_id == "o-1" and again.order_id == "o-2"


async def test_a_naive_dispatch_time_is_the_stores_wall_clock(make_client: ClientFactory) -> None:
    """VTEX reads an offset: a naive ``dispatched_date`` is taken in the client's
    ``Checks.time_zone`` (Brasília by default) and sent with its offset."""
    async with FakeOMS() as oms, make_client(oms) as client:
        await client.send_tracking_number(
            "o-1", "NF-1", "BR1", dispatched_date=dt.datetime(2026, 11, 2, 9, 15)
        )
    assert oms.requests[0].json()["dispatchedDate"] == "2026-11-02T09:15:00-03:00"


@pytest.mark.parametrize(
    ("arguments", "field", "words"),
    [
        ({"tracking_number": " "}, "InvoiceTracking.tracking_number", "empty"),
        ({"tracking_url": "rastreio.example.com/BR1"}, "InvoiceTracking.tracking_url", "http"),
        ({"courier": ""}, "InvoiceTracking.courier", "empty"),
        ({"dispatched_date": "02/11/2026"}, "InvoiceTracking.dispatched_date", "ISO 8601"),
        ({"dispatched_date": dt.date(2026, 11, 2)}, "InvoiceTracking.dispatched_date", "time"),
        (
            {"dispatched_date": dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)},
            "InvoiceTracking.dispatched_date",
            "future",
        ),
    ],
)
async def test_bad_input_names_its_field_and_sends_nothing(
    make_client: ClientFactory, arguments: dict[str, Any], field: str, words: str
) -> None:
    """Each bad value fails before any request, naming the field and what VTEX wants."""
    values: dict[str, Any] = {"tracking_number": "BR1", **arguments}
    number = values.pop("tracking_number")
    async with FakeOMS() as oms, make_client(oms) as client:
        with pytest.raises(ValidationError) as caught:
            await client.send_tracking_number("o-1", "NF-1", number, **values)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert oms.requests == []


async def test_it_is_retried_paced_and_refused_like_the_events(
    make_client: ClientFactory,
) -> None:
    """A 429 is retried through the account's pace (one pace for both calls); a 403 raises
    ``PermissionDeniedError`` with the ids, as the PUT does."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 429, headers={"Retry-After": "0"})
        receipt = await client.send_tracking_number("o-1", "NF-1", "BR1")
        oms.fail_next(1, 403)
        with pytest.raises(PermissionDeniedError) as caught:
            await client.send_tracking_number("o-2", "NF-2", "BR2")
        metrics = client.metrics()["acme"]
    assert receipt.attempts == 2
    assert [r.status for r in oms.requests] == [429, 200, 403]
    assert caught.value.order_id == "o-2" and caught.value.invoice_number == "NF-2"
    assert metrics.throttled == 1


async def test_events_sent_before_the_number_are_answered_200_and_not_applied(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """FakeOMS(require_tracking_number=True) sets VTEX's trap: the PUT before the PATCH gets
    a receipt and changes nothing; after the PATCH the same PUT is applied."""
    async with FakeOMS(require_tracking_number=True) as oms, make_client(oms) as client:
        early = await client.update_tracking_status("o-1", "NF-1", status)
        assert oms.unapplied == [("o-1", "NF-1")] and oms.accepted("o-1", "NF-1") == []
        await client.send_tracking_number("o-1", "NF-1", "BR1")
        await client.update_tracking_status("o-1", "NF-1", status)
    assert early.receipt
    assert len(oms.accepted("o-1", "NF-1")) == 1


async def test_the_trap_is_on_by_default_and_said_once(
    make_client: ClientFactory,
    status: TrackingStatus,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A FakeOMS made with no argument sets VTEX's trap (the suite's conftest turns it off for
    tests written before the tracking number); the first unapplied PUT is logged once,
    through the library's logger, naming what to do."""
    monkeypatch.setattr(FakeOMS, "REQUIRE_TRACKING_NUMBER", True)
    caplog.set_level(logging.WARNING, logger="vtex_tracking")
    async with FakeOMS() as oms, make_client(oms) as client:
        for invoice in ("NF-1", "NF-2"):
            await client.update_tracking_status("o-1", invoice, status)
    assert oms.require_tracking_number is True and oms.updates == {}
    assert oms.unapplied == [("o-1", "NF-1"), ("o-1", "NF-2")]
    warnings = [r.getMessage() for r in caplog.records if "NOT applied" in r.getMessage()]
    assert len(warnings) == 1 and "tracking number first" in warnings[0]
    assert FakeOMS(require_tracking_number=False).require_tracking_number is False


async def test_the_fake_server_refuses_a_body_off_the_contract(
    make_client: ClientFactory,
) -> None:
    """A PATCH body missing a field VTEX requires is a 400 naming it; a PUT to the invoice's
    path (not its tracking path) is a 405 that allows PATCH."""
    import aiohttp

    async with FakeOMS() as oms, aiohttp.ClientSession() as session:
        headers = {"X-VTEX-API-AppKey": oms.app_key, "X-VTEX-API-AppToken": oms.app_token}
        url = f"{oms.url}/api/oms/pvt/orders/o-1/invoice/NF-1"
        async with session.patch(url, json={"trackingNumber": "BR1"}, headers=headers) as r:
            assert r.status == 400
            assert "courier: required field missing" in await r.text()
        async with session.put(url, json={}, headers=headers) as r:
            assert r.status == 405 and r.headers["Allow"] == "PATCH"
    assert oms.tracking_numbers == {}
