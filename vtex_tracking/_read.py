"""Public parsers of what carriers have: VTEX's wire form (and the CLI's JSONL line, which is
that form plus ``orderId``/``invoiceNumber``) and the input files the CLI reads, so a program
gets exactly the CLI's checks (strict field names and types, VTEX's date forms, ``file:line``)
without rewriting its readers.

The readers live in ``_input`` (the CLI's); this module turns their findings into the SDK's
``ValidationError`` and is imported only when used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._errors import ConfigurationError, ValidationError
from ._log import logger
from ._models import AnyUpdate
from ._public import present_lazy

__all__ = ["parse_update", "read_updates"]

_DATE_FORMATS = ("iso", "dd/mm/yyyy")


def _check_date_format(date_format: str) -> None:
    if date_format not in _DATE_FORMATS:
        raise ConfigurationError(
            f"date_format: expected one of {', '.join(_DATE_FORMATS)}, got {date_format!r}"
        )


def _as_validation_error(message: str, where: str = "") -> ValidationError:
    """A reader's ``field: problem`` as a ``ValidationError`` naming that field (and
    ``where``: the ``file:line``, when there is one)."""
    field, sep, problem = message.partition(": ")
    if not sep or " " in field:
        field, problem = "update", message
    return ValidationError(f"{where}: {field}" if where else field, problem)


def parse_update(doc: Mapping[str, Any], *, date_format: str = "iso") -> AnyUpdate:
    """One update from VTEX's wire form plus its ids: ``orderId``, ``invoiceNumber``,
    ``isDelivered``, ``deliveredDate``, ``events`` (each ``city``, ``state``,
    ``description``, ``date``), optional ``accountName`` and tracking number
    (``trackingNumber``, ``trackingUrl``, ``courier``, ``dispatchedDate``). A
    ``TrackingUpdate``, or a ``TrackingNumberUpdate`` for a number without events. Raises
    ``ValidationError`` naming the input field (``events[2].date``), as the CLI does."""
    from ._input._records import RecordError, update_from_json

    _check_date_format(date_format)
    try:
        return update_from_json(doc if isinstance(doc, dict) else dict(doc), date_format)
    except RecordError as exc:
        raise _as_validation_error(str(exc)) from None


def read_updates(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    encoding: str | None = None,
    date_format: str = "iso",
    on_error: Callable[[ValidationError], None] | None = None,
) -> Iterator[AnyUpdate]:
    """Stream the updates of a JSONL or CSV file exactly as ``vtex-tracking push`` reads it
    (one update per JSONL line; a CSV invoice's consecutive rows as one update; UTF-8 with
    the cp1252 fallback, or ``encoding``; ``date_format="dd/mm/yyyy"`` for day-first
    spreadsheets). ``format`` (``"jsonl"``/``"csv"``) defaults to the file's extension.

    A line that cannot become an update raises ``ValidationError`` whose field starts with
    its ``file:line``; with ``on_error`` each is handed to it instead and reading goes on.
    Nothing is skipped silently. Lazy: the file is read as the iterator is consumed.
    """
    from ._input._readers import Input, InputError, ReadOptions, detect_format, read_inputs

    _check_date_format(date_format)
    name = os.fspath(path)
    if format not in (None, "jsonl", "csv"):
        raise ConfigurationError(f"format: expected 'jsonl' or 'csv', got {format!r}")
    try:
        source = Input(name, detect_format(name, format), ReadOptions(encoding, date_format))
    except InputError as exc:
        raise ConfigurationError(str(exc)) from None
    for record in read_inputs([source]):
        if record.notice is not None:
            logger.warning("%s", record.notice)
        if record.update is not None:
            yield record.update
            continue
        error = _as_validation_error(record.error or "unreadable", record.source)
        if on_error is None:
            raise error
        on_error(error)


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
