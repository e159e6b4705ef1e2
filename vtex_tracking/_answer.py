"""What an answer means, decided once per attempt: the pace, the counters in ``metrics()``,
the push engine and the retry log all ask ``classify`` instead of testing statuses again.

* ``CONFIRMED``: 2xx.
* ``THROTTLED``: 429, or 503 with ``Retry-After`` (VTEX's circuit breaker asking for less):
  the account is over its limit; its pace slows down.
* ``REFUSED``: 401 or 403, the credentials or their roles; enough in a row stop the account.
* ``FAILED``: any other status, a bare 503 included: a server error (retried) or a
  rejection of this update; it says nothing about the account's rate.
* ``NO_ANSWER``: a connection error, a timeout, or a cancelled request.
"""

from __future__ import annotations

import enum

__all__ = ["Answer", "classify"]


class Answer(enum.Enum):
    """The meaning of one attempt's outcome (see the module docstring)."""

    CONFIRMED = "confirmed"
    THROTTLED = "throttled"
    REFUSED = "refused"
    FAILED = "failed"
    NO_ANSWER = "no_answer"


# Module globals: one lookup each, not two (``classify`` runs for every answer).
_CONFIRMED, _NO_ANSWER = Answer.CONFIRMED, Answer.NO_ANSWER


def classify(status: int | None, retry_after: float | None) -> Answer:
    """The meaning of HTTP ``status`` (None: no answer) with the ``Retry-After`` it carried."""
    if status is None:
        return _NO_ANSWER
    if status // 100 == 2:  # 200 <= status < 300, in fewer steps (asked for every answer)
        return _CONFIRMED
    if status == 429 or (status == 503 and retry_after is not None):
        return Answer.THROTTLED
    if status == 401 or status == 403:
        return Answer.REFUSED
    return Answer.FAILED
