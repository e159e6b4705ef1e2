"""The SDK's ``Checks`` on the command line: what a push (and ``--dry-run``) refuses before
sending, told in the input's field names with the option that relaxes it; ``--allow-*`` and
``--time-zone``. Against FakeOMS over real sockets."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

ALLOW_ALL = ["--allow-empty-events", "--allow-slash-in-invoice", "--allow-undated-delivery"]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VTEX_ACCOUNTS", raising=False)


@pytest.fixture
def oms(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOMS]:
    """A threaded FakeOMS that routes invoice numbers with '/', its credentials in the
    VTEX_* environment variables."""
    with FakeOMS(routes_encoded_slash=True) as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", server.app_key)
        monkeypatch.setenv("VTEX_APP_TOKEN", server.app_token)
        monkeypatch.delenv("VTEX_USER_TOKEN", raising=False)
        yield server


def _records(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _line(order: str, invoice: str = "NF-1", **fields: Any) -> str:
    event = {"city": "Recife", "state": "PE", "description": "Postado", "date": "2026-11-02"}
    doc: dict[str, Any] = {"orderId": order, "invoiceNumber": invoice, "events": [event]}
    doc.update(fields)
    return json.dumps(doc)


#: Each line a check refuses by default, and what the refusal says.
REFUSED = {
    "empty": (
        _line("empty", events=[]),
        "events: is empty",
        "--allow-empty-events",
    ),
    "slash": (
        _line("slash", invoice="NF/1"),
        "invoiceNumber: 'NF/1' contains '/'",
        "--allow-slash-in-invoice",
    ),
    "undated": (
        _line("undated", isDelivered=True),
        "deliveredDate: is missing while",
        "--allow-undated-delivery",
    ),
}


def _file(tmp_path: pathlib.Path, *lines: str) -> pathlib.Path:
    path = tmp_path / "day.jsonl"
    path.write_text("\n".join([_line("fine"), *lines]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("dry_run", [False, True])
def test_what_vtex_would_refuse_is_refused_by_input_field_and_option(
    dry_run: bool, oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No events, '/' in an invoice number, a delivery without date: each line refused before
    sending, named file:line and input field, with the option that allows it, and kept; a
    --dry-run refuses exactly the same lines."""
    path = _file(tmp_path, *(line for line, _, _ in REFUSED.values()))
    argv = ["push", str(path), "--base-url", oms.url, "--json"]
    assert main([*argv, "--dry-run"] if dry_run else argv) == 1
    captured = capsys.readouterr()
    assert [order for order, _ in oms.updates] == ([] if dry_run else ["fine"])
    lines = captured.err.splitlines()
    for number, (_, says, option) in enumerate(REFUSED.values(), start=2):
        shown = [line for line in lines if line.startswith(f"{path}:{number}: ")]
        assert len(shown) == 1 and says in shown[0] and option in shown[0], shown
    summary = json.loads(captured.out)
    assert (summary["succeeded"], summary["failed"]) == (1, 3)
    assert summary["by_outcome"]["invalid"] == 3
    kept = _records(tmp_path / "day.failed.jsonl")
    assert [r["orderId"] for r in kept] == list(REFUSED)
    assert all("Checks(" not in r["error"] for r in kept)


def test_allow_options_reach_the_client(oms: FakeOMS, tmp_path: pathlib.Path) -> None:
    """--allow-empty-events, --allow-slash-in-invoice and --allow-undated-delivery: those
    updates are sent as written and accepted."""
    path = _file(tmp_path, *(line for line, _, _ in REFUSED.values()))
    assert main(["push", str(path), "--base-url", oms.url, *ALLOW_ALL]) == 0
    assert oms.accepted("empty", "NF-1")[0]["events"] == []
    assert len(oms.accepted("slash", "NF/1")) == 1
    undated = oms.accepted("undated", "NF-1")[0]
    assert (undated["isDelivered"], undated["deliveredDate"]) == (True, None)


def _in_an_hour_utc() -> str:
    return f"{dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1):%Y-%m-%d %H:%M}"


@pytest.mark.parametrize(
    ("zone", "refused"),
    [(None, True), ("UTC", True), ("Asia/Tokyo", False)],
)
def test_time_zone_decides_which_deliveries_are_in_the_future(
    zone: str | None,
    refused: bool,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A delivery at UTC's wall clock in an hour is in the future in America/Sao_Paulo (the
    default) and in UTC, but hours ago in Tokyo: --time-zone decides."""
    path = _file(tmp_path, _line("late", isDelivered=True, deliveredDate=_in_an_hour_utc()))
    zone_option = ["--time-zone", zone] if zone else []
    code = main(["push", str(path), "--dry-run", *zone_option])
    err = capsys.readouterr().err
    assert code == (1 if refused else 0)
    assert (f"{path}:2: deliveredDate: " in err and "is in the future" in err) is refused


def test_an_unknown_time_zone_is_a_usage_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--time-zone 'America/Sao Paulo' (a space): exit 2, a JSON usage error naming it."""
    path = _file(tmp_path)
    assert main(["push", str(path), "--time-zone", "America/Sao Paulo", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["kind"] == "usage"
    assert "unknown time zone 'America/Sao Paulo'" in error["message"]
