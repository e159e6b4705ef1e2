"""What the SDK tells observers: a quiet logger, OpenTelemetry spans per attempt (checked with
the OpenTelemetry SDK's in-memory exporter), and per-account counters."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from vtex_tracking import TrackingStatus, TrackingUpdate, TransportError
from vtex_tracking.testing import FakeOMS, no_waits

from .conftest import APP_KEY, APP_TOKEN, ClientFactory

pytestmark = pytest.mark.anyio

NOW = {"Retry-After": "0"}


# -- logging ------------------------------------------------------------------------------------


def test_the_package_logger_has_a_null_handler() -> None:
    """The library adds a NullHandler to its logger and nothing else (the logging HOWTO)."""
    handlers = logging.getLogger("vtex_tracking").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]


def test_an_application_without_logging_set_up_prints_nothing() -> None:
    """Retries, a long Retry-After pause and refused credentials print nothing on stderr or
    stdout when the application configured no logging."""
    script = textwrap.dedent(
        f"""
        import datetime as dt
        from vtex_tracking import TrackingClient, TrackingEvent, TrackingStatus
        from vtex_tracking.testing import FakeOMS, set_testing

        set_testing(True)
        status = TrackingStatus([TrackingEvent("Natal", "RN", "Postado", dt.date(2026, 11, 20))])
        with FakeOMS() as oms:
            with TrackingClient("acme", {APP_KEY!r}, {APP_TOKEN!r}, base_url=oms.url) as c:
                oms.fail_next(2, 429, headers={{"Retry-After": "9"}})
                c.update_tracking_status("o-1", "NF-1", status)
                oms.fail_next(3, 401)
                for _ in range(3):
                    try:
                        c.update_tracking_status("o-2", "NF-2", status)
                    except Exception:
                        pass
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


async def test_an_expected_retry_is_logged_at_info_not_warning(
    caplog: pytest.LogCaptureFixture, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A handled 429 is one INFO line ('retrying'); nothing reaches WARNING."""
    caplog.set_level(logging.DEBUG, logger="vtex_tracking")
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 429, headers=NOW)
        await client.update_tracking_status("o-1", "NF-1", status)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert [r.levelname for r in retries] == ["INFO"]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_what_needs_a_person_is_logged_once_at_warning(
    caplog: pytest.LogCaptureFixture, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A long Retry-After (pausing the account) and credentials refused 3 times in a row
    each give one WARNING naming the account, however many requests hit them."""
    caplog.set_level(logging.INFO, logger="vtex_tracking")
    async with FakeOMS() as oms, make_client(oms) as client:
        with no_waits():
            oms.fail_next(3, 429, headers={"Retry-After": "8"})
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(client.update_tracking_status, f"o-{i}", "NF-1", status)
            oms.fail_next(6, 401)
            for _ in range(6):
                with pytest.raises(Exception, match=r"credentials|401"):
                    await client.update_tracking_status("o-x", "NF-1", status)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "'acme'" in warnings[0] and "Retry-After 8 s" in warnings[0]
    assert "'acme'" in warnings[1] and "refused its credentials 3 times" in warnings[1]
    assert all(APP_TOKEN not in w and APP_KEY not in w for w in warnings)


# -- tracing ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """The OpenTelemetry SDK with an in-memory exporter as the global tracer provider (set
    once per process, as OpenTelemetry allows); shut down after this module."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()  # later tests' spans are dropped, not kept in memory


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The exporter, emptied before and after each test."""
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()


def _attributes(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_the_first_call_after_a_provider_is_set_is_traced() -> None:
    """A call made before the application sets its tracer provider, then the provider set,
    then a call at once (well within a second): that call is a span."""
    script = textwrap.dedent(
        f"""
        import time
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from vtex_tracking import TrackingClient, TrackingEvent, TrackingStatus
        from vtex_tracking.testing import FakeOMS

        status = TrackingStatus([TrackingEvent("Natal", "RN", "Postado", "2026-11-20")])
        with FakeOMS(require_tracking_number=False) as oms:
            with TrackingClient("acme", {APP_KEY!r}, {APP_TOKEN!r}, base_url=oms.url) as c:
                c.update_tracking_status("o-1", "NF-1", status)  # no provider yet: no span
                provider, exporter = TracerProvider(), InMemorySpanExporter()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                set_at = time.monotonic()
                trace.set_tracer_provider(provider)
                c.update_tracking_status("o-2", "NF-2", status)
                elapsed = time.monotonic() - set_at
        spans = exporter.get_finished_spans()
        print(len(spans), spans[0].attributes["vtex.order_id"] if spans else None, elapsed < 1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "o-2", "True"]


async def test_each_attempt_is_a_client_span_with_its_outcome(
    spans: InMemorySpanExporter, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A call answered 429 then 200 gives two CLIENT spans named after the URL template:
    account, attempt, resend count, status, request id; the 429 marked as an error."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 429, headers=NOW)
        receipt = await client.update_tracking_status("1172452900000-01", "000030700", status)
    first, second = spans.get_finished_spans()
    for span in (first, second):
        assert span.name == "PUT /api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"
        assert span.kind is SpanKind.CLIENT
    a, b = _attributes(first), _attributes(second)
    assert (a["vtex.account"], a["vtex.attempt"], a["http.response.status_code"]) == (
        "acme",
        1,
        429,
    )
    assert a["error.type"] == "429" and first.status.status_code is StatusCode.ERROR
    assert a["vtex.retry_after_s"] == 0
    assert "http.request.resend_count" not in a
    assert (b["vtex.attempt"], b["http.request.resend_count"], b["http.response.status_code"]) == (
        2,
        1,
        200,
    )
    assert b["vtex.request_id"] == receipt.request_id
    assert b["vtex.order_id"] == "1172452900000-01" and b["vtex.invoice_number"] == "000030700"
    assert second.status.status_code is not StatusCode.ERROR


async def test_spans_carry_no_credentials_and_no_bodies(
    spans: InMemorySpanExporter, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """Nothing of the app key, the app token or the request body is in any span."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 401)
        with pytest.raises(Exception, match="401"):
            await client.update_tracking_status("o-1", "NF-1", status)
        await client.update_tracking_status("o-2", "NF-2", status)
    dumped = " ".join(span.to_json() for span in spans.get_finished_spans())
    assert len(spans.get_finished_spans()) == 2
    for secret in (APP_KEY, APP_TOKEN, "Em trânsito", "Coletado"):
        assert secret not in dumped


async def test_a_span_tells_how_long_the_attempt_waited_for_the_pace(
    spans: InMemorySpanExporter, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """With rate_limit=4, the last of 8 simultaneous calls waits for its turn: its span and
    the account's metrics say how long."""
    async with FakeOMS() as oms, make_client(oms, rate_limit=4) as client:
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(client.update_tracking_status, f"o-{i}", "NF-1", status)
        metrics = client.metrics()["acme"]
    waits = [_attributes(s)["vtex.pace.wait_s"] for s in spans.get_finished_spans()]
    assert len(waits) == 8
    assert max(waits) > 0.1
    assert metrics.pace_wait_s >= max(waits)


async def test_an_attempt_without_an_answer_is_an_error_span(
    spans: InMemorySpanExporter, make_client: ClientFactory, status: TrackingStatus
) -> None:
    """A connection closed without an answer ends its span with the error's type."""
    async with FakeOMS() as oms, make_client(oms, retry=None) as client:
        oms.drop_next(10)
        with pytest.raises(TransportError):
            await client.update_tracking_status("o-1", "NF-1", status)
    finished = spans.get_finished_spans()
    assert finished and all(s.status.status_code is StatusCode.ERROR for s in finished)
    assert all("Error" in _attributes(s)["error.type"] for s in finished)
    assert all("http.response.status_code" not in _attributes(s) for s in finished)


# -- counters -----------------------------------------------------------------------------------


async def test_metrics_count_single_calls_and_pushes_per_account(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """One call retried after a 429, one refused with 400 and a push of 5: the account's
    counters add up, and its pace is reported."""
    async with FakeOMS() as oms, make_client(oms) as client:
        assert client.metrics()["acme"].requests == 0
        oms.fail_next(1, 429, headers=NOW)
        await client.update_tracking_status("o-1", "NF-1", status)
        oms.fail_next(1, 400)
        with pytest.raises(Exception, match="400"):
            await client.update_tracking_status("o-2", "NF-2", status)
        updates = [TrackingUpdate(f"p-{i}", "NF-1", status) for i in range(5)]
        await client.push_all(updates)
        metrics = client.metrics()["acme"]
    assert (metrics.requests, metrics.retries) == (8, 1)
    assert (metrics.confirmed, metrics.throttled, metrics.errors, metrics.no_answer) == (
        6,
        1,
        1,
        0,
    )
    assert metrics.in_flight == 0 and metrics.window >= 1 and metrics.rtt_s > 0
    assert metrics.account == "acme" and not metrics.auth_stopped


def test_the_sync_client_reports_the_same_metrics(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """TrackingClient.metrics() reads the same counters from any thread."""
    with FakeOMS() as oms:
        client = make_client.sync(oms)
        client.update_tracking_status("o-1", "NF-1", status)
        client.push_all([TrackingUpdate("p-1", "NF-1", status)])
        assert client.metrics()["acme"].confirmed == 2


async def test_the_tracking_number_call_is_a_patch_span_of_the_invoice(
    spans: InMemorySpanExporter, make_client: ClientFactory
) -> None:
    """``send_tracking_number`` is traced like the events' PUT, named after its own method and
    URL template."""
    async with FakeOMS() as oms, make_client(oms) as client:
        await client.send_tracking_number("1172452900000-01", "000030700", "BR123")
    (span,) = spans.get_finished_spans()
    assert span.name == "PATCH /api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}"
    attributes = _attributes(span)
    assert attributes["http.request.method"] == "PATCH"
    assert attributes["url.template"] == "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}"
    assert attributes["http.response.status_code"] == 200


def test_a_sampled_out_attempt_records_nothing_and_a_sampled_in_one_carries_everything() -> None:
    """With a sampler that drops the span, the attempt's span does not record and the SDK sets
    no attribute on it (nor hands the sampler more than the method and URL template); with
    the same sampler letting it through, the span carries every attribute. A provider whose
    tracer notes each call on the spans it starts sees what the SDK does to them."""
    script = textwrap.dedent(
        f"""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
        from vtex_tracking import TrackingClient, TrackingEvent, TrackingStatus
        from vtex_tracking.testing import FakeOMS

        class Switch(Sampler):
            sample = False
            seen = []

            def should_sample(self, parent_context, trace_id, name, kind=None,
                              attributes=None, links=None, trace_state=None):
                self.seen.append(dict(attributes or {{}}))
                decision = Decision.RECORD_AND_SAMPLE if self.sample else Decision.DROP
                return SamplingResult(decision, attributes if self.sample else None)

            def get_description(self):
                return "Switch"

        calls = []

        class Noting:
            # Every call on a span the SDK started, then the real span's answer.
            def __init__(self, span):
                self._span = span

            def __getattr__(self, name):
                real = getattr(self._span, name)
                if not callable(real):
                    return real

                def noted(*args, **kwargs):
                    calls.append(name)
                    return real(*args, **kwargs)

                return noted

        class NotingTracer:
            def __init__(self, tracer):
                self._tracer = tracer

            def start_span(self, *args, **kwargs):
                calls.append("start_span")
                return Noting(self._tracer.start_span(*args, **kwargs))

        class NotingProvider(trace.TracerProvider):
            def __init__(self, provider):
                self._provider = provider

            def get_tracer(self, *args, **kwargs):
                return NotingTracer(self._provider.get_tracer(*args, **kwargs))

        sampler, exporter = Switch(), InMemorySpanExporter()
        sdk = TracerProvider(sampler=sampler)
        sdk.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(NotingProvider(sdk))
        status = TrackingStatus([TrackingEvent("Natal", "RN", "Postado", "2026-11-20")])
        with FakeOMS(require_tracking_number=False) as oms:
            with TrackingClient("acme", {APP_KEY!r}, {APP_TOKEN!r}, base_url=oms.url) as c:
                c.update_tracking_status("o-1", "NF-1", status)
                out_calls, out_seen = list(calls), list(sampler.seen)
                calls.clear()
                sampler.sample = True
                c.update_tracking_status("o-2", "NF-2", status)
        print(out_calls)
        print(sorted(out_seen[0]))
        print(len(exporter.get_finished_spans()))
        print(sorted(exporter.get_finished_spans()[0].attributes))
        print(sorted(set(calls)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out_calls, out_seen, exported, attributes, in_calls = done.stdout.splitlines()
    # Sampled out: started, asked whether it records, made current, ended; nothing else.
    assert ast.literal_eval(out_calls) == ["start_span", "is_recording", "end"]
    assert ast.literal_eval(out_seen) == ["http.request.method", "url.template"]
    # Sampled in: the one span exported, with every attribute of the attempt.
    assert exported == "1"
    assert ast.literal_eval(attributes) == sorted(
        [
            "http.request.method",
            "url.template",
            "server.address",
            "vtex.account",
            "vtex.order_id",
            "vtex.invoice_number",
            "vtex.attempt",
            "vtex.pace.wait_s",
            "http.response.status_code",
            "vtex.request_id",
        ]
    )
    assert {"set_attributes", "set_attribute"} <= set(ast.literal_eval(in_calls))
