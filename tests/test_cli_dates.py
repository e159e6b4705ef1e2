"""``--date-format dd/mm/yyyy``: day-first dates from Brazilian spreadsheets, accepted only when
asked for, sent in VTEX's ISO forms; bad ones named ``file:line: field: reason``. Against
FakeOMS over real sockets."""

from __future__ import annotations

import json
import pathlib

import pytest

from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .conftest import read_records

HEADER = "orderId,invoiceNumber,city,state,description,date,isDelivered,deliveredDate\n"
DAY_FIRST = ["--date-format", "dd/mm/yyyy"]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own directory."""
    monkeypatch.chdir(tmp_path)


def _jsonl(order: str, date: str, delivered: str | None = None) -> str:
    event = {"city": "Recife", "state": "PE", "description": "Entregue", "date": date}
    doc = {"orderId": order, "invoiceNumber": "NF-1", "events": [event]}
    if delivered is not None:
        doc.update(isDelivered=True, deliveredDate=delivered)
    return json.dumps(doc)


def test_day_first_csv_dates_are_sent_in_iso(oms: FakeOMS, tmp_path: pathlib.Path) -> None:
    """With --date-format dd/mm/yyyy, 23/11/2026 is sent as 2026-11-23 and the delivery
    '23/11/2026 14:05' as '2026-11-23 14:05'; Excel's unpadded 3/11/2026 9:05 too."""
    path = tmp_path / "planilha.csv"
    path.write_text(
        HEADER + "o-1,NF-1,Recife,PE,Objeto postado,22/11/2026,,\n"
        "o-1,NF-1,Recife,PE,Entregue,23/11/2026,sim,23/11/2026 14:05\n"
        "o-2,NF-2,Natal,RN,Entregue,3/11/2026,sim,3/11/2026 9:05\n",
        encoding="utf-8",
    )
    assert main(["push", str(path), "--base-url", oms.url, *DAY_FIRST]) == 0
    (first,) = oms.accepted("o-1", "NF-1")
    assert [e["date"] for e in first["events"]] == ["2026-11-22", "2026-11-23"]
    assert first["deliveredDate"] == "2026-11-23 14:05"
    (second,) = oms.accepted("o-2", "NF-2")
    assert (second["events"][0]["date"], second["deliveredDate"]) == (
        "2026-11-03",
        "2026-11-03 09:05",
    )


def test_day_first_jsonl_dates_are_sent_in_iso(oms: FakeOMS, tmp_path: pathlib.Path) -> None:
    """The option applies to JSONL too; an event date with a time keeps it, in ISO order."""
    path = tmp_path / "day.jsonl"
    path.write_text(_jsonl("o-1", "23/11/2026 08:30", "23/11/2026 14:05") + "\n", "utf-8")
    assert main(["push", str(path), "--base-url", oms.url, *DAY_FIRST]) == 0
    (body,) = oms.accepted("o-1", "NF-1")
    assert body["events"][0]["date"] == "2026-11-23 08:30"
    assert body["deliveredDate"] == "2026-11-23 14:05"


def test_day_first_dates_without_the_option_are_refused(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never guessed: without the option 04/11/2026 is a malformed row, not 4 November."""
    path = tmp_path / "planilha.csv"
    path.write_text(HEADER + "o-1,NF-1,Recife,PE,Postado,04/11/2026,,\n", encoding="utf-8")
    assert main(["push", str(path), "--base-url", oms.url]) == 1
    assert oms.requests == []
    assert f"{path}:2: date: expected YYYY-MM-DD, got '04/11/2026'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("date", "delivered", "says"),
    [
        (
            "31/02/2026",
            None,
            "events[0].date: '31/02/2026' is not a real date (expected dd/mm/yyyy)",
        ),
        (
            "2026-11-23",
            None,
            "events[0].date: expected dd/mm/yyyy (--date-format dd/mm/yyyy), got '2026-11-23'",
        ),
        (
            "23/11/26",
            None,
            "events[0].date: expected dd/mm/yyyy (--date-format dd/mm/yyyy), got '23/11/26'",
        ),
        (
            "23/11/2026",
            "23/11/2026",
            "deliveredDate: expected 'dd/mm/yyyy hh:mm' (--date-format dd/mm/yyyy),"
            " got '23/11/2026'",
        ),
        (
            "23/11/2026",
            "23/11/2026 24:00",
            "deliveredDate: '23/11/2026 24:00' is not a real date",
        ),
        (
            "23/11/2026",
            "2026-11-23 14:05",
            "deliveredDate: expected 'dd/mm/yyyy hh:mm' (--date-format dd/mm/yyyy),"
            " got '2026-11-23 14:05'",
        ),
    ],
)
def test_bad_day_first_dates_are_named_by_line_and_field(
    date: str,
    delivered: str | None,
    says: str,
    oms: FakeOMS,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An impossible date, an ISO date, a two-digit year or a delivery without its time, with
    --date-format dd/mm/yyyy: 'file:line: field: reason', kept, the other lines sent."""
    path = tmp_path / "day.jsonl"
    path.write_text(
        "\n".join([_jsonl("o-0", "01/11/2026"), _jsonl("o-1", date, delivered)]) + "\n", "utf-8"
    )
    assert main(["push", str(path), "--base-url", oms.url, *DAY_FIRST]) == 1
    assert set(oms.updates) == {("o-0", "NF-1")}
    assert f"{path}:2: {says}" in capsys.readouterr().err
    (kept,) = read_records(tmp_path / "day.failed.jsonl")
    assert kept["source"] == f"{path}:2"
    assert kept["raw"] == _jsonl("o-1", date, delivered)


def test_bad_day_first_csv_date_names_its_row(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a CSV invoice of several rows, the bad row's line is named."""
    path = tmp_path / "planilha.csv"
    path.write_text(
        HEADER + "o-1,NF-1,Recife,PE,Postado,22/11/2026,,\n"
        "o-1,NF-1,Recife,PE,Entregue,31/11/2026,sim,\n",
        encoding="utf-8",
    )
    assert main(["push", str(path), "--base-url", oms.url, *DAY_FIRST]) == 1
    assert oms.requests == []
    assert f"{path}:2-3: line 3: date: '31/11/2026' is not a real date" in (
        capsys.readouterr().err
    )


def test_the_failures_file_has_iso_dates_and_pushes_again_without_the_option(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An update refused by the server lands in the failures file with ISO dates; the summary
    says to push it without --date-format, and doing so sends the same body."""
    path = tmp_path / "planilha.csv"
    path.write_text(
        HEADER + "o-1,NF-1,Recife,PE,Entregue,23/11/2026,sim,23/11/2026 14:05\n", "utf-8"
    )
    oms.fail_next(1, 400)
    assert main(["push", str(path), "--base-url", oms.url, *DAY_FIRST]) == 1
    out = capsys.readouterr().out
    retry = f"vtex-tracking push planilha.failed.jsonl --base-url {oms.url} (UTF-8 JSONL"
    assert f"retry them with: {retry}" in out
    (kept,) = read_records(tmp_path / "planilha.failed.jsonl")
    assert (kept["events"][0]["date"], kept["deliveredDate"]) == ("2026-11-23", "2026-11-23 14:05")
    assert main(["push", "planilha.failed.jsonl", "--base-url", oms.url]) == 0
    assert oms.accepted("o-1", "NF-1")[0]["deliveredDate"] == "2026-11-23 14:05"
