"""VTEX's JSON body (``isDelivered``, ``deliveredDate``, ``events``) to the SDK's models."""

import json
from collections.abc import Iterator
from typing import Any

from vtex_tracking import TrackingEvent, TrackingStatus, TrackingUpdate, ValidationError


def status_from_json(doc: Any) -> TrackingStatus:
    """The ``TrackingStatus`` of a parsed body; ``ValidationError`` names what is wrong."""
    if not isinstance(doc, dict):
        raise ValidationError("body", f"expected a JSON object, got {type(doc).__name__}")
    unknown = set(doc) - {"orderId", "invoiceNumber", "isDelivered", "deliveredDate", "events"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown field")
    if "events" not in doc:
        raise ValidationError("events", "required field missing")
    if not isinstance(doc["events"], list):
        raise ValidationError("events", "expected a list of events")
    events = []
    for n, event in enumerate(doc["events"]):
        if not isinstance(event, dict):
            raise ValidationError(f"events[{n}]", "expected an object")
        for name in ("city", "state", "description", "date"):
            if name not in event:
                raise ValidationError(f"events[{n}].{name}", "required field missing")
        fields = (event["city"], event["state"], event["description"], event["date"])
        events.append(TrackingEvent(*fields))
    # The models check the rest (types, lengths, dates) and raise ValidationError themselves.
    return TrackingStatus(
        events,
        is_delivered=doc.get("isDelivered", False),
        delivered_date=doc.get("deliveredDate"),
    )


def read_updates(path: str, problems: list[str]) -> Iterator[TrackingUpdate]:
    """The updates of a JSONL file (one body per line, plus ``orderId`` and
    ``invoiceNumber``), read lazily; lines that cannot form one are added to ``problems``
    as ``file:line: reason`` and skipped."""
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                status = status_from_json(doc)
                yield TrackingUpdate(doc.get("orderId", ""), doc.get("invoiceNumber", ""), status)
            except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
                problems.append(f"{path}:{number}: {exc}")
