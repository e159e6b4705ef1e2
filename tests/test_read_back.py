"""Reading back what VTEX holds: ``get_order`` on both clients, typed packages, the answer
checked against VTEX's contract, the permission it needs, and reads that lag writes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest

from vtex_tracking import (
    NotFoundError,
    PermissionDeniedError,
    TrackingStatus,
    UnexpectedResponseError,
    ValidationError,
)
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory
from .test_tracking_number import _json_schema

pytestmark = pytest.mark.anyio


def _order_schema() -> dict[str, Any]:
    from vtex_tracking.testing._schema import flow_openapi

    operation = flow_openapi()["paths"]["/api/oms/pvt/orders/{orderId}"]["get"]
    return _json_schema(operation["responses"]["200"]["content"]["application/json"]["schema"])


async def test_an_invoice_reads_back_with_its_number_and_events(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """After the number and the events, ``get_order(...).package(invoice)`` holds both, as
    typed models; the answer conforms to VTEX's "Get order" schema."""
    async with FakeOMS() as oms, make_client(oms) as client:
        await client.send_tracking_number(
            "o-1", "NF-1", "BR1", tracking_url="https://t.example/BR1", courier="Correios"
        )
        await client.update_tracking_status("o-1", "NF-1", status)
        await client.update_tracking_status("o-1", "NF-2", status)
        order = await client.get_order("o-1")
    get = oms.requests[-1]
    assert (get.method, get.raw_path) == ("GET", "/api/oms/pvt/orders/o-1")
    jsonschema.validate(dict(order.raw), _order_schema())
    assert order.order_id == "o-1" and order.request_id
    package = order.package("NF-1")
    assert package is not None
    assert (package.tracking_number, package.tracking_url, package.courier) == (
        "BR1", "https://t.example/BR1", "Correios",
    )  # fmt: skip
    assert [(e.city, e.state, e.description) for e in package.events] == [
        (e.city, e.state, e.description) for e in status.events
    ]
    assert package.courier_status is not None and package.courier_status.finished is False
    no_number = order.package("NF-2")
    assert no_number is not None and no_number.tracking_number is None
    assert order.package("NF-3") is None


def test_the_sync_client_reads_too(make_client: ClientFactory) -> None:
    with FakeOMS() as oms:
        client = make_client.sync(oms)
        client.send_tracking_number("o-1", "NF-1", "BR1")
        order = client.get_order("o-1")
    package = order.package("NF-1")
    assert package is not None and package.tracking_number == "BR1"
    assert package.events == ()


async def test_a_key_without_view_order_is_told_exactly_that(
    make_client: ClientFactory,
) -> None:
    """A 403 on the read names the resource it needs (a tracking key has only "Notify
    invoice"), and is not retried."""
    async with FakeOMS(read_forbidden=True) as oms, make_client(oms) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            await client.get_order("o-1")
    assert "View order" in str(caught.value)
    assert caught.value.order_id == "o-1" and caught.value.invoice_number is None
    assert len(oms.requests) == 1


async def test_an_unknown_order_is_not_found_and_a_bad_id_never_leaves(
    make_client: ClientFactory,
) -> None:
    async with FakeOMS() as oms, make_client(oms) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get_order("o-404")
        with pytest.raises(ValidationError) as bad:
            await client.get_order(" o-1")
    assert "No such order" in str(caught.value)
    assert bad.value.field == "order_id"
    assert len(oms.requests) == 1


async def test_writes_show_in_reads_only_after_the_servers_delay(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """FakeOMS(read_delay=...) lags reads behind writes, as VTEX does: right after the PATCH
    the package has no number yet; after the delay it has."""
    async with FakeOMS(read_delay=0.3) as oms, make_client(oms) as client:
        await client.send_tracking_number("o-1", "NF-1", "BR1")
        early = await client.get_order("o-1")
        await asyncio.sleep(0.4)
        late = await client.get_order("o-1")
    first, second = early.package("NF-1"), late.package("NF-1")
    assert first is not None and first.tracking_number is None
    assert second is not None and second.tracking_number == "BR1"


async def test_an_answer_that_is_not_an_order_is_an_unexpected_response(
    make_client: ClientFactory,
) -> None:
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 200, body=["not", "an", "order"])
        with pytest.raises(UnexpectedResponseError) as caught:
            await client.get_order("o-1")
        oms.fail_next(1, 200, body={"orderId": "o-1", "packageAttachment": {"packages": 3}})
        with pytest.raises(UnexpectedResponseError):
            await client.get_order("o-1")
    assert "not an order" in str(caught.value)
    assert json.loads(oms.requests[0].body or b"null") is None
