"""The exception hierarchy, and the one function that turns a failed response into an error.

::

    VtexTrackingError
    ├── ValidationError            (also ValueError)  bad input, caught before sending
    ├── ConfigurationError         (also ValueError)  bad settings or missing credentials
    ├── ClientClosedError          (also RuntimeError) the client was closed
    ├── APIError                   VTEX answered, and not with a receipt
    │   ├── BadRequestError            400
    │   ├── AuthenticationError        401
    │   ├── PermissionDeniedError      403
    │   ├── NotFoundError              404
    │   ├── ConflictError              409
    │   ├── RateLimitError             429
    │   ├── ServerError                5xx
    │   └── UnexpectedResponseError    2xx/3xx whose body is not the documented receipt
    ├── TransportError             (also ConnectionError) no usable HTTP answer
    │   ├── ConnectError           no connection could be made: refused, DNS, unreachable
    │   └── TransportTimeoutError  (also TimeoutError)
    ├── PaceTimeoutError           (also TimeoutError) waited too long for the account's pace;
    │                              never sent, throttled by the SDK, not by VTEX
    ├── AuthCooldownError          the account's credentials were refused again and again;
    │                              failing fast, unsent, until the cool-down ends
    ├── PushStoppedError           a bulk push stopped before this update was confirmed
    └── HistoryUnavailableError    (also ConnectionError) the tracking histories could not be
                                   read or written; nothing was merged, try again later

Messages read like sentences; the attributes are for code. Credentials never appear in either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from multidict import CIMultiDict, istr

from ._constants import MAX_QUOTED_BODY_CHARS, REQUEST_ID_HEADERS


class VtexTrackingError(Exception):
    """Base class of every error the SDK raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (Celery, multiprocessing, copy) as the class, its args and its attributes,
        # rebuilt without __init__: the default calls ``cls(*args)``, which fails for errors
        # whose __init__ takes keywords (``status_code=``) or more than the message.
        return (_rebuild_error, (type(self), self.args), self.__dict__)


def _rebuild_error(cls: type[VtexTrackingError], args: tuple[Any, ...]) -> VtexTrackingError:
    """An error of ``cls`` with ``args``, before its attributes are restored (unpickling)."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class ValidationError(VtexTrackingError, ValueError):
    """Input that cannot form a valid request; ``field`` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class ConfigurationError(VtexTrackingError, ValueError):
    """Client settings that cannot work, such as missing credentials or a bad host name."""


class ClientClosedError(VtexTrackingError, RuntimeError):
    """The client was closed and cannot send any more requests."""


class APIError(VtexTrackingError):
    """VTEX answered with something other than a tracking receipt.

    Attributes: ``status_code``, VTEX's error ``code`` and ``message`` (when the body had
    them), ``request_id``, ``order_id``, ``invoice_number``, ``attempts`` (requests made,
    retries included), ``headers`` and ``body`` (the raw response body, possibly truncated).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        vtex_message: str | None = None,
        request_id: str | None = None,
        order_id: str | None = None,
        invoice_number: str | None = None,
        attempts: int = 1,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = vtex_message
        self.request_id = request_id
        self.order_id = order_id
        self.invoice_number = invoice_number
        self.attempts = attempts
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.body = body


class BadRequestError(APIError):
    """400: VTEX rejected the request body or path."""


class AuthenticationError(APIError):
    """401: the app key/token pair or the user token was not accepted."""


class PermissionDeniedError(APIError):
    """403: the credentials lack the License Manager resource "Notify invoice"."""


class NotFoundError(APIError):
    """404: VTEX does not know this order or invoice."""


class ConflictError(APIError):
    """409: VTEX refused the update because of the order's current state."""


class RateLimitError(APIError):
    """429: the account is over VTEX's rate limit; ``retry_after`` is the wait VTEX asked for."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: VTEX failed or is overloaded (503 is also its circuit breaker)."""


class UnexpectedResponseError(APIError):
    """A success or redirect status whose body is not the documented JSON receipt."""


class TransportError(VtexTrackingError, ConnectionError):
    """The request got no usable HTTP answer: refused, reset, DNS, TLS, truncated body."""

    def __init__(
        self,
        message: str,
        *,
        order_id: str | None = None,
        invoice_number: str | None = None,
        attempts: int = 1,
    ) -> None:
        # ConnectionError is an OSError: pass one argument so it is not read as (errno, strerror).
        super().__init__(message)
        self.order_id = order_id
        self.invoice_number = invoice_number
        self.attempts = attempts

    def __str__(self) -> str:
        return str(self.args[0])


class ConnectError(TransportError):
    """No connection could be made to the host: refused, unknown name (DNS), unreachable.
    A push stops an account whose every attempt ends so (``PushStoppedError``,
    ``reason="unreachable"``): usually a mistyped account name or base URL."""


class TransportTimeoutError(TransportError, TimeoutError):
    """An attempt took longer than the configured timeout."""


class PaceTimeoutError(VtexTrackingError, TimeoutError):
    """A call waited ``pace_timeout`` seconds for its turn in its account's pace and gave up.

    Throttled by the SDK, not refused by VTEX: ``attempts`` requests were sent before (0: this
    update never left the process). ``account`` names the account, ``waited`` the seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        account: str,
        waited: float,
        order_id: str | None = None,
        invoice_number: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.account = account
        self.waited = waited
        self.order_id = order_id
        self.invoice_number = invoice_number
        self.attempts = attempts


class AuthCooldownError(VtexTrackingError):
    """Not sent: VTEX refused the account's credentials several times in a row, so its calls
    fail fast for a cool-down instead of each knocking on VTEX. The first call after
    ``retry_in`` seconds tries again (keys get fixed). ``cause`` is the last refusal (an
    ``AuthenticationError`` or ``PermissionDeniedError``), ``account`` the account.
    """

    def __init__(
        self,
        message: str,
        *,
        account: str,
        retry_in: float,
        cause: BaseException | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.account = account
        self.retry_in = retry_in
        self.cause = cause
        self.attempts = attempts


class PushStoppedError(VtexTrackingError):
    """A bulk push stopped before this update was confirmed.

    ``reason`` says why: ``"stopped"`` (the caller stopped the push), ``"cancelled"`` (the
    push task was cancelled), ``"auth"`` (VTEX kept refusing the credentials; ``cause`` is
    that error), or ``"unreachable"`` (no connection could ever be made to the account's
    host in this push; ``cause`` is the ``ConnectError``). ``in_flight`` is True when the
    request had been sent and was cut off, so VTEX may or may not have applied it.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        cause: BaseException | None = None,
        in_flight: bool = False,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.cause = cause
        self.in_flight = in_flight


class HistoryUnavailableError(VtexTrackingError, ConnectionError):
    """A ``TrackingHistory`` could not read or write its SQLite file or Redis (down, full,
    locked by another process for too long). Nothing was merged: pushing without the
    history would replace the invoice's events at VTEX with the newest checkpoint alone, so
    answer the carrier's webhook with a 5xx and let it deliver the checkpoint again."""


_ERROR_FOR_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


REDACTED = "<redacted>"


def redact(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str]
) -> tuple[Mapping[str, str], bytes]:
    """The response with every credential value replaced by ``<redacted>``.

    Some proxies and debug endpoints echo the request's headers back; an error built from such
    an answer would carry the app token into messages, logs and failures files.
    """
    for secret in secrets:
        raw = secret.encode()
        if raw in body:
            body = body.replace(raw, REDACTED.encode())
        if any(secret in value for value in headers.values()):
            headers = CIMultiDict(
                (name, value.replace(secret, REDACTED)) for name, value in headers.items()
            )
    return headers, body


def holds_secret(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> bool:
    """Whether any credential appears in the response (the cheap check before ``redact``:
    every receipt passes it, and one joined string costs a quarter of scanning each value)."""
    values = "\x00".join(headers.values())
    for secret in secrets:  # noqa: SIM110 (a loop, not any(): no generator per receipt)
        # ``find``, not ``in``: ``in`` on bytes first tries its operand as an int, and the
        # TypeError it builds and drops costs more than the search.
        if secret in values or body.find(secret.encode()) != -1:
            return True
    return False


#: As ``istr``, a ``CIMultiDict`` (aiohttp's headers) finds them without folding their case
#: on each look-up (half the cost); any other mapping sees the plain strings.
_REQUEST_ID_KEYS = tuple(istr(name) for name in REQUEST_ID_HEADERS)


def find_request_id(headers: Mapping[str, str]) -> str | None:
    """Return the request id VTEX (or a proxy) put in the response headers, if any."""
    for name in _REQUEST_ID_KEYS:
        value = headers.get(name)
        if value:
            return value
    return None


def parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """Extract VTEX's error ``(code, message)`` from a body of any of its shapes.

    VTEX answers OMS JSON ``{"error": {"code", "message"}}``, other APIs' ``{"Message": ...}``,
    plain text, or an HTML page; a missing piece comes back as None.
    """
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None, None
    try:
        # orjson, not json: json.loads recurses and raises RecursionError on deep nesting.
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        inner = doc.get("error")
        if isinstance(inner, dict):
            doc = inner
        elif isinstance(inner, str):
            return None, inner
        code = doc.get("code", doc.get("Code"))
        message = doc.get("message", doc.get("Message"))
        return (
            str(code) if code is not None else None,
            str(message) if message is not None else None,
        )
    if looks_like_html(text):
        return None, "an HTML page"
    return None, _quote(text)


def looks_like_html(text: str) -> bool:
    """Tell whether a body is an HTML page rather than data."""
    head = text[:200].lstrip().lower()
    return head.startswith(("<!doctype html", "<html")) or "<html" in head


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_QUOTED_BODY_CHARS:
        return text[:MAX_QUOTED_BODY_CHARS] + "..."
    return text


def _describe_target(order_id: str | None, invoice_number: str | None) -> str:
    if order_id is None:
        return ""
    return f" for order {order_id!r}, invoice {invoice_number!r}"


def _hint(status: int, invoice_number: str | None, reading: bool = False) -> str:
    if status == 403 and reading:
        return (
            " Reading an order needs the License Manager resource 'View order' (OMS), or"
            " Checkout's 'Orders Full Access', which a key made for tracking often lacks;"
            " sending tracking needs only 'Notify invoice'."
        )
    if status == 404 and reading:
        return " No such order in this account (check the order id and the account)."
    if status == 401:
        return (
            " Check the app key and app token (or that the user token has not expired:"
            " they last 24 hours)."
        )
    if status == 403:
        return (
            " The credentials need the License Manager resource 'Notify invoice'"
            " (roles 'OMS - Full access' or 'IntegrationProfile - Fulfillment Oms')."
        )
    if status == 404 and invoice_number is not None and "/" in invoice_number:
        return (
            " VTEX does not route invoice numbers containing '/', even percent-encoded;"
            " register the invoice under a number without '/'."
        )
    return ""


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    order_id: str | None = None,
    invoice_number: str | None = None,
    attempts: int = 1,
    retry_after: float | None = None,
    secrets: Sequence[str] = (),
    reading: bool = False,
) -> APIError:
    """Build the error for a response that is not a receipt, of the class its status calls for.
    ``secrets`` (the client's credentials) are redacted from everything kept; ``reading``: the
    request read an order (its permission is another resource)."""
    headers, body = redact(headers, body, secrets)
    code, vtex_message = parse_error_body(body)
    request_id = find_request_id(headers)
    if status in _ERROR_FOR_STATUS:
        cls = _ERROR_FOR_STATUS[status]
    elif status >= 500:
        cls = ServerError
    elif status < 400:
        cls = UnexpectedResponseError
    else:
        cls = APIError

    detail = ""
    if vtex_message and code:
        detail = f": {code}: {vtex_message}"
    elif vtex_message or code:
        detail = f": {vtex_message or code}"
    if vtex_message == "an HTML page" and status < 500:
        # Below 500 an HTML page is usually VTEX's login page; above, a gateway's error page.
        detail += " (often VTEX's login page: check the credentials and account)"
    if 300 <= status < 400 and headers.get("Location"):
        detail += f" (redirect to {headers['Location']}; redirects are not followed)"
    plural = "s" if attempts != 1 else ""
    message = (
        f"VTEX answered HTTP {status}{_describe_target(order_id, invoice_number)}"
        f" after {attempts} attempt{plural}{detail}.{_hint(status, invoice_number, reading)}"
    )
    if request_id:
        message += f" [request id {request_id}]"

    kwargs: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "vtex_message": vtex_message,
        "request_id": request_id,
        "order_id": order_id,
        "invoice_number": invoice_number,
        "attempts": attempts,
        "headers": headers,
        "body": body,
    }
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


def unexpected_body_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    problem: str,
    *,
    order_id: str | None,
    invoice_number: str | None,
    attempts: int,
    secrets: Sequence[str] = (),
) -> UnexpectedResponseError:
    """Build the error for a success status whose body is not the documented receipt.
    ``secrets`` (the client's credentials) are redacted from everything kept."""
    headers, body = redact(headers, body, secrets)
    request_id = find_request_id(headers)
    text = body.decode("utf-8", errors="replace")
    if looks_like_html(text):
        problem = (
            "the body is an HTML page, not the JSON receipt (often VTEX's login page:"
            " check the credentials and the account name)"
        )
    message = (
        f"VTEX answered HTTP {status}{_describe_target(order_id, invoice_number)}"
        f" but {problem}."
    )
    if request_id:
        message += f" [request id {request_id}]"
    return UnexpectedResponseError(
        message,
        status_code=status,
        request_id=request_id,
        order_id=order_id,
        invoice_number=invoice_number,
        attempts=attempts,
        headers=headers,
        body=body,
    )
