"""The public surface is a contract: pinned names, typed package, testing helpers."""

from __future__ import annotations

import importlib.resources
import json
import pathlib

import pytest

import vtex_tracking
import vtex_tracking.testing


def test_public_names_are_pinned() -> None:
    """vtex_tracking.__all__ lists exactly the supported names, all importable."""
    assert sorted(vtex_tracking.__all__) == sorted(
        [
            "APIError",
            "Account",
            "AccountProgress",
            "AccountSummary",
            "Accounts",
            "AsyncTrackingClient",
            "AuthCooldownError",
            "AuthenticationError",
            "BadRequestError",
            "ClientClosedError",
            "ClientConfig",
            "ConfigurationError",
            "ConflictError",
            "NotFoundError",
            "PaceTimeoutError",
            "PermissionDeniedError",
            "PushProgress",
            "PushResult",
            "PushStoppedError",
            "PushStream",
            "PushSummary",
            "RateLimitError",
            "RetryPolicy",
            "ServerError",
            "SyncPushStream",
            "TrackingClient",
            "TrackingEvent",
            "TrackingReceipt",
            "TrackingStatus",
            "TrackingUpdate",
            "TransportError",
            "TransportTimeoutError",
            "UnexpectedResponseError",
            "ValidationError",
            "VtexTrackingError",
            "__version__",
        ]
    )
    for name in vtex_tracking.__all__:
        assert getattr(vtex_tracking, name) is not None


def test_package_is_typed() -> None:
    """py.typed ships, so users' type checkers read our annotations."""
    assert importlib.resources.files("vtex_tracking").joinpath("py.typed").is_file()


def test_packaged_openapi_copy_matches_the_shared_contract() -> None:
    """FakeOMS validates with a copy of VTEX's OpenAPI file that equals the shared one."""
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "vtex-tracking-openapi.json"
    packaged = importlib.resources.files("vtex_tracking.testing").joinpath(
        "vtex-tracking-openapi.json"
    )
    if not shared.is_file():
        pytest.skip("this checkout has no shared/ folder beside it")
    assert json.loads(packaged.read_text(encoding="utf-8")) == json.loads(
        shared.read_text(encoding="utf-8")
    )
