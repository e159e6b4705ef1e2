"""The vtex-tracking command line, against FakeOMS over real sockets."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from vtex_tracking.cli import _report, main
from vtex_tracking.testing import FakeOMS

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
JSONL = EXAMPLES / "sample-updates.jsonl"
CSV = EXAMPLES / "sample-updates.csv"


@pytest.fixture
def oms(monkeypatch: pytest.MonkeyPatch) -> FakeOMS:
    """A threaded FakeOMS whose credentials are in the VTEX_* environment variables."""
    with FakeOMS() as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", server.app_key)
        monkeypatch.setenv("VTEX_APP_TOKEN", server.app_token)
        monkeypatch.delenv("VTEX_USER_TOKEN", raising=False)
        yield server


def _lines(path: pathlib.Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_jsonl_file_is_pushed_as_written(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every JSONL update reaches the server with its events, in order, Portuguese intact."""
    code = main(["push", str(JSONL), "--base-url", oms.url, "--failed", str(tmp_path / "f.jsonl")])
    assert code == 0
    expected = _lines(JSONL)
    for record in expected:
        accepted = oms.accepted(str(record["orderId"]), str(record["invoiceNumber"]))
        body = {k: record[k] for k in ("isDelivered", "deliveredDate", "events")}
        assert accepted == [body]
    assert any("ã" in json.dumps(b, ensure_ascii=False) for b in oms.updates.values())
    out = capsys.readouterr().out
    assert f"{len(expected)} updates" in out and f"{len(expected)} succeeded" in out
    assert not (tmp_path / "f.jsonl").exists()


def test_csv_rows_of_an_invoice_become_one_update(oms: FakeOMS, tmp_path: pathlib.Path) -> None:
    """Consecutive CSV rows of one invoice are one update with the events in file order."""
    path = tmp_path / "eventos.csv"
    path.write_text(
        "orderId,invoiceNumber,city,state,description,date,isDelivered,deliveredDate\n"
        "o-1,NF-1,Recife,PE,Objeto postado,2026-11-01,false,\n"
        "o-1,NF-1,Olinda,PE,Entregue ao destinatário,2026-11-03,true,2026-11-03 10:15\n"
        "o-2,NF-2,Natal,RN,Em trânsito,2026-11-02,,\n",
        encoding="utf-8",
    )
    assert main(["push", str(path), "--base-url", oms.url]) == 0
    assert oms.accepted("o-1", "NF-1") == [
        {
            "isDelivered": True,
            "deliveredDate": "2026-11-03 10:15",
            "events": [
                {
                    "city": "Recife",
                    "state": "PE",
                    "description": "Objeto postado",
                    "date": "2026-11-01",
                },
                {
                    "city": "Olinda",
                    "state": "PE",
                    "description": "Entregue ao destinatário",
                    "date": "2026-11-03",
                },
            ],
        }
    ]
    assert len(oms.accepted("o-2", "NF-2")) == 1
    assert len(oms.updates) == 2


def test_malformed_lines_are_reported_and_kept(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad line is named file:line with the reason, kept raw in the failures file, and the
    rest is still pushed; exit status 1."""
    good = JSONL.read_text(encoding="utf-8").splitlines()[0]
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        f'{good}\n{{"orderId": "o", "invoiceNumber"\n'
        '{"orderId": "o", "invoiceNumber": "1", "events": [{"city": ""}]}\n',
        encoding="utf-8",
    )
    failed = tmp_path / "failed.jsonl"
    assert main(["push", str(path), "--base-url", oms.url, "--failed", str(failed)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: not valid JSON" in err
    assert f"{path}:3:" in err and "state: required field missing" in err
    records = _lines(failed)
    assert [r["source"] for r in records] == [f"{path}:2", f"{path}:3"]
    assert records[0]["raw"] == '{"orderId": "o", "invoiceNumber"'
    assert len(oms.updates) == 1


def test_failures_file_round_trip(oms: FakeOMS, tmp_path: pathlib.Path) -> None:
    """Refused updates land in the failures file; pushing that file sends exactly those."""
    oms.fail_next(3, 404)
    failed = tmp_path / "failed.jsonl"
    assert (
        main(
            [
                "push",
                str(JSONL),
                "--base-url",
                oms.url,
                "--concurrency",
                "1",
                "--failed",
                str(failed),
            ]
        )
        == 1
    )
    records = _lines(failed)
    assert len(records) == 3
    assert all("HTTP 404" in str(r["error"]) for r in records)
    retried = {(r["orderId"], r["invoiceNumber"]) for r in records}
    assert not any(oms.accepted(str(o), str(i)) for o, i in retried)
    oms.reset()
    assert main(["push", str(failed), "--base-url", oms.url]) == 0
    assert set(oms.updates) == retried


def test_dry_run_sends_nothing(oms: FakeOMS, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run reads and validates every record and makes no request."""
    assert main(["push", str(JSONL), str(CSV), "--dry-run", "--base-url", oms.url]) == 0
    assert oms.requests == []
    assert "valid=" in capsys.readouterr().out


def test_json_summary_is_the_last_line(oms: FakeOMS, capsys: pytest.CaptureFixture[str]) -> None:
    """--json ends stdout with one JSON object holding the totals."""
    assert main(["push", str(CSV), "--base-url", oms.url, "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["total"] == last["succeeded"] == len(oms.updates)
    assert last["failed"] == 0
    assert last["elapsed_s"] >= 0


def test_missing_file_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable input stops before anything is sent, naming the file; exit 2."""
    assert main(["push", str(JSONL), "nao-existe.jsonl", "--fake"]) == 2
    assert "nao-existe.jsonl" in capsys.readouterr().err


def test_missing_credentials_exit_2_naming_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without credentials the error names the environment variables; exit 2."""
    for name in ("VTEX_ACCOUNT_NAME", "VTEX_APP_KEY", "VTEX_APP_TOKEN", "VTEX_USER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["push", str(JSONL)]) == 2
    err = capsys.readouterr().err
    assert "VTEX_ACCOUNT_NAME" in err and "VTEX_APP_TOKEN" in err


def test_usage_error_exits_2() -> None:
    """Unknown options are usage errors."""
    assert main(["push", str(JSONL), "--concurrency", "0"]) == 2


def test_plain_progress_lines_when_not_a_tty(
    oms: FakeOMS, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal, progress is printed as plain lines on stderr."""
    monkeypatch.setattr(_report, "PLAIN_PROGRESS_EVERY", 0.0)
    assert main(["push", str(JSONL), "--base-url", oms.url]) == 0
    err = capsys.readouterr().err
    assert "progress: read" in err and "succeeded" in err


def test_secrets_never_printed_or_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused key and token appear in no output and not in the failures file."""
    with FakeOMS() as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        failed = tmp_path / "f.jsonl"
        code = main(
            [
                "push",
                str(JSONL),
                "--base-url",
                server.url,
                "-v",
                "--app-key",
                "vtexappkey-SUPERSECRET",
                "--app-token",
                "TOKEN-SUPERSECRET",
                "--failed",
                str(failed),
                "--json",
            ]
        )
    assert code == 1
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, failed.read_text(encoding="utf-8")):
        assert "SUPERSECRET" not in text
    assert "auth" in captured.out


def test_fake_flag_needs_no_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--fake pushes to an embedded server without any credentials."""
    for name in ("VTEX_ACCOUNT_NAME", "VTEX_APP_KEY", "VTEX_APP_TOKEN", "VTEX_USER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["push", str(JSONL), "--fake"]) == 0
    assert "30 succeeded" in capsys.readouterr().out


def test_sigint_stops_and_every_update_is_accounted_for(tmp_path: pathlib.Path) -> None:
    """Ctrl-C: exit 130, and every input update is accepted by the server or in the failures
    file (including the input not read yet)."""
    big = tmp_path / "big.jsonl"
    template = _lines(JSONL)[0]
    with big.open("w", encoding="utf-8") as out:
        for n in range(3000):
            out.write(json.dumps({**template, "orderId": f"big-{n}"}, ensure_ascii=False) + "\n")
    failed = tmp_path / "failed.jsonl"
    with FakeOMS(latency=0.01) as server:
        env = {
            **os.environ,
            "VTEX_ACCOUNT_NAME": "acme",
            "VTEX_APP_KEY": server.app_key,
            "VTEX_APP_TOKEN": server.app_token,
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vtex_tracking.cli",
                "push",
                str(big),
                "--base-url",
                server.url,
                "--concurrency",
                "4",
                "--failed",
                str(failed),
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while len(server.updates) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        accepted = {order for order, _ in server.updates}
    assert process.returncode == 130, err
    assert 50 <= len(accepted) < 3000
    in_failures = {str(r["orderId"]) for r in _lines(failed)}
    assert accepted | in_failures == {f"big-{n}" for n in range(3000)}
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True
    assert summary["total"] == 3000


def test_stdin_is_read_as_jsonl(oms: FakeOMS) -> None:
    """`-` reads JSONL from standard input."""
    env = {
        **os.environ,
        "VTEX_ACCOUNT_NAME": "acme",
        "VTEX_APP_KEY": oms.app_key,
        "VTEX_APP_TOKEN": oms.app_token,
    }
    result = subprocess.run(
        [sys.executable, "-m", "vtex_tracking.cli", "push", "-", "--base-url", oms.url, "--json"],
        input=JSONL.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["succeeded"] == 30
    assert len(oms.updates) == 30


def test_fake_server_command_serves_until_interrupted() -> None:
    """`fake-server` prints its URL and credentials, accepts updates, and stops on Ctrl-C."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "vtex_tracking.cli", "fake-server", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        key = process.stdout.readline().split(":", 1)[1].strip()
        token = process.stdout.readline().split(":", 1)[1].strip()
        record = _lines(JSONL)[0]
        body = {k: record[k] for k in ("isDelivered", "deliveredDate", "events")}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/oms/pvt/orders/o-1/invoice/NF-1/tracking",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={
                "X-VTEX-API-AppKey": key,
                "X-VTEX-API-AppToken": token,
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "Stopped after 1 requests" in out
