"""What the SDK tells observers: its logger, OpenTelemetry spans, and per-account counters.

* Logging (the HOWTO for libraries): one ``vtex_tracking`` logger with a ``NullHandler``, so
  nothing is printed unless the application configures logging. DEBUG: every attempt. INFO:
  expected events (a retry). WARNING: what a person must act on (an account paused by a long
  ``Retry-After``, credentials refused again and again, a push that stopped an account).
* Tracing: when ``opentelemetry-api`` is installed and the application has set a tracer
  provider, each attempt is a CLIENT span named as the HTTP conventions ask
  (``PUT /api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking``), with the account,
  the attempt, the time it waited for the account's pace, the status and the request id.
  Never credentials, headers or bodies. Without a provider nothing is created at all; a span
  its sampler drops gets no attributes (``is_recording()`` is asked first).
* Counters: plain integers per account, bumped by the sender, read through
  ``client.metrics()`` by whatever metrics system the application runs.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Protocol

from ._answer import Answer
from ._errors import find_request_id
from ._log import logger
from ._version import __version__

if TYPE_CHECKING:
    from ._reports import AccountMetrics
    from ._transport import RawResponse

__all__ = ["AccountCounters", "AttemptSpan", "PaceView", "logger", "start_attempt_span"]

URL_TEMPLATE = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"
SPAN_NAME = f"PUT {URL_TEMPLATE}"
#: The tracking number's call (VTEX's PATCH of the invoice), and the order's read (GET).
INVOICE_URL_TEMPLATE = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}"
ORDER_URL_TEMPLATE = "/api/oms/pvt/orders/{orderId}"
_TEMPLATES = {"PUT": URL_TEMPLATE, "PATCH": INVOICE_URL_TEMPLATE, "GET": ORDER_URL_TEMPLATE}
_SPAN_NAMES = {method: f"{method} {template}" for method, template in _TEMPLATES.items()}
#: What a sampler is told when the span starts: built once, not per call. The rest is set
#: only on spans that record (a sampled-out span costs no attribute work at all).
_START_ATTRIBUTES = {
    method: {"http.request.method": method, "url.template": template}
    for method, template in _TEMPLATES.items()
}

#: ``opentelemetry.trace`` and ``.context`` once somebody imported them (None before:
#: nothing can be traced yet).
_trace: Any = None
_context: Any = None
#: The provider our tracer came from, and that tracer (None: no provider set, so no spans).
_provider: Any = None
_tracer: Any = None
#: A provider named by the environment is built by ``get_tracer_provider()`` on first use,
#: without the application importing OpenTelemetry: then we must import it ourselves.
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def current_tracer() -> Any:
    """Our tracer once the application has set a tracer provider; None before (and without
    opentelemetry), so an untraced request pays one lookup, not a no-op span.

    OpenTelemetry is not imported with the SDK: an application that sets a provider has
    imported ``opentelemetry.trace`` itself, so until it is in ``sys.modules`` nothing can be
    traced and the import (milliseconds) is saved. Asked at every call, so the first request
    after the application sets its provider is traced; the answer is cached by the provider's
    identity (a provider is set once).
    """
    global _trace, _context, _provider, _tracer
    if _tracer is not None:
        return _tracer  # a provider is set once per process: OpenTelemetry refuses a second
    trace = _trace
    if trace is None:
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:
            if not _PROVIDER_FROM_ENV:
                return None
            try:
                from opentelemetry import trace
            except ImportError:  # tracing is optional: ``pip install vtex-tracking[otel]``
                return None
        from opentelemetry import context  # imported by opentelemetry.trace: free

        _trace, _context = trace, context
    provider = trace.get_tracer_provider()
    if provider is not _provider:
        _provider = provider
        _tracer = (
            None
            if isinstance(provider, trace.ProxyTracerProvider)
            else provider.get_tracer("vtex_tracking", __version__)
        )
    return _tracer


class AttemptSpan:
    """One attempt's span: started before the request, ended with its outcome."""

    __slots__ = ("_recording", "_span", "_token")

    def __init__(self, span: Any, recording: bool) -> None:
        self._span = span
        self._recording = recording
        # The span is current while the request runs, so spans of instrumented HTTP
        # libraries (aiohttp's, if the application enabled it) nest under it; a sampled-out
        # span is made current too, so theirs are sampled out with it (ParentBased), not
        # started as traces of their own.
        self._token = _context.attach(_trace.set_span_in_context(span))

    def end(
        self,
        raw: RawResponse | None,
        retry_after: float | None,
        error: BaseException | None,
    ) -> None:
        """Record the outcome (status, request id, error type) and end the span."""
        _context.detach(self._token)
        span = self._span
        if not self._recording:
            span.end()
            return
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
    tracer: Any,
    *,
    account: str,
    host: str,
    order_id: str,
    invoice_number: str | None,
    attempt: int,
    pace_wait: float,
    method: str = "PUT",
) -> AttemptSpan:
    """A span for one attempt (``method``: PUT of the events, PATCH of the tracking
    number) from ``tracer`` (``current_tracer()``, asked first by the caller: an untraced
    request then pays one lookup and no call with its attributes).

    The sampler sees the span's name, kind, method and URL template; the attempt's own
    attributes are set only when the span records, so a sampled-out attempt costs the
    sampler's decision and little else.
    """
    span = tracer.start_span(
        _SPAN_NAMES[method], kind=_trace.SpanKind.CLIENT, attributes=_START_ATTRIBUTES[method]
    )
    recording: bool = span.is_recording()
    if recording:
        attributes: dict[str, Any] = {
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
        span.set_attributes(attributes)
    return AttemptSpan(span, recording)


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
        from ._reports import AccountMetrics  # with the package's other reports, on first use

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
