"""Test helpers for code that uses vtex-tracking: a fake VTEX server and a no-sleep switch.

``FakeOMS`` is a real HTTP server on 127.0.0.1 behaving like VTEX's tracking endpoint; the
pytest plugin registers a ``fake_oms`` fixture running one per test. ``set_testing(True)``
(or ``with no_waits():``, the ``vtex_testing`` fixture, or ``@pytest.mark.vtex_testing``)
removes every wait of the SDK (backoff, ``Retry-After``, the accounts' pace) so suites that
exercise retries and rate limits stay fast.
"""

from .._public import present_as as _present_as
from .._testing_mode import is_testing, no_waits, set_testing
from ._schema import validate_receipt, validate_request_body
from ._server import FakeAccount, FakeOMS, RecordedRequest

__all__ = [
    "FakeAccount",
    "FakeOMS",
    "RecordedRequest",
    "is_testing",
    "no_waits",
    "set_testing",
    "validate_receipt",
    "validate_request_body",
]

# Tracebacks and reprs say vtex_tracking.testing.FakeOMS, the path users import.
_present_as(__name__, globals(), __all__)
