"""The values users build and receive, validated when they are constructed.

A bad value fails here, naming its field, long before a request is made: VTEX's own answers
to bad input are terse and arrive one network round trip later.

What is read back (``_read_back``) and what a push or ``metrics()`` reports (``_reports``) live
apart, imported on first use; their names are still found here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._constants import MAX_DESCRIPTION_CHARS
from ._dates import delivered_date_problem, event_date_problem
from ._errors import ValidationError

if TYPE_CHECKING:
    from ._read_back import CourierEvent as CourierEvent
    from ._read_back import CourierStatus as CourierStatus
    from ._read_back import Order as Order
    from ._read_back import Package as Package
    from ._reports import AccountMetrics as AccountMetrics
    from ._reports import AccountSummary as AccountSummary
    from ._reports import PushResult as PushResult
    from ._reports import PushSummary as PushSummary

#: Classes that moved out of this module, still found here (``from ._models import
#: PushResult``): the module that defines each, imported on first use.
_MOVED = {
    "AccountMetrics": "._reports",
    "AccountSummary": "._reports",
    "CourierEvent": "._read_back",
    "CourierStatus": "._read_back",
    "Order": "._read_back",
    "Package": "._read_back",
    "PushResult": "._reports",
    "PushSummary": "._reports",
}

#: What an event's ``date`` accepts: a date (sent ``YYYY-MM-DD``), a datetime (ISO 8601),
#: or a string sent as given.
EventDate = dt.date | dt.datetime | str
#: What ``delivered_date`` accepts: a datetime (sent ``yyyy-mm-dd hh:mm``), a string, or None.
DeliveredDate = dt.datetime | str | None
#: What ``dispatched_date`` accepts: a datetime (sent ISO 8601 with its offset; a naive one is
#: taken in the client's ``Checks.time_zone``), an ISO 8601 string, or None.
DispatchedDate = dt.datetime | str | None

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _where(instance: object, attribute: attrs.Attribute[Any]) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def _non_empty_text(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ValidationError(
            _where(instance, attribute), f"expected a string, got {type(value).__name__}"
        )
    if not value.strip():
        raise ValidationError(_where(instance, attribute), "must not be empty")


def _description(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _non_empty_text(instance, attribute, value)
    assert isinstance(value, str)
    if len(value) > MAX_DESCRIPTION_CHARS:
        raise ValidationError(
            _where(instance, attribute),
            f"VTEX accepts at most {MAX_DESCRIPTION_CHARS} characters, got {len(value)}",
        )


def _path_segment(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_order_id(value, _where(instance, attribute))


def check_order_id(value: object, field: str = "order_id") -> None:
    """Raise ``ValidationError`` naming ``field`` unless ``value`` can be an order id (or an
    invoice number): one URL path segment. Control characters could split the request line;
    surrounding whitespace made VTEX answer 500 (a known VTEX issue)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if _CONTROL_CHARS.search(value):
        raise ValidationError(field, "must not contain control characters")
    if value != value.strip():
        raise ValidationError(field, "must not start or end with whitespace")


_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _account(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # Account names become host names: one DNS label, nothing an attacker could steer.
    if value is None:
        return
    if not isinstance(value, str) or not _ACCOUNT_NAME.match(value):
        raise ValidationError(
            _where(instance, attribute),
            f"expected a VTEX account name (letters, digits, '-'), got {value!r}",
        )


def _event_date(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str):
        problem = event_date_problem(value)
        if problem is not None:
            raise ValidationError(_where(instance, attribute), problem)
    elif not isinstance(value, dt.date):
        raise ValidationError(
            _where(instance, attribute),
            f"expected a date, a datetime or a string, got {type(value).__name__}",
        )


def _delivered_date(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, dt.datetime):
        return
    if isinstance(value, str):
        problem = delivered_date_problem(value)
        if problem is not None:
            raise ValidationError(_where(instance, attribute), problem)
    elif isinstance(value, dt.date):
        raise ValidationError(
            _where(instance, attribute),
            "expected a datetime (VTEX wants 'yyyy-mm-dd hh:mm'), got a date without a time",
        )
    else:
        raise ValidationError(
            _where(instance, attribute),
            f"expected a datetime, a string or None, got {type(value).__name__}",
        )


def _optional_text(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    _non_empty_text(instance, attribute, value)
    assert isinstance(value, str)
    if _CONTROL_CHARS.search(value):
        raise ValidationError(_where(instance, attribute), "must not contain control characters")


def _tracking_url(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # The "shipping update" e-mail links to it: a URL without its scheme is not a link.
    _optional_text(instance, attribute, value)
    if isinstance(value, str) and not re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
        raise ValidationError(
            _where(instance, attribute),
            f"expected an http(s) URL (the shipping e-mail links to it), got {value!r}",
        )


def _dispatched_date(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, dt.datetime):
        return
    if isinstance(value, str):
        if parse_vtex_timestamp(value) is None:
            raise ValidationError(
                _where(instance, attribute),
                f"expected an ISO 8601 date and time (2026-11-02T14:30:00-03:00), got {value!r}",
            )
        return
    if isinstance(value, dt.date):
        raise ValidationError(
            _where(instance, attribute), "expected a datetime, got a date without a time"
        )
    raise ValidationError(
        _where(instance, attribute),
        f"expected a datetime, an ISO 8601 string or None, got {type(value).__name__}",
    )


def _invoice_tracking(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, InvoiceTracking):
        raise ValidationError(
            _where(instance, attribute), f"expected an InvoiceTracking, got {type(value).__name__}"
        )


def _strict_bool(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ValidationError(
            _where(instance, attribute), f"expected True or False, got {type(value).__name__}"
        )


def _events_tuple(value: Sequence[TrackingEvent]) -> tuple[TrackingEvent, ...]:
    # Stored as a tuple so a status is immutable and hashable; other iterables are left
    # as they are for the validator to reject with a clear message.
    return tuple(value) if isinstance(value, list) else value  # type: ignore[return-value]


def _events(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple):
        raise ValidationError(
            _where(instance, attribute),
            f"expected a list of TrackingEvent, got {type(value).__name__}",
        )
    for index, event in enumerate(value):
        if not isinstance(event, TrackingEvent):
            raise ValidationError(
                f"{_where(instance, attribute)}[{index}]",
                f"expected a TrackingEvent, got {type(event).__name__}",
            )


def _status(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, TrackingStatus):
        raise ValidationError(
            _where(instance, attribute), f"expected a TrackingStatus, got {type(value).__name__}"
        )


@attrs.frozen
class TrackingEvent:
    """One step of a parcel's journey, e.g. ``TrackingEvent("Recife", "PE", "Saiu para entrega",
    date(2026, 11, 23))``."""

    city: str = attrs.field(validator=_non_empty_text)
    state: str = attrs.field(validator=_non_empty_text)
    description: str = attrs.field(validator=_description)
    date: EventDate = attrs.field(validator=_event_date)


@attrs.frozen
class TrackingStatus:
    """The request body: an invoice's whole event history, and whether it was delivered.

    VTEX replaces the invoice's tracking with each update, so send every event each time.
    """

    events: tuple[TrackingEvent, ...] = attrs.field(converter=_events_tuple, validator=_events)
    is_delivered: bool = attrs.field(default=False, validator=_strict_bool)
    delivered_date: DeliveredDate = attrs.field(default=None, validator=_delivered_date)


@attrs.frozen
class InvoiceTracking:
    """An invoice's tracking number, and where and by whom the parcel can be followed.

    The carrier sends it first (``send_tracking_number``): VTEX shows tracking events, and
    sends its "shipping update" e-mail, only for an invoice that carries a tracking number
    (and URL). Sending it again sets the same fields: harmless.
    """

    tracking_number: str = attrs.field(validator=_non_empty_text)
    tracking_url: str | None = attrs.field(default=None, validator=_tracking_url)
    courier: str | None = attrs.field(default=None, validator=_optional_text)
    dispatched_date: DispatchedDate = attrs.field(default=None, validator=_dispatched_date)


@attrs.frozen
class TrackingUpdate:
    """One call's input: which order and invoice, and the status to send.

    ``key`` identifies the invoice; the bulk engine never sends two updates with one key at once.
    In a push, ``tracking`` (optional) is the invoice's tracking number, sent first (VTEX's
    PATCH of the invoice), then the events: VTEX shows events only on an invoice that carries
    a tracking number. A push's item with only a number is a ``TrackingNumberUpdate``.
    """

    order_id: str = attrs.field(validator=_path_segment)
    invoice_number: str = attrs.field(validator=_path_segment)
    status: TrackingStatus = attrs.field(validator=_status)
    #: The VTEX store (account) it goes to; None: the client's own account.
    account_name: str | None = attrs.field(default=None, kw_only=True, validator=_account)
    #: The invoice's tracking number, sent before the events in a push (None: not sent).
    tracking: InvoiceTracking | None = attrs.field(
        default=None, kw_only=True, validator=attrs.validators.optional(_invoice_tracking)
    )

    @property
    def key(self) -> tuple[str, str]:
        """The invoice this update belongs to: ``(order_id, invoice_number)``."""
        return (self.order_id, self.invoice_number)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any], *, date_format: str = "iso") -> TrackingUpdate:
        """An update from VTEX's body plus ``orderId`` and ``invoiceNumber`` (a CLI JSONL
        line), with the CLI's checks (``parse_update``); a line without events raises."""
        from ._read import parse_update

        update = parse_update(doc, date_format=date_format)
        if not isinstance(update, TrackingUpdate):
            raise ValidationError("events", "required field missing (a number alone is a"
                                  " TrackingNumberUpdate: parse_update reads either)")  # fmt: skip
        return update


@attrs.frozen
class TrackingNumberUpdate:
    """One call's input for the tracking number: which order and invoice, and its
    ``InvoiceTracking`` (VTEX's PATCH of the invoice)."""

    order_id: str = attrs.field(validator=_path_segment)
    invoice_number: str = attrs.field(validator=_path_segment)
    tracking: InvoiceTracking = attrs.field(validator=_invoice_tracking)
    #: The VTEX store (account) it goes to; None: the client's own account.
    account_name: str | None = attrs.field(default=None, kw_only=True, validator=_account)

    @property
    def key(self) -> tuple[str, str]:
        """The invoice this update belongs to: ``(order_id, invoice_number)``."""
        return (self.order_id, self.invoice_number)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> TrackingNumberUpdate:
        """A tracking number from its input fields (``orderId``, ``invoiceNumber``,
        ``trackingNumber``, ``trackingUrl``, ``courier``, ``dispatchedDate``, optional
        ``accountName``), with the CLI's checks; a line with events raises."""
        from ._read import parse_update

        update = parse_update(doc)
        if not isinstance(update, TrackingNumberUpdate):
            raise ValidationError("events", "not expected: events make a TrackingUpdate")
        return update


#: Either kind of item a push sends: events (with a tracking number or not), or a number alone.
AnyUpdate = TrackingUpdate | TrackingNumberUpdate


@attrs.frozen
class TrackingReceipt:
    """VTEX's 200 answer, with the HTTP details that came with it.

    ``date`` is kept as VTEX sent it (7 fractional digits and an offset, which
    ``datetime.fromisoformat`` rejects on Python 3.10); ``timestamp`` parses it.
    """

    date: str
    order_id: str
    receipt: str
    status_code: int = 200
    attempts: int = 1
    request_id: str | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)
    content: bytes = attrs.field(default=b"", eq=False, repr=False)

    @property
    def timestamp(self) -> dt.datetime | None:
        """``date`` as an aware datetime, or None if VTEX sent something unparseable."""
        return parse_vtex_timestamp(self.date)


_VTEX_TIMESTAMP = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<fraction>\d+))?(?P<offset>Z|[+-]\d{2}:?\d{2})?$"
)


def parse_vtex_timestamp(value: str) -> dt.datetime | None:
    """Parse VTEX's timestamps (any number of fractional digits, ``Z`` or an offset)."""
    match = _VTEX_TIMESTAMP.match(value.strip())
    if match is None:
        return None
    text = match["base"].replace(" ", "T")
    if match["fraction"]:
        text += "." + match["fraction"][:6].ljust(6, "0")
    offset = match["offset"]
    if offset:
        if offset == "Z":
            offset = "+00:00"
        elif ":" not in offset:
            offset = f"{offset[:3]}:{offset[3:]}"
        text += offset
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.timezone.utc)


if not TYPE_CHECKING:  # type checkers see the imports above

    def __getattr__(name: str) -> object:
        module = _MOVED.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        return getattr(import_module(module, __package__), name)
