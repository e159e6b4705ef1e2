"""Fuzzing the code that reads what others wrote: VTEX's responses and the CLI's input files.

No input may raise anything but the documented errors: a 2xx body becomes a receipt or an
``UnexpectedResponseError``; any other answer becomes an ``APIError``; ``Retry-After`` becomes
a wait or None; a JSONL or CSV file becomes one ``Record`` per line or invoice (a malformed one
says why), or an ``InputError`` for a CSV header that cannot work.

CI runs a small budget per target. The long run (not in CI)::

    VTEX_FUZZ_EXAMPLES=50000 python -m pytest tests/test_fuzz.py --timeout 0 -p no:randomly \\
        --hypothesis-show-statistics

Generators mix raw bytes with near-valid documents (real field names, VTEX's date shapes,
delimiters, quotes, BOMs, invalid UTF-8), which is where parsers break.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtex_tracking import APIError, TrackingReceipt, UnexpectedResponseError
from vtex_tracking._errors import error_from_response, parse_error_body
from vtex_tracking._input._readers import CSV_COLUMNS, InputError, _text, read_csv, read_jsonl
from vtex_tracking._models import parse_vtex_timestamp
from vtex_tracking._retry import parse_retry_after, retry_after_from_headers
from vtex_tracking._serde import decode_receipt

#: Examples per target: small in CI, large for the long run (see the module docstring).
EXAMPLES = int(os.environ.get("VTEX_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- generators --------------------------------------------------------------------------------

_FIELDS = [
    "orderId", "invoiceNumber", "isDelivered", "deliveredDate", "events", "city", "state",
    "description", "date", "receipt", "error", "code", "message", "Message", "accountName",
]  # fmt: skip
_DATES = st.sampled_from(
    ["2026-11-02", "2026-11-02T10:15:00Z", "2026-11-02 10:15", "2026-02-30", "02/11/2026", ""]
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | _DATES
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=8), inner, max_size=6),
    max_leaves=20,
)


def _dumps(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:  # integers beyond 64 bits: write them as JSON anyway
        return repr(doc).encode()


_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(_dumps),
    st.builds(
        lambda extra, date, order, receipt: _dumps(
            {"date": date, "orderId": order, "receipt": receipt, **extra}
        ),
        st.dictionaries(st.text(max_size=5), _scalars, max_size=2),
        _scalars,
        _scalars,
        _scalars,
    ),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * (depth % 3)),
    st.sampled_from([b"<!DOCTYPE html><html>login</html>", b"\xef\xbb\xbf{}", b"   ", b"null"]),
)
_header_values = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40
) | st.sampled_from(["0", "-1", "1e309", "nan", "Wed, 21 Oct 2015 07:28:00 GMT", " 12 "])
_headers = st.dictionaries(
    st.sampled_from(["Retry-After", "Content-Type", "X-Request-Id", "X-VTEX-Request-Id"])
    | st.text("abcdefXY-", min_size=1, max_size=10),
    _header_values,
    max_size=5,
)


def _line_strategy() -> st.SearchStrategy[bytes]:
    near_valid = st.builds(
        lambda doc, events: _dumps({**doc, "events": events}),
        st.dictionaries(st.sampled_from(_FIELDS), _scalars, max_size=6),
        st.lists(st.dictionaries(st.sampled_from(_FIELDS), _scalars, max_size=5), max_size=3)
        | _scalars,
    )
    return st.one_of(
        near_valid, _json.map(_dumps), st.binary(max_size=80).map(lambda b: b.replace(b"\n", b""))
    )


_cells = st.one_of(
    st.text(max_size=12),
    _DATES,
    st.sampled_from(["sim", "não", "true", "false", "1", "", '"', '""', ",", ";", "\r", "\n"]),
)

# -- the response parser -----------------------------------------------------------------------


@FUZZ
@given(status=st.integers(200, 299), headers=_headers, body=_bodies)
def test_a_success_answer_is_a_receipt_or_unexpected_response_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    try:
        receipt = decode_receipt(
            status, headers, body, request_id=None, order_id="o", invoice_number="i", attempts=1
        )
    except UnexpectedResponseError as exc:
        assert str(exc).startswith(f"VTEX answered HTTP {status}")
        assert exc.body == body
    else:
        assert isinstance(receipt, TrackingReceipt)
        assert isinstance(receipt.receipt, str) and isinstance(receipt.date, str)
        receipt.timestamp  # noqa: B018 - parsing the date must not raise either


@FUZZ
@given(status=st.integers(100, 599), headers=_headers, body=_bodies)
def test_any_other_answer_is_an_api_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    error = error_from_response(
        status, headers, body, order_id="o", invoice_number="i", secrets=("SECRET",)
    )
    assert isinstance(error, APIError)
    assert error.status_code == status
    assert str(error).startswith(f"VTEX answered HTTP {status}")
    code, message = parse_error_body(body)
    assert code is None or isinstance(code, str)
    assert message is None or isinstance(message, str)


@FUZZ
@given(headers=_headers, value=st.none() | _header_values)
def test_retry_after_is_a_finite_wait_or_none(headers: dict[str, str], value: str | None) -> None:
    for wait in (
        retry_after_from_headers(headers),
        parse_retry_after(value, now=dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)),
    ):
        assert wait is None or (math.isfinite(wait) and wait >= 0)


@FUZZ
@given(st.text(max_size=40) | _DATES)
def test_vtex_timestamps_parse_or_give_none(value: str) -> None:
    parsed = parse_vtex_timestamp(value)
    assert parsed is None or parsed.tzinfo is not None


# -- the CLI's readers -------------------------------------------------------------------------


@FUZZ
@given(
    lines=st.lists(_line_strategy(), max_size=8),
    endings=st.sampled_from([b"\n", b"\r\n"]),
    bom=st.booleans(),
)
def test_every_jsonl_line_becomes_exactly_one_record(
    lines: list[bytes], endings: bytes, bom: bool
) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + endings.join(lines)
    records = list(read_jsonl(io.BytesIO(data), "in.jsonl"))
    stream_lines = io.BytesIO(data).readlines()
    expected = [
        n
        for n, line in enumerate(stream_lines, start=1)
        if (line[3:] if n == 1 and line.startswith(b"\xef\xbb\xbf") else line).strip()
    ]
    assert [r.source for r in records] == [f"in.jsonl:{n}" for n in expected]
    for record in records:
        assert (record.update is None) != (record.error is None)
        if record.error is not None:
            assert record.raw is not None


_CSV_SOURCE = re.compile(r"in\.csv:(\d+)(?:-(\d+))?")


@FUZZ
@given(
    rows=st.lists(st.lists(_cells, min_size=5, max_size=10), max_size=8),
    delimiter=st.sampled_from([",", ";"]),
    header=st.none() | st.lists(st.sampled_from([*CSV_COLUMNS, "x", ""]), max_size=9),
    garbage=st.none() | st.binary(max_size=20),
)
def test_a_csv_file_becomes_records_or_an_input_error(
    rows: list[list[str]], delimiter: str, header: list[str] | None, garbage: bytes | None
) -> None:
    columns = list(CSV_COLUMNS) if header is None else header
    lines = [delimiter.join(columns)]
    for row in rows:
        lines.append(delimiter.join(f'"{c}"' if c in {delimiter, "\n", '"'} else c for c in row))
    data = "\n".join(lines).encode() + (b"\n" + garbage if garbage is not None else b"")
    try:
        records = list(read_csv(_text(io.BytesIO(data)), "in.csv"))
    except InputError as exc:
        assert str(exc).startswith("in.csv:1: ")  # only the header can make a file unreadable
        assert header is not None
        return
    last = 1
    for record in records:
        match = _CSV_SOURCE.fullmatch(record.source)
        assert match is not None, record.source
        first = int(match[1])
        assert first > last  # records come in file order, never overlapping
        last = int(match[2] or first)
        assert (record.update is None) != (record.error is None)
