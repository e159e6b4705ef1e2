"""vtex-tracking: send order tracking events to VTEX, from async code, sync code or in bulk.

Import everything from here; modules starting with ``_`` are private and may change.
"""

import typing as _typing

from ._checks import Checks
from ._client import AsyncTrackingClient
from ._config import ClientConfig, RetryPolicy, SharedPace
from ._errors import (
    APIError,
    AuthCooldownError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    ConnectError,
    HistoryUnavailableError,
    NotFoundError,
    PaceTimeoutError,
    PermissionDeniedError,
    PushStoppedError,
    RateLimitError,
    ServerError,
    TransportError,
    TransportTimeoutError,
    UnexpectedResponseError,
    ValidationError,
    VtexTrackingError,
)
from ._models import (
    InvoiceTracking,
    TrackingEvent,
    TrackingNumberUpdate,
    TrackingReceipt,
    TrackingStatus,
    TrackingUpdate,
)
from ._public import LAZY as _LAZY
from ._public import present_as as _present_as
from ._sync import SyncPushStream, TrackingClient
from ._version import __version__

# Imported on first use (``_public.LAZY``, ``__getattr__`` below); type checkers and IDEs
# read them here.
if _typing.TYPE_CHECKING:
    from ._accounts import Account, Accounts
    from ._history import AsyncTrackingHistory, TrackingHistory
    from ._history_rules import status_from_events
    from ._progress import AccountProgress, PushProgress
    from ._read import parse_update, read_updates
    from ._read_back import CourierEvent, CourierStatus, Order, Package
    from ._remember import Journal, JournalMismatchError, UnchangedState
    from ._reports import AccountMetrics, AccountSummary, PushResult, PushSummary
    from ._stream import PushStream

__all__ = [
    "APIError",
    "Account",
    "AccountMetrics",
    "AccountProgress",
    "AccountSummary",
    "Accounts",
    "AsyncTrackingClient",
    "AsyncTrackingHistory",
    "AuthCooldownError",
    "AuthenticationError",
    "BadRequestError",
    "Checks",
    "ClientClosedError",
    "ClientConfig",
    "ConfigurationError",
    "ConflictError",
    "ConnectError",
    "CourierEvent",
    "CourierStatus",
    "HistoryUnavailableError",
    "InvoiceTracking",
    "Journal",
    "JournalMismatchError",
    "NotFoundError",
    "Order",
    "PaceTimeoutError",
    "Package",
    "PermissionDeniedError",
    "PushProgress",
    "PushResult",
    "PushStoppedError",
    "PushStream",
    "PushSummary",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "SharedPace",
    "SyncPushStream",
    "TrackingClient",
    "TrackingEvent",
    "TrackingHistory",
    "TrackingNumberUpdate",
    "TrackingReceipt",
    "TrackingStatus",
    "TrackingUpdate",
    "TransportError",
    "TransportTimeoutError",
    "UnchangedState",
    "UnexpectedResponseError",
    "ValidationError",
    "VtexTrackingError",
    "__version__",
    "parse_update",
    "read_updates",
    "status_from_events",
]

# Tracebacks, reprs and pickles say vtex_tracking.RateLimitError, not vtex_tracking._errors.
_present_as(__name__, globals(), [name for name in __all__ if name not in _LAZY])

# For type checkers the names are imported above (so a misspelt name is still an error).
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        # PEP 562: called only for a name not (yet) in the module's namespace.
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # found directly next time
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
