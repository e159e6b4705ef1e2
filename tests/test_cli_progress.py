"""The progress of a push says how far through its input files it is (percent of the bytes
read) and how long is left (ETA, from the rate of bytes with a result); for stdin, whose size
is unknown, it says neither."""

from __future__ import annotations

import io
import json
import pathlib
import re
import sys

import pytest

from vtex_tracking.cli import _report, main
from vtex_tracking.testing import FakeOMS

_SHARE = re.compile(r"^progress: (\d+)% read, ETA (\d\d:\d\d|\d+:\d\d:\d\d|\?), \d+ done ")


def _lines(count: int, prefix: str = "o") -> str:
    event = {"city": "Recife", "state": "PE", "description": "Objeto postado", "date": "2026-11-02"}
    docs = (
        {"orderId": f"{prefix}-{n}", "invoiceNumber": "NF-1", "events": [event]}
        for n in range(count)
    )
    return "".join(json.dumps(doc) + "\n" for doc in docs)


def _progress(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("progress: ")]


def _seconds(eta: str) -> int:
    seconds = 0
    for part in eta.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


@pytest.fixture(autouse=True)
def _often(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_report, "PLAIN_PROGRESS_EVERY", 0.02)


def test_progress_of_files_has_percent_read_and_eta(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two files pushed slowly: every progress line starts with the percent of their bytes
    read, never going back, and an ETA that is known once results come, and plausible."""
    (tmp_path / "a.jsonl").write_text(_lines(120, "a"), encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(_lines(120, "b"), encoding="utf-8")
    oms.latency = 0.005
    argv = ["push", "a.jsonl", "b.jsonl", "--base-url", oms.url, "--concurrency", "2"]
    assert main(argv) == 0
    lines = _progress(capsys.readouterr().err)
    assert len(lines) >= 5, lines
    shares = []
    for line in lines:
        found = _SHARE.match(line)
        assert found is not None, line
        shares.append((int(found[1]), found[2]))
    percents = [percent for percent, _ in shares]
    assert percents == sorted(percents)
    assert any(0 < percent < 100 for percent in percents)
    assert percents[-1] > 50  # the second file's bytes count after the first's
    etas = [_seconds(eta) for percent, eta in shares if eta != "?" and 0 < percent < 100]
    assert etas, shares
    assert max(etas) <= 60  # the whole push takes a few seconds


def test_progress_of_stdin_has_neither(
    oms: FakeOMS, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """stdin has no size: no percentage and no ETA, the rest of the line as before."""
    data = _lines(60).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    oms.latency = 0.005
    assert main(["push", "-", "--base-url", oms.url, "--concurrency", "1"]) == 0
    lines = _progress(capsys.readouterr().err)
    assert lines
    for line in lines:
        assert "% read" not in line and "ETA" not in line
        assert re.match(r"^progress: \d+ done \(", line), line


def test_share_counts_bytes_read_and_done() -> None:
    """The arithmetic: percent of the bytes read, and the time left at the rate of the bytes
    done over the window."""
    share = _report.InputShare([])
    share.total = 1000
    size = share.take(400)
    assert (size, share.percent_read()) == (400, 40)
    assert share.eta(now=10.0, started_at=0.0) is None  # nothing done yet
    share.finish(size)
    assert share.eta(now=20.0, started_at=0.0) == pytest.approx(30.0)  # 600 B at 20 B/s
    share.finish(share.take(1000))
    assert (share.percent_read(), share.eta(now=25.0, started_at=0.0)) == (100, 0.0)
