"""Input files to ``Record``s: JSONL (one update per line) or CSV (one event per row).

Readers are generators over open files, so a file is streamed, never loaded whole. Every
record carries its origin (``file:line``); a malformed one carries the reason and its raw text
instead of an update, so one bad line never stops the rest.

CSV grouping: consecutive rows of one invoice (same ``orderId`` and ``invoiceNumber``, and
``accountName`` when there is such a column: the same ids in two stores are two invoices) become
one update, events in file order. Rows of an invoice that come back later in the file are
*not* merged: merging would need the whole file in memory (or a sort on disk) before the first
request. They are reported as malformed instead, because each VTEX update replaces the whole
history and sending them would erase the events sent before. The only memory that grows with
the file is the set of invoice keys already seen (for that check: about 200 bytes per invoice).
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from collections.abc import Iterator
from typing import IO

import attrs
import orjson

from vtex_tracking import TrackingEvent, TrackingUpdate

from ._records import RecordError, delivered_date, flag, make_event, make_update, update_from_json

CSV_COLUMNS = (
    "orderId",
    "invoiceNumber",
    "city",
    "state",
    "description",
    "date",
    "isDelivered",
    "deliveredDate",
    "accountName",
)
_CSV_REQUIRED = CSV_COLUMNS[:6]
_BOM = b"\xef\xbb\xbf"
# Bytes that are not UTF-8 survive decoding as lone surrogates (errors="surrogateescape").
_UNDECODED = re.compile("[\udc80-\udcff]")
#: A CSV header: its column names and its delimiter.
_Header = tuple[list[str], str]
_NOT_UTF8 = "not UTF-8 (byte 0x{:02x}): save the file as UTF-8 ('CSV UTF-8' in Excel)"


@attrs.frozen
class Record:
    """One input record: an update, or why it could not be read and its raw text."""

    source: str
    update: TrackingUpdate | None = None
    error: str | None = None
    raw: str | None = None


class InputError(Exception):
    """An input that cannot be read at all (missing file, bad CSV header): exit status 2."""


@attrs.frozen
class Input:
    """One input to read: a path (``-`` for stdin) and its format."""

    path: str
    format: str
    #: stdin as CSV: the text stream, its header (already read and checked), and whether the
    #: stream is ours to close (see ``open_stdin``).
    csv_stdin: tuple[io.TextIOWrapper, _Header, bool] | None = attrs.field(
        default=None, eq=False
    )

    @property
    def name(self) -> str:
        """The name used in ``file:line``."""
        return "<stdin>" if self.path == "-" else self.path


def detect_format(path: str, forced: str | None) -> str:
    """``jsonl`` or ``csv``, from ``--format`` or the extension (stdin is JSONL)."""
    if forced:
        return forced
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if path == "-" or lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise InputError(f"{path}: unknown file type; name it .jsonl or .csv, or pass --format")


def check_inputs(paths: list[str], forced: str | None) -> list[Input]:
    """Check every input before anything is sent: a typo in the last file name, or a CSV
    without the needed columns, must not surface in the middle of a push."""
    if paths.count("-") > 1:
        raise InputError("-: stdin can be read only once")
    inputs = []
    for path in paths:
        fmt = detect_format(path, forced)
        if path == "-" and fmt == "csv":
            # Read stdin's header now (it waits for the first line): a bad one is exit 2.
            raw, owned = open_stdin()
            stream = _text(raw)
            inputs.append(Input(path, fmt, (stream, _csv_header(stream, "<stdin>"), owned)))
            continue
        if path != "-":
            with _open(path) as raw:
                if fmt == "csv":
                    with _text(raw) as text:
                        _csv_header(text, path)
        inputs.append(Input(path, fmt))
    return inputs


def _text(stream: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig drops a BOM; bytes that are not UTF-8 become lone surrogates, so that one bad
    # row is reported (see _rows) instead of a UnicodeDecodeError ending the whole file.
    return io.TextIOWrapper(stream, "utf-8-sig", "surrogateescape", newline="")


def open_stdin() -> tuple[IO[bytes], bool]:
    """stdin's bytes, and whether the caller owns (closes) that stream.

    A duplicate of stdin's file descriptor when it has one: the reader thread may still be
    blocked reading stdin when the process exits (after a second Ctrl-C), and the
    interpreter's shutdown, flushing ``sys.stdin``, would abort on the lock that thread holds.
    A private duplicate is never touched by the shutdown.
    """
    try:
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb"), True
    except (AttributeError, OSError, ValueError):  # no real file behind sys.stdin
        return sys.stdin.buffer, False


def _open(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def read_inputs(inputs: list[Input]) -> Iterator[Record]:
    """Every record of every input, in order."""
    for item in inputs:
        try:
            yield from _read_one(item)
        except (OSError, InputError) as exc:  # e.g. a disk error, or the file changed
            yield Record(item.name, error=f"reading stopped: {exc}")


def _read_one(item: Input) -> Iterator[Record]:
    if item.csv_stdin is not None:
        text, header, owned = item.csv_stdin
        try:
            yield from read_csv(text, item.name, header)
        finally:
            if owned:
                text.close()
            else:
                text.detach()  # leave the process's stdin open for others
    elif item.path == "-":
        stream, owned = open_stdin()
        try:
            yield from read_jsonl(stream, item.name)
        finally:
            if owned:
                stream.close()
    elif item.format == "csv":
        with _text(_open(item.path)) as text:
            yield from read_csv(text, item.name)
    else:
        with _open(item.path) as stream:
            yield from read_jsonl(stream, item.name)


def read_jsonl(stream: IO[bytes], name: str) -> Iterator[Record]:
    """One record per non-blank line of a JSONL stream."""
    for number, line in enumerate(stream, start=1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if not line.strip():
            continue
        source = f"{name}:{number}"
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raw = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
            yield Record(source, error=_NOT_UTF8.format(line[exc.start]), raw=raw)
            continue
        try:
            update = update_from_json(orjson.loads(text))
        except orjson.JSONDecodeError as exc:
            reason = f"not valid JSON ({exc.msg} at column {exc.colno})"
            yield Record(source, error=reason, raw=text)
        except RecordError as exc:
            yield Record(source, error=str(exc), raw=text if exc.raw is None else exc.raw)
        else:
            yield Record(source, update=update)


def _csv_header(stream: IO[str], name: str) -> _Header:
    """The column names and the delimiter: ``,``, or ``;`` as Excel writes in Brazil."""
    line = stream.readline()
    if _UNDECODED.search(line):
        raise InputError(f"{name}:1: the header is not UTF-8; save the file as UTF-8")
    delimiter = ";" if line.count(";") > line.count(",") else ","
    columns = [c.strip() for c in next(csv.reader([line], delimiter=delimiter), [])]
    missing = [c for c in _CSV_REQUIRED if c not in columns]
    if missing:
        raise InputError(f"{name}:1: the CSV header lacks {', '.join(missing)}")
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown or len(set(columns)) != len(columns):
        raise InputError(
            f"{name}:1: unexpected or repeated CSV columns {', '.join(unknown) or columns};"
            f" expected {','.join(CSV_COLUMNS)}"
        )
    return columns, delimiter


@attrs.define
class _Row:
    start: int
    end: int
    key: tuple[str, str, str] | None
    cells: dict[str, str] | None
    text: str
    error: str | None = None


def _rows(stream: IO[str], name: str, header: _Header | None) -> Iterator[_Row]:
    columns, delimiter = header or _csv_header(stream, name)
    reader = csv.reader(stream, delimiter=delimiter)
    writer_buffer = io.StringIO()
    writer = csv.writer(writer_buffer, delimiter=delimiter, lineterminator="")
    order_at, invoice_at = columns.index("orderId"), columns.index("invoiceNumber")
    account_at = columns.index("accountName") if "accountName" in columns else None
    end = 1
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num + 1  # the header was read before the reader started
            yield _Row(start, end, None, None, "", f"unreadable CSV ({exc})")
            continue
        end = reader.line_num + 1
        if not cells:
            continue
        writer_buffer.seek(0)
        writer_buffer.truncate()
        writer.writerow(cells)
        text = writer_buffer.getvalue()
        # The key's columns come first in practice: found even when a later unquoted comma
        # added a column, so the bad row still spoils its own invoice's update.
        key = None
        if len(cells) > max(order_at, invoice_at):
            account = ""
            if account_at is not None and len(cells) > account_at:
                account = cells[account_at]
            key = (cells[order_at], cells[invoice_at], account)
        # A row with a wrong number of cells is kept, mapped as far as it goes, to report it.
        row = _Row(start, end, key, dict(zip(columns, cells, strict=False)), text)
        undecoded = _UNDECODED.search(text)
        if undecoded:
            row.error = _NOT_UTF8.format(ord(undecoded[0]) - 0xDC00)
            row.text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        elif len(cells) != len(columns):
            row.error = f"expected {len(columns)} columns, got {len(cells)}" + (
                f" (quote fields that contain '{delimiter}')" if len(cells) > len(columns) else ""
            )
        yield row


def read_csv(
    stream: IO[str], name: str, header: _Header | None = None
) -> Iterator[Record]:
    """One record per invoice: its consecutive rows, as events in file order. ``header`` is
    given when the header line was already read (stdin)."""
    group: list[_Row] = []
    repeated: str | None = None  # where the group's invoice had rows before, if it did
    seen: dict[tuple[str, str, str], str] = {}
    for row in _rows(stream, name, header):
        if row.key is None:  # no invoice to attach it to: reported on its own, in file order
            if group:
                yield _record(group, name, repeated)
                group = []
            yield _record([row], name, None)
            continue
        if group and row.key != group[0].key:
            yield _record(group, name, repeated)
            group = []
        if not group:
            repeated = seen.get(row.key)
            seen.setdefault(row.key, f"{name}:{row.start}")
        group.append(row)
    if group:
        yield _record(group, name, repeated)


def _record(group: list[_Row], name: str, repeated: str | None) -> Record:
    first, last = group[0].start, group[-1].end
    source = f"{name}:{first}" if first == last else f"{name}:{first}-{last}"
    raw = "\n".join(row.text for row in group)
    try:
        if repeated is not None:
            raise RecordError(
                f"this invoice already had rows at {repeated}: keep an invoice's rows together,"
                " because each update replaces the whole history at VTEX"
            )
        return Record(source, update=_group_update(group))
    except RecordError as exc:
        return Record(source, error=str(exc), raw=raw)


def _group_update(group: list[_Row]) -> TrackingUpdate:
    events: list[TrackingEvent] = []
    is_delivered: bool | None = None
    delivered: str | None = None
    for row in group:
        at = f"line {row.end}: " if len(group) > 1 else ""
        if row.error is not None or row.cells is None:
            raise RecordError(f"{at}{row.error}")
        cells = row.cells
        try:
            events.append(
                make_event(cells["city"], cells["state"], cells["description"], cells["date"], "")
            )
            # The invoice's state is the last one its rows give (often only the delivery row).
            row_delivered = flag(cells.get("isDelivered", ""))
            is_delivered = is_delivered if row_delivered is None else row_delivered
            delivered = delivered_date(cells.get("deliveredDate") or None) or delivered
        except RecordError as exc:
            raise RecordError(f"{at}{exc}") from None
    assert group[0].key is not None
    order_id, invoice_number, account = group[0].key
    return make_update(order_id, invoice_number, events, bool(is_delivered), delivered, account)
