"""Every default of the SDK in one named block, so no magic number hides in the code."""

from __future__ import annotations

from typing import Final

DEFAULT_ENVIRONMENT: Final = "vtexcommercestable"

#: Seconds one attempt may take, connection included.
DEFAULT_TIMEOUT: Final = 30.0
#: Seconds to establish a TCP/TLS connection (bounded by the attempt timeout).
DEFAULT_CONNECT_TIMEOUT: Final = 10.0

#: In-flight requests per client; also the size of the connection pool.
DEFAULT_MAX_CONCURRENCY: Final = 16

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
