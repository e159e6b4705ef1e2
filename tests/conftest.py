"""Shared fixtures: the anyio backend, sample data, and a client factory bound to FakeOMS."""

from __future__ import annotations

import datetime as dt

import pytest

from vtex_tracking import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TrackingEvent,
    TrackingStatus,
)

#: Credentials FakeOMS accepts by default (see vtex_tracking.testing.FakeOMS).
APP_KEY = "vtexappkey-fake-oms"
APP_TOKEN = "fake-oms-app-token"

#: The documented error class of each HTTP status VTEX gives a meaning to.
ERROR_FOR_STATUS: list[tuple[int, type[APIError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (429, RateLimitError),
    (500, ServerError),
    (503, ServerError),
]

#: Retries without noticeable sleeps, for tests of what is retried (not of how long).
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01)


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture
def status() -> TrackingStatus:
    """A realistic two-event status, not yet delivered."""
    return TrackingStatus(
        [
            TrackingEvent(
                "Rio de Janeiro", "RJ", "Coletado pela transportadora", dt.date(2026, 11, 2)
            ),
            TrackingEvent("São Paulo", "SP", "Em trânsito para Curitiba", dt.date(2026, 11, 3)),
        ]
    )


class Clock:
    """A manual monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now
