"""The CLI pushes the tracking number from the input: JSONL fields and CSV columns
``trackingNumber``, ``trackingUrl``, ``courier``, ``dispatchedDate``; a line with them sends
the number first, a line with only them sends only the number, and a failed line goes to the
failures file with them, so pushing that file again sends both."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .conftest import read_records


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _methods(oms: FakeOMS) -> list[tuple[str, str]]:
    return [(r.method, r.raw_path.split("/")[5]) for r in oms.requests]


def _line(order: str, **fields: Any) -> str:
    doc: dict[str, Any] = {"orderId": order, "invoiceNumber": "NF-1"}
    doc.update(fields)
    return json.dumps(doc, ensure_ascii=False)


EVENTS = [{"city": "Recife", "state": "PE", "description": "Objeto postado", "date": "2026-11-02"}]
URL = "https://rastreio.example.com/BR1"


def test_jsonl_lines_send_the_number_first_or_alone(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join([
            _line("o-1", trackingNumber="BR1", trackingUrl=URL, courier="Correios",
                  dispatchedDate="2026-11-02T09:00:00-03:00", events=EVENTS),
            _line("o-2", trackingNumber="BR2"),
            _line("o-3", events=EVENTS),
        ]) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    oms.require_tracking_number = True
    assert main(["push", str(path), "--base-url", oms.url]) == 0
    calls = _methods(oms)
    assert calls.index(("PATCH", "o-1")) < calls.index(("PUT", "o-1"))
    assert sorted(calls) == sorted([("PATCH", "o-1"), ("PUT", "o-1"), ("PATCH", "o-2"),
                                    ("PUT", "o-3")])  # fmt: skip
    assert oms.tracking_number("o-1", "NF-1") == {
        "trackingNumber": "BR1", "trackingUrl": URL, "courier": "Correios",
        "dispatchedDate": "2026-11-02T09:00:00-03:00",
    }  # fmt: skip
    assert oms.unapplied == [("o-3", "NF-1")]
    assert "3 succeeded, 0 failed" in capsys.readouterr().out


def test_csv_columns_carry_the_number_and_a_number_only_row_sends_it_alone(
    oms: FakeOMS, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "eventos.csv"
    path.write_text(
        "orderId,invoiceNumber,city,state,description,date,trackingNumber,trackingUrl\n"
        f"o-1,NF-1,Recife,PE,Objeto postado,2026-11-01,BR1,{URL}\n"
        "o-1,NF-1,Olinda,PE,Saiu para entrega,2026-11-02,,\n"
        "o-2,NF-1,,,,,BR2,\n",
        encoding="utf-8",
    )
    assert main(["push", str(path), "--base-url", oms.url]) == 0
    calls = _methods(oms)
    assert sorted(calls) == sorted([("PATCH", "o-1"), ("PUT", "o-1"), ("PATCH", "o-2")])
    assert calls.index(("PATCH", "o-1")) < calls.index(("PUT", "o-1"))
    assert len(oms.accepted("o-1", "NF-1")[0]["events"]) == 2
    assert oms.tracking_number("o-2", "NF-1")["trackingNumber"] == "BR2"  # type: ignore[index]
    assert oms.accepted("o-2", "NF-1") == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trackingUrl": URL, "events": EVENTS}, "trackingNumber: required with trackingUrl"),
        ({"trackingNumber": "BR1", "trackingUrl": "rastreio.example.com"}, "trackingUrl:"),
        ({"trackingNumber": 123, "events": EVENTS}, "trackingNumber: expected a string"),
        ({"trackingNumber": "BR1", "isDelivered": True}, "events: required with isDelivered"),
        ({}, "events: required field missing"),
    ],
)
def test_bad_tracking_fields_are_named_with_file_and_line(
    oms: FakeOMS, tmp_path: pathlib.Path, fields: dict[str, Any], message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(_line("o-1", **fields) + "\n", encoding="utf-8")
    assert main(["push", str(path), "--base-url", oms.url]) == 1
    (record,) = read_records(tmp_path / "bad.failed.jsonl")
    assert record["source"] == f"{path}:1" and message in record["error"]
    assert oms.requests == []


def test_a_failed_line_keeps_its_number_in_the_failures_file(
    oms: FakeOMS, tmp_path: pathlib.Path
) -> None:
    """The PUT refused after the PATCH: the failures file has the whole line (number and
    events), so pushing it again sends both (the PATCH is harmless to repeat)."""
    path = tmp_path / "one.jsonl"
    path.write_text(_line("o-1", trackingNumber="BR1", trackingUrl=URL, events=EVENTS) + "\n")
    receipt = {"date": "2026-11-02T12:00:00Z", "orderId": "o-1", "receipt": "r-1"}
    oms.fail_next(1, 200, body=receipt)
    oms.fail_next(1, 400)
    assert main(["push", str(path), "--base-url", oms.url]) == 1
    (record,) = read_records(tmp_path / "one.failed.jsonl")
    assert record["trackingNumber"] == "BR1" and record["trackingUrl"] == URL
    assert record["events"] == EVENTS
    oms.reset()
    assert main(["push", str(tmp_path / "one.failed.jsonl"), "--base-url", oms.url]) == 0
    assert _methods(oms) == [("PATCH", "o-1"), ("PUT", "o-1")]
