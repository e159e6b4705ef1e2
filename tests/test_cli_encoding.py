"""Input encodings of ``vtex-tracking push``: UTF-8, ``--encoding``, and the cp1252 fallback for
files Excel saved on Brazilian Windows, which must never change a line's meaning unnoticed.
Real cp1252 bytes, pushed to FakeOMS over real sockets."""

from __future__ import annotations

import io
import json
import pathlib
import sys

import pytest

from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .conftest import read_records

HEADER = "orderId;invoiceNumber;city;state;description;date;isDelivered;deliveredDate\n"
#: An Excel "CSV (separado por vírgulas)" export: ';', CRLF, cp1252.
EXCEL_ROWS = (
    "o-1;NF-1;São Paulo;SP;Objeto postado;2026-11-01;;\r\n"
    "o-1;NF-1;São Paulo;SP;Entregue ao destinatário;2026-11-03;sim;2026-11-03 10:15\r\n"
    "o-2;NF-2;Maceió;AL;Em trânsito;2026-11-02;;\r\n"
)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own directory."""
    monkeypatch.chdir(tmp_path)


def _excel_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "excel.csv"
    path.write_bytes((HEADER.replace("\n", "\r\n") + EXCEL_ROWS).encode("cp1252"))
    assert b"S\xe3o Paulo" in path.read_bytes() and b"destinat\xe1rio" in path.read_bytes()
    return path


def _notices(err: str) -> list[str]:
    return [line for line in err.splitlines() if "read as cp1252" in line]


def test_a_cp1252_csv_is_read_as_cp1252_and_said_once(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Excel's cp1252 CSV is sent with its accents intact, and stderr says once, naming the
    file and line, that it was read as cp1252; the JSON summary lists the notice."""
    path = _excel_file(tmp_path)
    assert main(["push", str(path), "--base-url", oms.url, "--json"]) == 0
    (body,) = oms.accepted("o-1", "NF-1")
    assert [e["city"] for e in body["events"]] == ["São Paulo", "São Paulo"]
    assert body["events"][1]["description"] == "Entregue ao destinatário"
    assert oms.accepted("o-2", "NF-2")[0]["events"][0]["city"] == "Maceió"
    captured = capsys.readouterr()
    expected = (
        f"{path}: not UTF-8 (line 2); read as cp1252 (Windows-1252); pass --encoding to choose"
    )
    assert _notices(captured.err) == [expected]
    assert json.loads(captured.out)["notices"] == [expected]


def test_a_cp1252_jsonl_is_read_as_cp1252(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fallback applies to JSONL too, from the first line that is not UTF-8."""
    event = {"city": "São Paulo", "state": "SP", "description": "Postado", "date": "2026-11-01"}
    first = {"orderId": "o-1", "invoiceNumber": "NF-1", "events": [{**event, "city": "Rio"}]}
    second = {"orderId": "o-2", "invoiceNumber": "NF-2", "events": [event]}
    lines = [json.dumps(first), json.dumps(second, ensure_ascii=False)]
    path = tmp_path / "day.jsonl"
    path.write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    assert main(["push", str(path), "--base-url", oms.url]) == 0
    assert oms.accepted("o-2", "NF-2")[0]["events"][0]["city"] == "São Paulo"
    assert _notices(capsys.readouterr().err) == [
        f"{path}: not UTF-8 (line 2); read as cp1252 (Windows-1252); pass --encoding to choose"
    ]


def test_quiet_still_tells_that_a_file_was_read_as_cp1252(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-q drops progress, not the notice: it is about what was sent."""
    path = _excel_file(tmp_path)
    assert main(["push", str(path), "--base-url", oms.url, "-q"]) == 0
    assert len(_notices(capsys.readouterr().err)) == 1


def test_encoding_option_reads_as_told_without_a_notice(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--encoding cp1252 reads the file as cp1252 from its first line, with nothing to say."""
    path = _excel_file(tmp_path)
    assert main(["push", str(path), "--base-url", oms.url, "--encoding", "cp1252"]) == 0
    assert oms.accepted("o-1", "NF-1")[0]["events"][1]["description"] == (
        "Entregue ao destinatário"
    )
    assert _notices(capsys.readouterr().err) == []


def test_encoding_option_utf8_refuses_cp1252_lines(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--encoding utf-8 turns the fallback off: each cp1252 row is malformed, kept, named."""
    path = _excel_file(tmp_path)
    assert main(["push", str(path), "--base-url", oms.url, "--encoding", "utf-8"]) == 1
    assert oms.requests == []
    err = capsys.readouterr().err
    assert f"{path}:2-3: line 2: not utf-8 (byte 0xe3), which --encoding says" in err
    assert [r["source"] for r in read_records(tmp_path / "excel.failed.jsonl")] == [
        f"{path}:2-3",
        f"{path}:4",
    ]


def test_a_utf8_line_after_the_switch_is_ambiguous_and_kept(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once a file is read as cp1252, a later line that is valid UTF-8 could mean either
    ("SÃ£o" or "São"): it is malformed, kept in the failures file, and not sent."""
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        HEADER.encode()
        + "o-1;NF-1;São Paulo;SP;Postado;2026-11-01;;\n".encode("cp1252")
        + "o-2;NF-2;São Paulo;SP;Postado;2026-11-01;;\n".encode()
    )
    assert main(["push", str(path), "--base-url", oms.url]) == 1
    assert set(oms.updates) == {("o-1", "NF-1")}
    assert f"{path}:3: ambiguous: this line is valid UTF-8, but line 2 made" in (
        capsys.readouterr().err
    )
    (kept,) = read_records(tmp_path / "mixed.failed.jsonl")
    assert kept["raw"] == "o-2;NF-2;SÃ£o Paulo;SP;Postado;2026-11-01;;"


def test_a_file_with_a_utf8_bom_never_falls_back(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A BOM declares UTF-8: a cp1252 row in such a file is malformed, not a switch."""
    path = tmp_path / "bom.csv"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + HEADER.encode()
        + b"o-1;NF-1;Recife;PE;Postado;2026-11-01;;\n"
        + "o-2;NF-2;São Paulo;SP;Postado;2026-11-01;;\n".encode("cp1252")
    )
    assert main(["push", str(path), "--base-url", oms.url]) == 1
    assert set(oms.updates) == {("o-1", "NF-1")}
    err = capsys.readouterr().err
    assert f"{path}:3: not UTF-8 (byte 0xe3), though the file starts with a UTF-8 BOM" in err
    assert _notices(err) == []


def test_bytes_that_are_neither_utf8_nor_cp1252_spoil_their_line(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0x81 is undefined in cp1252: that line is malformed, shown as \\x81 in 'raw'."""
    path = tmp_path / "odd.jsonl"
    event = {"city": "Recife", "state": "PE", "description": "Postado", "date": "2026-11-01"}
    good = json.dumps({"orderId": "o-1", "invoiceNumber": "NF-1", "events": [event]})
    path.write_bytes(good.encode() + b"\n" + b'{"orderId": "o-\x81"}\n')
    assert main(["push", str(path), "--base-url", oms.url]) == 1
    assert f"{path}:2: neither UTF-8 nor cp1252 (byte 0x81); pass --encoding" in (
        capsys.readouterr().err
    )
    (kept,) = read_records(tmp_path / "odd.failed.jsonl")
    assert kept["raw"] == '{"orderId": "o-\\x81"}'


def test_a_cp1252_csv_on_stdin_is_read_as_cp1252(
    oms: FakeOMS, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """The fallback works on a stream read once: a cp1252 CSV piped to '- --format csv'."""
    data = (HEADER + EXCEL_ROWS).encode("cp1252")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    assert main(["push", "-", "--format", "csv", "--base-url", oms.url]) == 0
    assert oms.accepted("o-1", "NF-1")[0]["events"][0]["city"] == "São Paulo"


@pytest.mark.parametrize(
    ("encoding", "says"),
    [
        ("klingon", "unknown encoding 'klingon'"),
        ("utf-16", "utf-16: not supported, as it does not write ASCII as ASCII"),
    ],
)
def test_an_unusable_encoding_is_a_usage_error(
    encoding: str, says: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--encoding with an unknown codec, or one where ASCII is not ASCII, exits 2 (JSON with
    --json) before anything is read."""
    path = _excel_file(tmp_path)
    assert main(["push", str(path), "--encoding", encoding, "--json", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert says in json.loads(captured.out)["error"]["message"]
    assert says in captured.err


def test_a_cp1252_header_problem_is_exit_2(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header that is not in the encoding given stops the run, naming file:1."""
    path = tmp_path / "bad.csv"
    path.write_bytes(b"orderId\x81;" + HEADER.encode())
    assert main(["push", str(path), "--encoding", "cp1252", "--dry-run"]) == 2
    assert f"{path}:1: the header is not cp1252 (byte 0x81)" in capsys.readouterr().err
