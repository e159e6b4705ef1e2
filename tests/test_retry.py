"""Retry decisions, without a network."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from vtex_tracking import ConfigurationError, RetryPolicy
from vtex_tracking._retry import (
    backoff,
    parse_retry_after,
    retry_after_from_headers,
    retry_delay,
)

NOW = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("0", 0.0),
        ("Mon, 23 Nov 2026 12:00:07 GMT", 7.0),
        ("Mon, 23 Nov 2026 11:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_seconds_and_http_date(header: str | None, seconds: float | None) -> None:
    """Retry-After is read as delay-seconds or an HTTP-date; garbage and negatives are ignored."""
    assert parse_retry_after(header, now=NOW) == seconds


def test_ratelimit_reset_header_is_a_hint_when_retry_after_is_missing() -> None:
    """Without Retry-After, a Ratelimit-Reset of a few seconds is used as the wait."""
    assert retry_after_from_headers({"Ratelimit-Reset": "4"}) == 4.0
    assert retry_after_from_headers({"Retry-After": "2", "Ratelimit-Reset": "4"}) == 2.0
    assert retry_after_from_headers({"X-RateLimit-Reset": "1700000000"}) is None


def test_backoff_is_full_jitter_capped_by_max_backoff() -> None:
    """Backoff is uniform in [0, min(max, initial * 2**(n-1))]."""
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=5.0)
    rng = random.Random(7)
    for retry_number, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)):
        delays = [backoff(policy, retry_number, rng) for _ in range(200)]
        assert min(delays) >= 0
        assert max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8  # the whole range is used, not a constant


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    """Statuses in retry_statuses get a delay while attempts remain."""
    assert retry_delay(RetryPolicy(max_attempts=3), 1, status=status) is not None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    """400, 401, 403, 404 (and anything not listed) end the call at once."""
    assert retry_delay(RetryPolicy(max_attempts=5), 1, status=status) is None


def test_connection_errors_are_retried_until_attempts_run_out() -> None:
    """A missing status (connection error, timeout) is retried up to max_attempts."""
    policy = RetryPolicy(max_attempts=3)
    assert retry_delay(policy, 1) is not None
    assert retry_delay(policy, 2) is not None
    assert retry_delay(policy, 3) is None


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    """Retry-After sets the delay, capped at max_retry_after."""
    policy = RetryPolicy(max_retry_after=10.0)
    assert retry_delay(policy, 1, status=429, retry_after=3.0) == 3.0
    assert retry_delay(policy, 1, status=429, retry_after=120.0) == 10.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"initial_backoff": -1},
        {"max_backoff": "1"},
        {"retry_statuses": {429, 401}},
    ],
)
def test_bad_policy_is_rejected(kwargs: dict[str, object]) -> None:
    """A policy that cannot work is refused with ConfigurationError (a ValueError)."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_an_immutable_value() -> None:
    """Policies compare by value and cannot be changed in place."""
    import attrs

    assert RetryPolicy() == RetryPolicy()
    assert RetryPolicy.disabled().max_attempts == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        RetryPolicy().max_attempts = 9  # type: ignore[misc]
