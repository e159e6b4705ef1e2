"""Every default of the SDK in one named block, so no magic number hides in the code."""

from __future__ import annotations

from typing import Final

DEFAULT_ENVIRONMENT: Final = "vtexcommercestable"

#: Seconds one attempt may take, connection included.
DEFAULT_TIMEOUT: Final = 30.0
#: Seconds to establish a TCP/TLS connection (bounded by the attempt timeout).
DEFAULT_CONNECT_TIMEOUT: Final = 10.0

#: In-flight requests per client (all its accounts together); also the size of the
#: connection pool. High enough to fill an account at its limit when VTEX is far away (500
#: req/s at 250 ms round trips is 125 requests in flight; 20 accounts at 50 req/s, 250), low
#: enough for the default 1,024 file descriptors of a process (a lower limit shrinks it: see
#: ``POOL_SHARE_OF_OPEN_FILES``). Each account's own window (below) decides how much of it
#: that account uses.
DEFAULT_MAX_CONCURRENCY: Final = 512
#: Share of the process' open-files limit (the soft ``RLIMIT_NOFILE``) the connection pool
#: may take: each pooled connection is a file descriptor, and the rest is left for the
#: process' other files (the event loop, logs, a journal, Redis, the application's own).
#: With macOS' default of 256 the pool (and so ``max_concurrency``) becomes 192.
POOL_SHARE_OF_OPEN_FILES: Final = 0.75
#: Seconds between tries when the process has no file descriptor left for a connection
#: (EMFILE/ENFILE): back-pressure, not a failed attempt, for up to one attempt ``timeout``
#: after the first such failure; after that each one counts as a failed attempt.
OPEN_FILES_RETRY_DELAY: Final = 0.05

#: Seconds a single call may wait for its turn in its account's pace before giving up
#: unsent (``PaceTimeoutError``); pushes wait as long as it takes.
DEFAULT_PACE_TIMEOUT: Final = 60.0
#: Requests an account may have in flight before its first success; each success adds one
#: (slow start), so a revoked key or a tight limit never meets a full wave.
INITIAL_WINDOW: Final = 4
#: The same, for an account whose pace is shared with other processes (``shared_pace``):
#: eight processes starting together then send eight requests before the first answer.
INITIAL_WINDOW_SHARED: Final = 1
#: An account's window ceiling, once its rate is known: this many times rate x round trip
#: (the requests its pace keeps in flight), plus ``INITIAL_WINDOW``.
WINDOW_HEADROOM: Final = 1.5
#: Consecutive 401/403 answers (no success between) after which an account fails fast.
AUTH_FAILURES_TO_STOP: Final = 3
#: Seconds an account whose credentials VTEX kept refusing fails fast before trying again.
DEFAULT_AUTH_COOLDOWN: Final = 30.0
#: A ``Retry-After`` at least this long (seconds) pauses every request of the account; shorter
#: ones delay only the request that got it (and slow the adaptive rate).
ACCOUNT_PAUSE_AFTER: Final = 5.0

#: Attempts per call, the first one included.
DEFAULT_MAX_ATTEMPTS: Final = 4
#: Base of the exponential backoff, in seconds.
DEFAULT_INITIAL_BACKOFF: Final = 0.5
#: Ceiling of one backoff delay, in seconds.
DEFAULT_MAX_BACKOFF: Final = 30.0
#: Ceiling of a server-requested ``Retry-After``; VTEX suggests about a minute after a 429.
DEFAULT_MAX_RETRY_AFTER: Final = 60.0
#: Statuses retried by default. The endpoint is a PUT of the invoice's whole event
#: history, so resending it is idempotent.
DEFAULT_RETRY_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Statuses that no policy may retry: the same request would fail the same way.
NEVER_RETRY_STATUSES: Final = frozenset({400, 401, 403, 404})

#: Largest response body read; a receipt is about 100 bytes, anything bigger is an error page.
MAX_RESPONSE_BYTES: Final = 1024 * 1024
#: Characters of a non-JSON error body quoted in an exception message.
MAX_QUOTED_BODY_CHARS: Final = 200

#: VTEX caps event descriptions at this many characters.
MAX_DESCRIPTION_CHARS: Final = 5000

#: ``deliveredDate`` travels without a time zone: aware datetimes are converted to this zone's
#: wall-clock time (the stores' own, Brasília time), and naive ones are read in it.
DEFAULT_TIME_ZONE: Final = "America/Sao_Paulo"
#: Seconds a ``deliveredDate`` may lie in the future before it is refused (clocks differ).
DELIVERED_DATE_TOLERANCE: Final = 600.0

#: Seconds a tracking history (``TrackingHistory``) is kept after its last change: long
#: enough for a slow parcel and its return to sender, short enough to bound the store.
DEFAULT_HISTORY_MAX_AGE: Final = 120 * 24 * 3600.0
#: Seconds a ``TrackingHistory`` waits for another process' write to its SQLite file, or for
#: Redis to answer, before ``HistoryUnavailableError``.
HISTORY_WAIT: Final = 5.0

#: Response headers that may carry a request id, first match wins.
REQUEST_ID_HEADERS: Final = ("X-Request-Id", "X-VTEX-Request-Id", "X-VTEX-Operation-Id")

APP_KEY_HEADER: Final = "X-VTEX-API-AppKey"
APP_TOKEN_HEADER: Final = "X-VTEX-API-AppToken"
USER_TOKEN_HEADER: Final = "VtexIdclientAutCookie"

ENV_ACCOUNT_NAME: Final = "VTEX_ACCOUNT_NAME"
ENV_ENVIRONMENT: Final = "VTEX_ENVIRONMENT"
ENV_APP_KEY: Final = "VTEX_APP_KEY"
ENV_APP_TOKEN: Final = "VTEX_APP_TOKEN"
ENV_USER_TOKEN: Final = "VTEX_USER_TOKEN"
ENV_SHARED_PACE: Final = "VTEX_SHARED_PACE"
#: Seconds a remembered limit (``limits_file=``, or ``shared_pace``'s Redis) is taken whole;
#: older, it halves every ``LIMIT_HALF_LIFE`` seconds, so a store whose limit fell is not
#: met at yesterday's rate for long, while one whose limit holds climbs back to it.
LIMIT_FRESH: Final = 24 * 3600.0
LIMIT_HALF_LIFE: Final = 7 * 24 * 3600.0
#: Seconds a remembered limit is kept at all (renewed at each run that measures it).
LIMIT_KEPT: Final = 30 * 24 * 3600.0
#: 429s (or 503s with ``Retry-After``) per update in a push that do not use up its attempts:
#: the pace meeting the account's limit is no fault of the update (a new store's first
#: seconds, several pushes sharing it). Bounded, so a store that only ever says 429 ends.
THROTTLES_NOT_COUNTED: Final = 8
