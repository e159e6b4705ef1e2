"""``--date-format dd/mm/yyyy``: day-first dates, as Brazilian spreadsheets write them, turned
into the ISO forms VTEX takes.

Only behind the option, never guessed: ``04/11/2026`` is the 4th of November in Brazil and
April 11th in a US export, and a file gives no way to tell. With the option, every date of the
run must be day-first; an ISO date is then an error rather than a second accepted form, so
that one run never mixes two conventions.
"""

from __future__ import annotations

import datetime as dt
import re

ISO = "iso"
DAY_FIRST = "dd/mm/yyyy"
DATE_FORMATS = (ISO, DAY_FIRST)

# Day and month may lack their leading zero (Excel's "3/11/2026"); the year may not (a
# two-digit year would be a guess at the century).
_DAY_FIRST = re.compile(
    r"^(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})"
    r"(?: (?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?$"
)


class DateError(ValueError):
    """A date that does not fit the format; the message is the reason, without the field."""


def day_first(value: str, *, with_time: bool) -> str:
    """``23/11/2026`` -> ``2026-11-23``, ``23/11/2026 14:05`` -> ``2026-11-23 14:05``.

    ``with_time`` (``deliveredDate``): ``dd/mm/yyyy hh:mm`` exactly, as VTEX wants minutes and
    no seconds. Otherwise (an event's ``date``) the time, with optional seconds, may be given
    or not; it is kept.
    """
    expected = "'dd/mm/yyyy hh:mm'" if with_time else "dd/mm/yyyy"
    match = _DAY_FIRST.match(value)
    if match is None or (with_time and (match["H"] is None or match["S"] is not None)):
        raise DateError(f"expected {expected} (--date-format {DAY_FIRST}), got {value!r}")
    try:
        day = dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
        if match["H"] is not None:
            dt.time(int(match["H"]), int(match["M"]), int(match["S"] or 0))
    except ValueError:
        raise DateError(f"{value!r} is not a real date (expected {expected})") from None
    if match["H"] is None:
        return day.isoformat()
    seconds = f":{match['S']}" if match["S"] is not None else ""
    return f"{day.isoformat()} {int(match['H']):02d}:{match['M']}{seconds}"
