"""404s whose cause is the input get a hint: in each failed line's error (console and failures
file) and once per kind in the summary. VTEX's errors themselves are unchanged."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest

from vtex_tracking import AsyncTrackingClient, NotFoundError, TrackingEvent, TrackingStatus
from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .conftest import read_records

ORDER_NOT_FOUND = {"error": {"code": "OMS007", "message": "Order Not Found", "exception": None}}


def _line(order: str, invoice: str) -> str:
    event = {"city": "Recife", "state": "PE", "description": "Objeto postado", "date": "2026-11-02"}
    return json.dumps({"orderId": order, "invoiceNumber": invoice, "events": [event]})


@pytest.fixture
def strict_oms(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[FakeOMS]:
    """A FakeOMS that knows one invoice only (404 OMS007 "Invoice Not Found" for others)."""
    monkeypatch.chdir(tmp_path)
    with FakeOMS(strict=True, known_invoices=[("o-1", "NF-1")]) as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", server.app_key)
        monkeypatch.setenv("VTEX_APP_TOKEN", server.app_token)
        for name in ("VTEX_USER_TOKEN", "VTEX_ACCOUNTS", "VTEX_ENVIRONMENT"):
            monkeypatch.delenv(name, raising=False)
        yield server


def test_invoice_not_found_says_to_send_the_invoice_first(
    strict_oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invoice VTEX does not have: the line's error and the summary say to send the
    invoice first and to match its number exactly; the known invoice goes through."""
    lines = [_line("o-1", "NF-1"), _line("o-1", "NF-0001"), _line("o-2", "NF-2")]
    (tmp_path / "day.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["push", "day.jsonl", "--base-url", strict_oms.url]) == 1
    captured = capsys.readouterr()
    failed = read_records(tmp_path / "day.failed.jsonl")
    # Results arrive in completion order; the two orders' requests race.
    assert sorted(r["invoiceNumber"] for r in failed) == ["NF-0001", "NF-2"]
    for record in failed:
        assert "Invoice Not Found" in record["error"]
        assert "the invoice must be sent to VTEX first" in record["error"]
        assert "must match it exactly" in record["error"]
    assert "NF-0001: VTEX answered HTTP 404" in captured.err  # the line, hint included
    assert captured.err.count("the invoice must be sent to VTEX first") == 2
    summary = "  2 updates answered 404 Invoice Not Found. Hint: the order has no invoice with"
    assert summary in captured.out
    assert "Order Not Found" not in captured.out


def test_order_not_found_says_which_order_id(
    strict_oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An order the account does not know (a seller's order id sent to the marketplace's
    account): the hint says which order id each account knows."""
    strict_oms.fail_next(1, 404, body=ORDER_NOT_FOUND)
    (tmp_path / "day.jsonl").write_text(_line("SLR-99-01", "NF-1") + "\n", encoding="utf-8")
    assert main(["push", "day.jsonl", "--base-url", strict_oms.url]) == 1
    out = capsys.readouterr().out
    (record,) = read_records(tmp_path / "day.failed.jsonl")
    assert "OMS007: Order Not Found" in record["error"]
    for text in (record["error"], out):
        assert "send the marketplace's order id to the marketplace's account" in text
        assert "the seller's own id to the seller's account" in text
    assert "  1 update answered 404 Order Not Found. Hint: orderId must be" in out
    assert "Invoice Not Found" not in out


def test_other_404s_get_no_hint(
    strict_oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 404 the hints do not know of (a bare "Not Found") is reported as VTEX said it."""
    strict_oms.add_invoice("o-1", "NF-2")
    strict_oms.fail_next(1, 404)
    (tmp_path / "day.jsonl").write_text(_line("o-1", "NF-2") + "\n", encoding="utf-8")
    assert main(["push", "day.jsonl", "--base-url", strict_oms.url]) == 1
    (record,) = read_records(tmp_path / "day.failed.jsonl")
    assert "HTTP 404" in record["error"] and "Hint" not in record["error"]
    assert "Hint" not in capsys.readouterr().out


@pytest.mark.anyio
async def test_the_library_error_is_unchanged(strict_oms: FakeOMS) -> None:
    """The hint is the command line's: the SDK's NotFoundError carries VTEX's answer only."""
    status = TrackingStatus(events=[TrackingEvent("Recife", "PE", "Objeto postado", "2026-11-02")])
    async with AsyncTrackingClient(
        "acme", strict_oms.app_key, strict_oms.app_token, base_url=strict_oms.url
    ) as client:
        with pytest.raises(NotFoundError) as refused:
            await client.update_tracking_status("o-9", "NF-9", status)
    assert refused.value.message == "Invoice Not Found"
    assert "Hint" not in str(refused.value)
