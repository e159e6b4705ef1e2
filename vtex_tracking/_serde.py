"""What the wire looks like: the one cattrs converter, with camelCase names, dates and orjson.

``encode_status`` is on the bulk engine's hot path: the unstructure functions are generated
once by cattrs, and orjson encodes the result in one call. The converter is built on first
use, not at import: importing cattrs and generating its functions was ~25 ms of
``import vtex_tracking``, paid by processes that never send (a CLI's ``--help``, a worker's
boot), while a call pays one cached lookup.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import orjson
from multidict import istr

from ._constants import DEFAULT_TIME_ZONE
from ._errors import REDACTED, find_request_id, holds_secret, redact, unexpected_body_error
from ._models import (
    DeliveredDate,
    DispatchedDate,
    EventDate,
    InvoiceTracking,
    TrackingEvent,
    TrackingReceipt,
    TrackingStatus,
)

if TYPE_CHECKING:
    import cattrs

    from ._read_back import CourierEvent, Order

__all__ = [
    "converter",
    "decode_receipt",
    "encode_invoice_tracking",
    "encode_status",
    "format_delivered_date",
]

#: As ``istr``, a ``CIMultiDict`` (aiohttp's headers) finds it without folding its case on
#: each look-up (half the cost); any other mapping sees the plain string.
_CONTENT_TYPE = istr("Content-Type")


@functools.cache
def _store_zone() -> dt.tzinfo:
    """Brasília's zone, built on first use: most pushes never send an aware datetime, and
    ``zoneinfo`` is left out of ``import vtex_tracking``."""
    from zoneinfo import ZoneInfo

    return ZoneInfo(DEFAULT_TIME_ZONE)


def format_event_date(value: EventDate) -> str:
    """Put an event date on the wire: a date as ``YYYY-MM-DD``, a datetime as ISO 8601."""
    if isinstance(value, str):
        return value
    return value.isoformat()


def format_delivered_date(value: DeliveredDate) -> str | None:
    """Put ``deliveredDate`` on the wire in VTEX's ``yyyy-mm-dd hh:mm``: a naive datetime as
    it is, an aware one as Brasília wall-clock time (clients convert to their ``Checks``'
    zone before this)."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(_store_zone())
    return delivered_text(value)


def delivered_text(value: dt.datetime) -> str:
    """``yyyy-mm-dd hh:mm`` (``strftime("%Y")`` drops a year's leading zeros on glibc: the
    year 999 came out as "999", a form VTEX does not take)."""
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}"


def format_dispatched_date(value: DispatchedDate) -> str | None:
    """Put ``dispatchedDate`` on the wire: ISO 8601 with its offset (``Checks`` gives a naive
    datetime its time zone before this; one still naive is sent without an offset)."""
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def _keep_wire_value(value: Any, _: Any) -> Any:
    # Dates arrive as strings and stay strings: they were "sent as given" by someone.
    return value


def _strict_str(value: Any, _: Any) -> str:
    # cattrs would turn null or 42 into "None" or "42"; a wire string must be a string.
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _courier_events(value: Any, _: Any) -> tuple[CourierEvent, ...]:
    # VTEX sends null for "no events yet".
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    from ._read_back import CourierEvent

    return tuple(converter().structure(item, CourierEvent) for item in value)


def _receipt_body() -> type[Any]:
    """The class of the documented JSON of a 200 answer (the HTTP details are added by
    ``decode_receipt``), made with the converter rather than at import."""

    # Mutable: it never leaves ``decode_receipt``, and a frozen class's ``__init__`` pays a
    # call of ``object.__setattr__`` per field (~1,000 instructions each).
    @attrs.define
    class _ReceiptBody:
        date: str
        order_id: str
        receipt: str

    return _ReceiptBody


def _build_converter(receipt_body: type[Any]) -> cattrs.Converter:
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
    from cattrs.preconf.orjson import make_converter

    from ._read_back import CourierEvent, CourierStatus, Package

    conv = make_converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _strict_str)
    # The event date union (date | datetime | str) and delivered date are formatted here,
    # in the one converter, rather than by methods scattered over the models.
    conv.register_structure_hook(EventDate, _keep_wire_value)
    conv.register_structure_hook(DeliveredDate, _keep_wire_value)

    conv.register_unstructure_hook(
        TrackingEvent,
        make_dict_unstructure_fn(
            TrackingEvent, conv, date=override(unstruct_hook=format_event_date)
        ),
    )
    conv.register_structure_hook(
        TrackingEvent,
        make_dict_structure_fn(TrackingEvent, conv, date=override(struct_hook=_keep_wire_value)),
    )
    is_delivered = override(rename="isDelivered")
    delivered_date = override(
        rename="deliveredDate", unstruct_hook=format_delivered_date, struct_hook=_keep_wire_value
    )
    unstructure_event = conv.get_unstructure_hook(TrackingEvent)

    def unstructure_events(events: tuple[TrackingEvent, ...]) -> list[Any]:
        # What cattrs' hook for the tuple does, without resuming a generator per event.
        return [unstructure_event(event) for event in events]

    conv.register_unstructure_hook(
        TrackingStatus,
        make_dict_unstructure_fn(
            TrackingStatus,
            conv,
            events=override(unstruct_hook=unstructure_events),
            is_delivered=is_delivered,
            delivered_date=delivered_date,
        ),
    )
    conv.register_structure_hook(
        TrackingStatus,
        make_dict_structure_fn(
            TrackingStatus, conv, is_delivered=is_delivered, delivered_date=delivered_date
        ),
    )
    # The PATCH's four fields are all required by VTEX's contract (three may be null): the
    # unstructured dict always has every key.
    conv.register_unstructure_hook(
        InvoiceTracking,
        make_dict_unstructure_fn(
            InvoiceTracking,
            conv,
            tracking_number=override(rename="trackingNumber"),
            tracking_url=override(rename="trackingUrl"),
            dispatched_date=override(
                rename="dispatchedDate", unstruct_hook=format_dispatched_date
            ),
        ),
    )
    conv.register_structure_hook(DispatchedDate, _keep_wire_value)
    conv.register_structure_hook(
        InvoiceTracking,
        make_dict_structure_fn(
            InvoiceTracking,
            conv,
            tracking_number=override(rename="trackingNumber"),
            tracking_url=override(rename="trackingUrl"),
            dispatched_date=override(rename="dispatchedDate", struct_hook=_keep_wire_value),
        ),
    )
    # An order as VTEX returns it: camelCase, most fields optional or null, many ignored.
    conv.register_structure_hook(
        CourierEvent,
        make_dict_structure_fn(
            CourierEvent,
            conv,
            date=override(rename="createDate"),
            last_change=override(rename="lastChange"),
        ),
    )
    conv.register_structure_hook(
        CourierStatus,
        make_dict_structure_fn(
            CourierStatus,
            conv,
            delivered_date=override(rename="deliveredDate"),
            events=override(rename="data", struct_hook=_courier_events),
        ),
    )
    conv.register_structure_hook(
        Package,
        make_dict_structure_fn(
            Package,
            conv,
            invoice_number=override(rename="invoiceNumber"),
            tracking_number=override(rename="trackingNumber"),
            tracking_url=override(rename="trackingUrl"),
            courier_status=override(rename="courierStatus"),
            issuance_date=override(rename="issuanceDate"),
        ),
    )
    conv.register_structure_hook(
        receipt_body,
        make_dict_structure_fn(receipt_body, conv, order_id=override(rename="orderId")),
    )
    return conv


class _Wire:
    """The converter and the generated functions of the hot path, looked up once: calling
    them directly skips cattrs' per-call dispatch (a few microseconds per request)."""

    __slots__ = (
        "converter",
        "receipt_body",
        "structure_receipt",
        "unstructure_invoice_tracking",
        "unstructure_status",
    )

    def __init__(self) -> None:
        from cattrs.gen import make_dict_structure_fn, override

        self.receipt_body = _receipt_body()
        self.converter = conv = _build_converter(self.receipt_body)
        self.unstructure_status: Callable[[TrackingStatus], Any] = conv.get_unstructure_hook(
            TrackingStatus
        )
        self.unstructure_invoice_tracking: Callable[[InvoiceTracking], Any] = (
            conv.get_unstructure_hook(InvoiceTracking)
        )
        # Without cattrs' detailed validation: a valid receipt (every receipt but a broken
        # proxy's) skips its bookkeeping, half the hook's cost. A receipt this one refuses
        # is structured again by the converter's own, detailed hook, which says what is wrong.
        self.structure_receipt: Callable[[Any, type[Any]], Any] = make_dict_structure_fn(
            self.receipt_body,
            conv,
            _cattrs_detailed_validation=False,
            order_id=override(rename="orderId"),
        )


@functools.cache
def _wire() -> _Wire:
    """Built on the first call (two threads racing there may both build one: equivalent)."""
    return _Wire()


def prepare_wire() -> None:
    """Build the converter now, if it is not built yet (a client does when it is made)."""
    _wire()


def converter() -> cattrs.Converter:
    """The SDK's single converter between models and wire dicts (built on first use)."""
    return _wire().converter


def _validation_error() -> type[BaseException]:
    """cattrs' error for a document of the wrong shape, for ``except`` clauses: they evaluate
    it only when something was raised, after the converter (hence cattrs) is loaded."""
    import cattrs

    return cattrs.BaseValidationError


def encode_status(status: TrackingStatus) -> bytes:
    """Serialize a request body to the JSON bytes VTEX expects."""
    return orjson.dumps(_wire().unstructure_status(status))


def encode_invoice_tracking(tracking: InvoiceTracking) -> bytes:
    """Serialize the PATCH's body (``trackingNumber``, ``trackingUrl``, ``courier``,
    ``dispatchedDate``) to JSON bytes."""
    return orjson.dumps(_wire().unstructure_invoice_tracking(tracking))


def decode_invoice_tracking(payload: bytes) -> InvoiceTracking:
    """Parse a PATCH body (the inverse of ``encode_invoice_tracking``)."""
    return converter().structure(orjson.loads(payload), InvoiceTracking)


def decode_order(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    order_id: str,
    attempts: int,
    secrets: Sequence[str] = (),
) -> Order:
    """Parse VTEX's "Get order" answer into an ``Order`` (packages typed, the rest in
    ``raw``); a body that is not an order raises ``UnexpectedResponseError``."""
    from ._read_back import Order, Package

    request_id = find_request_id(headers)

    def fail(problem: str) -> Exception:
        return unexpected_body_error(
            status_code, headers, body, problem, order_id=order_id, invoice_number=None,
            attempts=attempts, secrets=secrets,
        )  # fmt: skip

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise fail("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise fail(f"the body is a JSON {type(doc).__name__}, not an order")
    packages: Any = (doc.get("packageAttachment") or {}).get("packages") or []
    try:
        if not isinstance(packages, list):
            raise TypeError("packageAttachment.packages is not a list")
        conv = converter()
        typed = tuple(conv.structure(p, Package) for p in packages)
        status = doc.get("status")
        return Order(
            order_id=str(doc.get("orderId") or order_id),
            status=status if isinstance(status, str) else None,
            packages=typed,
            raw=doc,
            request_id=request_id,
        )
    except (TypeError, ValueError, KeyError, _validation_error()) as exc:
        raise fail(f"its packages are not VTEX's shape ({exc})") from None


def decode_status(payload: bytes) -> TrackingStatus:
    """Parse a request body (the inverse of ``encode_status``); dates come back as strings."""
    return converter().structure(orjson.loads(payload), TrackingStatus)


def decode_receipt(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    request_id: str | None,
    order_id: str,
    invoice_number: str,
    attempts: int,
    secrets: Sequence[str] = (),
) -> TrackingReceipt:
    """Turn a 2xx answer into a receipt, or raise ``UnexpectedResponseError`` saying why not.

    A receipt is a confirmation only when it is about this update: an ``error`` object, or
    an ``orderId`` other than the one sent (a proxy's cached answer, another request's), is
    not one, whatever the status. ``secrets`` (the client's credentials) are redacted from
    the receipt and the error alike, in case something on the way echoes the request."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = "the body is empty" if not body.strip() else f"the body is not JSON ({exc})"
        raise unexpected_body_error(
            status_code,
            headers,
            body,
            problem,
            order_id=order_id,
            invoice_number=invoice_number,
            attempts=attempts,
            secrets=secrets,
        ) from None
    if not isinstance(doc, dict):
        problem = f"the JSON body is a {type(doc).__name__}, not the receipt object"
        raise unexpected_body_error(
            status_code,
            headers,
            body,
            problem,
            order_id=order_id,
            invoice_number=invoice_number,
            attempts=attempts,
            secrets=secrets,
        )
    refusal = _not_a_confirmation(doc, order_id)
    if refusal is not None:
        for secret in secrets:
            refusal = refusal.replace(secret, REDACTED)
        raise unexpected_body_error(
            status_code,
            headers,
            body,
            refusal,
            order_id=order_id,
            invoice_number=invoice_number,
            attempts=attempts,
            secrets=secrets,
        )
    wire = _wire()
    try:
        parsed = wire.structure_receipt(doc, wire.receipt_body)
    except Exception:
        # The fast hook stops at the first problem with a bare error; the converter's
        # detailed one finds the same problems and names each.
        try:
            parsed = wire.converter.structure(doc, wire.receipt_body)
        except _validation_error() as exc:
            import cattrs

            details = "; ".join(cattrs.transform_error(exc, path="receipt"))
            raise unexpected_body_error(
                status_code,
                headers,
                body,
                f"the receipt does not match VTEX's schema ({details})",
                order_id=order_id,
                invoice_number=invoice_number,
                attempts=attempts,
                secrets=secrets,
            ) from None
    if secrets and holds_secret(headers, body, secrets):
        headers, body = redact(headers, body, secrets)
    # Positional, in the fields' order (date, order_id, receipt, status_code, attempts,
    # request_id, content_type, headers, content): a class called with keywords gathers
    # them into a dict first (~4,000 instructions).
    return TrackingReceipt(
        parsed.date,
        parsed.order_id,
        parsed.receipt,
        status_code,
        attempts,
        request_id,
        headers.get(_CONTENT_TYPE, ""),
        headers,
        body,
    )


def _not_a_confirmation(doc: Mapping[str, Any], order_id: str) -> str | None:
    """Why a 2xx JSON body does not confirm the update sent for ``order_id``, or None."""
    error = doc.get("error")
    if error:
        return f"the body carries an error ({_short(orjson.dumps(error))}), not a receipt"
    answered = doc.get("orderId")
    if isinstance(answered, str) and answered != order_id:
        return (
            f"the receipt names order {answered!r}, not the order sent: it does not confirm"
            " this update"
        )
    return None


def _short(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."
