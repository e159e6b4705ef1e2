"""The ``scale_out`` scenario (issue 16): does a pace shared through Redis keep several sender
processes, together, to each account's limit; does a Redis outage lose anything; and what does
sharing cost a single process?

1. ``fleet``: FakeOMS in its own process serves ``stores`` stores, each on a port of its own (one
   host per account, as on VTEX, since the shared pace keys an account by its host) and limited
   on its own; ``processes`` sender processes (``_contenders_scale``) each push their share of
   every store, WITH ``shared_pace`` and WITHOUT (the baseline), interleaved over repetitions.
   Per store: the last confirmation (any process) after the common start, over the ideal time;
   the server's 429 share. Redis is emptied before each run.
2. ``outage``: the same with ``shared_pace``; redis-server is stopped ``outage_after_s`` after
   the start and started again (same port, empty) ``outage_s`` later. Failures, and the 429 share
   inside and outside the outage, from the server's own timestamps (``timeline``).
3. ``overhead``: one process, ``push_all`` against the unthrottled local server (nginx, else
   aiohttp), ``shared_pace`` vs none, paired per repetition; and, as a diagnostic, the same with
   a client ``rate_limit`` far above what it reaches, so the shared pace leases tokens.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from ._contenders_scale import Fleet, run_fleet
from ._redis_server import RedisServer, missing
from ._scenarios import Settings, _compare_runs, log
from ._server import FakeOMSProcess, Server, fake_oms_server
from ._stats import spread, target
from ._workload import store_name

Section = tuple[dict[str, Any], list[dict[str, Any]]]

BURST = 10
RETRY_AFTER = "1"


@dataclass(frozen=True)
class ScaleSettings:
    processes: int = 8
    stores: int = 4
    per_store: int = 1_000
    rate: float = 50.0
    max_attempts: int = 10
    reps: int = 3
    deadline_factor: float = 3.0  # a sender stops its push after this many times the ideal
    one_url: bool = True  # diagnostic: every store behind one URL (one host), shared, once
    outage_per_store: int = 1_000
    outage_after_s: float = 5.0
    outage_s: float = 10.0
    overhead_n: int = 30_000
    overhead_reps: int = 5
    overhead_rate_limit: float = 50_000.0  # the diagnostic's client rate_limit
    sample_s: float = 0.1

    @classmethod
    def of(cls, s: Settings) -> ScaleSettings:
        if s.mode == "quick":
            full = cls(per_store=250, reps=1, one_url=False, outage_per_store=400,
                       outage_after_s=2.0, outage_s=3.0, overhead_n=5_000,
                       overhead_reps=2)  # fmt: skip
        else:
            full = cls()
        # --reps caps the repetitions, as it does the other scenarios'.
        return cls(**{**full.__dict__, "reps": min(full.reps, s.reps),
                      "overhead_reps": min(full.overhead_reps, s.reps)})  # fmt: skip


def _params(c: ScaleSettings, urls: list[str], per_store: int, shared: str | None) -> list[Any]:
    ideal = per_store / c.rate
    return [
        {"urls": urls, "stores": [store_name(k) for k in range(c.stores)], "per_store": per_store,
         "processes": c.processes, "index": k, "shared_pace": shared,
         "max_attempts": c.max_attempts, "deadline_s": c.deadline_factor * ideal,
         "sample_s": c.sample_s}
        for k in range(c.processes)
    ]  # fmt: skip


def _per_second(timeline: list[tuple[float, int, str | None]], start: float) -> list[list[int]]:
    """``[second, answers 2xx, answers 429]`` per second after ``start`` (server's clock)."""
    rows: dict[int, list[int]] = {}
    for t, status, _ in timeline:
        second = int(t - start) if t >= start else -1
        row = rows.setdefault(second, [second, 0, 0])
        if status < 300:
            row[1] += 1
        elif status == 429:
            row[2] += 1
    return [rows[k] for k in sorted(rows)]


def _share(timeline: list[tuple[float, int, str | None]], low: float, high: float) -> Any:
    answers = [status for t, status, _ in timeline if low <= t < high]
    return {"answers": len(answers), "429": answers.count(429),
            "share_429": answers.count(429) / len(answers) if answers else None}  # fmt: skip


def _fleet_figures(c: ScaleSettings, fleet: Fleet, oms: FakeOMSProcess, ideal: float) -> Any:
    """One fleet run's figures, or None when a sender broke (its failures are logged)."""
    timeline = oms.timeline()
    done = [r for r in fleet.results if r is not None]
    if fleet.start_at is None or len(done) < len(fleet.results):
        return None
    start = fleet.start_at
    stores = [store_name(k) for k in range(c.stores)]
    by_store: dict[str, Any] = {}
    for name in stores:
        lasts = [r["by_store"][name]["last_ok_at"] for r in done]
        confirmed = sum(r["by_store"][name]["succeeded"] for r in done)
        complete = confirmed == sum(r["by_store"][name]["sent"] for r in done)
        rates = [r["metrics"].get(name, {}).get("rate") for r in done]
        rates = [x for x in rates if x is not None]
        answers = [s for _, s, store in timeline if store == name]
        by_store[name] = {
            "time_over_ideal": (max(x for x in lasts if x) - start) / ideal
            if complete and any(lasts) else None,
            "confirmed": confirmed,
            "failed": sum(r["by_store"][name]["failed"] for r in done),
            "share_429": answers.count(429) / len(answers) if answers else None,
            "rate_at_end": [min(rates), max(rates)] if rates else None,
        }  # fmt: skip
    times = [f["time_over_ideal"] for f in by_store.values()]
    statuses = [s for _, s, _ in timeline]
    return {
        "worst_over_ideal": max(times) if None not in times else None,
        "median_over_ideal": statistics.median(times) if None not in times else None,
        "share_429": statuses.count(429) / len(statuses) if statuses else None,
        "answers": len(statuses),
        "failed": sum(r["failed"] for r in done),
        "failed_by_outcome": _sum_counts(r["failed_by_outcome"] for r in done),
        "stopped_results": sum(r["stopped_results"] for r in done),
        "sender_cpu_s": sum(r["cpu_s"] for r in done),
        "warnings": sum(r["warnings"] for r in done),
        "by_store": by_store,
        "per_second": _per_second(timeline, start),
    }


def _sum_counts(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


def _log_fleet(label: str, f: dict[str, Any] | None) -> None:
    if f is None:
        log(f"    {label:<9} BROKEN (see failed_runs)")
        return
    worst = f["worst_over_ideal"]
    log(
        f"    {label:<9} slowest store {'-' if worst is None else f'{worst:.2f}'} x ideal"
        f" (median {f['median_over_ideal'] or 0:.2f} x), 429s {(f['share_429'] or 0) * 100:4.1f} %"
        f" of {f['answers']:,} answers, failed {f['failed']}, stopped {f['stopped_results']}"
    )


def _fleet_summary(runs: list[dict[str, Any] | None], wanted: int) -> dict[str, Any]:
    done = [f for f in runs if f is not None]
    return {
        "worst_over_ideal": spread([f["worst_over_ideal"] for f in done]),
        "median_over_ideal": spread([f["median_over_ideal"] for f in done]),
        "share_429": spread([f["share_429"] for f in done]),
        "failed": sum(f["failed"] for f in done),
        "stopped_results": sum(f["stopped_results"] for f in done),
        "runs_ok": len(done),
        "runs_failed": wanted - len(done),
        "runs": done,
    }


def _fleet_runs(c: ScaleSettings, redis: RedisServer, oms: FakeOMSProcess) -> dict[str, Any]:
    ideal = c.per_store / c.rate
    timeout = c.deadline_factor * ideal + 30.0
    cases = {"shared": (oms.urls, redis.url), "none": (oms.urls, None)}
    runs: dict[str, list[Any]] = {case: [] for case in cases}
    failures: list[str] = []
    for rep in range(c.reps):
        log(f" repetition {rep + 1}/{c.reps}")
        order = list(cases)[rep % 2 :] + list(cases)[: rep % 2]
        for case in order:
            urls, shared = cases[case]
            oms.reset()
            redis.flush()
            fleet = run_fleet(_params(c, urls, c.per_store, shared), timeout)
            failures += [f"{case}: {x}" for x in fleet.failures]
            figures = _fleet_figures(c, fleet, oms, ideal)
            runs[case].append(figures)
            _log_fleet(case, figures)
    section = {case: _fleet_summary(runs[case], c.reps) for case in cases}
    if c.one_url:
        log(" diagnostic: every store behind one URL (one host, so one shared key), once")
        oms.reset()
        redis.flush()
        fleet = run_fleet(_params(c, [oms.url], c.per_store, redis.url), timeout)
        failures += [f"one_url: {x}" for x in fleet.failures]
        figures = _fleet_figures(c, fleet, oms, ideal)
        _log_fleet("one_url", figures)
        section["shared_one_url"] = _fleet_summary([figures], 1)
    section["failed_runs"] = failures
    return section


def _outage(c: ScaleSettings, redis: RedisServer, oms: FakeOMSProcess) -> dict[str, Any]:
    ideal = c.outage_per_store / c.rate
    log(
        f" outage: {c.outage_per_store:,} updates per store, shared pace; redis-server stopped"
        f" {c.outage_after_s:g} s after the start, started again {c.outage_s:g} s later"
    )
    oms.reset()
    redis.flush()
    events = [(c.outage_after_s, "redis_stopped", redis.stop),
              (c.outage_after_s + c.outage_s, "redis_started", redis.start)]  # fmt: skip
    params = _params(c, oms.urls, c.outage_per_store, redis.url)
    fleet = run_fleet(params, c.deadline_factor * ideal + 30.0, events)
    figures = _fleet_figures(c, fleet, oms, ideal)
    _log_fleet("outage", figures)
    section: dict[str, Any] = {"failed_runs": fleet.failures, "run": figures}
    down, up = fleet.events_at.get("redis_stopped"), fleet.events_at.get("redis_started")
    if figures is None or fleet.start_at is None or down is None or up is None:
        return section
    timeline = oms.timeline()
    start, end = fleet.start_at, max(t for t, _, _ in timeline) + 1e-3
    windows = {
        "before": _share(timeline, start, down),
        "during": _share(timeline, down, up),
        "after": _share(timeline, up, end),
    }
    outside = {"answers": windows["before"]["answers"] + windows["after"]["answers"],
               "429": windows["before"]["429"] + windows["after"]["429"]}  # fmt: skip
    outside["share_429"] = outside["429"] / outside["answers"] if outside["answers"] else None
    windows["outside"] = outside
    went_local, back = [], []
    for r in fleet.results:
        for changes in (r or {}).get("shared_pace_states", {}).values():
            local = [t for t, state in changes if state == "local" and t >= down]
            shared = [t for t, state in changes if state == "shared" and t >= up]
            if local:
                went_local.append(local[0] - down)
            if shared:
                back.append(shared[0] - up)
    section.update(
        redis_stopped_s=down - start,
        redis_started_s=up - start,
        windows=windows,
        # Per (sender, store): seconds from the stop to "local", and from the start to "shared".
        went_local_s=spread(went_local),
        rejoined_s=spread(back),
        lanes_went_local=len(went_local),
        lanes_rejoined=len(back),
        lanes=c.processes * c.stores,
    )
    w = windows
    log(
        f"    429s during the outage {(w['during']['share_429'] or 0) * 100:.1f} %"
        f" ({w['during']['answers']:,} answers), outside {(outside['share_429'] or 0) * 100:.1f} %"
        f" (before {(w['before']['share_429'] or 0) * 100:.1f} %, after"
        f" {(w['after']['share_429'] or 0) * 100:.1f} %);"
        f" {len(went_local)}/{c.processes * c.stores} lanes went local, {len(back)} rejoined"
        f" (slowest {max(back, default=0):.1f} s after)"
    )
    return section


def _overhead(c: ScaleSettings, redis: RedisServer, server: Server) -> dict[str, Any]:
    common = {"url": server.url, "n": c.overhead_n, "warmup": 1_000, "concurrency": 64}
    section: dict[str, Any] = {"n": c.overhead_n, "server": server.kind}
    for case, extra in (("unthrottled", {}),
                        ("rate_limit", {"rate_limit": c.overhead_rate_limit})):  # fmt: skip
        log(f" overhead ({case}): push_all of {c.overhead_n:,}, shared_pace vs none" + (
            f", client rate_limit={c.overhead_rate_limit:g}" if extra else ""))  # fmt: skip
        redis.flush()
        params_for = {"sdk_push_shared": {**common, **extra, "shared_pace": redis.url},
                      "sdk_push": {**common, **extra}}  # fmt: skip
        compared, runs = _compare_runs(
            list(params_for), c.overhead_reps, params_for, "sdk_push_shared", floor_rps=50
        )
        states = [s for r in runs["sdk_push_shared"] if r for s in r["shared_pace_states"]]
        compared["shared_pace_states_at_end"] = sorted(set(map(str, states)))
        section[case] = compared
    return section


def _ratio(overhead: dict[str, Any], case: str) -> float | None:
    ratio = overhead[case]["ratios_of_sdk_push_shared"].get("sdk_push", {}).get("speed")
    return ratio["median"] if ratio else None


def _median(figure: dict[str, Any] | None, scale: float = 1.0) -> float | None:
    return figure["median"] * scale if figure else None


def scale_out(s: Settings, server: Server) -> Section:
    c = ScaleSettings.of(s)
    why = missing()
    if why is not None:
        log(f"\n== scale out: SKIPPED: {why} ==")
        return {"skipped": why}, [
            target(t, t, None, 0, "<=", skipped=why)
            for t in ("scale_out_shared_time", "scale_out_shared_429_share",
                      "scale_out_outage_failed", "scale_out_overhead")
        ]  # fmt: skip
    ideal = c.per_store / c.rate
    log(
        f"\n== scale out: {c.processes} sender processes, {c.stores} stores at {c.rate:g}/s each"
        f" (burst {BURST}, Retry-After {RETRY_AFTER}), {c.per_store:,} updates per store"
        f" (ideal {ideal:.0f} s), shared_pace vs none, {c.reps} reps =="
    )
    stores = {store_name(k): {"rate_limit": c.rate, "burst": BURST} for k in range(c.stores)}
    with (
        RedisServer() as redis,
        fake_oms_server(None, BURST, RETRY_AFTER, stores=stores, ports=c.stores) as oms,
    ):
        fleet = _fleet_runs(c, redis, oms)
        outage = _outage(c, redis, oms)
        if not redis.running:
            redis.start()
        overhead = _overhead(c, redis, server)
        redis_version = redis.version
    section: dict[str, Any] = {
        "settings": c.__dict__,
        "ideal_s": ideal,
        "burst": BURST,
        "retry_after": RETRY_AFTER,
        "redis": redis_version,
        "senders": "each process pushes its share of every store (every 8th update of each,"
        " stores in turn) with AsyncTrackingClient.from_accounts(...).push(...), defaults but"
        " RetryPolicy(max_attempts=10) and shared_pace; one host (port) per store",
        "method": "time: the last confirmation of a store by any process after the common start"
        " (time.monotonic(), one clock for every process), over per_store / rate; 429 share:"
        " the server's answers; the outage windows use the server's arrival times",
        "fleet": fleet,
        "outage": outage,
        "overhead": overhead,
    }
    return section, _targets(c, section)


def _targets(c: ScaleSettings, section: dict[str, Any]) -> list[dict[str, Any]]:
    shared, outage = section["fleet"]["shared"], section["outage"]
    run = outage.get("run")
    label = f"{c.processes} processes sharing Redis, {c.stores} accounts at {c.rate:g}/s"
    return [
        target("scale_out_shared_time", f"{label}: slowest account <= 1.15 x ideal",
               _median(shared["worst_over_ideal"]), 1.15, "<=", unit="x"),
        target("scale_out_shared_429_share", f"{label}: < 2 % of answers are 429",
               _median(shared["share_429"], 100), 2.0, "<", unit="%"),
        target("scale_out_outage_failed",
               f"Redis stopped {c.outage_s:g} s mid-push: 0 updates not confirmed",
               None if run is None else run["failed"] + run["stopped_results"], 0, "<="),
        target("scale_out_overhead", "shared_pace vs none, one process, unthrottled server:"
               " >= 0.85 x the requests/s", _ratio(section["overhead"], "unthrottled"), 0.85,
               ">=", unit="x"),
    ]  # fmt: skip
