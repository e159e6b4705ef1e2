"""``examples/cron/push-tracking.sh``, run for real with bash against FakeOMS on 127.0.0.1: an
Excel CSV (cp1252, day-first dates) confirmed and moved to done/; failures kept and retried
first by the next run; a usage error leaves the input in place."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from vtex_tracking.testing import FakeOMS

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "examples" / "cron" / "push-tracking.sh"
HEADER = "orderId;invoiceNumber;city;state;description;date;isDelivered;deliveredDate\r\n"
BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture
def oms() -> Iterator[FakeOMS]:
    """A threaded FakeOMS."""
    with FakeOMS() as server:
        yield server


def _excel_csv(path: pathlib.Path, orders: range) -> pathlib.Path:
    """A cp1252 CSV with ';' and day-first dates, as Excel writes it in Brazil."""
    rows = [
        f"o-{n};NF-{n};São Paulo;SP;Entregue ao destinatário;23/11/2026;sim;23/11/2026 14:05\r\n"
        for n in orders
    ]
    path.write_bytes((HEADER + "".join(rows)).encode("cp1252"))
    return path


def _run(
    inbox: pathlib.Path, oms: FakeOMS, input_name: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the recipe as cron would: bash, credentials and options in the environment."""
    variables = {
        "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(inbox),
        "PYTHON": sys.executable,
        "INPUT_ENCODING": "cp1252",
        "INPUT_DATE_FORMAT": "dd/mm/yyyy",
        "VTEX_ACCOUNT_NAME": "acme",
        "VTEX_APP_KEY": oms.app_key,
        "VTEX_APP_TOKEN": oms.app_token,
        **env,
    }
    return subprocess.run(
        [BASH, str(SCRIPT), str(inbox / input_name), "--base-url", oms.url],
        env=variables,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def _records(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_a_run_with_everything_confirmed_exits_0_and_moves_the_input(
    oms: FakeOMS, tmp_path: pathlib.Path
) -> None:
    """All confirmed: exit 0, the input moved to done/, no failures file; the cp1252 text and
    day-first dates reached VTEX as UTF-8 and ISO."""
    _excel_csv(tmp_path / "eventos.csv", range(5))
    done = _run(tmp_path, oms, "eventos.csv")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "eventos.csv").exists()
    assert [p.name.endswith("-eventos.csv") for p in (tmp_path / "done").iterdir()] == [True]
    assert not (tmp_path / "failed.jsonl").exists()
    assert len(oms.updates) == 5
    (body,) = oms.accepted("o-3", "NF-3")
    assert body["events"][0]["description"] == "Entregue ao destinatário"
    assert (body["events"][0]["date"], body["deliveredDate"]) == ("2026-11-23", "2026-11-23 14:05")
    assert "eventos.csv: 5 updates, all confirmed" in done.stderr
    assert oms.app_token not in done.stdout + done.stderr


def test_failures_are_kept_with_exit_1_and_retried_first_next_run(
    oms: FakeOMS, tmp_path: pathlib.Path
) -> None:
    """Some refused: exit 1, the input moved to done/, the refused updates kept in
    failed.jsonl; the next run sends them (before its own input) and, all confirmed, exits 0
    and removes the failures file."""
    _excel_csv(tmp_path / "manha.csv", range(6))
    oms.fail_next(2, 400)
    first = _run(tmp_path, oms, "manha.csv")
    assert first.returncode == 1, first.stderr
    assert not (tmp_path / "manha.csv").exists()
    kept = _records(tmp_path / "failed.jsonl")
    assert len(kept) == 2 and all("400" in r["error"] for r in kept)
    assert len(oms.updates) == 4
    assert "manha.csv: 6 updates, 4 confirmed, 2 kept in" in first.stderr

    _excel_csv(tmp_path / "tarde.csv", range(10, 13))
    before = len(oms.requests)
    second = _run(tmp_path, oms, "tarde.csv")
    assert second.returncode == 0, second.stderr
    assert not (tmp_path / "failed.jsonl").exists()
    sent = [r.order_id for r in oms.requests[before:]]
    retried = sorted(r["orderId"] for r in kept)
    assert sorted(sent[:2]) == retried  # the kept failures went first
    assert sorted(sent[2:]) == ["o-10", "o-11", "o-12"]
    assert len(list((tmp_path / "done").iterdir())) == 2


def test_a_usage_error_exits_2_and_leaves_everything_in_place(
    oms: FakeOMS, tmp_path: pathlib.Path
) -> None:
    """Without credentials: exit 2, the CLI's reason in the log, the input not moved, nothing
    sent."""
    _excel_csv(tmp_path / "eventos.csv", range(3))
    done = _run(tmp_path, oms, "eventos.csv", VTEX_APP_KEY="")
    assert done.returncode == 2, done.stderr
    assert "VTEX_APP_KEY" in done.stderr
    assert (tmp_path / "eventos.csv").exists()
    assert not any((tmp_path / "done").iterdir())
    assert oms.requests == []
