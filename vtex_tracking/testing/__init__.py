"""Test helpers for code that uses vtex-tracking: a fake VTEX server and a no-sleep switch.

``FakeOMS`` is a real HTTP server on 127.0.0.1 behaving like VTEX's tracking endpoint; the
pytest plugin registers a ``fake_oms`` fixture running one per test. ``set_testing(True)``
removes backoff sleeps so suites that exercise retries stay fast.
"""

from .._retry import is_testing, set_testing
from ._schema import validate_receipt, validate_request_body
from ._server import FakeAccount, FakeOMS, RecordedRequest

__all__ = [
    "FakeAccount",
    "FakeOMS",
    "RecordedRequest",
    "is_testing",
    "set_testing",
    "validate_receipt",
    "validate_request_body",
]
