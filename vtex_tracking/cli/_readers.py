"""Input files to ``TrackingUpdate``s: JSONL (one update per line) and CSV (one event per row).

Readers are generators: a file is read line by line, never loaded whole. Each yields ``Line``
records; a malformed line is a ``Line`` with ``error`` set (and its raw text), so one bad line
never stops the rest and is reported as ``file:line``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import attrs

from vtex_tracking import TrackingEvent, TrackingStatus, TrackingUpdate, VtexTrackingError

#: CSV columns, in the order the README documents them.
CSV_COLUMNS = (
    "orderId",
    "invoiceNumber",
    "city",
    "state",
    "description",
    "date",
    "isDelivered",
    "deliveredDate",
)
_CSV_REQUIRED = CSV_COLUMNS[:6]


@attrs.frozen
class Line:
    """One input record: an update, or the reason it could not be read, with its origin."""

    source: str
    update: TrackingUpdate | None = None
    error: str | None = None
    raw: str | None = None


class InputError(Exception):
    """An input that cannot be read at all (missing file, no CSV header): exit status 2."""


def detect_format(path: str, forced: str | None) -> str:
    """``jsonl`` or ``csv``, from ``--format`` or the file extension (stdin is JSONL)."""
    if forced:
        return forced
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if path == "-" or lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise InputError(f"{path}: unknown file type; use .jsonl or .csv, or pass --format")


def open_input(path: str) -> TextIO:
    """Open a UTF-8 input (a BOM is accepted), or stdin for ``-``."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _delivered(value: Any, where: str) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "sim"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "nao", "não"):
        return False
    raise ValueError(f"{where}: expected true or false, got {value!r}")


def _text(doc: dict[str, Any], name: str) -> Any:
    if name not in doc:
        raise ValueError(f"{name}: required field missing")
    return doc[name]


def update_from_json(doc: object) -> TrackingUpdate:
    """Build an update from one JSONL object (VTEX's body fields plus ``orderId`` and
    ``invoiceNumber``); extra fields such as a failures file's ``error`` are ignored."""
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    events_doc = _text(doc, "events")
    if not isinstance(events_doc, list):
        raise ValueError(f"events: expected a list, got {type(events_doc).__name__}")
    events = []
    for n, event in enumerate(events_doc):
        if not isinstance(event, dict):
            raise ValueError(f"events[{n}]: expected an object, got {type(event).__name__}")
        fields = [_text(event, name) for name in ("city", "state", "description", "date")]
        events.append(TrackingEvent(*fields))
    status = TrackingStatus(
        events,
        is_delivered=_delivered(doc.get("isDelivered"), "isDelivered"),
        delivered_date=doc.get("deliveredDate") or None,
    )
    return TrackingUpdate(_text(doc, "orderId"), _text(doc, "invoiceNumber"), status)


def read_jsonl(stream: TextIO, name: str) -> Iterator[Line]:
    """One ``Line`` per non-blank line of a JSONL stream."""
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        source = f"{name}:{number}"
        try:
            update = update_from_json(json.loads(text.strip()))
        except (ValueError, VtexTrackingError) as exc:
            yield Line(source, error=_reason(exc), raw=text.rstrip("\r\n"))
        else:
            yield Line(source, update=update)


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    return str(exc)


def read_csv(stream: TextIO, name: str) -> Iterator[Line]:
    """One ``Line`` per invoice: consecutive rows of the same invoice are its events, in file
    order. (Rows must be grouped by invoice: VTEX replaces an invoice's events on each update,
    so a later, separate group would replace the earlier one.)"""
    reader = csv.DictReader(stream)
    header = reader.fieldnames or []
    missing = [column for column in _CSV_REQUIRED if column not in header]
    if missing:
        raise InputError(f"{name}:1: CSV header lacks column(s) {', '.join(missing)}")
    group: list[tuple[int, dict[str, str]]] = []
    for row in reader:
        number = reader.line_num
        key = (row.get("orderId"), row.get("invoiceNumber"))
        if group and key != (group[0][1].get("orderId"), group[0][1].get("invoiceNumber")):
            yield _csv_update(group, name)
            group = []
        group.append((number, row))
    if group:
        yield _csv_update(group, name)


def _csv_update(group: list[tuple[int, dict[str, str]]], name: str) -> Line:
    first_line = group[0][0]
    source = f"{name}:{first_line}" if len(group) == 1 else f"{name}:{first_line}-{group[-1][0]}"
    raw = json.dumps([row for _, row in group], ensure_ascii=False)
    try:
        events = []
        for number, row in group:
            if None in row or any(row.get(column) is None for column in _CSV_REQUIRED):
                raise ValueError(f"line {number}: wrong number of columns")
            events.append(TrackingEvent(row["city"], row["state"], row["description"], row["date"]))
        last = group[-1][1]
        status = TrackingStatus(
            events,
            is_delivered=any(_delivered(row.get("isDelivered"), "isDelivered") for _, row in group),
            delivered_date=next(
                (row["deliveredDate"] for _, row in reversed(group) if row.get("deliveredDate")),
                None,
            ),
        )
        update = TrackingUpdate(last["orderId"], last["invoiceNumber"], status)
    except (ValueError, VtexTrackingError) as exc:
        return Line(source, error=str(exc), raw=raw)
    return Line(source, update=update)


def read_inputs(paths: list[str], forced_format: str | None) -> Iterator[Line]:
    """Every record of every input, in order. Raises ``InputError`` before yielding anything
    if a file is missing, so a typo in the last file name does not surface mid-push."""
    formats = [detect_format(path, forced_format) for path in paths]
    for path in paths:
        if path != "-":
            open_input(path).close()
    for path, fmt in zip(paths, formats, strict=True):
        name = "<stdin>" if path == "-" else path
        stream = open_input(path)
        try:
            yield from (read_csv if fmt == "csv" else read_jsonl)(stream, name)
        finally:
            if path != "-":
                stream.close()
