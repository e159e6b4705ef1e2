"""One date rule everywhere (the models, the CLI's readers, FakeOMS) and the public parsers
that give a program the CLI's reading: ``parse_update``, ``TrackingUpdate.from_wire``,
``TrackingNumberUpdate.from_wire`` and ``read_updates``."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import aiohttp
import pytest

from vtex_tracking import (
    ConfigurationError,
    InvoiceTracking,
    TrackingEvent,
    TrackingNumberUpdate,
    TrackingStatus,
    TrackingUpdate,
    ValidationError,
    parse_update,
    read_updates,
)
from vtex_tracking.testing import FakeOMS

EVENT = {"city": "Recife", "state": "PE", "description": "Objeto postado", "date": "2026-11-02"}


def _line(**fields: Any) -> dict[str, Any]:
    return {"orderId": "o-1", "invoiceNumber": "NF-1", "events": [dict(EVENT)], **fields}


@pytest.mark.parametrize("date", ["02/11/2026", "ontem", "2026-02-30", "2026-11-2", " "])
def test_the_models_refuse_an_event_date_vtex_does_not_document(date: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrackingEvent("Recife", "PE", "Objeto postado", date)
    assert caught.value.field == "TrackingEvent.date"
    # The CLI's reader says the same thing about the same value: one rule.
    with pytest.raises(ValidationError) as read:
        parse_update(_line(events=[{**EVENT, "date": date}]))
    assert read.value.field == "events[0].date" and read.value.problem == caught.value.problem


BAD_DELIVERED = ["ontem 14h", "2026-11-02T10:00", "2026-11-02", "2026-11-02 24:00"]


@pytest.mark.parametrize("when", BAD_DELIVERED)
def test_the_models_refuse_a_delivered_date_vtex_does_not_document(when: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrackingStatus([], is_delivered=True, delivered_date=when)
    assert caught.value.field == "TrackingStatus.delivered_date"
    assert "YYYY-MM-DD hh:mm" in caught.value.problem
    with pytest.raises(ValidationError) as read:
        parse_update(_line(isDelivered=True, deliveredDate=when))
    assert read.value.field == "deliveredDate" and read.value.problem == caught.value.problem


def test_the_forms_vtex_documents_are_accepted_as_given() -> None:
    day = TrackingEvent("Recife", "PE", "Postado", "2026-11-02")
    timed = TrackingEvent("Recife", "PE", "Saiu", "2026-11-02T14:30:00-03:00")
    status = TrackingStatus([day, timed], is_delivered=True, delivered_date="2026-11-03 10:15")
    assert status.delivered_date == "2026-11-03 10:15" and timed.date.endswith("-03:00")
    assert TrackingEvent("Recife", "PE", "Postado", dt.date(2026, 11, 2)).date.day == 2


@pytest.mark.anyio
async def test_fake_oms_refuses_a_body_with_dates_vtex_does_not_document() -> None:
    """A raw PUT (not through the SDK's models) with a day-first date: 400 naming the field,
    so a test of a hand-written client meets the same rule."""
    body = {"isDelivered": True, "deliveredDate": "ontem 14h",
            "events": [{**EVENT, "date": "02/11/2026"}]}  # fmt: skip
    async with FakeOMS() as oms, aiohttp.ClientSession() as session:
        headers = {"X-VTEX-API-AppKey": oms.app_key, "X-VTEX-API-AppToken": oms.app_token}
        url = f"{oms.url}/api/oms/pvt/orders/o-1/invoice/NF-1/tracking"
        async with session.put(url, json=body, headers=headers) as answer:
            status, text = answer.status, await answer.text()
        good = {**body, "deliveredDate": "2026-11-03 10:15", "events": [EVENT]}
        async with session.put(url, json=good, headers=headers) as answer:
            ok = answer.status
    assert status == 400
    assert "events[0].date" in text and "deliveredDate" in text
    assert ok == 200 and len(oms.accepted("o-1", "NF-1")) == 1


def test_parse_update_reads_either_kind_and_names_bad_fields() -> None:
    both = parse_update(_line(trackingNumber="BR1", accountName="loja"))
    assert isinstance(both, TrackingUpdate) and both.tracking == InvoiceTracking("BR1")
    assert both.account_name == "loja" and both.status.events[0].date == "2026-11-02"
    alone = parse_update({"orderId": "o-2", "invoiceNumber": "NF-2", "trackingNumber": "BR2"})
    assert alone == TrackingNumberUpdate("o-2", "NF-2", InvoiceTracking("BR2"))
    assert TrackingUpdate.from_wire(_line()).key == ("o-1", "NF-1")
    number = {"orderId": "o", "invoiceNumber": "n", "trackingNumber": "X"}
    assert TrackingNumberUpdate.from_wire(number).tracking.tracking_number == "X"
    excel = _line(events=[{**EVENT, "date": "2/11/2026"}])
    day_first = parse_update(excel, date_format="dd/mm/yyyy")
    assert isinstance(day_first, TrackingUpdate)
    assert day_first.status.events[0].date == "2026-11-02"
    with pytest.raises(ValidationError) as typo:
        parse_update(_line(isDelivred=True))
    assert typo.value.field == "isDelivred" and "isDelivered" in typo.value.problem
    with pytest.raises(ValidationError) as unquoted:
        parse_update({"orderId": "o", "invoiceNumber": 30700, "events": []})
    assert unquoted.value.field == "invoiceNumber" and "quotes" in unquoted.value.problem
    with pytest.raises(ValidationError, match="events"):
        TrackingUpdate.from_wire({"orderId": "o", "invoiceNumber": "n", "trackingNumber": "X"})
    with pytest.raises(ValidationError, match="events"):
        TrackingNumberUpdate.from_wire(_line(trackingNumber="X"))
    with pytest.raises(ConfigurationError, match="date_format"):
        parse_update(_line(), date_format="mm/dd/yyyy")


def test_read_updates_streams_a_file_as_the_cli_reads_it(tmp_path: pathlib.Path) -> None:
    """JSONL: one update per line; a bad line raises with its ``file:line``, or with
    ``on_error`` is handed over and reading goes on: nothing skipped silently."""
    import json

    path = tmp_path / "eventos.jsonl"
    lines = [_line(), _line(events=[{**EVENT, "date": "02/11/2026"}]),
             {"orderId": "o-3", "invoiceNumber": "NF-3", "trackingNumber": "BR3"}]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    updates = read_updates(path)
    assert isinstance(next(updates), TrackingUpdate)
    with pytest.raises(ValidationError) as caught:
        next(updates)
    assert caught.value.field == f"{path}:2: events[0].date"
    errors: list[ValidationError] = []
    read = list(read_updates(path, on_error=errors.append))
    assert [type(u).__name__ for u in read] == ["TrackingUpdate", "TrackingNumberUpdate"]
    assert [e.field for e in errors] == [f"{path}:2: events[0].date"]


def test_read_updates_groups_csv_rows_and_reads_excel_dates(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "planilha.csv"
    path.write_bytes(
        "orderId;invoiceNumber;city;state;description;date;trackingNumber\n"
        "o-1;NF-1;São Paulo;SP;Postado;1/11/2026;BR1\n"
        "o-1;NF-1;Recife;PE;Saiu para entrega;2/11/2026;\n".encode("cp1252")
    )
    (update,) = read_updates(path, date_format="dd/mm/yyyy")
    assert isinstance(update, TrackingUpdate) and update.tracking is not None
    assert [e.date for e in update.status.events] == ["2026-11-01", "2026-11-02"]
    assert update.status.events[0].city == "São Paulo"
    with pytest.raises(ConfigurationError, match="unknown file type"):
        list(read_updates(tmp_path / "notes.txt"))
