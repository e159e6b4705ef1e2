"""The wire format: camelCase JSON through the one converter, and receipt decoding."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtex_tracking import TrackingEvent, TrackingStatus, UnexpectedResponseError
from vtex_tracking._serde import decode_receipt, decode_status, encode_status


def test_status_is_encoded_in_vtex_shape() -> None:
    """Dates become YYYY-MM-DD / ISO 8601, deliveredDate 'yyyy-mm-dd hh:mm', names camelCase."""
    status = TrackingStatus(
        [
            TrackingEvent("Rio de Janeiro", "RJ", "Coletado", dt.date(2015, 6, 23)),
            TrackingEvent("São Paulo", "SP", "A caminho", dt.datetime(2015, 6, 24, 8, 30, 5)),
            TrackingEvent("Curitiba", "PR", "Chegou", "2015-06-24T18:00:00-03:00"),
        ],
        is_delivered=True,
        delivered_date=dt.datetime(2015, 6, 25, 21, 15, 59),
    )
    assert orjson.loads(encode_status(status)) == {
        "isDelivered": True,
        "deliveredDate": "2015-06-25 21:15",
        "events": [
            {
                "city": "Rio de Janeiro",
                "state": "RJ",
                "description": "Coletado",
                "date": "2015-06-23",
            },
            {
                "city": "São Paulo",
                "state": "SP",
                "description": "A caminho",
                "date": "2015-06-24T08:30:05",
            },
            {
                "city": "Curitiba",
                "state": "PR",
                "description": "Chegou",
                "date": "2015-06-24T18:00:00-03:00",
            },
        ],
    }


def test_missing_delivered_date_is_sent_as_null() -> None:
    """deliveredDate is required and nullable: None is sent as JSON null, not omitted."""
    assert orjson.loads(encode_status(TrackingStatus([]))) == {
        "isDelivered": False,
        "deliveredDate": None,
        "events": [],
    }


_text = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")
# Strings in the forms VTEX documents (the one date rule, ``_dates``): others are refused.
_event_dates = st.one_of(st.dates(), st.datetimes(), st.dates().map(dt.date.isoformat))
_delivered_texts = st.datetimes(min_value=dt.datetime(1900, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%d %H:%M")
)
_events = st.builds(TrackingEvent, _text, _text, _text, _event_dates)
_statuses = st.builds(
    TrackingStatus,
    st.lists(_events, max_size=4),
    st.booleans(),
    st.one_of(st.none(), st.datetimes(), _delivered_texts),
)


@given(_statuses)
def test_status_round_trips_through_the_converter(status: TrackingStatus) -> None:
    """encode(decode(encode(s))) == encode(s): the wire form is a fixed point."""
    wire = encode_status(status)
    again = decode_status(wire)
    assert encode_status(again) == wire
    assert len(again.events) == len(status.events)
    assert again.is_delivered is status.is_delivered


def _decode(body: bytes, order_id: str = "o") -> object:
    return decode_receipt(
        200,
        {"Content-Type": "application/json", "X-Request-Id": "rid"},
        body,
        request_id="rid",
        order_id=order_id,
        invoice_number="i",
        attempts=2,
    )


def test_receipt_ignores_unknown_fields_and_keeps_http_details() -> None:
    """Unknown response fields are ignored; status, headers, attempts and raw body are kept."""
    body = b'{"date":"2017-03-29T18:04:31.0521233+00:00","orderId":"v1-01","receipt":"f6","x":1}'
    receipt = _decode(body, order_id="v1-01")
    assert receipt.order_id == "v1-01"  # type: ignore[attr-defined]
    assert receipt.receipt == "f6"  # type: ignore[attr-defined]
    assert receipt.attempts == 2  # type: ignore[attr-defined]
    assert receipt.request_id == "rid"  # type: ignore[attr-defined]
    assert receipt.content == body  # type: ignore[attr-defined]
    assert receipt.content_type == "application/json"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "list"),
        (b'{"date": null, "orderId": "o"}', "receipt.receipt"),
        (b'{"date": 5, "orderId": "o", "receipt": "r"}', "receipt.date"),
        (b"<!DOCTYPE html><html><body>Login</body></html>", "HTML"),
    ],
)
def test_bad_receipt_body_raises_a_clear_error(body: bytes, says: str) -> None:
    """A 2xx body that is not the documented receipt raises UnexpectedResponseError saying why."""
    with pytest.raises(UnexpectedResponseError) as info:
        _decode(body)
    assert says in str(info.value)
    assert info.value.status_code == 200
    assert info.value.request_id == "rid"
    assert info.value.body == body
