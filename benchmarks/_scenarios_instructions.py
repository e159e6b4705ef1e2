"""CPU instructions per request, counted by valgrind: the bulk contenders' cost without the
machine's noise.

On a shared machine (a VM with neighbours) requests per second move by +-20 % between two runs
of the same code; an instruction count moves by well under 1 %. Each contender runs twice under
``valgrind --tool=callgrind`` against the local server, once with one request and once with
``n + 1`` (the same warm-up in both): the difference over ``n`` is what one request costs,
start-up and imports cancelled out. It counts the client process only (not the server), and
instructions, not time (a cache miss costs more than an add): a ratio to read beside the
requests/s ratios, not instead of them. Beside the pools, it counts the push on uvloop and the
push with a tracer provider whose sampler drops 99 % of the spans: what those cost or save in
work, where their requests/s ratios move by more than the effect.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._scenarios import Settings, log, missing_module
from ._server import Server, child_env

CONTENDERS = (
    "raw_aiohttp",
    "raw_aiohttp_orjson",
    "sdk_push",
    "sdk_push_stores_fixed",
    "sdk_push_uvloop",
    "sdk_traced_sampled",
)
#: ``--quick`` counts these two only (a smoke test of the harness).
QUICK = ("raw_aiohttp", "sdk_push")
#: The share of traces ``sdk_traced_sampled``'s sampler keeps (as in the ``tracing`` scenario).
SAMPLED_SHARE = 0.01
#: Requests counted per contender (full, quick): one run takes ~45 s under valgrind.
N_FULL, N_QUICK = 1_000, 200
_COLLECTED = re.compile(r"Collected : (\d+)")


def _count(name: str, params: dict[str, Any]) -> int | None:
    """Instructions executed by one contender process, or None if it failed."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks._contenders",
            name,
            json.dumps(params),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=child_env(),
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        log(f"  {name}: valgrind run failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return int(found.group(1))


def instructions(s: Settings, server: Server) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """k instructions per request of each bulk contender, and the SDK's ratios to the pools."""
    quick = s.mode == "quick"
    n = N_QUICK if quick else N_FULL
    names = [
        name
        for name in (QUICK if quick else CONTENDERS)
        if missing_module(name) is None  # uvloop and the OpenTelemetry SDK are optional
    ]
    log(f"\n== instructions per request (valgrind), {n} requests per contender ==")
    if shutil.which("valgrind") is None:
        log("  SKIPPED: valgrind is not installed (apt-get install valgrind)")
        return {"skipped": "valgrind is not installed"}, []
    # The bulk scenario's warm-up: past a new account's slow start, as requests/s are measured.
    base = {"url": server.url, "warmup": s.bulk_warmup, "concurrency": s.concurrency}
    extra: dict[str, dict[str, Any]] = {
        "raw_aiohttp_orjson": {"orjson": True},
        "sdk_push_stores_fixed": {"stores": s.hub_stores, "fixed_pace": True},
        "sdk_traced_sampled": {"sample": SAMPLED_SHARE},
    }
    jobs = {
        (name, size): {**base, **extra.get(name, {}), "n": size}
        for name in names
        for size in (1, n + 1)
    }
    # Two at a time: valgrind runs one core each, and the server needs little.
    with ThreadPoolExecutor(2) as pool:
        counts = {key: pool.submit(_count, key[0], params) for key, params in jobs.items()}
        per_request: dict[str, float | None] = {}
        for name in names:
            small, large = counts[(name, 1)].result(), counts[(name, n + 1)].result()
            value = None if small is None or large is None else (large - small) / n
            per_request[name] = value
            shown = "-" if value is None else f"{value / 1000:.1f}"
            log(f"  {name:<22} {shown} k instructions/request")
    sdk = per_request.get("sdk_push")

    def ratio(other: str) -> float | None:
        # As the speed ratios read: above 1 means the SDK does less work than ``other``.
        value = per_request.get(other)
        return None if sdk is None or value is None else value / sdk

    def change(name: str) -> float | None:
        # What ``name`` adds to (or, below 1, saves from) the push's work per request.
        value = per_request.get(name)
        return None if sdk is None or value is None else value / sdk

    section = {
        "n": n,
        "warmup": base["warmup"],
        "method": "valgrind callgrind, client process only: (Ir(n + 1) - Ir(1)) / n",
        "k_instructions_per_request": {
            name: None if v is None else round(v / 1000, 1) for name, v in per_request.items()
        },
        "push_vs": {other: ratio(other) for other in ("raw_aiohttp", "raw_aiohttp_orjson")},
        "of_push": {name: change(name) for name in ("sdk_push_uvloop", "sdk_traced_sampled")},
    }
    return section, []
