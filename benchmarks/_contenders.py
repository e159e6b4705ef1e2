"""The contenders, each run alone in a fresh process: ``python -m benchmarks._contenders NAME
'{"url": ..., ...}'`` prints one ``RESULT {json}`` line.

A fresh process per run makes its CPU time and peak RSS its own. Each contender warms its
connections up first (``warmup`` requests), then measures ``n`` requests in a ``Window``.
Imports happen inside the contenders, so a baseline's memory holds only its own stack.

Every contender does the same work per request: PUT the same body with the same headers to
a distinct tracking path, read the answer, check the status and parse the JSON receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ._contenders_pace import PACE_CONTENDERS
from ._contenders_seq import SEQ_CONTENDERS, SEQ_REQUIRES
from ._measure import (
    Window,
    maybe_profile,
    peak_rss_mb,
    rss_mb,
    window_figures,
    with_profile,
)
from ._workload import (
    APP_KEY,
    APP_TOKEN,
    BODY,
    EVENTS,
    HEADERS,
    USER_AGENT,
    invoice_number,
    order_id,
    path,
    store_credentials,
    store_name,
)

#: Seconds one request may take before a contender counts it as failed.
REQUEST_TIMEOUT = 30.0

Params = dict[str, Any]


# -- the SDK -------------------------------------------------------------------------------------


def _sdk_status() -> Any:
    from vtex_tracking import TrackingEvent, TrackingStatus
    from vtex_tracking._serde import encode_status

    status = TrackingStatus([TrackingEvent(*event) for event in EVENTS])
    # The baselines send BODY: make sure the SDK sends the very same bytes.
    assert encode_status(status) == BODY, "benchmarks/_workload.py BODY is out of date"
    return status


def _sdk_client(p: Params, cls: Any = None, **options: Any) -> Any:
    from vtex_tracking import AsyncTrackingClient

    return (cls or AsyncTrackingClient)(
        "bench",
        APP_KEY,
        APP_TOKEN,
        base_url=p["url"],
        max_concurrency=p.get("concurrency", 16),
        user_agent=USER_AGENT,
        timeout=REQUEST_TIMEOUT,
        **options,
    )


def _updates(indices: Iterable[int]) -> Iterator[Any]:
    """TrackingUpdates for ``indices``, built lazily."""
    from vtex_tracking import TrackingUpdate

    status = _sdk_status()
    for i in indices:
        yield TrackingUpdate(order_id(i), invoice_number(i), status)


def _summary_statuses(summary: Any) -> Counter[str]:
    return Counter({str(k): v for k, v in summary.by_outcome.items()})


def _fixed_pace(p: Params) -> Params:
    """``push`` options for ``fixed_pace: true``: no adaptive pace (no slow start for a new
    account), so only the engine's own cost is measured (``many_stores_bulk``)."""
    return {"adaptive": False} if p.get("fixed_pace") else {}


def _journal(p: Params, stack: contextlib.ExitStack) -> Params:
    """``push`` options for ``journal: true``: a new journal in a temporary directory."""
    if not p.get("journal"):
        return {}
    where = stack.enter_context(tempfile.TemporaryDirectory(prefix="vtex-bench-journal-"))
    return {"journal": str(Path(where) / "push.journal")}


async def sdk_push(p: Params) -> Params:
    """``AsyncTrackingClient.push_all`` of ``n`` distinct updates (built before timing);
    ``shared_pace`` and ``rate_limit`` go to the client when given (``scale_out``), and with
    ``journal`` the push writes a new resume journal (``send_less``)."""
    n, warmup, concurrency = p["n"], p["warmup"], p["concurrency"]
    updates = list(_updates(range(n)))
    options = {key: p[key] for key in ("shared_pace", "rate_limit") if p.get(key)}
    async with _sdk_client(p, **options) as client:
        await client.push_all(_updates(range(n, n + warmup)), concurrency=concurrency)
        with contextlib.ExitStack() as stack:
            push_options = {**_journal(p, stack), **_fixed_pace(p)}
            with Window() as window, maybe_profile(p) as profile:
                summary = await client.push_all(updates, concurrency=concurrency, **push_options)
        shared_states = [m.shared_pace for m in client.metrics().values()]
    result = window_figures(window, n, summary.succeeded, _summary_statuses(summary))
    result["shared_pace_states"] = shared_states
    return with_profile(result, profile, p)


async def sdk_send_pool(p: Params) -> Params:
    """64 tasks awaiting ``AsyncTrackingClient.send``: the client without the push engine.

    A diagnostic, not a target: ``sdk_push`` minus this is what the push engine costs.
    """
    from vtex_tracking import VtexTrackingError

    n, warmup, concurrency = p["n"], p["warmup"], p["concurrency"]
    updates = list(_updates(range(n + warmup)))
    async with _sdk_client(p) as client:

        async def run(items: list[Any]) -> Counter[str]:
            statuses: Counter[str] = Counter()
            shared = iter(items)

            async def worker() -> None:
                for update in shared:
                    try:
                        statuses[str((await client.send(update)).status_code)] += 1
                    except VtexTrackingError as exc:
                        statuses[type(exc).__name__] += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return statuses

        await run(updates[n:])
        with Window() as window:
            statuses = await run(updates[:n])
    return window_figures(window, n, statuses["200"], statuses)


async def sdk_memory(p: Params) -> Params:
    """``push`` of ``n`` lazily generated updates; RSS sampled as results arrive (with
    ``journal``, the push writes a resume journal)."""
    n, mark, every = p["n"], p["mark"], p["sample_every"]
    statuses: Counter[str] = Counter()
    rss_at_mark = None
    done = 0
    with contextlib.ExitStack() as stack:
        options = _journal(p, stack)
        async with _sdk_client(p) as client:
            _sdk_status()  # everything imported: the start figure is the SDK at rest
            samples: list[tuple[int, float | None]] = [(0, rss_mb())]
            with Window() as window:
                push = client.push(_updates(range(n)), concurrency=p["concurrency"], **options)
                async with push as stream:
                    async for result in stream:
                        done += 1
                        statuses[result.outcome] += 1
                        if done % every == 0:
                            samples.append((done, rss_mb()))
                        if done == mark:
                            rss_at_mark = rss_mb()
            rss_end = rss_mb()
    result = window_figures(window, n, statuses["200"], statuses)
    result.update(rss_start_mb=samples[0][1], rss_mark_mb=rss_at_mark, rss_end_mb=rss_end)
    result["rss_samples"] = samples
    return result


async def sdk_rate_limited(p: Params) -> Params:
    """``push_all`` against a rate-limited FakeOMS, with ``adaptive`` on or off."""
    from vtex_tracking import RetryPolicy

    n = p["n"]
    retry = RetryPolicy(max_attempts=p["max_attempts"])
    async with _sdk_client(p, retry=retry) as client:
        with Window() as window:
            summary = await client.push_all(
                _updates(range(n)), concurrency=p["concurrency"], adaptive=p["adaptive"]
            )
    result = window_figures(window, n, summary.succeeded, _summary_statuses(summary))
    result["client_requests"] = summary.requests
    return result


async def sdk_traced(p: Params) -> Params:
    """``sdk_push`` with tracing on: a ``TracerProvider`` whose ``BatchSpanProcessor`` (its
    defaults) hands every span to an exporter that counts them and drops them.

    The window ends after ``force_flush``, so it holds the whole cost of the spans: made,
    queued, batched and exported (the export thread's CPU is the process's too). The spans
    exported in the window are reported next to the requests made, to show they were real.
    With ``sample`` (``sdk_traced_sampled``), the provider's sampler keeps that share of the
    traces (``ParentBased(TraceIdRatioBased(sample))``, as production tracing is set up).
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class CountingExporter(SpanExporter):
        """Counts the spans it is given, and drops them."""

        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

    exporter = CountingExporter()
    sample = p.get("sample")
    sampler = ParentBased(TraceIdRatioBased(sample)) if sample is not None else None
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    n, warmup, concurrency = p["n"], p["warmup"], p["concurrency"]
    updates = list(_updates(range(n)))
    async with _sdk_client(p) as client:
        warm = await client.push_all(_updates(range(n, n + warmup)), concurrency=concurrency)
        provider.force_flush()
        before = exporter.spans
        with Window() as window, maybe_profile(p) as profile:
            summary = await client.push_all(updates, concurrency=concurrency)
            provider.force_flush()
        spans = exporter.spans - before
    provider.shutdown()
    result = window_figures(window, n, summary.succeeded, _summary_statuses(summary))
    result.update(
        requests=summary.requests,
        spans_exported=spans,
        requests_with_warmup=warm.requests + summary.requests,
        spans_exported_with_warmup=exporter.spans,
    )
    return with_profile(result, profile, p)


def _hub_client(p: Params, names: list[str], **options: Any) -> Any:
    """A client for a hub serving ``names`` (each with its own credentials), no default."""
    from vtex_tracking import Accounts, AsyncTrackingClient

    settings = {}
    for name in names:
        key, token = store_credentials(name)
        settings[name] = {"app_key": key, "app_token": token, "base_url": p["url"]}
    return AsyncTrackingClient.from_accounts(
        Accounts.from_mapping(settings),
        max_concurrency=p["concurrency"],
        user_agent=USER_AGENT,
        timeout=REQUEST_TIMEOUT,
        **options,
    )


def _store_updates(indices: Iterable[int], names: list[str]) -> Iterator[Any]:
    """TrackingUpdates for ``indices``, spread over the stores ``names`` in turn."""
    from vtex_tracking import TrackingUpdate

    status = _sdk_status()
    for i in indices:
        yield TrackingUpdate(
            order_id(i), invoice_number(i), status, account_name=names[i % len(names)]
        )


async def sdk_push_stores(p: Params) -> Params:
    """``push_all`` of ``n`` updates spread evenly over ``stores`` stores, through one pool:
    the multi-store engine (a lane per store, one global budget) with nothing throttled."""
    n, warmup, concurrency = p["n"], p["warmup"], p["concurrency"]
    names = [store_name(k) for k in range(p["stores"])]
    updates = list(_store_updates(range(n), names))
    async with _hub_client(p, names) as client:
        await client.push_all(
            _store_updates(range(n, n + warmup), names), concurrency=concurrency, **_fixed_pace(p)
        )
        with Window() as window, maybe_profile(p) as profile:
            summary = await client.push_all(updates, concurrency=concurrency, **_fixed_pace(p))
    result = window_figures(window, n, summary.succeeded, _summary_statuses(summary))
    return with_profile(result, profile, p)


async def sdk_many_stores(p: Params) -> Params:
    """One push over ``stores`` against a FakeOMS that limits each store on its own.

    Stops once every store but ``slow`` has all its results: by then the slow store has
    shown whether it holds the others back, and finishing it alone (its updates at its own
    rate) is what the single-store rate-limited scenario measures.
    """
    from vtex_tracking import RetryPolicy

    n, names, slow = p["n"], p["stores"], p["slow"]
    waiting = Counter(names[i % len(names)] for i in range(n))
    retry = RetryPolicy(max_attempts=p["max_attempts"])
    stopped_at = None
    async with _hub_client(p, names, retry=retry) as client:
        with Window() as window:
            stream = client.push(_store_updates(range(n), names), concurrency=p["concurrency"])
            async with stream:
                async for result in stream:
                    waiting[result.account] -= 1
                    others = sum(count for name, count in waiting.items() if name != slow)
                    if others == 0 and stopped_at is None:
                        stopped_at = stream.progress.elapsed_s
                        stream.stop()
            summary = await stream.summary()
    result = window_figures(window, n, summary.succeeded, _summary_statuses(summary))
    result["stopped_at_s"] = stopped_at
    result["by_store"] = {
        name: {
            "total": store.total,
            "succeeded": store.succeeded,
            "failed": store.failed,
            "requests": store.requests,
            "throttled": store.throttled,
            "elapsed_s": store.elapsed_s,
            "stopped": store.stopped,
        }
        for name, store in summary.by_account.items()
    }
    return result


# -- the baselines -------------------------------------------------------------------------------


def _check(
    status: int, body: bytes, statuses: Counter[str], loads: Callable[[bytes], Any] = json.loads
) -> None:
    """What every baseline does with an answer: check the status, parse the receipt."""
    if status == 200:
        loads(body)
    statuses[str(status)] += 1


async def _async_pool(
    send: Callable[[int], Any],
    indices: Iterable[int],
    concurrency: int,
    loads: Callable[[bytes], Any] = json.loads,
) -> Counter[str]:
    """``concurrency`` tasks taking indices from one iterator; ``send(i)`` returns a status
    and a body, parsed with ``loads``. Any error is counted under its type name."""
    statuses: Counter[str] = Counter()
    shared = iter(indices)

    async def worker() -> None:
        for i in shared:
            try:
                status, body = await send(i)
            except Exception as exc:
                statuses[type(exc).__name__] += 1
            else:
                _check(status, body, statuses, loads)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def raw_aiohttp(p: Params) -> Params:
    """64 tasks over one ``aiohttp.ClientSession(TCPConnector(limit=64))``: the stack's limit.
    With ``orjson`` in its params (``raw_aiohttp_orjson``) the answers are parsed by orjson,
    as the SDK parses them, instead of the standard library's json."""
    import aiohttp

    loads: Callable[[bytes], Any] = json.loads
    if p.get("orjson"):
        import orjson

        loads = orjson.loads

    base, n, warmup, concurrency = p["url"], p["n"], p["warmup"], p["concurrency"]
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, headers=HEADERS, timeout=timeout
    ) as session:

        async def send(i: int) -> tuple[int, bytes]:
            async with session.put(base + path(i), data=BODY) as response:
                return response.status, await response.read()

        await _async_pool(send, range(n, n + warmup), concurrency, loads)
        if p.get("memory"):
            return await _pool_memory(send, p)
        with Window() as window, maybe_profile(p) as profile:
            statuses = await _async_pool(send, range(n), concurrency, loads)
    result = window_figures(window, n, statuses["200"], statuses)
    return with_profile(result, profile, p)


async def _pool_memory(send: Callable[[int], Any], p: Params) -> Params:
    """The memory scenario's baseline: the raw pool over a lazy range, RSS sampled."""
    n, mark, every = p["n"], p["mark"], p["sample_every"]
    samples: list[tuple[int, float | None]] = [(0, rss_mb())]
    marks: dict[str, float | None] = {}

    def indices() -> Iterator[int]:
        for i in range(n):
            if i and i % every == 0:
                samples.append((i, rss_mb()))
            if i == mark:
                marks["mark"] = rss_mb()
            yield i

    with Window() as window:
        statuses = await _async_pool(send, indices(), p["concurrency"])
    result = window_figures(window, n, statuses["200"], statuses)
    result.update(rss_start_mb=samples[0][1], rss_mark_mb=marks.get("mark"), rss_end_mb=rss_mb())
    result["rss_samples"] = samples
    return result


async def httpx_pool(p: Params) -> Params:
    """64 tasks over one ``httpx.AsyncClient`` limited to 64 connections."""
    import httpx

    n, warmup, concurrency = p["n"], p["warmup"], p["concurrency"]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=p["url"], headers=HEADERS, limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:

        async def send(i: int) -> tuple[int, bytes]:
            response = await client.put(path(i), content=BODY)
            return response.status_code, response.content

        await _async_pool(send, range(n, n + warmup), concurrency)
        with Window() as window:
            statuses = await _async_pool(send, range(n), concurrency)
    return window_figures(window, n, statuses["200"], statuses)


def requests_threads(p: Params) -> Params:
    """64 threads, each with its own ``requests.Session`` (kept across the warm-up)."""
    import requests

    base, n, warmup, concurrency = p["url"], p["n"], p["warmup"], p["concurrency"]
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(HEADERS)
        return local.session  # type: ignore[no-any-return]

    def run(pool: ThreadPoolExecutor, indices: Iterable[int]) -> Counter[str]:
        shared, lock = iter(indices), threading.Lock()

        def worker() -> Counter[str]:
            statuses: Counter[str] = Counter()
            s = session()
            while True:
                with lock:
                    i = next(shared, None)
                if i is None:
                    return statuses
                try:
                    response = s.put(base + path(i), data=BODY, timeout=REQUEST_TIMEOUT)
                except requests.RequestException as exc:
                    statuses[type(exc).__name__] += 1
                else:
                    _check(response.status_code, response.content, statuses)

        futures = [pool.submit(worker) for _ in range(concurrency)]
        return sum((f.result() for f in futures), Counter())

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        run(pool, range(n, n + warmup))
        with Window() as window:
            statuses = run(pool, range(n))
    return window_figures(window, n, statuses["200"], statuses)


CONTENDERS: dict[str, Callable[[Params], Any]] = {
    "sdk_push": sdk_push,
    # The same on uvloop, as the CLI and the sync client run it when installed (``bulk``).
    "sdk_push_uvloop": sdk_push,
    # The same with ``shared_pace`` in its params: a name of its own to compare with sdk_push.
    "sdk_push_shared": sdk_push,
    # The same with ``journal`` in its params (``send_less``).
    "sdk_push_journal": sdk_push,
    "sdk_memory_journal": sdk_memory,
    "sdk_send_pool": sdk_send_pool,
    "sdk_memory": sdk_memory,
    "sdk_rate_limited": sdk_rate_limited,
    "sdk_traced": sdk_traced,
    # The same with ``sample`` in its params: 1 % of the traces kept (``tracing``).
    "sdk_traced_sampled": sdk_traced,
    "sdk_push_stores": sdk_push_stores,
    # Both with ``fixed_pace`` in their params: the engine's cost alone (``many_stores_bulk``).
    "sdk_push_stores_fixed": sdk_push_stores,
    "sdk_push_fixed": sdk_push,
    "sdk_many_stores": sdk_many_stores,
    "raw_aiohttp": raw_aiohttp,
    # The same with ``orjson`` in its params: the pool parsing as the SDK does (``bulk``).
    "raw_aiohttp_orjson": raw_aiohttp,
    "httpx_pool": httpx_pool,
    "requests_threads": requests_threads,
    **PACE_CONTENDERS,
    **SEQ_CONTENDERS,
}

#: The module each contender needs besides the standard library (to skip it when missing).
REQUIRES = {
    "sdk_traced": "opentelemetry.sdk",
    "sdk_traced_sampled": "opentelemetry.sdk",
    "sdk_push_uvloop": "uvloop",
    "raw_aiohttp": "aiohttp",
    "raw_aiohttp_orjson": "orjson",
    "httpx_pool": "httpx",
    "requests_threads": "requests",
    **SEQ_REQUIRES,
}


#: Contenders whose event loop is uvloop's (the others: asyncio's own).
ON_UVLOOP = frozenset({"sdk_push_uvloop"})


def main(argv: list[str]) -> int:
    name, params = argv[0], json.loads(argv[1])
    started = time.perf_counter()
    func = CONTENDERS[name]
    outcome = func(params)
    if asyncio.iscoroutine(outcome):
        if name in ON_UVLOOP:
            from vtex_tracking._loop import run

            outcome = run(outcome, use_uvloop=True)
        else:
            outcome = asyncio.run(outcome)
    outcome.update(
        contender=name,
        peak_rss_mb=peak_rss_mb(),
        process_s=time.perf_counter() - started,
    )
    print("RESULT " + json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
