"""One rule for the dates of VTEX's tracking body, wherever a date comes from: the models
(``TrackingEvent.date``, ``TrackingStatus.delivered_date``), the input files (``_input``) and
the fake server (``testing.FakeOMS``).

VTEX documents an event's ``date`` as ``yyyy-mm-dd`` and ``deliveredDate`` as
``yyyy-mm-dd hh:mm`` without a time zone (``VTEX-FACTS.md``); what it does with other forms is
undocumented, and a shopper reads the result. So a string is accepted only in those forms (an
event's date may carry an ISO 8601 time and offset too), and must be a real day:
``02/11/2026`` (day or month first?), ``ontem 14h`` and ``2026-02-30`` are refused by name.
Day-first spreadsheets are converted by the CLI's ``--date-format`` (``_input._dates``), never
guessed here.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["delivered_date_problem", "event_date_problem"]

EVENT_DATE_FORM = "YYYY-MM-DD"
DELIVERED_DATE_FORM = "'YYYY-MM-DD hh:mm'"

_EVENT_DATE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_DELIVERED_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}) ([01]\d|2[0-3]):[0-5]\d$")


def _real_day(day: str, expected: str) -> str | None:
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        return f"{day!r} is not a real date (expected {expected})"
    return None


def event_date_problem(text: str) -> str | None:
    """Why ``text`` is not an event date VTEX documents (None: it is): ``YYYY-MM-DD``, or an
    ISO 8601 date and time."""
    match = _EVENT_DATE.match(text)
    if match is None:
        return f"expected {EVENT_DATE_FORM}, got {text!r}"
    return _real_day(match[1], EVENT_DATE_FORM)


def delivered_date_problem(text: str) -> str | None:
    """Why ``text`` is not a ``deliveredDate`` VTEX documents (None: it is):
    ``YYYY-MM-DD hh:mm``."""
    match = _DELIVERED_DATE.match(text)
    if match is None:
        return f"expected {DELIVERED_DATE_FORM}, got {text!r}"
    return _real_day(match[1], DELIVERED_DATE_FORM)
