"""vtex-tracking: send order tracking events to VTEX, from async code, sync code or in bulk.

Import everything from here; modules starting with ``_`` are private and may change.
"""

from ._accounts import Account, Accounts
from ._checks import Checks
from ._client import AsyncTrackingClient
from ._config import ClientConfig, RetryPolicy
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
from ._history import AsyncTrackingHistory, TrackingHistory
from ._history_rules import status_from_events
from ._models import (
    AccountMetrics,
    AccountSummary,
    CourierEvent,
    CourierStatus,
    InvoiceTracking,
    Order,
    Package,
    PushResult,
    PushSummary,
    TrackingEvent,
    TrackingNumberUpdate,
    TrackingReceipt,
    TrackingStatus,
    TrackingUpdate,
)
from ._progress import AccountProgress, PushProgress
from ._public import present_as as _present_as
from ._read import parse_update, read_updates
from ._remember import Journal, JournalMismatchError, UnchangedState
from ._shared import SharedPace
from ._stream import PushStream
from ._sync import SyncPushStream, TrackingClient
from ._version import __version__

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
_present_as(__name__, globals(), __all__)
