"""``vtex-tracking push`` loses nothing and rolls nothing back: failures made moot by a newer
update of their invoice leave the failures file, a journal read from stdin vouches by invoice
and body (not by position), a rehearsal's memories vouch for nothing at the real target, a
damaged journal stops the run before anything is sent, and an unreachable account is named."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .conftest import history_line, read_records, write_lines

ROOT = Path(__file__).resolve().parent.parent
#: Seconds any one CLI run in a subprocess may take before the test fails.
RUN_TIMEOUT = 60


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default failures files are written in the current directory: keep them in tmp_path."""
    monkeypatch.chdir(tmp_path)


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _summary(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(capsys.readouterr().out)
    return summary


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m vtex_tracking.cli ARGS`` in the current directory, with this tree's code
    and the environment (the ``oms`` fixture's VTEX_* variables), bounded in time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "vtex_tracking.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def test_a_failure_made_moot_by_a_newer_update_is_left_out_of_the_failures_file(
    oms: FakeOMS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An update that failed, then a newer update of its invoice confirmed in the same run:
    the older one is not in the failures file (counted as superseded_failures), so pushing the
    failures file never sends VTEX an older history than the one it holds."""
    x1, other, x2 = (
        history_line("order-1", step=0),
        history_line("order-2"),
        history_line("order-1", step=1),
    )
    path = write_lines(tmp_path / "day.jsonl", [x1, other, x2])
    failed = tmp_path / "f.jsonl"
    oms.fail_next(2, 400)  # x1 and other (one request at a time: in input order)
    code = main(
        ["push", str(path), "--base-url", oms.url, "--failed", str(failed), "--json", "-q",
         "--concurrency", "1"]
    )  # fmt: skip
    assert code == 1  # x1 did fail: exit 1 stays tied to "some update failed"
    summary = _summary(capsys)
    assert (summary["failed"], summary["superseded_failures"]) == (2, 1)
    assert [(r["orderId"], len(r["events"])) for r in read_records(failed)] == [("order-2", 1)]
    assert summary["failures_file"] == str(failed)
    sent_before = len(oms.requests)
    assert main(["push", str(failed), "--base-url", oms.url, "--json", "-q"]) == 0
    assert [r.order_id for r in oms.requests[sent_before:]] == ["order-2"]
    assert [len(body["events"]) for body in oms.accepted("order-1", "NF-1")] == [2]


def test_a_failures_file_with_only_moot_failures_is_kept_empty_or_not_created(
    oms: FakeOMS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When every failure was made moot: --failed FILE still exists, empty; the default
    failures file is not left behind; no retry hint is printed."""
    path = write_lines(
        tmp_path / "day.jsonl", [history_line("order-1"), history_line("order-1", step=1)]
    )
    oms.fail_next(1, 400)
    failed = tmp_path / "f.jsonl"
    assert main(["push", str(path), "--base-url", oms.url, "--failed", str(failed)]) == 1
    out = capsys.readouterr().out
    assert failed.exists() and failed.read_bytes() == b""
    assert "1 failed update left out of the failures file" in out
    assert "retry them with" not in out
    oms.fail_next(1, 400)
    assert main(["push", str(path), "--base-url", oms.url, "--json", "-q"]) == 1
    summary = _summary(capsys)
    assert (summary["superseded_failures"], summary["failures_file"]) == (1, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.jsonl", "f.jsonl"]


def test_a_journal_of_stdin_sends_every_changed_update_of_the_next_day(
    oms: FakeOMS, tmp_path: Path
) -> None:
    """push --journal J - (stdin): day 1 confirms invoices 0-9; day 2 reads invoices 1-9, each
    with one more event, with the same journal: all 9 are sent, none is already_done (input
    positions vouch for nothing)."""
    journal = str(tmp_path / "stdin.journal")
    command = ("push", "--journal", journal, "--base-url", oms.url, "--json", "-q", "-")
    day1 = _cli(*command, stdin=_text([history_line(f"order-{n}") for n in range(10)]))
    assert day1.returncode == 0, day1.stderr
    oms.reset()
    day2 = _cli(*command, stdin=_text([history_line(f"order-{n}", step=1) for n in range(1, 10)]))
    assert day2.returncode == 0, day2.stderr
    summary = json.loads(day2.stdout)
    assert summary["by_outcome"] == {"200": 9}
    assert summary["skipped"]["already_done"] == 0
    assert sorted(str(r.order_id) for r in oms.requests) == [f"order-{n}" for n in range(1, 10)]


@pytest.mark.parametrize("memory", ["--skip-unchanged", "--journal"])
def test_a_rehearsal_with_fake_vouches_for_nothing_at_the_real_target(
    memory: str,
    oms: FakeOMS,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """push --fake with --skip-unchanged S (or --journal J), then the real push with the same
    file, stores and S (J) at another server: the real push sends every line, none skipped.
    (The same account names in both runs: only the target tells them apart.)"""
    stores = tmp_path / "stores.toml"
    stores.write_text(f'[acme]\napp_key = "{oms.app_key}"\napp_token_env = "ACME_APP_TOKEN"\n')
    monkeypatch.setenv("ACME_APP_TOKEN", oms.app_token)
    path = write_lines(tmp_path / "day.jsonl", [history_line(f"order-{n}") for n in range(20)])
    remembered = str(tmp_path / "memory.db")
    common = ["push", str(path), "--accounts", str(stores), memory, remembered, "--json", "-q"]
    assert main([*common, "--fake"]) == 0
    assert _summary(capsys)["by_outcome"] == {"200": 20}
    assert main([*common, "--base-url", oms.url]) == 0
    summary = _summary(capsys)
    assert summary["by_outcome"] == {"200": 20}
    assert sorted(str(r.order_id) for r in oms.requests) == sorted(f"order-{n}" for n in range(20))


@pytest.mark.parametrize(
    ("offset", "size"),
    [(0, 100), (4096, 8192), (40_960, 4096)],
    ids=["header", "pages-2-and-3", "a-page-mid-file"],
)
def test_a_damaged_journal_stops_the_run_before_sending_with_exit_2(
    offset: int, size: int, oms: FakeOMS, tmp_path: Path
) -> None:
    """A journal damaged on disk (its header, or pages after it): exit 2, one JSON error on
    stdout naming the file and saying to delete it to start over, no traceback, nothing
    sent."""
    path = write_lines(tmp_path / "big.jsonl", [history_line(f"order-{n}") for n in range(3_000)])
    journal = tmp_path / "big.journal"
    command = ("push", str(path), "--base-url", oms.url, "--journal", str(journal), "--json")
    first = _cli(*command, "-q")
    assert first.returncode == 0, first.stderr
    with contextlib.closing(sqlite3.connect(journal)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert journal.stat().st_size >= offset + size  # the damage lands inside the file
    with open(journal, "r+b") as file:
        file.seek(offset)
        file.write(b"\xa5" * size)
    oms.reset()
    damaged = _cli(*command)
    assert damaged.returncode == 2, damaged.stderr
    error = json.loads(damaged.stdout)["error"]
    assert str(journal) in error["message"] and "delete it" in error["message"]
    assert "Traceback" not in damaged.stderr
    assert oms.requests == []


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_unreachable_base_url_ends_quickly_and_names_the_likely_cause(
    oms: FakeOMS, tmp_path: Path
) -> None:
    """push --base-url at a port nothing listens on, 30 lines: the run ends within seconds,
    exit 1, every line in the failures file, and the summary names the account as
    unreachable (in words: VTEX_ACCOUNT_NAME, --base-url, DNS; in --json: stopped_accounts)."""
    path = write_lines(tmp_path / "day.jsonl", [history_line(f"order-{n}") for n in range(30)])
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    run = _cli("push", str(path), "--base-url", url, "--json")
    elapsed = time.monotonic() - started
    assert run.returncode == 1, run.stderr
    assert elapsed < 30
    summary = json.loads(run.stdout)
    assert summary["stopped_accounts"] == {"acme": "unreachable"}
    assert len(read_records(tmp_path / "day.failed.jsonl")) == summary["failed"] == 30
    said = run.stderr  # with --json, the summary in words goes to stderr
    assert "no connection could be made to account acme" in said
    assert all(hint in said for hint in ("VTEX_ACCOUNT_NAME", "--base-url", "DNS"))
    assert "Traceback" not in said
