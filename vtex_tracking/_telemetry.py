"""What the SDK tells observers: its logger, OpenTelemetry spans, and per-account counters.

* Logging (the HOWTO for libraries): one ``vtex_tracking`` logger with a ``NullHandler``, so
  nothing is printed unless the application configures logging. DEBUG: every attempt. INFO:
  expected events (a retry). WARNING: what a person must act on (an account paused by a long
  ``Retry-After``, credentials refused again and again, a push that stopped an account).
* Tracing: when ``opentelemetry-api`` is installed and the application has set a tracer
  provider, each attempt is a CLIENT span named as the HTTP conventions ask
  (``PUT /api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking``), with the account,
  the attempt, the time it waited for the account's pace, the status and the request id.
  Never credentials, headers or bodies. Without a provider nothing is created at all.
* Counters: plain integers per account, bumped by the sender, read through
  ``client.metrics()`` by whatever metrics system the application runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._answer import Answer
from ._errors import find_request_id
from ._log import logger
from ._models import AccountMetrics
from ._version import __version__

if TYPE_CHECKING:
    from ._transport import RawResponse

__all__ = ["AccountCounters", "AttemptSpan", "PaceView", "logger", "start_attempt_span"]

try:
    from opentelemetry import trace as _trace
except ImportError:  # tracing is optional: ``pip install vtex-tracking[otel]``
    _trace = None  # type: ignore[assignment]

URL_TEMPLATE = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"
SPAN_NAME = f"PUT {URL_TEMPLATE}"
#: The tracking number's call (VTEX's PATCH of the invoice), and the order's read (GET).
INVOICE_URL_TEMPLATE = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}"
ORDER_URL_TEMPLATE = "/api/oms/pvt/orders/{orderId}"
_TEMPLATES = {"PUT": URL_TEMPLATE, "PATCH": INVOICE_URL_TEMPLATE, "GET": ORDER_URL_TEMPLATE}

#: The provider our tracer came from, and that tracer (None: no provider set, so no spans).
_provider: Any = None
_tracer: Any = None


def _current_tracer() -> Any:
    """Our tracer once the application has set a tracer provider; None before (and without
    opentelemetry), so an untraced request pays one lookup, not a no-op span.

    Asked at every call, so the first request after the application sets its provider is
    traced; the answer is cached by the provider's identity (a provider is set once).
    """
    global _provider, _tracer
    if _trace is None:
        return None
    provider = _trace.get_tracer_provider()
    if provider is not _provider:
        _provider = provider
        _tracer = (
            None
            if isinstance(provider, _trace.ProxyTracerProvider)
            else provider.get_tracer("vtex_tracking", __version__)
        )
    return _tracer


class AttemptSpan:
    """One attempt's span: started before the request, ended with its outcome."""

    __slots__ = ("_activation", "_span")

    def __init__(self, span: Any) -> None:
        self._span = span
        # The span is current while the request runs, so spans of instrumented HTTP
        # libraries (aiohttp's, if the application enabled it) nest under it.
        self._activation = _trace.use_span(span, end_on_exit=False) if _trace else None
        if self._activation is not None:
            self._activation.__enter__()

    def end(
        self,
        raw: RawResponse | None,
        retry_after: float | None,
        error: BaseException | None,
    ) -> None:
        """Record the outcome (status, request id, error type) and end the span."""
        if self._activation is not None:
            self._activation.__exit__(None, None, None)
        span = self._span
        if raw is not None:
            span.set_attribute("http.response.status_code", raw.status)
            request_id = find_request_id(raw.headers)
            if request_id is not None:
                span.set_attribute("vtex.request_id", request_id)
            if retry_after is not None:
                span.set_attribute("vtex.retry_after_s", retry_after)
            if raw.status >= 400:
                span.set_attribute("error.type", str(raw.status))
                span.set_status(_trace.StatusCode.ERROR)
        else:
            kind = type(error).__name__ if error is not None else "cancelled"
            span.set_attribute("error.type", kind)
            span.set_status(_trace.StatusCode.ERROR, kind)
        span.end()


def start_attempt_span(
    *,
    account: str,
    host: str,
    order_id: str,
    invoice_number: str | None,
    attempt: int,
    pace_wait: float,
    method: str = "PUT",
) -> AttemptSpan | None:
    """A span for one attempt (``method``: PUT of the events, PATCH of the tracking
    number), or None when no tracer provider is set."""
    tracer = _current_tracer()
    if tracer is None:
        return None
    template = _TEMPLATES[method]
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.template": template,
        "server.address": host,
        "vtex.account": account,
        "vtex.order_id": order_id,
        "vtex.attempt": attempt,
        "vtex.pace.wait_s": pace_wait,
    }
    if invoice_number is not None:
        attributes["vtex.invoice_number"] = invoice_number
    if attempt > 1:
        attributes["http.request.resend_count"] = attempt - 1
    span = tracer.start_span(
        SPAN_NAME if method == "PUT" else f"{method} {template}",
        kind=_trace.SpanKind.CLIENT,
        attributes=attributes,
    )
    return AttemptSpan(span)


class PaceView(Protocol):
    """What the counters' snapshot reads of an account's pace."""

    in_flight: int
    window: int
    rtt: float

    @property
    def rate(self) -> float | None: ...

    @property
    def auth_stopped(self) -> bool: ...

    @property
    def shared_state(self) -> str | None: ...


class AccountCounters:
    """One account's running totals, kept by its sender (plain ints: one add per event)."""

    __slots__ = (
        "confirmed",
        "errors",
        "no_answer",
        "pace_wait_s",
        "requests",
        "retries",
        "throttled",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.confirmed = 0
        self.throttled = 0
        self.errors = 0
        self.no_answer = 0
        self.pace_wait_s = 0.0

    def count(self, answer: Answer) -> None:
        """One attempt ended with ``answer`` (``_answer.classify``)."""
        if answer is Answer.CONFIRMED:
            self.confirmed += 1
        elif answer is Answer.THROTTLED:
            self.throttled += 1
        elif answer is Answer.NO_ANSWER:
            self.no_answer += 1
        else:
            self.errors += 1

    def snapshot(self, account: str, pace: PaceView) -> AccountMetrics:
        """The totals and the pace's current state, as one immutable value."""
        return AccountMetrics(
            account=account,
            requests=self.requests,
            retries=self.retries,
            confirmed=self.confirmed,
            throttled=self.throttled,
            errors=self.errors,
            no_answer=self.no_answer,
            pace_wait_s=self.pace_wait_s,
            in_flight=pace.in_flight,
            window=pace.window,
            rate=pace.rate,
            rtt_s=pace.rtt,
            auth_stopped=pace.auth_stopped,
            shared_pace=pace.shared_state,
        )
