"""Retry decisions: is this outcome worth another attempt, and after how long.

Everything here is pure (no I/O, no clock but ``now`` passed in), so the whole policy is
tested without a network. The client's retry loop asks ``retry_delay`` after each attempt.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from collections.abc import Mapping

from . import _testing_mode
from ._config import RetryPolicy


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header: delay-seconds or an HTTP-date; None when absent or garbage.

    A date in the past means "now" (0 seconds).
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # float() also accepts "nan" and "inf", which no server means.
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    current = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - current).total_seconds())


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait, from ``Retry-After``, else from rate-limit reset hints."""
    seconds = parse_retry_after(headers.get("Retry-After"))
    if seconds is not None:
        return seconds
    # Only a few VTEX APIs send these; when present they are a fair hint of when to come back.
    for name in ("Ratelimit-Reset", "X-RateLimit-Reset"):
        hint = headers.get(name)
        if hint is not None:
            try:
                value = float(hint)
            except ValueError:
                continue
            # Small values are "seconds from now"; large ones are epoch timestamps.
            if 0 <= value < 86_400:
                return value
    return None


def backoff(policy: RetryPolicy, retry_number: int, rng: random.Random | None = None) -> float:
    """The full-jitter delay before retry ``retry_number`` (1 for the first retry).

    ``uniform(0, min(max_backoff, initial_backoff * 2 ** (retry_number - 1)))``
    """
    ceiling = min(policy.max_backoff, policy.initial_backoff * 2 ** (retry_number - 1))
    # Jitter spreads retries of many clients apart; it is not security-sensitive.
    return (rng or random).uniform(0, ceiling)


def retry_delay(
    policy: RetryPolicy,
    attempts: int,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or None to stop and report the failure.

    ``attempts`` is how many requests were made so far. ``status`` is the HTTP status of the
    last one, or None for a connection error or timeout (always retryable: the endpoint is a
    PUT of the whole event history, so a repeat leaves VTEX in the same state).
    """
    if attempts >= policy.max_attempts:
        return None
    if status is not None and status not in policy.retry_statuses:
        return None
    if retry_after is not None:
        delay = min(retry_after, policy.max_retry_after)
    else:
        delay = backoff(policy, attempts, rng)
    return 0.0 if _testing_mode.enabled else delay
