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

Bytes become text line by line (see ``_encoding``: UTF-8, ``--encoding``, or a cp1252 fallback
that a record's ``notice`` announces), and dates follow ``--date-format`` (see ``_dates``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from collections.abc import Iterator
from typing import IO

import attrs
import orjson

from vtex_tracking import TrackingEvent, TrackingNumberUpdate, TrackingUpdate

from ._dates import ISO
from ._encoding import DecodedLines, LineDecoder, visible
from ._records import (
    TRACKING_FIELDS,
    RecordError,
    delivered_date,
    flag,
    make_event,
    make_tracking,
    make_update,
    update_from_json,
)

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
    *TRACKING_FIELDS,
)
_CSV_REQUIRED = CSV_COLUMNS[:6]
_EVENT_CELLS = ("city", "state", "description", "date")
#: A CSV header: its column names and its delimiter.
_Header = tuple[list[str], str]
# ASCII whitespace, what bytes.strip() strips: a line of it is blank in any encoding.
_BLANK = " \t\n\r\x0b\x0c"


@attrs.frozen
class Record:
    """One input record: an update, or why it could not be read and its raw text. ``notice``
    is something to tell the user once, found while reading up to this record (a file read
    as cp1252). ``offset`` is how many bytes of the inputs were read when the record was made
    (those of earlier files included), for progress."""

    source: str
    update: TrackingUpdate | TrackingNumberUpdate | None = None
    error: str | None = None
    raw: str | None = None
    notice: str | None = None
    offset: int = 0


@attrs.frozen
class ReadOptions:
    """How to read every input: ``--encoding`` (None: UTF-8, with the cp1252 fallback) and
    ``--date-format``."""

    encoding: str | None = None
    date_format: str = ISO


class InputError(Exception):
    """An input that cannot be read at all (missing file, bad CSV header): exit status 2."""


@attrs.frozen
class Input:
    """One input to read: a path (``-`` for stdin) and its format."""

    path: str
    format: str
    options: ReadOptions = ReadOptions()
    #: stdin as CSV: the byte stream, its lines (the header already read and checked), the
    #: header, and whether the stream is ours to close (see ``open_stdin``).
    csv_stdin: tuple[IO[bytes], DecodedLines, _Header, bool] | None = attrs.field(
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


def check_inputs(
    paths: list[str], forced: str | None, options: ReadOptions | None = None
) -> list[Input]:
    """Check every input before anything is sent: a typo in the last file name, or a CSV
    without the needed columns, must not surface in the middle of a push."""
    options = options or ReadOptions()
    if paths.count("-") > 1:
        raise InputError("-: stdin can be read only once")
    inputs = []
    for path in paths:
        fmt = detect_format(path, forced)
        if path == "-" and fmt == "csv":
            # Read stdin's header now (it waits for the first line): a bad one is exit 2.
            raw, owned = open_stdin()
            lines = _text(raw, options.encoding)
            header = _csv_header(lines, "<stdin>")
            inputs.append(Input(path, fmt, options, (raw, lines, header, owned)))
            continue
        if path != "-":
            with _open(path) as raw:
                if fmt == "csv":
                    _csv_header(_text(raw, options.encoding), path)
        inputs.append(Input(path, fmt, options))
    return inputs


def _text(stream: IO[bytes], encoding: str | None = None) -> DecodedLines:
    # Bytes that cannot be decoded become lone surrogates, so that one bad row is reported
    # (see _rows) instead of a UnicodeDecodeError ending the whole file.
    return DecodedLines(stream, LineDecoder(encoding))


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
    before = 0  # bytes of the files read before this one
    for item in inputs:
        offset = 0
        try:
            for record in _read_one(item):
                offset = record.offset
                yield attrs.evolve(record, offset=before + offset) if before else record
        except (OSError, InputError) as exc:  # e.g. a disk error, or the file changed
            yield Record(item.name, error=f"reading stopped: {exc}", offset=before + offset)
        if item.path != "-":
            with contextlib.suppress(OSError):
                offset = os.path.getsize(item.path)  # trailing blank lines included
        before += offset


def _read_one(item: Input) -> Iterator[Record]:
    date_format = item.options.date_format
    if item.csv_stdin is not None:
        raw, lines, header, owned = item.csv_stdin
        try:
            yield from read_csv(lines, item.name, header, date_format)
        finally:
            if owned:
                raw.close()  # the process's own stdin stays open for others
    elif item.path == "-":
        stream, owned = open_stdin()
        try:
            yield from read_jsonl(stream, item.name, item.options)
        finally:
            if owned:
                stream.close()
    elif item.format == "csv":
        with _open(item.path) as stream:
            yield from read_csv(_text(stream, item.options.encoding), item.name, None, date_format)
    else:
        with _open(item.path) as stream:
            yield from read_jsonl(stream, item.name, item.options)


def read_jsonl(
    stream: IO[bytes], name: str, options: ReadOptions | None = None
) -> Iterator[Record]:
    """One record per non-blank line of a JSONL stream."""
    options = options or ReadOptions()
    lines = _text(stream, options.encoding)
    for line in lines:
        if not line.strip(_BLANK):
            continue
        source = f"{name}:{lines.number}"
        text = line.rstrip("\r\n")
        notice = lines.decoder.notice(name)
        offset = lines.bytes_read
        problem = lines.decoder.problem(lines.number, lines.number)
        if problem is not None:
            yield Record(source, error=problem, raw=visible(text), notice=notice, offset=offset)
            continue
        try:
            update = update_from_json(orjson.loads(text), options.date_format)
        except orjson.JSONDecodeError as exc:
            reason = f"not valid JSON ({exc.msg} at column {exc.colno})"
            yield Record(source, error=reason, raw=text, notice=notice, offset=offset)
        except RecordError as exc:
            raw = text if exc.raw is None else exc.raw
            yield Record(source, error=str(exc), raw=raw, notice=notice, offset=offset)
        else:
            yield Record(source, update=update, notice=notice, offset=offset)


def _csv_header(lines: DecodedLines, name: str) -> _Header:
    """The column names and the delimiter: ``,``, or ``;`` as Excel writes in Brazil."""
    line = next(lines, "")
    problem = lines.decoder.problem(1, 1)
    if problem is not None:
        raise InputError(f"{name}:1: the header is {problem}")
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


def _rows(lines: DecodedLines, name: str, header: _Header | None) -> Iterator[_Row]:
    columns, delimiter = header or _csv_header(lines, name)
    reader = csv.reader(lines, delimiter=delimiter)
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
            end = lines.number
            lines.decoder.problem(start, end)  # the CSV error is the one reported
            yield _Row(start, end, None, None, "", f"unreadable CSV ({exc})")
            continue
        end = lines.number
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
        problem = lines.decoder.problem(start, end)
        if problem is not None:
            row.error = problem
            row.text = visible(text)
        elif len(cells) != len(columns):
            row.error = f"expected {len(columns)} columns, got {len(cells)}" + (
                f" (quote fields that contain '{delimiter}')" if len(cells) > len(columns) else ""
            )
        yield row


def read_csv(
    lines: DecodedLines, name: str, header: _Header | None = None, date_format: str = ISO
) -> Iterator[Record]:
    """One record per invoice: its consecutive rows, as events in file order. ``header`` is
    given when the header line was already read (stdin)."""
    group: list[_Row] = []
    repeated: str | None = None  # where the group's invoice had rows before, if it did
    seen: dict[tuple[str, str, str], str] = {}

    def record(rows: list[_Row], repeated: str | None) -> Record:
        # The offset is past the row read to end the group: close enough for progress.
        found = _record(rows, name, repeated, date_format, lines.bytes_read)
        notice = lines.decoder.notice(name)
        return found if notice is None else attrs.evolve(found, notice=notice)

    for row in _rows(lines, name, header):
        if row.key is None:  # no invoice to attach it to: reported on its own, in file order
            if group:
                yield record(group, repeated)
                group = []
            yield record([row], None)
            continue
        if group and row.key != group[0].key:
            yield record(group, repeated)
            group = []
        if not group:
            repeated = seen.get(row.key)
            seen.setdefault(row.key, f"{name}:{row.start}")
        group.append(row)
    if group:
        yield record(group, repeated)


def _record(
    group: list[_Row], name: str, repeated: str | None, date_format: str, offset: int
) -> Record:
    first, last = group[0].start, group[-1].end
    source = f"{name}:{first}" if first == last else f"{name}:{first}-{last}"
    raw = "\n".join(row.text for row in group)
    try:
        if repeated is not None:
            raise RecordError(
                f"this invoice already had rows at {repeated}: keep an invoice's rows together,"
                " because each update replaces the whole history at VTEX"
            )
        return Record(source, update=_group_update(group, date_format), offset=offset)
    except RecordError as exc:
        return Record(source, error=str(exc), raw=raw, offset=offset)


def _group_update(group: list[_Row], date_format: str) -> TrackingUpdate | TrackingNumberUpdate:
    events: list[TrackingEvent] = []
    is_delivered: bool | None = None
    delivered: str | None = None
    # The tracking number's cells: the last non-empty value of each in the invoice's rows.
    numbers: dict[str, str | None] = {}
    for row in group:
        at = f"line {row.end}: " if len(group) > 1 else ""
        if row.error is not None or row.cells is None:
            raise RecordError(f"{at}{row.error}")
        cells = row.cells
        numbers.update({k: cells[k] for k in TRACKING_FIELDS if cells.get(k)})
        if cells.get("trackingNumber") and not any(cells.get(k) for k in _EVENT_CELLS):
            continue  # a row with the number only: no event
        try:
            city, state, description = cells["city"], cells["state"], cells["description"]
            events.append(make_event(city, state, description, cells["date"], "", date_format))
            # The invoice's state is the last one its rows give (often only the delivery row).
            row_delivered = flag(cells.get("isDelivered", ""))
            is_delivered = is_delivered if row_delivered is None else row_delivered
            when = cells.get("deliveredDate") or None
            delivered = delivered_date(when, date_format=date_format) or delivered
        except RecordError as exc:
            raise RecordError(f"{at}{exc}") from None
    assert group[0].key is not None
    order_id, invoice_number, account = group[0].key
    tracking = make_tracking(numbers)
    return make_update(
        order_id,
        invoice_number,
        events if events or tracking is None else None,
        bool(is_delivered),
        delivered,
        account,
        tracking,
    )
