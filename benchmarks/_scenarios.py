"""The scenarios: which contenders run, how often, in which order, and what is compared.

Each scenario runs its contenders as fresh subprocesses (``_contenders``), interleaved: in
repetition *r* the list is rotated by *r*, so no contender always runs first or last on a
machine whose load drifts. Ratios are paired (same repetition), then summarised.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._contenders import REQUIRES
from ._server import Server, child_env, fake_oms_server
from ._stats import paired_ratios, spread, target
from ._workload import store_name

_ROOT = Path(__file__).resolve().parent.parent

Run = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions of every scenario (``full()`` or ``quick()``)."""

    mode: str
    reps: int
    concurrency: int
    bulk_n: int
    bulk_slow_n: int  # httpx and requests are ~10x slower: fewer requests, same rate
    bulk_warmup: int
    sync_n: int
    sync_warmup: int
    memory_n: int
    memory_mark: int
    memory_baseline_n: int
    rl_n: int
    rl_rate: float
    rl_burst: int
    rl_retry_after: str
    rl_max_attempts: int
    rl_reps: int
    profile_n: int
    ms_stores: int  # many stores, throttled: the stores, one slow and one revoked among them
    ms_per_store: int
    ms_rate: float
    ms_slow_rate: float
    ms_reps: int
    hub_stores: int  # many stores, unthrottled: against a single-store push of bulk_n
    # Pacing (``_scenarios_pace``): single calls, mixed, latency.
    sc_n: int  # single calls against one rate-limited account
    sc_rate: float
    sc_tasks: int  # coroutines sharing one AsyncTrackingClient
    sc_threads: int  # threads sharing one TrackingClient
    sc_max_attempts: int
    sc_reps: int
    mix_push_n: int  # one push_all of these...
    mix_single_n: int  # ...and these single calls, at once, on one client
    mix_tasks: int
    mix_reps: int
    lat_latencies: tuple[float, ...]  # seconds the server adds to every answer
    lat_rate: float  # (a) and (c): one account at this rate
    lat_n: int
    lat_stores: int  # (b): this many stores...
    lat_store_rate: float  # ...each at this rate...
    lat_stores_n: int  # ...with these updates over all of them
    lat_steady_after_s: float  # "steady" throughput: confirmations after this many seconds
    lat_deadline_factor: float  # a push is stopped after this many times its ideal time
    lat_compare_c16: bool  # also (a) with max_concurrency=16 at the first latency
    lat_reps: int

    @classmethod
    def full(cls) -> Settings:
        """The sizes of the brief: 1,500 rate-limited updates, a million for memory."""
        return cls(
            mode="full", reps=5, concurrency=64,
            bulk_n=15_000, bulk_slow_n=3_000, bulk_warmup=2_000,
            sync_n=3_000, sync_warmup=2_000,
            memory_n=1_000_000, memory_mark=100_000, memory_baseline_n=200_000,
            rl_n=1_500, rl_rate=100.0, rl_burst=10, rl_retry_after="1", rl_max_attempts=10,
            rl_reps=3, profile_n=15_000,
            ms_stores=20, ms_per_store=1_000, ms_rate=50.0, ms_slow_rate=5.0, ms_reps=3,
            hub_stores=100,
            sc_n=1_500, sc_rate=100.0, sc_tasks=64, sc_threads=16, sc_max_attempts=10, sc_reps=3,
            mix_push_n=1_000, mix_single_n=500, mix_tasks=16, mix_reps=3,
            lat_latencies=(0.1, 0.25), lat_rate=500.0, lat_n=10_000,
            lat_stores=20, lat_store_rate=50.0, lat_stores_n=20_000,
            lat_steady_after_s=5.0, lat_deadline_factor=3.0, lat_compare_c16=True, lat_reps=3,
        )  # fmt: skip

    @classmethod
    def quick(cls) -> Settings:
        """A smoke run: every scenario, small, in well under two minutes."""
        return cls(
            mode="quick", reps=2, concurrency=64,
            bulk_n=2_000, bulk_slow_n=400, bulk_warmup=200,
            sync_n=300, sync_warmup=300,
            memory_n=30_000, memory_mark=3_000, memory_baseline_n=30_000,
            rl_n=300, rl_rate=50.0, rl_burst=10, rl_retry_after="1", rl_max_attempts=10,
            rl_reps=1, profile_n=2_000,
            ms_stores=20, ms_per_store=250, ms_rate=50.0, ms_slow_rate=5.0, ms_reps=1,
            hub_stores=100,
            sc_n=300, sc_rate=100.0, sc_tasks=64, sc_threads=16, sc_max_attempts=10, sc_reps=1,
            mix_push_n=200, mix_single_n=100, mix_tasks=16, mix_reps=1,
            lat_latencies=(0.1,), lat_rate=500.0, lat_n=2_000,
            lat_stores=20, lat_store_rate=50.0, lat_stores_n=4_000,
            lat_steady_after_s=1.0, lat_deadline_factor=3.0, lat_compare_c16=False, lat_reps=1,
        )  # fmt: skip

    def with_bulk_n(self, n: int) -> Settings:
        """These settings with the bulk (and tracing, and profile) size set to ``n``."""
        values = asdict(self)
        slow = max(min(n, 400), n // 5)
        values.update(bulk_n=n, bulk_slow_n=slow, bulk_warmup=min(self.bulk_warmup, n), profile_n=n)
        return Settings(**values)

    def with_reps(self, reps: int) -> Settings:
        values = asdict(self)
        values.update(
            reps=reps,
            **{
                key: min(getattr(self, key), reps)
                for key in ("rl_reps", "ms_reps", "sc_reps", "mix_reps", "lat_reps")
            },
        )
        return Settings(**values)


def log(message: str) -> None:
    print(message, flush=True)


def missing_module(contender: str) -> str | None:
    """Why a contender cannot run here (its library is not installed), or None."""
    module = REQUIRES.get(contender)
    if module is None:
        return None
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a submodule's parent package is missing
        found = False
    if not found:
        package = module.replace(".", "-")
        return f"{module} is not installed (pip install {package})"
    return None


def run_contender(name: str, params: dict[str, Any], timeout: float) -> Run | None:
    """Run one contender in a fresh process, killed after ``timeout`` seconds; its figures,
    or None (the reason is logged and kept under ``failed_runs``)."""
    label = f"  {name:<17} n={params.get('n')}"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks._contenders", name, json.dumps(params)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=_ROOT,
            env=child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        _FAILURES.append(f"{name}: killed after the {timeout:.0f} s limit")
        log(f"{label}  KILLED after {timeout:.0f} s")
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        _FAILURES.append(f"{name}: {tail[0]}")
        log(f"{label}  FAILED: {tail[0]}")
        return None
    run: Run = json.loads(lines[-1][len("RESULT ") :])
    log(
        f"{label}  {run['rps']:8.0f} req/s  {run['cpu_us_per_req']:7.0f} us CPU/req"
        f"  peak {run['peak_rss_mb']:5.1f} MB  errors {run['errors']}"
        f"  ({time.monotonic() - started:.1f} s)"
    )
    return run


_FAILURES: list[str] = []


def take_failures() -> list[str]:
    """Failed runs logged since the last call."""
    failures = list(_FAILURES)
    _FAILURES.clear()
    return failures


def _timeout(n: int, floor_rps: float) -> float:
    """A hard limit for one run: generous, but a hang cannot stall the suite."""
    return 60.0 + n / floor_rps


def _interleaved(
    names: list[str], reps: int, params_for: dict[str, dict[str, Any]], floor_rps: float
) -> dict[str, list[Run | None]]:
    runs: dict[str, list[Run | None]] = {name: [] for name in names}
    for rep in range(reps):
        log(f" repetition {rep + 1}/{reps}")
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            params = params_for[name]
            runs[name].append(run_contender(name, params, _timeout(params["n"], floor_rps)))
    return runs


def _contender_section(runs: list[Run | None], n: int) -> dict[str, Any]:
    done = [r for r in runs if r is not None]
    return {
        "n": n,
        "runs_ok": len(done),
        "runs_failed": len(runs) - len(done),
        "errors": sum(r["errors"] for r in done),
        **{
            key: spread([r[key] for r in done])
            for key in ("rps", "cpu_us_per_req", "peak_rss_mb", "wall_s")
        },
    }


def _compare(
    names: list[str],
    reps: int,
    params_for: dict[str, dict[str, Any]],
    subject: str,
    floor_rps: float,
) -> dict[str, Any]:
    """Run ``names`` (skipping missing ones) and compare ``subject`` with each other one."""
    return _compare_runs(names, reps, params_for, subject, floor_rps)[0]


def _compare_runs(
    names: list[str],
    reps: int,
    params_for: dict[str, dict[str, Any]],
    subject: str,
    floor_rps: float,
) -> tuple[dict[str, Any], dict[str, list[Run | None]]]:
    """``_compare``, and the runs themselves (None for a failed one), by contender."""
    skipped = {name: why for name in names if (why := missing_module(name))}
    for name, why in skipped.items():
        log(f"  {name:<17} SKIPPED: {why}")
    available = [name for name in names if name not in skipped]
    runs = _interleaved(available, reps, params_for, floor_rps)
    ratios = {
        name: {
            "speed": paired_ratios(runs[subject], runs[name], "rps"),
            "cpu": paired_ratios(runs[subject], runs[name], "cpu_us_per_req"),
        }
        for name in available
        if name != subject
    }
    return {
        "reps": reps,
        "contenders": {
            name: _contender_section(runs[name], params_for[name]["n"]) for name in available
        },
        "skipped": skipped,
        "ratios_of_" + subject: ratios,
        "failed_runs": take_failures(),
    }, runs


def _median(section: dict[str, Any], subject: str, other: str) -> float | None:
    ratio = section["ratios_of_" + subject].get(other, {}).get("speed")
    return ratio["median"] if ratio else None


def bulk(s: Settings, server: Server) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Throughput of ``push_all`` at concurrency 64 against three hand-written pools."""
    log(f"\n== bulk: {s.bulk_n} updates at concurrency {s.concurrency} ==")
    # sdk_send_pool is a diagnostic: the client without the push engine.
    names = [
        "sdk_push", "sdk_push_uvloop", "raw_aiohttp", "raw_aiohttp_orjson", "httpx_pool",
        "requests_threads", "sdk_send_pool",
    ]  # fmt: skip
    params_for = {
        name: {
            "url": server.url,
            "n": s.bulk_slow_n if name in ("httpx_pool", "requests_threads") else s.bulk_n,
            "warmup": s.bulk_warmup,
            "concurrency": s.concurrency,
            "orjson": name == "raw_aiohttp_orjson",
        }
        for name in names
    }
    section = _compare(names, s.reps, params_for, "sdk_push", floor_rps=50)
    skipped = section["skipped"]
    targets = [
        target(
            "bulk_vs_raw_aiohttp_0_9",
            "bulk push >= 0.9 x raw aiohttp pool (requests/s; issue 14)",
            _median(section, "sdk_push", "raw_aiohttp"),
            0.9,
            ">=",
            unit="x",
            skipped=skipped.get("raw_aiohttp"),
        ),
        target(
            "bulk_vs_raw_aiohttp",
            "bulk push >= 0.95 x raw aiohttp pool (requests/s; first brief)",
            _median(section, "sdk_push", "raw_aiohttp"),
            0.95,
            ">=",
            unit="x",
            skipped=skipped.get("raw_aiohttp"),
        ),
        target(
            "bulk_vs_raw_aiohttp_json",
            "bulk push >= 1.0 x raw aiohttp pool parsing with json (requests/s; issue 26)",
            _median(section, "sdk_push", "raw_aiohttp"),
            1.0,
            ">=",
            unit="x",
            skipped=skipped.get("raw_aiohttp"),
        ),
        target(
            "bulk_vs_raw_aiohttp_orjson",
            "bulk push >= 0.9 x raw aiohttp pool parsing with orjson (requests/s; issue 26)",
            _median(section, "sdk_push", "raw_aiohttp_orjson"),
            0.9,
            ">=",
            unit="x",
            skipped=skipped.get("raw_aiohttp_orjson"),
        ),
        target(
            "bulk_uvloop",
            "bulk push with uvloop >= 1.3 x today's push on asyncio's loop (requests/s)",
            _uvloop_gain(section),
            1.3,
            ">=",
            unit="x",
            skipped=skipped.get("sdk_push_uvloop"),
        ),
        target(
            "bulk_vs_httpx",
            "bulk push >= 5 x httpx.AsyncClient pool (requests/s)",
            _median(section, "sdk_push", "httpx_pool"),
            5.0,
            ">=",
            unit="x",
            skipped=skipped.get("httpx_pool"),
        ),
    ]
    return section, targets


def _uvloop_gain(section: dict[str, Any]) -> float | None:
    """Median of the paired speed ratios sdk_push_uvloop / sdk_push (the section's ratios
    are sdk_push / each: inverted per repetition, then the median taken)."""
    ratio = section["ratios_of_sdk_push"].get("sdk_push_uvloop", {}).get("speed")
    if not ratio:
        return None
    return float(statistics.median(1 / r for r in ratio["runs"]))


def sync(s: Settings, server: Server) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Sequential single calls: the sync facade against requests, httpx's sync client, raw
    aiohttp and the async client (and, as diagnostics, the two thread-hop designs). The
    warm-up outlasts a new account's slow start (~250 calls paced), which is no overhead."""
    log(f"\n== sync facade: {s.sync_n} sequential calls ==")
    names = [
        "sdk_sync_seq",
        "requests_seq",
        "httpx_sync_seq",
        "aiohttp_raw_seq",
        "sdk_async_seq",
        "sdk_threadsafe_seq",
        "sdk_portal_seq",
    ]
    params_for = {
        name: {"url": server.url, "n": s.sync_n, "warmup": s.sync_warmup} for name in names
    }
    section, runs = _compare_runs(names, s.reps, params_for, "sdk_sync_seq", floor_rps=50)
    for name, contender in section["contenders"].items():
        for key in ("p50_us", "p99_us"):
            contender[key] = spread([r.get(key) for r in runs[name] if r is not None])
    overhead = _paired_differences(runs["sdk_sync_seq"], runs.get("aiohttp_raw_seq"), "p50_us")
    section["p50_overhead_over_aiohttp_raw_us"] = overhead
    # What the facade itself adds, over the async client awaited (the rest is the core's).
    for key in ("p50_us", "cpu_us_per_req"):
        section[f"facade_{key}_over_sdk_async"] = _paired_differences(
            runs["sdk_sync_seq"], runs.get("sdk_async_seq"), key
        )
    skipped = section["skipped"]
    targets = [
        target(
            "sync_vs_requests",
            "sync facade sequential >= 2.0 x requests.Session",
            _median(section, "sdk_sync_seq", "requests_seq"),
            2.0,
            ">=",
            unit="x",
            skipped=skipped.get("requests_seq"),
        ),
        target(
            "sync_vs_httpx_sync",
            "sync facade sequential >= 1.1 x httpx.Client (sync, reused)",
            _median(section, "sdk_sync_seq", "httpx_sync_seq"),
            1.1,
            ">=",
            unit="x",
            skipped=skipped.get("httpx_sync_seq"),
        ),
        target(
            "sync_p50_overhead_us",
            "sync facade p50 per-call overhead over raw aiohttp <= 100 us",
            overhead["median"] if overhead else None,
            100.0,
            "<=",
            unit="us",
            skipped=skipped.get("aiohttp_raw_seq"),
        ),
    ]
    return section, targets


def _paired_differences(
    subjects: list[Run | None], others: list[Run | None] | None, key: str
) -> dict[str, Any] | None:
    """``subject[key] - other[key]`` for each repetition where both ran; then their spread."""
    if others is None:
        return None
    return spread(
        [
            a[key] - b[key]
            for a, b in zip(subjects, others, strict=True)
            if a is not None and b is not None and a.get(key) is not None and b.get(key)
        ]
    )


def memory(s: Settings, server: Server) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """RSS while pushing a lazily generated stream, against the raw pool on a lazy range."""
    log(f"\n== memory: push of {s.memory_n} lazily generated updates ==")
    common = {"url": server.url, "concurrency": s.concurrency, "warmup": 0}
    sdk = run_contender(
        "sdk_memory",
        {**common, "n": s.memory_n, "mark": s.memory_mark, "sample_every": s.memory_n // 50},
        _timeout(s.memory_n, 300),
    )
    baseline_n = s.memory_baseline_n
    baseline = None
    baseline_skipped = missing_module("raw_aiohttp")
    if baseline_skipped is None:
        baseline = run_contender(
            "raw_aiohttp",
            {
                **common,
                "memory": True,
                "n": baseline_n,
                "mark": min(s.memory_mark, baseline_n // 2),
                "sample_every": max(1, baseline_n // 50),
            },
            _timeout(baseline_n, 300),
        )
    section: dict[str, Any] = {
        "n": s.memory_n,
        "mark": s.memory_mark,
        "sdk": _memory_figures(sdk),
        "baseline_raw_aiohttp": _memory_figures(baseline),
        "baseline_n": baseline_n,
        "failed_runs": take_failures(),
    }
    figures = section["sdk"] or {}
    growth = figures.get("growth_after_mark_mb")
    targets = [
        target(
            f"memory_peak_{s.memory_n}",
            f"push of {s.memory_n:,} updates: peak RSS < 100 MB",
            figures.get("peak_rss_mb"),
            100.0,
            "<",
            unit="MB",
        ),
        target(
            "memory_flat_after_mark",
            f"RSS at the end within 10 MB of RSS at the {s.memory_mark:,} mark",
            abs(growth) if growth is not None else None,
            10.0,
            "<=",
            unit="MB",
        ),
    ]
    return section, targets


def _memory_figures(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    mark, end = run.get("rss_mark_mb"), run.get("rss_end_mb")
    return {
        "n": run["n"],
        "errors": run["errors"],
        "rps": run["rps"],
        "cpu_us_per_req": run["cpu_us_per_req"],
        "rss_start_mb": run.get("rss_start_mb"),
        "rss_mark_mb": mark,
        "rss_end_mb": end,
        "peak_rss_mb": run["peak_rss_mb"],
        "growth_after_mark_mb": end - mark if mark is not None and end is not None else None,
        "rss_samples": run.get("rss_samples", []),
    }


def rate_limited(s: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Goodput against FakeOMS's rate limit (own process), adaptive pacing on and off."""
    ideal = s.rl_n / s.rl_rate
    log(
        f"\n== rate-limited: {s.rl_n} updates, FakeOMS at {s.rl_rate:g}/s (burst {s.rl_burst},"
        f" Retry-After {s.rl_retry_after}), ideal {ideal:.1f} s =="
    )
    runs: dict[str, list[dict[str, Any]]] = {"adaptive": [], "fixed": []}
    with fake_oms_server(s.rl_rate, s.rl_burst, s.rl_retry_after) as oms:
        for rep in range(s.rl_reps):
            log(f" repetition {rep + 1}/{s.rl_reps}")
            modes = [True, False] if rep % 2 == 0 else [False, True]
            for adaptive in modes:
                oms.reset()
                params = {
                    "url": oms.url,
                    "n": s.rl_n,
                    "concurrency": s.concurrency,
                    "adaptive": adaptive,
                    "max_attempts": s.rl_max_attempts,
                }
                run = run_contender("sdk_rate_limited", params, 60 + 10 * ideal)
                if run is None:
                    continue
                statuses = oms.statuses()
                answers = sum(statuses.values())
                figures = {
                    "wall_s": run["wall_s"],
                    "time_over_ideal": run["wall_s"] / ideal,
                    "server_statuses": statuses,
                    "share_429": statuses.get("429", 0) / answers if answers else None,
                    "failed": run["errors"],
                    "cpu_us_per_req": run["cpu_us_per_req"],
                }
                runs["adaptive" if adaptive else "fixed"].append(figures)
                log(
                    f"    adaptive={adaptive!s:<5}  {figures['wall_s']:6.1f} s"
                    f" = {figures['time_over_ideal']:.2f} x ideal, 429s"
                    f" {(figures['share_429'] or 0) * 100:4.1f} %, failed {figures['failed']}"
                )
    section: dict[str, Any] = {
        "n": s.rl_n,
        "rate_limit": s.rl_rate,
        "burst": s.rl_burst,
        "retry_after": s.rl_retry_after,
        "ideal_s": ideal,
        "reps": s.rl_reps,
        "server": "FakeOMS in its own process (benchmarks/_fake_oms_server.py)",
        "failed_runs": take_failures(),
    }
    for mode, figures_list in runs.items():
        section[mode] = {
            "time_over_ideal": spread([f["time_over_ideal"] for f in figures_list]),
            "share_429": spread([f["share_429"] for f in figures_list]),
            "wall_s": spread([f["wall_s"] for f in figures_list]),
            "failed": sum(f["failed"] for f in figures_list),
            "runs": figures_list,
        }
    time_ratio = section["adaptive"]["time_over_ideal"]
    share = section["adaptive"]["share_429"]
    targets = [
        target(
            "rate_limited_time",
            "rate-limited push (adaptive) <= 1.15 x ideal time N/R",
            time_ratio["median"] if time_ratio else None,
            1.15,
            "<=",
            unit="x",
        ),
        target(
            "rate_limited_429_share",
            "rate-limited push (adaptive): < 3 % of answers are 429",
            share["median"] * 100 if share else None,
            3.0,
            "<",
            unit="%",
        ),
    ]
    return section, targets


def many_stores(s: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One push over many stores, each limited on its own by FakeOMS (own process): one store
    is slow and one has a revoked key; do the healthy ones keep their own pace?"""
    names = [store_name(k) for k in range(s.ms_stores)]
    slow, revoked = names[-2], names[-1]
    burst, retry_after = 10, "1"
    stores: dict[str, dict[str, Any]] = {
        name: {"rate_limit": s.ms_rate, "burst": burst} for name in names
    }
    stores[slow]["rate_limit"] = s.ms_slow_rate
    stores[revoked]["revoked"] = True
    n = s.ms_stores * s.ms_per_store
    ideal = s.ms_per_store / s.ms_rate
    log(
        f"\n== many stores: {n:,} updates over {s.ms_stores} stores, each limited to"
        f" {s.ms_rate:g}/s (burst {burst}, Retry-After {retry_after}) except {slow} at"
        f" {s.ms_slow_rate:g}/s and {revoked} revoked; ideal per healthy store {ideal:.1f} s =="
    )
    reps = []
    with fake_oms_server(None, burst, retry_after, stores=stores) as oms:
        for rep in range(s.ms_reps):
            log(f" repetition {rep + 1}/{s.ms_reps}")
            oms.reset()
            params = {
                "url": oms.url,
                "n": n,
                "stores": names,
                "slow": slow,
                "concurrency": s.concurrency,
                "max_attempts": 10,
            }
            run = run_contender("sdk_many_stores", params, 120 + 3 * ideal)
            if run is None:
                continue
            served = oms.statuses_by_store()
            answers = sum(sum(counts.values()) for counts in served.values())
            refused = sum(counts.get("429", 0) for counts in served.values())
            by_store = run["by_store"]
            healthy = {
                name: by_store[name]["elapsed_s"] / ideal
                for name in names
                if name not in (slow, revoked)
            }
            worst = max(healthy, key=lambda name: healthy[name])
            figures = {
                "worst_healthy_over_ideal": healthy[worst],
                "worst_healthy_store": worst,
                "median_healthy_over_ideal": spread(list(healthy.values()))["median"],
                "healthy_failed": sum(by_store[name]["failed"] for name in healthy),
                "revoked_requests": sum(served.get(revoked, {}).values()),
                "share_429": refused / answers if answers else None,
                "slow_store_done": by_store[slow]["succeeded"],
                "slow_store_rate": by_store[slow]["succeeded"] / run["stopped_at_s"]
                if run["stopped_at_s"]
                else None,
                "stopped_at_s": run["stopped_at_s"],
                "cpu_us_per_req": run["cpu_s"] / max(1, answers) * 1e6,
                "server_statuses_by_store": served,
                "client_by_store": by_store,
            }
            reps.append(figures)
            log(
                f"    healthy stores: worst {figures['worst_healthy_over_ideal']:.2f} x ideal"
                f" ({worst}), median {figures['median_healthy_over_ideal']:.2f} x; revoked:"
                f" {figures['revoked_requests']} requests; 429s"
                f" {(figures['share_429'] or 0) * 100:.1f} %; slow store"
                f" {figures['slow_store_rate'] or 0:.1f}/s; stopped at {run['stopped_at_s']:.1f} s"
            )
    section: dict[str, Any] = {
        "n": n,
        "stores": s.ms_stores,
        "per_store": s.ms_per_store,
        "rate_limit": s.ms_rate,
        "slow_store": {"name": slow, "rate_limit": s.ms_slow_rate},
        "revoked_store": revoked,
        "burst": burst,
        "retry_after": retry_after,
        "ideal_per_store_s": ideal,
        "reps": s.ms_reps,
        "server": "FakeOMS in its own process (benchmarks/_fake_oms_server.py --stores)",
        "method": "the push stops once every store but the slow one has all its results",
        "failed_runs": take_failures(),
    }
    for key in (
        "worst_healthy_over_ideal",
        "median_healthy_over_ideal",
        "share_429",
        "slow_store_rate",
        "stopped_at_s",
    ):
        section[key] = spread([f[key] for f in reps if f[key] is not None])
    section["revoked_requests_max"] = max((f["revoked_requests"] for f in reps), default=None)
    section["healthy_failed"] = sum(f["healthy_failed"] for f in reps)
    section["runs"] = reps
    worst_ratio, share = section["worst_healthy_over_ideal"], section["share_429"]
    targets = [
        target(
            "many_stores_healthy_time",
            f"{s.ms_stores - 2} healthy stores each finish <= 1.25 x ideal (slowest store)",
            worst_ratio["median"] if worst_ratio else None,
            1.25,
            "<=",
            unit="x",
        ),
        target(
            "many_stores_revoked_requests",
            "the revoked store gets <= 5 requests (most in any run)",
            section["revoked_requests_max"],
            5,
            "<=",
        ),
        target(
            "many_stores_429_share",
            "many stores: < 5 % of all answers are 429",
            share["median"] * 100 if share else None,
            5.0,
            "<",
            unit="%",
        ),
    ]
    return section, targets


def many_stores_bulk(s: Settings, server: Server) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The same updates pushed to one store, and spread over ``hub_stores`` unthrottled
    stores: the cost of the multi-store engine (lanes, global budget).

    Twice: with each push's pace fixed (``adaptive=False``, no limit: what the engine itself
    costs, the target), and as a first contact (each new account's adaptive pace starting
    from 2 req/s: ``hub_stores`` slow starts against one, a figure to read, not a target: a
    never-seen account is not assumed unlimited)."""
    log(
        f"\n== many stores, unthrottled: {s.bulk_n} updates over {s.hub_stores} stores vs one"
        f" store, concurrency {s.concurrency} =="
    )
    names = ["sdk_push_stores_fixed", "sdk_push_fixed", "sdk_push_stores", "sdk_push"]
    common = {"url": server.url, "n": s.bulk_n, "warmup": s.bulk_warmup}
    params_for = {
        name: {
            **common,
            "concurrency": s.concurrency,
            "fixed_pace": name.endswith("_fixed"),
            **({"stores": s.hub_stores} if name.startswith("sdk_push_stores") else {}),
        }
        for name in names
    }
    section, runs = _compare_runs(
        names, s.reps, params_for, "sdk_push_stores_fixed", floor_rps=50
    )
    section["stores"] = s.hub_stores
    section["first_contact"] = {
        "speed": paired_ratios(runs["sdk_push_stores"], runs["sdk_push"], "rps"),
        "cpu": paired_ratios(runs["sdk_push_stores"], runs["sdk_push"], "cpu_us_per_req"),
    }
    targets = [
        target(
            "many_stores_bulk_vs_one",
            f"{s.hub_stores} unthrottled stores >= 0.95 x one store (requests/s, pace fixed)",
            _median(section, "sdk_push_stores_fixed", "sdk_push_fixed"),
            0.95,
            ">=",
            unit="x",
        ),
    ]
    return section, targets


def tracing(s: Settings, server: Server) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What OpenTelemetry tracing costs a bulk push: ``push_all`` with no tracer provider
    (the default) against the same with a provider, a ``BatchSpanProcessor`` and an exporter
    that counts the spans and drops them, every span sampled or 1 % of them
    (``ParentBased(TraceIdRatioBased(0.01))``); the raw aiohttp pool as the bulk scenario's
    yardstick.
    """
    log(
        f"\n== tracing: {s.bulk_n} updates at concurrency {s.concurrency}, without and with"
        " a tracer provider =="
    )
    names = ["sdk_push", "sdk_traced", "sdk_traced_sampled", "raw_aiohttp"]
    params_for = {
        name: {
            "url": server.url,
            "n": s.bulk_n,
            "warmup": s.bulk_warmup,
            "concurrency": s.concurrency,
        }
        for name in names
    }
    params_for["sdk_traced_sampled"]["sample"] = SAMPLED_SHARE
    why = missing_module("sdk_traced")
    if why is not None:
        log(f"  {'sdk_traced':<17} SKIPPED: {why}")
        section: dict[str, Any] = {"skipped": {"sdk_traced": why, "sdk_traced_sampled": why}}
        return section, [_spans_target(None, why), _sampled_target(None, why)]
    section, runs = _compare_runs(names, s.reps, params_for, "sdk_traced", floor_rps=50)
    # What tracing costs when its sampler drops 99 % of the spans, paired per repetition.
    sampled = {
        "speed": paired_ratios(runs["sdk_traced_sampled"], runs["sdk_push"], "rps"),
        "cpu": paired_ratios(runs["sdk_traced_sampled"], runs["sdk_push"], "cpu_us_per_req"),
    }
    section["ratios_of_sdk_traced_sampled"] = {"sdk_push": sampled}
    # Paired per repetition: the client CPU one span adds to one request.
    extra_cpu = [
        traced["cpu_us_per_req"] - plain["cpu_us_per_req"]
        for traced, plain in zip(runs["sdk_traced"], runs["sdk_push"], strict=True)
        if traced is not None and plain is not None
    ]
    section["traced_extra_cpu_us_per_req"] = spread(extra_cpu)
    traced_runs = [r for r in runs["sdk_traced"] if r is not None]
    spans = [
        {
            "requests": r["requests"],
            "spans_exported": r["spans_exported"],
            "requests_with_warmup": r["requests_with_warmup"],
            "spans_exported_with_warmup": r["spans_exported_with_warmup"],
        }
        for r in traced_runs
    ]
    missing = sum(abs(r["requests"] - r["spans_exported"]) for r in spans) if spans else None
    section["spans"] = {
        "method": "spans exported in the measured window (after force_flush) vs the push's"
        " requests (PushSummary.requests), per run",
        "runs": spans,
        "all_match": missing == 0 if missing is not None else None,
    }
    if missing:
        log(f"  spans exported differ from requests by {missing} over the runs")
    speed = sampled["speed"]
    return section, [
        _spans_target(missing, None),
        _sampled_target(speed["median"] if speed else None, None),
    ]


#: The share of traces ``sdk_traced_sampled``'s sampler keeps.
SAMPLED_SHARE = 0.01


def _sampled_target(measured: float | None, skipped: str | None) -> dict[str, Any]:
    return target(
        "tracing_sampled_out_cost",
        "tracing, 99 % sampled out (ParentBased(TraceIdRatioBased(0.01))) >= 0.95 x untraced"
        " push (requests/s)",
        measured,
        0.95,
        ">=",
        unit="x",
        skipped=skipped,
    )


def _spans_target(missing: int | None, skipped: str | None) -> dict[str, Any]:
    return target(
        "tracing_spans_match_requests",
        "traced push: one span exported per request (spans missing or extra, all runs)",
        missing,
        0,
        "<=",
        skipped=skipped,
    )


def profile(s: Settings, server: Server, out: Path) -> dict[str, Any]:
    """Profile one bulk push and a sequence of sync calls, each next to raw aiohttp doing
    the same requests, area by area (``profile.txt``: both tables, then the push's tree)."""
    log(f"\n== profile: bulk push of {s.profile_n} updates, {s.sync_n} sync calls ==")
    pairs = (
        ("sdk_push", "raw_aiohttp", "Bulk push profile", s.profile_n, s.bulk_warmup),
        ("sdk_sync_seq", "aiohttp_raw_seq", "Sync call profile", s.sync_n, s.sync_warmup),
    )
    summaries: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vtex-bench-profile-") as tmp:
        texts: dict[str, str] = {}
        for subject, baseline, _title, n, warmup in pairs:
            for name in (subject, baseline):
                if missing_module(name):
                    continue
                where = Path(tmp) / f"{name}.txt"
                params = {
                    "url": server.url,
                    "n": n,
                    "warmup": warmup,
                    "concurrency": s.concurrency,
                    "profile": str(where),
                }
                run = run_contender(name, params, _timeout(n, 50))
                if run is not None and where.exists():
                    summaries[name] = {**run["profile"], "n": run["n"], "rps": run["rps"]}
                    texts[name] = where.read_text()
        if "sdk_push" in texts:
            from ._profile_report import comparison

            tables = [
                comparison(summaries, subject, baseline, title)
                for subject, baseline, title, _n, _warmup in pairs
                if subject in summaries
            ]
            out.write_text("\n".join(tables) + "\n" + texts["sdk_push"])
    return {
        "file": out.name if "sdk_push" in summaries else None,
        **{name: summaries.get(name) for pair in pairs for name in pair[:2]},
        "load_average": os.getloadavg(),
        "failed_runs": take_failures(),
    }
