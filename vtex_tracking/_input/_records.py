"""Input fields to ``TrackingUpdate``: the checks a file needs beyond the SDK's models.

The SDK's models validate values ("must not be empty") but take dates as strings "sent as
given", and know nothing of input field names. A file is where typos live, so this module adds:

* strict names: an unknown field (``isDelivred``) is an error, not silently dropped, because a
  dropped ``isDelivered`` would tell the shopper the parcel is still on its way;
* strict JSON types: ``"invoiceNumber": 30700`` is refused rather than turned into "30700"
  (the leading zeros of ``000030700`` were already lost);
* VTEX's date formats: event ``date`` as ``YYYY-MM-DD`` (or a full ISO 8601 date and time) and
  ``deliveredDate`` as ``YYYY-MM-DD hh:mm``; ``04/11/2026`` is ambiguous and refused, unless
  the run says ``--date-format dd/mm/yyyy`` (see ``_dates``), when day-first dates are turned
  into those forms;
* errors named by input field (``events[2].city``), never by model attribute.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from vtex_tracking import (
    InvoiceTracking,
    TrackingEvent,
    TrackingNumberUpdate,
    TrackingStatus,
    TrackingUpdate,
    ValidationError,
)

from .._dates import delivered_date_problem, event_date_problem
from .._serde import delivered_text
from ._dates import ISO, DateError, day_first

#: The invoice's tracking number and its companions (VTEX's PATCH of the invoice), optional:
#: a line with them sends the number first, then its events (if it has any).
TRACKING_FIELDS = ("trackingNumber", "trackingUrl", "courier", "dispatchedDate")
#: Fields of one JSONL update. ``error``, ``raw`` and ``source`` are what a failures file adds;
#: they are ignored so that a failures file can be pushed again as it is.
UPDATE_FIELDS = (
    "orderId",
    "invoiceNumber",
    "isDelivered",
    "deliveredDate",
    "events",
    "accountName",
    *TRACKING_FIELDS,
)
IGNORED_FIELDS = ("error", "raw", "source")
EVENT_FIELDS = ("city", "state", "description", "date")

# Model attribute -> input field, so that an SDK ValidationError names what the user wrote.
_INPUT_NAMES = {
    "order_id": "orderId",
    "invoice_number": "invoiceNumber",
    "is_delivered": "isDelivered",
    "delivered_date": "deliveredDate",
    "account_name": "accountName",
    "tracking_number": "trackingNumber",
    "tracking_url": "trackingUrl",
    "courier": "courier",
    "dispatched_date": "dispatchedDate",
}
_TRUE = frozenset({"true", "1", "yes", "sim", "s"})
_FALSE = frozenset({"false", "0", "no", "nao", "não", "n", ""})


class RecordError(ValueError):
    """A record that cannot become an update; the message reads ``field: problem``. ``raw``
    replaces the record's text in the failures file (a malformed line kept by an earlier run
    keeps its original text, rather than being nested in a new record)."""

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


def json_type(value: object) -> str:
    """The JSON name of a value's type, for messages (``integer``, not ``int``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number"}
    return names.get(type(value), type(value).__name__)


def check_names(names: Sequence[str], known: Sequence[str], where: str = "") -> None:
    """Refuse unknown field names, suggesting the closest known one."""
    for name in names:
        if name in known or name in IGNORED_FIELDS:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (expected {', '.join(known)})"
        raise RecordError(f"{where}{name}: unknown field{hint}")


def _string(doc: Mapping[str, Any], name: str, where: str = "") -> str:
    if name not in doc:
        raise RecordError(f"{where}{name}: required field missing")
    value = doc[name]
    if not isinstance(value, str):
        hint = " (write it in quotes: leading zeros matter)" if isinstance(value, int) else ""
        raise RecordError(f"{where}{name}: expected a string, got {json_type(value)}{hint}")
    return value


def event_date(value: str, where: str, date_format: str = ISO) -> str:
    """Check an event date is ``YYYY-MM-DD`` (or ISO 8601 with a time) and return it as given;
    with ``date_format`` ``dd/mm/yyyy``, a day-first date returned in ISO form."""
    if date_format != ISO:
        value = _day_first(value, where, with_time=False)
    problem = event_date_problem(value)
    if problem is not None:
        raise RecordError(f"{where}: {problem}")
    return value


def delivered_date(
    value: str | None, where: str = "deliveredDate", date_format: str = ISO
) -> str | None:
    """Check ``deliveredDate`` is ``YYYY-MM-DD hh:mm`` (VTEX's format), or with ``date_format``
    ``dd/mm/yyyy``, ``dd/mm/yyyy hh:mm`` (returned in VTEX's format); empty means none."""
    if value is None or value == "":
        return None
    if date_format != ISO:
        value = _day_first(value, where, with_time=True)
    problem = delivered_date_problem(value)
    if problem is not None:
        raise RecordError(f"{where}: {problem}")
    return value


def _day_first(value: str, where: str, *, with_time: bool) -> str:
    try:
        return day_first(value, with_time=with_time)
    except DateError as exc:
        raise RecordError(f"{where}: {exc}") from None


def flag(value: str, where: str = "isDelivered") -> bool | None:
    """A CSV ``isDelivered`` cell: true/false, 1/0, yes/no, sim/não; None when empty."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return None if not lowered else False
    raise RecordError(f"{where}: expected true or false, got {value!r}")


def make_event(
    city: str, state: str, description: str, date: str, where: str, date_format: str = ISO
) -> TrackingEvent:
    """One event, its errors named ``<where>city`` and so on; ``date`` in ``date_format``."""
    date = event_date(date, f"{where}date", date_format)
    try:
        return TrackingEvent(city, state, description, date)
    except ValidationError as exc:
        raise RecordError(f"{where}{exc.field.rsplit('.', 1)[-1]}: {exc.problem}") from None


def make_tracking(values: Mapping[str, str | None]) -> InvoiceTracking | None:
    """The invoice's tracking number from its input fields (``TRACKING_FIELDS``; empty
    means absent), or None when there is no ``trackingNumber``. A URL, courier or dispatch
    date without a number is an error: it would be dropped silently."""
    given = {name: values.get(name) or None for name in TRACKING_FIELDS}
    if given["trackingNumber"] is None:
        lonely = [name for name, value in given.items() if value is not None]
        if lonely:
            raise RecordError(f"trackingNumber: required with {', '.join(lonely)}")
        return None
    try:
        return InvoiceTracking(
            given["trackingNumber"],
            tracking_url=given["trackingUrl"],
            courier=given["courier"],
            dispatched_date=given["dispatchedDate"],
        )
    except ValidationError as exc:
        name = exc.field.rsplit(".", 1)[-1]
        raise RecordError(f"{_INPUT_NAMES.get(name, name)}: {exc.problem}") from None


def make_update(
    order_id: str,
    invoice_number: str,
    events: list[TrackingEvent] | None,
    is_delivered: bool,
    delivered: str | None,
    account_name: str | None = None,
    tracking: InvoiceTracking | None = None,
) -> TrackingUpdate | TrackingNumberUpdate:
    """The update, with the SDK's own checks reported by input field name. ``account_name``
    None (or empty) sends it to the run's default account. ``events`` None (the input has
    none) with ``tracking``: a ``TrackingNumberUpdate``, the number alone."""
    try:
        if events is None:
            if tracking is None:
                raise RecordError("events: required field missing (or trackingNumber alone)")
            if is_delivered or delivered is not None:
                raise RecordError("events: required with isDelivered or deliveredDate")
            return TrackingNumberUpdate(
                order_id, invoice_number, tracking, account_name=account_name or None
            )
        status = TrackingStatus(events, is_delivered=is_delivered, delivered_date=delivered)
        return TrackingUpdate(
            order_id, invoice_number, status, account_name=account_name or None, tracking=tracking
        )
    except ValidationError as exc:
        name = exc.field.rsplit(".", 1)[-1]
        raise RecordError(f"{_INPUT_NAMES.get(name, name)}: {exc.problem}") from None


def update_from_json(
    doc: object, date_format: str = ISO
) -> TrackingUpdate | TrackingNumberUpdate:
    """Build an update from one JSONL object: ``orderId``, ``invoiceNumber`` and VTEX's body
    fields, dates in ``date_format``. ``isDelivered`` (absent: false) and ``deliveredDate``
    (absent: null) are optional, as in the SDK's ``TrackingStatus``; so is ``accountName``
    (absent or null: the run's default account), and the tracking number's fields
    (``TRACKING_FIELDS``: with ``trackingNumber`` and no ``events``, the number alone)."""
    if not isinstance(doc, dict):
        hint = " (JSONL is one object per line, not a JSON array)" if isinstance(doc, list) else ""
        raise RecordError(f"expected a JSON object, got {json_type(doc)}{hint}")
    if "raw" in doc and "orderId" not in doc:
        # A malformed line kept by an earlier run: it is still malformed until someone fixes it.
        raw = doc["raw"]
        raise RecordError(
            f"malformed in an earlier run ({doc.get('source')}: {doc.get('error')});"
            " fix its raw text and push it again",
            raw if isinstance(raw, str) else None,
        )
    check_names(list(doc), UPDATE_FIELDS)
    order_id = _string(doc, "orderId")
    invoice_number = _string(doc, "invoiceNumber")
    is_delivered = doc.get("isDelivered")
    if is_delivered is not None and not isinstance(is_delivered, bool):
        raise RecordError(f"isDelivered: expected true or false, got {json_type(is_delivered)}")
    delivered = doc.get("deliveredDate")
    if delivered is not None and not isinstance(delivered, str):
        raise RecordError(f"deliveredDate: expected a string or null, got {json_type(delivered)}")
    account_name = doc.get("accountName")
    if account_name is not None and not isinstance(account_name, str):
        raise RecordError(f"accountName: expected a string, got {json_type(account_name)}")
    for name in TRACKING_FIELDS:
        value = doc.get(name)
        if value is not None and not isinstance(value, str):
            raise RecordError(f"{name}: expected a string or null, got {json_type(value)}")
    tracking = make_tracking(doc)
    if "events" not in doc and tracking is not None:
        return make_update(
            order_id,
            invoice_number,
            None,
            bool(is_delivered),
            delivered_date(delivered, date_format=date_format),
            account_name,
            tracking,
        )
    if "events" not in doc:
        raise RecordError("events: required field missing")
    items = doc["events"]
    if not isinstance(items, list):
        raise RecordError(f"events: expected an array, got {json_type(items)}")
    events = []
    for n, item in enumerate(items):
        where = f"events[{n}]."
        if not isinstance(item, dict):
            raise RecordError(f"events[{n}]: expected an object, got {json_type(item)}")
        check_names(list(item), EVENT_FIELDS, where)
        city, state, description, date = (_string(item, name, where) for name in EVENT_FIELDS)
        events.append(make_event(city, state, description, date, where, date_format))
    return make_update(
        order_id,
        invoice_number,
        events,
        bool(is_delivered),
        delivered_date(delivered, date_format=date_format),
        account_name,
        tracking,
    )


def tracking_record(tracking: InvoiceTracking | None) -> dict[str, Any]:
    """The tracking number's input fields (none when there is no number)."""
    if tracking is None:
        return {}
    when = tracking.dispatched_date
    return {
        "trackingNumber": tracking.tracking_number,
        "trackingUrl": tracking.tracking_url,
        "courier": tracking.courier,
        "dispatchedDate": when.isoformat() if isinstance(when, dt.datetime) else when,
    }


def update_record(update: TrackingUpdate | TrackingNumberUpdate) -> dict[str, Any]:
    """An update in the JSONL input format (the wire body plus ``orderId``/``invoiceNumber``,
    and ``accountName`` when it names a store, and its tracking number's fields when it has
    one), so a failures file pushes again as it is.

    Built from the public models: the CLI's updates hold their dates as the strings read from
    the file, which is also exactly what goes on the wire.
    """
    account = {"accountName": update.account_name} if update.account_name is not None else {}
    ids = {**account, "orderId": update.order_id, "invoiceNumber": update.invoice_number}
    if isinstance(update, TrackingNumberUpdate):
        return {**ids, **tracking_record(update.tracking)}
    status = update.status
    return {
        **ids,
        **tracking_record(update.tracking),
        "isDelivered": status.is_delivered,
        "deliveredDate": _delivered_text(status.delivered_date),
        "events": [
            {
                "city": e.city,
                "state": e.state,
                "description": e.description,
                "date": e.date if isinstance(e.date, str) else e.date.isoformat(),
            }
            for e in status.events
        ],
    }


def _delivered_text(value: dt.datetime | str | None) -> str | None:
    # Files give strings; a program's datetime gets VTEX's format, as the SDK would send it.
    if isinstance(value, dt.datetime):
        return delivered_text(value)
    return value
