"""Models validate at construction and name the offending field."""

from __future__ import annotations

import datetime as dt

import pytest

from vtex_tracking import (
    TrackingEvent,
    TrackingReceipt,
    TrackingStatus,
    TrackingUpdate,
    ValidationError,
)

EVENT = TrackingEvent("Rio de Janeiro", "RJ", "Coletado pela transportadora", dt.date(2026, 11, 2))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"city": ""}, "TrackingEvent.city"),
        ({"city": "   "}, "TrackingEvent.city"),
        ({"state": 35}, "TrackingEvent.state"),
        ({"description": None}, "TrackingEvent.description"),
        ({"description": "x" * 5001}, "TrackingEvent.description"),
        ({"date": ""}, "TrackingEvent.date"),
        ({"date": 20261102}, "TrackingEvent.date"),
    ],
)
def test_bad_event_field_is_named(kwargs: dict[str, object], field: str) -> None:
    """A bad event value raises ValidationError (a ValueError) naming the field."""
    values: dict[str, object] = {
        "city": "Recife",
        "state": "PE",
        "description": "Saiu para entrega",
        "date": "2026-11-02",
    }
    values.update(kwargs)
    with pytest.raises(ValidationError) as info:
        TrackingEvent(**values)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(field)
    assert isinstance(info.value, ValueError)


def test_event_accepts_date_datetime_and_string() -> None:
    """An event date may be a date, a datetime or a string in a form VTEX documents."""
    for value in (dt.date(2026, 1, 2), dt.datetime(2026, 1, 2, 3, 4), "2026-01-02T03:04-03:00"):
        assert TrackingEvent("Recife", "PE", "Em trânsito", value).date == value


def test_description_at_vtex_limit_is_accepted() -> None:
    """5,000 characters is VTEX's cap and is still accepted."""
    assert len(TrackingEvent("a", "b", "x" * 5000, "2026-01-01").description) == 5000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"events": "not a list"}, "TrackingStatus.events"),
        ({"events": (e for e in [EVENT])}, "TrackingStatus.events"),
        ({"events": [EVENT, {"city": "x"}]}, "TrackingStatus.events[1]"),
        ({"is_delivered": "true"}, "TrackingStatus.is_delivered"),
        ({"is_delivered": 1}, "TrackingStatus.is_delivered"),
        ({"delivered_date": dt.date(2026, 1, 1)}, "TrackingStatus.delivered_date"),
        ({"delivered_date": ""}, "TrackingStatus.delivered_date"),
        ({"delivered_date": 5}, "TrackingStatus.delivered_date"),
    ],
)
def test_bad_status_field_is_named(kwargs: dict[str, object], field: str) -> None:
    """A bad status value raises ValidationError naming the field (and index)."""
    values: dict[str, object] = {"events": [EVENT]}
    values.update(kwargs)
    with pytest.raises(ValidationError) as info:
        TrackingStatus(**values)  # type: ignore[arg-type]
    assert info.value.field == field


def test_status_stores_events_as_tuple_and_is_hashable() -> None:
    """A list of events is stored as a tuple, so a status is immutable and hashable."""
    status = TrackingStatus([EVENT], is_delivered=True, delivered_date="2026-11-03 10:00")
    assert status.events == (EVENT,)
    assert hash(status) == hash(TrackingStatus((EVENT,), True, "2026-11-03 10:00"))


@pytest.mark.parametrize(
    ("order_id", "invoice", "field", "problem"),
    [
        ("", "1", "TrackingUpdate.order_id", "empty"),
        ("a\r\nHost: evil", "1", "TrackingUpdate.order_id", "control"),
        ("o", "NF 1 ", "TrackingUpdate.invoice_number", "whitespace"),
        ("o", " NF1", "TrackingUpdate.invoice_number", "whitespace"),
        ("o", "NF\t1", "TrackingUpdate.invoice_number", "control"),
        ("o", 123, "TrackingUpdate.invoice_number", "string"),
    ],
)
def test_bad_ids_are_rejected(order_id: object, invoice: object, field: str, problem: str) -> None:
    """Ids with control characters, surrounding whitespace or wrong types are rejected."""
    with pytest.raises(ValidationError) as info:
        TrackingUpdate(order_id, invoice, TrackingStatus([EVENT]))  # type: ignore[arg-type]
    assert info.value.field == field
    assert problem in str(info.value)


def test_update_requires_a_status() -> None:
    """The status must be a TrackingStatus, not a dict."""
    with pytest.raises(ValidationError, match=r"TrackingUpdate\.status"):
        TrackingUpdate("o", "1", {"events": []})  # type: ignore[arg-type]


def test_update_key_is_order_and_invoice() -> None:
    """An update's key identifies its invoice."""
    assert TrackingUpdate("o-1", "NF/9", TrackingStatus([])).key == ("o-1", "NF/9")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "2017-03-29T18:04:31.0521233+00:00",
            dt.datetime(2017, 3, 29, 18, 4, 31, 52123, tzinfo=dt.timezone.utc),
        ),
        ("2017-03-29T18:04:31Z", dt.datetime(2017, 3, 29, 18, 4, 31, tzinfo=dt.timezone.utc)),
        (
            "2017-03-29T18:04:31.5-0300",
            dt.datetime(2017, 3, 29, 18, 4, 31, 500000, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        ),
        ("yesterday", None),
    ],
)
def test_receipt_timestamp_parses_vtex_dates(raw: str, expected: dt.datetime | None) -> None:
    """The receipt keeps VTEX's date string and parses 7 fractional digits tolerantly."""
    receipt = TrackingReceipt(date=raw, order_id="o", receipt="r")
    assert receipt.date == raw
    assert receipt.timestamp == expected
