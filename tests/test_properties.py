"""Property tests: what the models accept is always valid on the wire (checked with the
maintained `jsonschema` validator against VTEX's OpenAPI file), what they reject always fails
with the validation error, and any id reaches the server unchanged as one path segment."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtex_tracking import (
    Checks,
    TrackingClient,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
    ValidationError,
)
from vtex_tracking._serde import decode_status, encode_status
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: ``nullable`` becomes a null type, refs to
    ``#/components/schemas`` point at ``#/$defs``; everything else is kept."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _request_validator() -> jsonschema.protocols.Validator:
    spec_file = importlib.resources.files("vtex_tracking.testing") / "vtex-tracking-openapi.json"
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    path = spec["paths"]["/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"]
    body = path["put"]["requestBody"]["content"]["application/json"]["schema"]
    schema = {**_to_json_schema(body), "$defs": _to_json_schema(spec["components"]["schemas"])}
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


REQUEST = _request_validator()

# Anything a caller might pass for a field, good or bad.
_anything = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=" \t\r\n", max_size=3),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=5),
    st.lists(st.text(max_size=3), max_size=2),
)
_names = st.text(min_size=1).filter(str.strip)
# Event date strings in the forms VTEX documents (the one date rule; others are refused).
_wire_dates = st.one_of(
    st.dates().map(dt.date.isoformat),
    st.datetimes(min_value=dt.datetime(1000, 1, 1)).map(lambda d: d.isoformat(timespec="seconds")),
)
_events_like = st.one_of(
    _anything,
    st.lists(
        st.one_of(_anything, st.builds(TrackingEvent, *[_names] * 3, _wire_dates))
    ),
)


def _event_or_error(args: tuple[Any, ...]) -> TrackingEvent | ValueError:
    try:
        return TrackingEvent(*args)
    except ValueError as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(st.tuples(_anything, _anything, _anything, _anything))
def test_an_event_is_built_or_refused_with_a_validation_error(args: tuple[Any, ...]) -> None:
    """TrackingEvent(...) with any values either works or raises ValidationError (a
    ValueError), never TypeError, AttributeError or anything else."""
    outcome = _event_or_error(args)
    if isinstance(outcome, ValueError):
        assert isinstance(outcome, ValidationError)


@settings(max_examples=300, deadline=None)
@given(_events_like, _anything, _anything)
def test_any_accepted_status_is_valid_on_the_wire_and_round_trips(
    events: Any, is_delivered: Any, delivered_date: Any
) -> None:
    """Whatever TrackingStatus accepts serializes to a body VTEX's schema accepts, and the
    wire form survives decoding and re-encoding unchanged; whatever it refuses raises
    ValidationError."""
    try:
        status = TrackingStatus(events, is_delivered=is_delivered, delivered_date=delivered_date)
    except ValueError as exc:
        assert isinstance(exc, ValidationError)
        return
    wire = encode_status(status)
    REQUEST.validate(orjson.loads(wire))
    assert encode_status(decode_status(wire)) == wire


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            TrackingEvent,
            st.text(min_size=1).filter(str.strip),
            st.text(min_size=1).filter(str.strip),
            st.text(min_size=1).filter(str.strip),
            st.one_of(st.dates(), st.datetimes(), _wire_dates),
        ),
        max_size=3,
    ),
    st.booleans(),
    st.one_of(st.none(), st.datetimes(timezones=st.just(dt.timezone.utc))),
)
def test_valid_statuses_always_validate(
    events: list[TrackingEvent], is_delivered: bool, delivered_date: dt.datetime | None
) -> None:
    """The happy path, drawn densely: every well-formed status is a valid request body."""
    status = TrackingStatus(events, is_delivered=is_delivered, delivered_date=delivered_date)
    REQUEST.validate(orjson.loads(encode_status(status)))


# Ids: arbitrary unicode without control characters (categories Cc and Cs excluded).
_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(lambda s: s.strip() not in ("", ".", ".."))


@pytest.fixture(scope="module")
def shared_client() -> Iterator[tuple[FakeOMS, TrackingClient]]:
    """One FakeOMS and one sync client for all examples (starting them per example would
    dominate the run)."""
    # An account that routes encoded slashes: the property is about encoding, not VTEX's quirk.
    allow_slash = Checks(allow_slash_in_invoice=True)
    with (
        FakeOMS(routes_encoded_slash=True) as oms,
        TrackingClient("acme", APP_KEY, APP_TOKEN, base_url=oms.url, checks=allow_slash) as client,
    ):
        yield oms, client


_STATUS = TrackingStatus([TrackingEvent("Natal", "RN", "Postado", "2026-11-20")])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_ids, _ids)
def test_any_id_arrives_decoded_as_one_path_segment(
    shared_client: tuple[FakeOMS, TrackingClient], order_id: str, invoice: str
) -> None:
    """Whatever the ids contain (/, ?, #, %, spaces, any script), the server routes the
    request to this endpoint and decodes exactly the ids that were sent."""
    try:
        update = TrackingUpdate(order_id, invoice, _STATUS)
    except ValueError as exc:  # ids the model refuses say so, with the validation error
        assert isinstance(exc, ValidationError)
        return
    oms, client = shared_client
    client.send(update)
    request = oms.requests[-1]
    assert (request.order_id, request.invoice_number) == (order_id, invoice)
    raw_segments = request.raw_path.split("/")
    # "", api, oms, pvt, orders, {orderId}, invoice, {invoiceNumber}, tracking
    assert len(raw_segments) == 9


def test_the_validator_catches_a_bad_body() -> None:
    """The schema check can fail: a body without deliveredDate is refused."""
    with pytest.raises(jsonschema.ValidationError, match="deliveredDate"):
        REQUEST.validate({"isDelivered": False, "events": []})
    assert REQUEST.is_valid({"isDelivered": False, "deliveredDate": None, "events": []})
