"""The vtex-tracking command line, against FakeOMS over real sockets.

Most tests call ``main([...])`` in-process; exit codes, signals and ``fake-server`` are also
checked in real subprocesses (``python -m vtex_tracking.cli``).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from vtex_tracking.cli import _report, main
from vtex_tracking.testing import FakeOMS

from .conftest import read_records

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
JSONL = EXAMPLES / "sample-updates.jsonl"
CSV = EXAMPLES / "sample-updates.csv"
CSV_HEADER = "orderId,invoiceNumber,city,state,description,date,isDelivered,deliveredDate\n"
CREDENTIAL_VARIABLES = (
    "VTEX_ACCOUNT_NAME",
    "VTEX_ENVIRONMENT",
    "VTEX_APP_KEY",
    "VTEX_APP_TOKEN",
    "VTEX_USER_TOKEN",
)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own directory, where default failures files land."""
    monkeypatch.chdir(tmp_path)
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _body(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("isDelivered", "deliveredDate", "events")}


def _event(city: str, state: str, description: str, date: str) -> dict[str, str]:
    return {"city": city, "state": state, "description": description, "date": date}


def _line(order: str, invoice: str = "NF-1", **fields: Any) -> str:
    doc = {"orderId": order, "invoiceNumber": invoice, "isDelivered": False, "deliveredDate": None}
    doc["events"] = [_event("Recife", "PE", "Objeto postado", "2026-11-02")]
    doc.update(fields)
    return json.dumps(doc, ensure_ascii=False)


# -- happy paths ----------------------------------------------------------------------------


def test_jsonl_file_is_pushed_as_written(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every JSONL update reaches the server as written: per invoice in file order, events in
    order, Portuguese intact; no failures file is created."""
    assert main(["push", str(JSONL), "--base-url", oms.url]) == 0
    expected: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in read_records(JSONL):
        expected.setdefault((record["orderId"], record["invoiceNumber"]), []).append(_body(record))
    assert oms.updates == expected
    assert any(len(bodies) == 2 for bodies in expected.values())  # the sample repeats invoices
    sent = json.dumps(list(oms.updates.values()), ensure_ascii=False)
    assert "Em trânsito para São Paulo - SP" in sent
    out = capsys.readouterr().out
    assert "Done: 30 updates" in out and "30 succeeded, 0 failed" in out
    assert list(tmp_path.iterdir()) == []


def test_csv_rows_of_an_invoice_become_one_update(oms: FakeOMS, tmp_path: pathlib.Path) -> None:
    """Consecutive CSV rows of one invoice are one update, events in file order; its delivery
    state is the last one its rows give."""
    path = tmp_path / "eventos.csv"
    path.write_text(
        CSV_HEADER + "o-1,NF-1,Recife,PE,Objeto postado,2026-11-01,false,\n"
        'o-1,NF-1,Olinda,PE,"Saiu para entrega, rota 3",2026-11-02,,\n'
        "o-1,NF-1,Olinda,PE,Entregue ao destinatário,2026-11-03,sim,2026-11-03 10:15\n"
        "o-2,NF-2,Natal,RN,Em trânsito para João Pessoa - PB,2026-11-02,,\n",
        encoding="utf-8",
    )
    assert main(["push", str(path), "--base-url", oms.url]) == 0
    assert oms.accepted("o-1", "NF-1") == [
        {
            "isDelivered": True,
            "deliveredDate": "2026-11-03 10:15",
            "events": [
                _event("Recife", "PE", "Objeto postado", "2026-11-01"),
                _event("Olinda", "PE", "Saiu para entrega, rota 3", "2026-11-02"),
                _event("Olinda", "PE", "Entregue ao destinatário", "2026-11-03"),
            ],
        }
    ]
    assert oms.accepted("o-2", "NF-2")[0]["isDelivered"] is False
    assert len(oms.updates) == 2


def test_sample_csv_is_one_update_per_invoice(oms: FakeOMS) -> None:
    """The sample CSV's 85 rows become its 20 invoices' updates."""
    assert main(["push", str(CSV), "--base-url", oms.url]) == 0
    assert len(oms.updates) == 20
    assert all(len(bodies) == 1 for bodies in oms.updates.values())
    assert sum(len(b[0]["events"]) for b in oms.updates.values()) == 84


def test_excel_csv_with_bom_and_semicolons_is_read(oms: FakeOMS, tmp_path: pathlib.Path) -> None:
    """A UTF-8 BOM and ';' separators (Excel in Brazil) are accepted."""
    path = tmp_path / "excel.csv"
    text = CSV_HEADER.replace(",", ";") + "o-1;NF-1;São Paulo;SP;Objeto postado;2026-11-01;;\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert main(["push", str(path), "--base-url", oms.url]) == 0
    assert oms.accepted("o-1", "NF-1")[0]["events"][0]["city"] == "São Paulo"


def test_stdin_is_read_as_jsonl(
    oms: FakeOMS, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """'-' reads JSONL from stdin; its failures go to stdin.failed.jsonl."""
    data = f"{_line('o-1')}\nnot json\n".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    assert main(["push", "-", "--base-url", oms.url]) == 1
    assert len(oms.accepted("o-1", "NF-1")) == 1
    assert read_records(tmp_path / "stdin.failed.jsonl")[0]["source"] == "<stdin>:2"


def test_fake_flag_needs_no_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    """--fake pushes to an embedded server without any credentials."""
    assert main(["push", str(JSONL), "--fake"]) == 0
    captured = capsys.readouterr()
    assert "30 succeeded" in captured.out
    assert "embedded fake VTEX" in captured.err


# -- nothing lost ---------------------------------------------------------------------------


def test_malformed_lines_are_reported_and_kept(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad line is named file:line with its reason on stderr, kept raw in the failures
    file, and the rest is still pushed; exit status 1."""
    path = tmp_path / "mixed.jsonl"
    bad = [
        '{"orderId": "o", "invoiceNumber"',
        _line("o-3", invoice=30700),  # type: ignore[arg-type]
        _line("o-4", isDelivred=True),
        _line("o-5", events=[_event("Natal", "RN", "Postado", "04/11/2026")]),
        _line("o-6", events=[_event("", "RN", "Postado", "2026-11-04")]),
        _line("o-7 "),
        "[1, 2]",
    ]
    path.write_text("\n".join([_line("o-1"), *bad, _line("o-2")]) + "\n", encoding="utf-8")
    failed = tmp_path / "failed.jsonl"
    assert main(["push", str(path), "--base-url", oms.url, "--failed", str(failed)]) == 1
    err = capsys.readouterr().err
    for number, reason in [
        (2, "not valid JSON"),
        (3, "invoiceNumber: expected a string, got integer"),
        (4, "isDelivred: unknown field; did you mean 'isDelivered'?"),
        (5, "events[0].date: expected YYYY-MM-DD, got '04/11/2026'"),
        (6, "events[0].city: must not be empty"),
        (7, "orderId: must not start or end with whitespace"),
        (8, "expected a JSON object, got array"),
    ]:
        assert f"{path}:{number}: {reason}" in err
    records = read_records(failed)
    assert [r["source"] for r in records] == [f"{path}:{n}" for n in range(2, 9)]
    assert [r["raw"] for r in records] == bad
    assert set(oms.updates) == {("o-1", "NF-1"), ("o-2", "NF-1")}


def test_a_line_in_another_encoding_than_the_rest_spoils_only_itself(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a file already shown to be UTF-8 (a non-ASCII UTF-8 line), a Latin-1 line is one
    malformed line or row (kept visible in 'raw'), not a crash and not a switch of encoding."""
    jsonl, csv_path = tmp_path / "a.jsonl", tmp_path / "b.csv"
    utf8 = _line("o-1", events=[_event("Maceió", "AL", "Objeto postado", "2026-11-01")])
    latin = _line("o-2", events=[_event("São Paulo", "SP", "Objeto postado", "2026-11-01")])
    jsonl.write_bytes(f"{utf8}\n".encode() + latin.encode("latin-1") + b"\n")
    csv_path.write_bytes(
        (CSV_HEADER + "o-3,NF-3,Maceió,AL,Objeto postado,2026-11-01,,\n").encode()
        + "o-4,NF-4,São Paulo,SP,Objeto postado,2026-11-01,,\n".encode("latin-1")
    )
    assert main(["push", str(jsonl), str(csv_path), "--base-url", oms.url]) == 1
    assert set(oms.updates) == {("o-1", "NF-1"), ("o-3", "NF-3")}
    err = capsys.readouterr().err
    assert f"{csv_path}:3: not UTF-8 (byte 0xe3), though line 2 is: the file mixes" in err
    assert "read as cp1252" not in err
    records = read_records(tmp_path / "a.failed.jsonl")
    assert [r["source"] for r in records] == [f"{jsonl}:2", f"{csv_path}:3"]
    assert all("S\\xe3o Paulo" in r["raw"] for r in records)


def test_csv_rows_of_an_invoice_that_are_not_together_are_refused(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invoice whose rows come back later would erase its earlier events at VTEX: those
    later rows are reported, not sent, and kept in the failures file."""
    path = tmp_path / "log.csv"
    path.write_text(
        CSV_HEADER + "o-1,NF-1,Recife,PE,Objeto postado,2026-11-01,,\n"
        "o-2,NF-2,Natal,RN,Objeto postado,2026-11-01,,\n"
        "o-1,NF-1,Recife,PE,Saiu para entrega,2026-11-02,,\n",
        encoding="utf-8",
    )
    assert main(["push", str(path), "--base-url", oms.url]) == 1
    assert [len(b[0]["events"]) for b in oms.updates.values()] == [1, 1]
    assert f"{path}:4: this invoice already had rows at {path}:2" in capsys.readouterr().err
    (record,) = read_records(tmp_path / "log.failed.jsonl")
    assert record["raw"] == "o-1,NF-1,Recife,PE,Saiu para entrega,2026-11-02,,"


def test_failures_file_round_trip(oms: FakeOMS, tmp_path: pathlib.Path) -> None:
    """Refused updates land in the default failures file in the input format; pushing that
    file sends exactly those, and leaves it untouched."""
    oms.fail_next(3, 404)
    assert main(["push", str(JSONL), "--base-url", oms.url, "--concurrency", "1"]) == 1
    failed = tmp_path / "sample-updates.failed.jsonl"
    records = read_records(failed)
    assert len(records) == 3 and all("404" in r["error"] for r in records)
    assert all(r["source"].startswith(f"{JSONL}:") for r in records)
    by_line = {r["source"]: r for r in records}
    lines = JSONL.read_text(encoding="utf-8").splitlines()
    for source, record in by_line.items():
        original = json.loads(lines[int(source.rsplit(":", 1)[1]) - 1])
        assert {k: record[k] for k in original} == original
    before = failed.read_bytes()
    oms.reset()
    assert main(["push", str(failed), "--base-url", oms.url]) == 0
    assert sorted(k for k, v in oms.updates.items() for _ in v) == sorted(
        (r["orderId"], r["invoiceNumber"]) for r in records
    )
    assert failed.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample-updates.failed.jsonl"]


def test_retrying_a_failures_file_never_overwrites_it(
    oms: FakeOMS, tmp_path: pathlib.Path
) -> None:
    """Pushing day.failed.jsonl writes its own failures to day.failed-2.jsonl."""
    retry = tmp_path / "day.failed.jsonl"
    retry.write_text(f"{_line('o-1')}\n{{oops\n{_line('o-2')}\n", encoding="utf-8")
    before = retry.read_bytes()
    assert main(["push", "day.failed.jsonl", "--base-url", oms.url]) == 1
    assert retry.read_bytes() == before
    assert read_records(tmp_path / "day.failed-2.jsonl")[0]["raw"] == "{oops"
    assert set(oms.updates) == {("o-1", "NF-1"), ("o-2", "NF-1")}


def test_failed_option_cannot_name_an_input(
    oms: FakeOMS, capsys: pytest.CaptureFixture[str]
) -> None:
    """--failed pointing at an input file is a usage error; nothing is sent."""
    assert main(["push", str(JSONL), "--failed", str(JSONL), "--base-url", oms.url]) == 2
    assert "cannot be one of the inputs" in capsys.readouterr().err
    assert oms.requests == []


def test_a_malformed_line_stays_malformed_after_a_retry(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failures file's raw-only record is reported again, its raw text kept as it was."""
    kept = tmp_path / "kept.jsonl"
    kept.write_text('{"source": "a.jsonl:7", "raw": "{oops", "error": "not JSON"}\n', "utf-8")
    assert main(["push", str(kept), "--base-url", oms.url]) == 1
    assert "malformed in an earlier run (a.jsonl:7" in capsys.readouterr().err
    assert read_records(tmp_path / "kept.failed.jsonl")[0]["raw"] == "{oops"


# -- options and exit statuses --------------------------------------------------------------


def test_dry_run_sends_nothing(oms: FakeOMS, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run reads and validates every record and makes no request."""
    assert main(["push", str(JSONL), str(CSV), "--dry-run", "--base-url", oms.url]) == 0
    assert oms.requests == []
    assert "50 valid, 0 invalid. Nothing was sent." in capsys.readouterr().out


def test_dry_run_of_one_store_needs_no_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --accounts, --dry-run checks the file alone: no credentials are needed."""
    assert main(["push", str(JSONL), "--dry-run"]) == 0
    assert "30 valid, 0 invalid" in capsys.readouterr().out


def test_json_summary_is_all_of_stdout(oms: FakeOMS, capsys: pytest.CaptureFixture[str]) -> None:
    """--json makes stdout one JSON object holding the totals; the words go to stderr."""
    oms.fail_next(2, 400)
    assert main(["push", str(CSV), "--base-url", oms.url, "--json", "--concurrency", "1"]) == 1
    captured = capsys.readouterr()
    last = json.loads(captured.out)
    assert "Done: 20 updates" in captured.err
    assert (last["total"], last["succeeded"], last["failed"]) == (20, 18, 2)
    assert last["by_outcome"] == {"200": 18, "400": 2}
    assert last["failures_file"] == "sample-updates.failed.jsonl"
    assert last["elapsed_s"] > 0 and last["interrupted"] is False


def test_missing_file_exits_2_naming_it(oms: FakeOMS, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable input stops everything before anything is sent, naming the file."""
    assert main(["push", str(JSONL), "nao-existe.jsonl", "--base-url", oms.url]) == 2
    assert "nao-existe.jsonl: cannot read" in capsys.readouterr().err
    assert oms.requests == []


def test_missing_credentials_exit_2_naming_variables(capsys: pytest.CaptureFixture[str]) -> None:
    """Without credentials the error names the environment variables to set."""
    assert main(["push", str(JSONL)]) == 2
    err = capsys.readouterr().err
    assert "VTEX_ACCOUNT_NAME" in err and "VTEX_APP_KEY" in err and "VTEX_APP_TOKEN" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["push", str(JSONL), "--concurrency", "0"],
        ["push", str(JSONL), "--fake", "--base-url", "http://127.0.0.1:1"],
        ["push", str(JSONL), "--rate-limit", "-1"],
        ["push", "updates.txt"],
        ["push"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad options, or a file of unknown type, are usage errors."""
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_plain_progress_lines_when_not_a_tty(
    oms: FakeOMS, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal, progress is printed as plain periodic lines on stderr."""
    monkeypatch.setattr(_report, "PLAIN_PROGRESS_EVERY", 0.01)
    oms.latency = 0.02
    assert main(["push", str(JSONL), "--base-url", oms.url, "--concurrency", "2"]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("progress: ")]
    assert len(lines) >= 2
    assert "ok" in lines[-1] and "in flight" in lines[-1] and "requests/s" in lines[-1]


def test_refused_credentials_appear_nowhere(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused credentials stop the push (every update in the failures file, the reason in
    the summary) and appear in no output, even with -v, nor in the failures file."""
    with FakeOMS() as server:
        code = main(
            [
                *("push", str(JSONL), "--base-url", server.url, "-v", "--account", "acme"),
                *("--app-key", "vtexappkey-SUPERSECRET", "--app-token", "TOKEN-SUPERSECRET"),
            ]
        )
    assert code == 1
    captured = capsys.readouterr()
    failures = (tmp_path / "sample-updates.failed.jsonl").read_text(encoding="utf-8")
    assert len(failures.splitlines()) == 30
    assert "PUT /api/oms/pvt/orders/" in captured.err  # -v logs requests
    assert "kept refusing the credentials" in captured.out
    for text in (captured.out, captured.err, failures):
        assert "SUPERSECRET" not in text


def test_accepted_credentials_appear_nowhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Working credentials from the environment are not echoed either (verbose, JSON,
    failures file)."""
    with FakeOMS(app_key="vtexappkey-DISTINCT-KEY", app_token="DISTINCT-TOKEN-42") as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", server.app_key)
        monkeypatch.setenv("VTEX_APP_TOKEN", server.app_token)
        server.fail_next(1, 404)
        assert main(["push", str(JSONL), "--base-url", server.url, "-v", "--json"]) == 1
    captured = capsys.readouterr()
    failures = (tmp_path / "sample-updates.failed.jsonl").read_text(encoding="utf-8")
    for text in (captured.out, captured.err, failures):
        assert "DISTINCT-KEY" not in text and "DISTINCT-TOKEN" not in text


# -- subprocesses: signals and fake-server ----------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vtex_tracking.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        **kwargs,
    )


def _wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _big_file(path: pathlib.Path, count: int) -> set[str]:
    template = json.loads(JSONL.read_text(encoding="utf-8").splitlines()[0])
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            out.write(json.dumps({**template, "orderId": f"big-{n}"}, ensure_ascii=False) + "\n")
    return {f"big-{n}" for n in range(count)}


def _env(server: FakeOMS) -> dict[str, str]:
    return {
        "VTEX_ACCOUNT_NAME": "acme",
        "VTEX_APP_KEY": server.app_key,
        "VTEX_APP_TOKEN": server.app_token,
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_every_update_is_accounted_for(
    signum: int, tmp_path: pathlib.Path
) -> None:
    """Ctrl-C or SIGTERM: exit 130, and every input update is accepted by the server or in the
    failures file, including those cancelled in flight and those not read yet."""
    orders = _big_file(tmp_path / "big.jsonl", 3000)
    with FakeOMS(latency=0.01) as server:
        process = _cli("push", "big.jsonl", "--base-url", server.url, "--json", env=_env(server))
        _wait_for(lambda: len(server.updates) >= 50)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
        accepted = {order for order, _ in server.updates}
    assert process.returncode == 130, err
    assert "Interrupted: stopping" in err
    in_failures = {r["orderId"] for r in read_records(tmp_path / "big.failed.jsonl")}
    assert 50 <= len(accepted) < 3000
    assert accepted | in_failures == orders
    summary = json.loads(out)
    assert summary["interrupted"] is True and summary["total"] == 3000
    assert summary["succeeded"] + len(in_failures) == 3000
    assert summary["by_outcome"]["not sent"] > 0


def test_second_interrupt_stops_reading_and_says_where(tmp_path: pathlib.Path) -> None:
    """When stdin never ends, a second Ctrl-C stops reading it: what was read is accounted
    for, and the summary names the last line read."""
    lines = [_line(f"o-{n}") for n in range(40)]
    with FakeOMS(latency=0.05) as server:
        process = _cli(
            "push", "-", "--base-url", server.url, "--concurrency", "1", "--json",
            env=_env(server), stdin=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write("\n".join(lines) + "\n")
        process.stdin.flush()
        _wait_for(lambda: len(server.updates) >= 2)
        process.send_signal(signal.SIGINT)
        failures = tmp_path / "stdin.failed.jsonl"
        _wait_for(
            lambda: failures.exists() and len(server.updates) + len(read_records(failures)) >= 40
        )
        process.send_signal(signal.SIGINT)  # stdin is still open: reading would never end
        process.wait(timeout=30)
        assert process.stdout is not None and process.stderr is not None
        out, err = process.stdout.read(), process.stderr.read()
        process.stdin.close()
        process.stdout.close()
        process.stderr.close()
        accepted = {order for order, _ in server.updates}
    assert process.returncode == 130, err
    recorded = {r["orderId"] for r in read_records(failures)}
    assert accepted | recorded == {f"o-{n}" for n in range(40)}
    summary = json.loads(out)
    assert summary["unread_after"] == "<stdin>:40"
    assert "NOT read, and not in the failures file: the input after <stdin>:40" in err


def _push_to_fake_server(*options: str) -> str:
    """Start ``fake-server`` with ``options``, push the sample JSONL to it, stop it with
    Ctrl-C (exit 0 both ways) and return what it printed on stopping."""
    process = _cli("fake-server", "--port", "0", *options)
    assert process.stdout is not None
    first = process.stdout.readline()
    url = first.rsplit(" ", 1)[1].strip()
    credentials = process.stdout.readline()
    assert "vtexappkey-fake-oms" in credentials and "fake-oms-app-token" in credentials
    code = main(
        [
            *("push", str(JSONL), "--base-url", url, "--account", "acme"),
            *("--app-key", "vtexappkey-fake-oms", "--app-token", "fake-oms-app-token"),
        ]
    )
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=10)
    assert code == 0
    assert process.returncode == 0
    return out


def test_fake_server_serves_until_ctrl_c(tmp_path: pathlib.Path) -> None:
    """fake-server prints its URL and credentials, accepts pushes (here with latency), and
    stops on Ctrl-C with exit 0 and a count."""
    out = _push_to_fake_server("--latency", "0.01")
    # The sample has events only: answered 200, not applied, as VTEX does (and said so).
    assert "Stopped after 30 requests: 0 updates accepted for 0 invoices." in out
    assert "30 updates of 27 invoices were answered 200 but NOT applied" in out


def test_fake_server_can_apply_events_without_a_tracking_number() -> None:
    """``--apply-without-tracking-number`` turns VTEX's trap off: every update is applied."""
    out = _push_to_fake_server("--apply-without-tracking-number")
    assert "Stopped after 30 requests: 30 updates accepted for 27 invoices." in out
    assert "NOT applied" not in out
