"""The sequential contenders: one call after the other, each call timed (``sync`` scenario).

Besides the common figures each returns ``p50_us`` and ``p99_us``, the per-call latency. The
SDK's sync facade runs against what a sync user could use instead (``requests.Session``,
``httpx.Client``) and against the floor under it (raw aiohttp, and the async client awaited
directly); ``sdk_portal_seq`` and ``sdk_threadsafe_seq`` are diagnostics: the async client
behind the two other ways a sync facade could reach it (an anyio ``BlockingPortal`` thread,
the facade's previous design; a plain asyncio loop thread and ``run_coroutine_threadsafe``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ._measure import Window, maybe_profile, window_figures, with_profile
from ._workload import BODY, HEADERS, invoice_number, order_id, path

#: Seconds one request may take before a contender counts it as failed.
REQUEST_TIMEOUT = 30.0

Params = dict[str, Any]


def _latency_figures(latencies: list[float]) -> Params:
    ordered = sorted(latencies)
    if not ordered:
        return {"p50_us": None, "p99_us": None}
    return {
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


def _figures(window: Window, n: int, statuses: Counter[str], latencies: list[float]) -> Params:
    return {**window_figures(window, n, statuses["200"], statuses), **_latency_figures(latencies)}


def _sync_sequence(p: Params, call: Callable[[int], str]) -> Params:
    """``warmup`` calls, then ``n`` timed ones; ``call(i)`` returns a status (or raises)."""
    n, warmup = p["n"], p["warmup"]
    for i in range(n, n + warmup):
        call(i)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    clock = time.perf_counter
    with Window() as window, maybe_profile(p) as profile:
        for i in range(n):
            started = clock()
            try:
                statuses[call(i)] += 1
            except Exception as exc:  # counted, like every contender's errors
                statuses[type(exc).__name__] += 1
            latencies.append(clock() - started)
    return with_profile(_figures(window, n, statuses, latencies), profile, p)


async def _async_sequence(p: Params, call: Callable[[int], Awaitable[str]]) -> Params:
    n, warmup = p["n"], p["warmup"]
    for i in range(n, n + warmup):
        await call(i)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    clock = time.perf_counter
    with Window() as window, maybe_profile(p) as profile:
        for i in range(n):
            started = clock()
            try:
                statuses[await call(i)] += 1
            except Exception as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(clock() - started)
    return with_profile(_figures(window, n, statuses, latencies), profile, p)


def _checked(status: int, body: bytes) -> str:
    """What every baseline does with an answer: check the status, parse the receipt."""
    if status == 200:
        json.loads(body)
    return str(status)


# -- the SDK -------------------------------------------------------------------------------------


def _client(p: Params, cls: Any) -> Any:
    from ._contenders import _sdk_client

    return _sdk_client(p, cls)


def _status() -> Any:
    from ._contenders import _sdk_status

    return _sdk_status()


def sdk_sync_seq(p: Params) -> Params:
    """``TrackingClient.update_tracking_status``, one call after the other."""
    from vtex_tracking import TrackingClient

    status = _status()
    with _client(p, TrackingClient) as client:

        def call(i: int) -> str:
            receipt = client.update_tracking_status(order_id(i), invoice_number(i), status)
            return str(receipt.status_code)

        return _sync_sequence(p, call)


async def sdk_async_seq(p: Params) -> Params:
    """``await AsyncTrackingClient.update_tracking_status``, one call after the other."""
    from vtex_tracking import AsyncTrackingClient

    status = _status()
    async with _client(p, AsyncTrackingClient) as client:

        async def call(i: int) -> str:
            receipt = await client.update_tracking_status(order_id(i), invoice_number(i), status)
            return str(receipt.status_code)

        return await _async_sequence(p, call)


def _behind_a_thread(p: Params, submit_from: Callable[[Any], Callable[..., Any]]) -> Params:
    """The async client in a loop of its own thread, each call handed over by ``submit``."""
    from vtex_tracking import AsyncTrackingClient

    status = _status()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def make() -> Any:
        return _client(p, AsyncTrackingClient)

    client = asyncio.run_coroutine_threadsafe(make(), loop).result()
    submit = submit_from(loop)
    try:

        def call(i: int) -> str:
            receipt = submit(client.update_tracking_status, order_id(i), invoice_number(i), status)
            return str(receipt.status_code)

        return _sync_sequence(p, call)
    finally:
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def sdk_threadsafe_seq(p: Params) -> Params:
    """Diagnostic: the async client behind ``asyncio.run_coroutine_threadsafe``."""

    def submit_from(loop: asyncio.AbstractEventLoop) -> Callable[..., Any]:
        def submit(func: Callable[..., Any], *args: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(func(*args), loop).result()

        return submit

    return _behind_a_thread(p, submit_from)


def sdk_portal_seq(p: Params) -> Params:
    """Diagnostic: the async client behind an anyio ``BlockingPortal`` (the former facade)."""
    from anyio.from_thread import BlockingPortal

    portals: list[BlockingPortal] = []

    def submit_from(loop: asyncio.AbstractEventLoop) -> Callable[..., Any]:
        async def open_portal() -> BlockingPortal:
            portal = BlockingPortal()
            await portal.__aenter__()
            return portal

        portal = asyncio.run_coroutine_threadsafe(open_portal(), loop).result()
        portals.append(portal)
        return lambda func, *args: portal.start_task_soon(func, *args).result()

    try:
        return _behind_a_thread(p, submit_from)
    finally:
        portals.clear()


# -- the baselines -------------------------------------------------------------------------------


def requests_seq(p: Params) -> Params:
    """One ``requests.Session``, one request after the other."""
    import requests

    base = p["url"]
    with requests.Session() as session:
        session.headers.update(HEADERS)

        def call(i: int) -> str:
            response = session.put(base + path(i), data=BODY, timeout=REQUEST_TIMEOUT)
            return _checked(response.status_code, response.content)

        return _sync_sequence(p, call)


def httpx_sync_seq(p: Params) -> Params:
    """One ``httpx.Client`` (sync, reused), one request after the other."""
    import httpx

    base = p["url"]
    with httpx.Client(headers=HEADERS, timeout=REQUEST_TIMEOUT) as session:

        def call(i: int) -> str:
            response = session.put(base + path(i), content=BODY)
            return _checked(response.status_code, response.content)

        return _sync_sequence(p, call)


async def aiohttp_raw_seq(p: Params) -> Params:
    """One ``aiohttp.ClientSession``, awaited one request after the other: the floor."""
    import aiohttp

    base = p["url"]
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(headers=HEADERS, timeout=timeout) as session:

        async def call(i: int) -> str:
            async with session.put(base + path(i), data=BODY) as response:
                return _checked(response.status, await response.read())

        return await _async_sequence(p, call)


SEQ_CONTENDERS: dict[str, Callable[[Params], Any]] = {
    "sdk_sync_seq": sdk_sync_seq,
    "sdk_async_seq": sdk_async_seq,
    "sdk_threadsafe_seq": sdk_threadsafe_seq,
    "sdk_portal_seq": sdk_portal_seq,
    "requests_seq": requests_seq,
    "httpx_sync_seq": httpx_sync_seq,
    "aiohttp_raw_seq": aiohttp_raw_seq,
}

#: The module each needs besides the SDK (to skip it when missing).
SEQ_REQUIRES = {"requests_seq": "requests", "httpx_sync_seq": "httpx", "aiohttp_raw_seq": "aiohttp"}
