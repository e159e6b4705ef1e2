"""What an invoice's tracking history is made of, and how a checkpoint joins it: the rules
``TrackingHistory`` and ``status_from_events`` share, with no storage in sight.

* **Identity**: two events are the same event when their date as sent (``2026-11-02`` for
  ``date(2026, 11, 2)``), city, state and description are equal once Unicode is normalised
  (NFC) and runs of whitespace are one space. Case counts: "Entregue" and "ENTREGUE" are two
  events (a carrier that repeats a checkpoint repeats it byte for byte).
* **Order**: by date, oldest first; a datetime is compared in UTC (one without offset as if
  in UTC), a date as its midnight, a string in ISO 8601 as what it says, and a string that is
  no date after every dated event, by its text. Equal dates keep the order the events became
  known in (known events first, then a checkpoint's in its own order): VTEX's ``date`` is a
  day, so give datetimes to order the events of one day whatever order they arrive in.
* **Never shrinking**: merging only adds events; ``is_delivered`` once true stays true.
* **Returned to sender**: VTEX has no such state, and ``isDelivered: true`` would tell the
  shopper the parcel arrived. ``check_not_returned`` refuses a delivered status whose
  invoice was returned (an explicit flag, or an event whose description says so).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import orjson

from ._errors import ValidationError
from ._models import DeliveredDate, EventDate, TrackingEvent, TrackingStatus, parse_vtex_timestamp
from ._public import present_lazy
from ._serde import format_event_date

__all__ = [
    "RETURNED_PHRASES",
    "CorruptHistoryError",
    "Known",
    "as_events",
    "check_not_returned",
    "decode",
    "encode",
    "merge",
    "returned_event",
    "status_from_events",
]

#: Phrases that mark an event as a return to the sender (pt-BR, en, es), matched in the
#: description without regard to case or accents. A hint only: ``returned=True`` is the
#: robust way to say it, and ``returned=False`` vouches that no event is a return.
RETURNED_PHRASES = (
    "ao remetente",
    "para o remetente",
    "devolvido",
    "devolvida",
    "em devolucao",
    "returned to sender",
    "return to sender",
    "returned to shipper",
    "return to shipper",
    "al remitente",
    "devuelto",
    "devuelta",
    "en devolucion",
)
_STORED_FORMAT = 1


class CorruptHistoryError(ValueError):
    """A stored history that cannot be read back (damaged, hand-written, another format)."""


@attrs.frozen
class Known:
    """What a store keeps per invoice: its events in order, and what they add up to."""

    events: tuple[TrackingEvent, ...] = ()
    delivered: bool = False
    delivered_date: DeliveredDate = None
    returned: bool = False

    def status(self) -> TrackingStatus:
        """The body to push: the whole history."""
        return TrackingStatus(self.events, self.delivered, self.delivered_date)


def _plain(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _identity(event: TrackingEvent) -> tuple[str, str, str, str]:
    return (
        _plain(format_event_date(event.date)),
        _plain(event.city),
        _plain(event.state),
        _plain(event.description),
    )


def _when(value: EventDate) -> tuple[int, Any]:
    """The sort key of an event date (see the module's docstring)."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime.combine(value, dt.time())
    else:
        parsed = parse_vtex_timestamp(value)
        if parsed is None:
            try:
                parsed = dt.datetime.combine(dt.date.fromisoformat(value.strip()), dt.time())
            except ValueError:
                return (1, value)
        when = parsed
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (0, when)


def as_events(value: object, field: str) -> tuple[TrackingEvent, ...]:
    """``value`` (one ``TrackingEvent``, a ``TrackingStatus`` or an iterable of events) as a
    tuple of events; anything else raises ``ValidationError`` naming ``field``."""
    if isinstance(value, TrackingEvent):
        return (value,)
    if isinstance(value, TrackingStatus):
        return value.events
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ValidationError(
            field, f"expected a TrackingEvent or a list of them, got {type(value).__name__}"
        )
    events = tuple(value)
    for index, event in enumerate(events):
        if not isinstance(event, TrackingEvent):
            raise ValidationError(
                f"{field}[{index}]", f"expected a TrackingEvent, got {type(event).__name__}"
            )
    return events


def merge(
    known: Sequence[TrackingEvent], new: Iterable[TrackingEvent]
) -> tuple[TrackingEvent, ...]:
    """``known`` plus the events of ``new`` it lacks, ordered by date (stable)."""
    seen = {_identity(event) for event in known}
    added = []
    for event in new:
        identity = _identity(event)
        if identity not in seen:
            seen.add(identity)
            added.append(event)
    if not added:
        return tuple(known)
    return tuple(sorted([*known, *added], key=lambda event: _when(event.date)))


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def returned_event(events: Iterable[TrackingEvent]) -> TrackingEvent | None:
    """The first event whose description says the parcel went back to the sender
    (``RETURNED_PHRASES``), or None."""
    for event in events:
        description = _folded(event.description)
        if any(phrase in description for phrase in RETURNED_PHRASES):
            return event
    return None


def check_not_returned(
    events: Sequence[TrackingEvent],
    *,
    is_delivered: bool,
    returned: bool | None,
    field: str = "TrackingStatus.is_delivered",
) -> None:
    """Raise ``ValidationError`` naming ``field`` when a delivered status belongs to an
    invoice returned to sender: ``returned=True``, or (``returned=None``) an event saying so.
    ``returned=False`` vouches that none is a return (the descriptions are not read)."""
    if not is_delivered or returned is False:
        return
    remedy = (
        ": VTEX has no 'returned to sender' state, and isDelivered=true would tell the"
        " shopper the parcel arrived; send is_delivered=False and let the events tell the"
        " return"
    )
    if returned:
        raise ValidationError(field, "is True for an invoice returned to sender" + remedy)
    event = returned_event(events)
    if event is not None:
        description = event.description
        if len(description) > 80:
            description = description[:77] + "..."
        raise ValidationError(
            field,
            f"is True, but the event {description!r} of {format_event_date(event.date)} says"
            " the parcel went back to the sender"
            + remedy
            + " (or pass returned=False if that event is no return)",
        )


def status_from_events(
    events: Iterable[TrackingEvent],
    *,
    is_delivered: bool = False,
    delivered_date: DeliveredDate = None,
    returned: bool | None = None,
) -> TrackingStatus:
    """A ``TrackingStatus`` from events in any order, with duplicates: de-duplicated and
    ordered by date (the rules of ``TrackingHistory``). Refuses, with ``ValidationError`` on
    ``TrackingStatus.is_delivered``, to mark delivered an invoice returned to sender:
    ``returned=True``, or by default an event whose description says so ("Devolvido ao
    remetente", "Returned to sender", "Devuelto al remitente"; ``RETURNED_PHRASES``);
    ``returned=False`` vouches that none is a return."""
    merged = merge((), as_events(events, "events"))
    check_not_returned(merged, is_delivered=is_delivered, returned=returned)
    return TrackingStatus(merged, is_delivered, delivered_date)


# -- the stored form ------------------------------------------------------------------------


def _tagged(value: EventDate | DeliveredDate) -> list[str] | None:
    """A date as ``[kind, text]`` so that it reads back as the same type (and the same body)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return ["t", value.isoformat()]
    if isinstance(value, dt.date):
        return ["d", value.isoformat()]
    return ["s", value]


def _untagged(value: Any) -> EventDate:
    kind, text = value
    if not isinstance(text, str):
        raise CorruptHistoryError("a date is not text")
    if kind == "t":
        return dt.datetime.fromisoformat(text)
    if kind == "d":
        return dt.date.fromisoformat(text)
    if kind == "s":
        return text
    raise CorruptHistoryError(f"unknown date kind {kind!r}")


def encode(known: Known) -> bytes:
    """The stored form of a history: compact JSON, its dates tagged with their type."""
    return orjson.dumps(
        {
            "v": _STORED_FORMAT,
            "events": [
                [e.city, e.state, e.description, *(_tagged(e.date) or ())] for e in known.events
            ],
            "delivered": known.delivered,
            "deliveredDate": _tagged(known.delivered_date),
            "returned": known.returned,
        }
    )


def decode(raw: bytes) -> Known:
    """A stored history; ``CorruptHistoryError`` when it is not one (never anything else)."""
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or doc.get("v") != _STORED_FORMAT:
            raise CorruptHistoryError("not a stored history of this version")
        events = []
        for row in doc["events"]:
            city, state, description, kind, text = row
            events.append(TrackingEvent(city, state, description, _untagged([kind, text])))
        delivered, returned = doc["delivered"], doc["returned"]
        if not isinstance(delivered, bool) or not isinstance(returned, bool):
            raise CorruptHistoryError("delivered or returned is not a boolean")
        stored_date = doc["deliveredDate"]
        delivered_date = None if stored_date is None else _untagged(stored_date)
        if isinstance(delivered_date, dt.date) and not isinstance(delivered_date, dt.datetime):
            raise CorruptHistoryError("deliveredDate is a date without a time")
        return Known(tuple(events), delivered, delivered_date, returned)
    except CorruptHistoryError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptHistoryError(f"{type(exc).__name__}: {exc}") from None


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
