"""``vtex-tracking check``: what VTEX holds for a sample of an input's invoices, against a
threaded FakeOMS over real sockets (credentials from the VTEX_* variables: the ``oms``
fixture)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from vtex_tracking import TrackingClient, TrackingEvent, TrackingStatus
from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

EVENTS = [
    ("Recife", "PE", "Objeto postado", "2026-11-02"),
    ("Caruaru", "PE", "Em trânsito", "2026-11-03"),
]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _line(order: str, invoice: str, events: list[tuple[str, str, str, str]]) -> str:
    return json.dumps(
        {
            "orderId": order, "invoiceNumber": invoice, "isDelivered": False,
            "deliveredDate": None,
            "events": [dict(zip(("city", "state", "description", "date"), e, strict=True))
                       for e in events],
        },
        ensure_ascii=False,
    )  # fmt: skip


def _status(events: list[tuple[str, str, str, str]]) -> TrackingStatus:
    import datetime as dt

    return TrackingStatus(
        [TrackingEvent(c, s, d, dt.date.fromisoformat(when)) for c, s, d, when in events]
    )


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["check", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_check_reports_what_vtex_holds_for_each_sampled_invoice(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One invoice complete, one without its number, one whose order VTEX does not have,
    one whose events VTEX holds fewer of than the file: exit 1, each named with its line."""
    with TrackingClient("acme", oms.app_key, oms.app_token, base_url=oms.url) as client:
        client.send_tracking_number("o-1", "NF-1", "BR1", tracking_url="https://t.example/1")
        client.update_tracking_status("o-1", "NF-1", _status(EVENTS))
        client.update_tracking_status("o-2", "NF-2", _status(EVENTS))
        client.send_tracking_number("o-4", "NF-4", "BR4", tracking_url="https://t.example/4")
        client.update_tracking_status("o-4", "NF-4", _status(EVENTS[:1]))
    writes = len(oms.requests)
    path = tmp_path / "today.jsonl"
    path.write_text(
        "\n".join(
            [_line("o-1", "NF-1", EVENTS[:1]), _line("o-2", "NF-2", EVENTS),
             _line("o-3", "NF-3", EVENTS), _line("o-4", "NF-4", EVENTS),
             _line("o-1", "NF-1", EVENTS)]  # the later line of NF-1 is the one compared
        ) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    code, report = _check(capsys, str(path), "--base-url", oms.url)
    assert code == 1
    verdicts = {f["order_id"]: f["verdict"] for f in report["invoices"]}
    assert verdicts == {
        "o-1": "ok", "o-2": "no tracking number", "o-3": "no order", "o-4": "events differ"
    }  # fmt: skip
    by_order = {f["order_id"]: f for f in report["invoices"]}
    assert by_order["o-1"]["source"].endswith("today.jsonl:1")
    assert (by_order["o-4"]["events_at_vtex"], by_order["o-4"]["events_in_file"]) == (1, 2)
    assert report["stores"] == {"acme": "ok"} and report["records_read"] == 5
    assert {r.method for r in oms.requests[writes:]} == {"GET"}  # it sends nothing


def test_check_of_a_matching_input_exits_0_and_samples_only_n(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with TrackingClient("acme", oms.app_key, oms.app_token, base_url=oms.url) as client:
        for k in range(3):
            client.send_tracking_number(f"o-{k}", "NF-1", f"BR{k}", tracking_url="https://t.x/")
            client.update_tracking_status(f"o-{k}", "NF-1", _status(EVENTS))
    path = tmp_path / "in.jsonl"
    path.write_text("".join(_line(f"o-{k}", "NF-1", EVENTS) + "\n" for k in range(3)))
    code, report = _check(capsys, str(path), "--sample", "2", "--base-url", oms.url)
    assert code == 0
    assert report["checked"] == 2 and report["ok"] == 2
    assert [f["order_id"] for f in report["invoices"]] == ["o-0", "o-1"]


def test_a_store_whose_key_cannot_read_orders_is_named(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 403 on the read: the store's line says the key needs 'View order', every sampled
    invoice of it is "unreadable", exit 1."""
    oms.read_forbidden = True
    path = tmp_path / "in.jsonl"
    path.write_text(_line("o-1", "NF-1", EVENTS) + "\n" + _line("o-2", "NF-2", EVENTS) + "\n")
    code, report = _check(capsys, str(path), "--base-url", oms.url)
    assert code == 1
    assert "View order" in report["stores"]["acme"]
    assert {f["verdict"] for f in report["invoices"]} == {"unreadable"}


def test_check_words_and_usage_errors(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the findings go to stderr in words; a missing file or --sample 0 is
    exit 2."""
    path = tmp_path / "in.jsonl"
    path.write_text(_line("o-9", "NF-9", EVENTS) + "\n")
    assert main(["check", str(path), "--base-url", oms.url]) == 1
    err = capsys.readouterr().err
    assert "in.jsonl:1: order o-9 invoice NF-9: no order" in err
    assert "checked 1 invoice(s) of 1 record(s): 0 as in the file, 1 not" in err
    assert main(["check", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["check", str(path), "--sample", "0"]) == 2
