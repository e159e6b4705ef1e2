"""The values users build and receive, validated when they are constructed.

A bad value fails here, naming its field, long before a request is made: VTEX's own answers
to bad input are terse and arrive one network round trip later.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._constants import MAX_DESCRIPTION_CHARS
from ._dates import delivered_date_problem, event_date_problem
from ._errors import ValidationError

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
class CourierEvent:
    """One tracking event as VTEX holds it (``courierStatus.data[]`` of the order's package):
    the fields are VTEX's, as it sent them (dates are its ISO 8601 strings)."""

    city: str | None = None
    state: str | None = None
    description: str | None = None
    #: When the event happened (VTEX's ``createDate``).
    date: str | None = None
    last_change: str | None = None


@attrs.frozen
class CourierStatus:
    """A package's tracking as VTEX holds it (``courierStatus``): ``finished`` once VTEX
    counts it delivered."""

    status: str | None = None
    finished: bool | None = None
    delivered_date: str | None = None
    events: tuple[CourierEvent, ...] = ()


@attrs.frozen
class Package:
    """One invoiced package of an order as VTEX holds it (``packageAttachment.packages[]``):
    the invoice, its tracking number, URL and courier, and its events."""

    invoice_number: str
    tracking_number: str | None = None
    tracking_url: str | None = None
    courier: str | None = None
    courier_status: CourierStatus | None = None
    #: ``Output`` (a sale) or ``Input`` (a return).
    type: str | None = None
    issuance_date: str | None = None

    @property
    def events(self) -> tuple[CourierEvent, ...]:
        """The tracking events VTEX holds for this invoice (none without a status)."""
        return self.courier_status.events if self.courier_status is not None else ()


@attrs.frozen
class Order:
    """An order as VTEX's "Get order" returns it, typed where tracking needs it (``packages``)
    and whole in ``raw`` (the parsed JSON). VTEX shows writes in reads after a few seconds."""

    order_id: str
    status: str | None = None
    packages: tuple[Package, ...] = ()
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    request_id: str | None = attrs.field(default=None, eq=False)

    def package(self, invoice_number: str) -> Package | None:
        """The package of ``invoice_number``, or None when the order has no such invoice."""
        for package in self.packages:
            if package.invoice_number == invoice_number:
                return package
        return None


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


@attrs.frozen
class PushResult:
    """The outcome of one item handed to a bulk push: exactly one per input item.

    ``update`` is the item as given (not necessarily a valid ``TrackingUpdate``), ``index`` its
    0-based position in the input. Exactly one of ``receipt`` and ``error`` is set, except for
    an update that was not sent because VTEX already has it (``skipped``):

    * ``"already_done"``: the push's ``journal`` says an earlier run had it (or a later update
      of its invoice) confirmed;
    * ``"unchanged"``: its body is the one VTEX last confirmed for its invoice
      (``skip_unchanged``);
    * ``"superseded"``: a newer update of its invoice replaced it while it waited
      (``merge_snapshots``); ``superseded_by`` is that update's index, and ``receipt`` or
      ``error`` are that update's.
    """

    index: int
    update: Any
    receipt: TrackingReceipt | None = None
    error: Exception | None = None
    attempts: int = 0
    #: The store it went to (the client's own account unless the update named another).
    account: str | None = None
    #: Why it was not sent itself: ``"already_done"``, ``"unchanged"``, ``"superseded"``.
    skipped: str | None = None
    #: The index of the update that carried its data (``skipped == "superseded"``).
    superseded_by: int | None = None
    #: Indexes of earlier updates of its invoice in this push that failed, made moot by this
    #: one: VTEX holds this newer update now, so resending them would roll the invoice back
    #: (``PushSummary.failures`` and the CLI's failures file leave them out).
    supersedes: tuple[int, ...] = ()
    #: What VTEX confirmed for this item in this push, in the order sent: ``"tracking_number"``
    #: (the invoice's PATCH), ``"events"`` (the tracking PUT). A part skipped because VTEX
    #: already has it is not in it; after a failure, the parts confirmed before it are.
    sent: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when VTEX confirmed the update (or already had it: ``skipped``)."""
        return self.receipt is not None or (self.skipped is not None and self.error is None)

    @property
    def status_code(self) -> int | None:
        """The HTTP status of the last answer, or None when there was none."""
        if self.receipt is not None:
            return self.receipt.status_code
        return getattr(self.error, "status_code", None)

    @property
    def outcome(self) -> str:
        """A short label for counting: ``"200"``, ``"429"``, ``"TransportError"``, ``"invalid"``,
        ``"already_done"``…"""
        if self.skipped is not None:
            return self.skipped
        if self.receipt is not None:
            return str(self.receipt.status_code)
        status = self.status_code
        if status is not None:
            return str(status)
        if isinstance(self.error, ValueError):
            return "invalid"
        reason = getattr(self.error, "reason", None)
        if isinstance(reason, str):
            return reason
        return type(self.error).__name__


@attrs.frozen
class AccountSummary:
    """One store's totals within a push: updates, requests, 429/503 throttles, and
    ``elapsed_s`` from the start of the push to the store's last result."""

    total: int
    succeeded: int
    failed: int
    requests: int
    throttled: int
    elapsed_s: float
    #: Why the store's remaining updates were not sent: ``"auth"`` (a refused key),
    #: ``"unreachable"`` (no connection could be made), or None.
    stopped: str | None = None

    @property
    def throughput(self) -> float:
        """Confirmed updates per second for this store."""
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0


@attrs.frozen
class AccountMetrics:
    """One account's counters since the client was made (single calls and pushes alike), and
    its pace right now: what ``client.metrics()`` returns for a metrics system to read."""

    account: str
    #: Requests sent (attempts, retries included).
    requests: int
    #: Of those, retries of an earlier attempt.
    retries: int
    #: Answers 2xx.
    confirmed: int
    #: Answers 429 or 503 (VTEX's rate limit or circuit breaker).
    throttled: int
    #: Other answers (4xx, 5xx).
    errors: int
    #: Attempts that got no answer (connection errors, timeouts, cancellations).
    no_answer: int
    #: Seconds single calls and retries waited for their turn in the account's pace.
    pace_wait_s: float
    #: Requests in flight now, and how many the account's window allows.
    in_flight: int
    window: int
    #: Requests per second the pace allows now (learned or set); None: no limit.
    rate: float | None
    #: Moving average of the account's round trips, in seconds (0: none yet).
    rtt_s: float
    #: Whether the account is cooling down after refused credentials.
    auth_stopped: bool
    #: ``"shared"`` while its pace is shared through Redis, ``"local"`` while Redis does not
    #: answer (this process paces it alone meanwhile), None without ``shared_pace``.
    shared_pace: str | None = None


@attrs.frozen
class PushSummary:
    """Totals of a finished bulk push (``push_all``); ``by_account`` per store.
    ``failures`` are the failed results worth resending, in the order they arrived."""

    total: int
    succeeded: int
    failed: int
    by_outcome: Mapping[str, int]
    elapsed_s: float
    failures: tuple[PushResult, ...] = attrs.field(repr=False)
    requests: int = 0
    by_account: Mapping[str, AccountSummary] = attrs.field(factory=dict, repr=False)
    #: Failed updates left out of ``failures`` because a later update of their invoice was
    #: confirmed in the same push (``PushResult.supersedes``): resending them would roll the
    #: invoice back. They still count in ``failed``.
    superseded_failures: int = 0

    @property
    def throughput(self) -> float:
        """Confirmed updates per second."""
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every update was confirmed."""
        return self.failed == 0
