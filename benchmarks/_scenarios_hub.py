"""The ``hub_day`` scenario: does the adaptive per-account pace, shared through Redis, keep a
logistics hub's many small accounts under their undisclosed limits, from the first request on?

FakeOMS in its own process serves ``stores`` stores, each on a port of its own (one host per
account, as on VTEX) with a limit drawn (seeded) from ``low`` to ``high`` requests per second,
burst ``burst``, ``Retry-After: 1`` on 429, ``latency`` s on every answer, and about
``fail_share`` of answers 503 (no ``Retry-After``) in bursts of 3 to 5 answers of a store.
``sdk_processes`` SDK senders and ``cli_processes`` ``vtex-tracking push`` senders
(``_contenders_hub``) push the day (``_contenders_hub.day``: each store's invoices in
proportion to its limit, so every store's ideal time is about ``ideal_s``; 1 to 4 snapshots per
invoice, ``merge_snapshots``, a fresh journal per process and run). Per repetition:

* ``first``: ``shared_pace`` on a Redis emptied before: every store never seen;
* ``second``: the same day again on the same Redis (learned rates kept), fresh journals;
* ``local``: no ``shared_pace`` (each process paces alone), for comparison (not in quick mode).

From the server's timeline (arrival time, status, store per request) and final state (the last
accepted body of each invoice) and the senders' results: the 429 share, overall, of the worst
store, and per store in the 10 s after its first request; each store's last confirmation
(last 2xx arrival + latency) after the common start over its ideal time
``(invoices - burst) / limit``; requests per invoice; updates lost (their invoice's final
snapshot not the last accepted body, or no result); the 503 share; CPU per request.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._contenders_hub import day, invoices_of, limits, run_hub_fleet
from ._contenders_scale import Fleet
from ._redis_server import RedisServer, missing
from ._scenarios import Settings, log
from ._server import FakeOMSProcess, fake_oms_server
from ._stats import paired_ratios, spread, target
from ._workload import invoice_number, order_id, store_name

Section = tuple[dict[str, Any], list[dict[str, Any]]]

RETRY_AFTER = "1"
#: Seconds after a store's first request in which its 429s are counted ("first contact").
FIRST_S = 10.0
KINDS = ("first", "second", "local")


@dataclass(frozen=True)
class HubSettings:
    stores: int = 60
    low: float = 2.0
    high: float = 30.0
    burst: int = 5
    ideal_s: float = 16.0
    latency: float = 0.15
    fail_share: float = 0.02
    fail_burst_low: int = 3
    fail_burst_high: int = 5
    sdk_processes: int = 3
    cli_processes: int = 1
    local: bool = True
    reps: int = 3
    deadline_factor: float = 4.0  # a sender stops its push after this many times the ideal...
    deadline_extra_s: float = 30.0  # ...plus this
    seed: int = 2026

    @classmethod
    def of(cls, s: Settings) -> HubSettings:
        if s.mode == "quick":
            full = cls(stores=8, ideal_s=6.0, sdk_processes=1, local=False, reps=1,
                       deadline_factor=2.0, deadline_extra_s=6.0)  # fmt: skip
        else:
            full = cls()
        return cls(**{**full.__dict__, "reps": min(full.reps, s.reps)})

    @property
    def processes(self) -> int:
        return self.sdk_processes + self.cli_processes

    @property
    def deadline_s(self) -> float:
        return self.deadline_factor * self.ideal_s + self.deadline_extra_s


def _day_params(c: HubSettings) -> dict[str, Any]:
    return {"stores": c.stores, "low": c.low, "high": c.high, "burst": c.burst,
            "ideal_s": c.ideal_s, "seed": c.seed, "processes": c.processes}  # fmt: skip


def _fail_p(c: HubSettings) -> float:
    """The chance a burst starts at an answer, for ``fail_share`` of answers in bursts."""
    mean = (c.fail_burst_low + c.fail_burst_high) / 2
    return c.fail_share / (mean * (1 - c.fail_share))


def _server_stores(c: HubSettings, rates: list[float]) -> dict[str, dict[str, Any]]:
    bursts = [_fail_p(c), c.fail_burst_low, c.fail_burst_high]
    return {store_name(k): {"rate_limit": rate, "burst": c.burst, "fail_bursts": bursts}
            for k, rate in enumerate(rates)}  # fmt: skip


def _params(c: HubSettings, urls: list[str], shared: str | None, tmp: Path) -> list[Any]:
    return [
        {**_day_params(c), "urls": urls, "index": k, "shared_pace": shared,
         "kind": "sdk" if k < c.sdk_processes else "cli", "deadline_s": c.deadline_s,
         "journal": str(tmp / f"journal-{k}.sqlite")}
        for k in range(c.processes)
    ]  # fmt: skip


def _expected(c: HubSettings) -> tuple[dict[tuple[str, str], tuple[int, str]], dict[str, int]]:
    """Each invoice's final snapshot (events) and store; each store's invoices."""
    finals: dict[tuple[str, str], tuple[int, str]] = {}
    for _, k, i, _, count in day(_day_params(c)):
        finals[(order_id(i), invoice_number(i))] = (count, store_name(k))
    per_store = {store_name(k): invoices_of(rate, _day_params(c))
                 for k, rate in enumerate(limits(_day_params(c)))}  # fmt: skip
    return finals, per_store


def _store_figures(
    c: HubSettings, timeline: list[Any], start: float, rates: dict[str, float],
    per_store: dict[str, int], incomplete: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    by_store: dict[str, list[tuple[float, int]]] = {name: [] for name in rates}
    for t, status, store in timeline:
        if store in by_store:
            by_store[store].append((t, status))
    figures = {}
    for name, answers in by_store.items():
        statuses = [s for _, s in answers]
        first = min((t for t, _ in answers), default=None)
        oks = [t for t, s in answers if s < 300]
        ideal = (per_store[name] - c.burst) / rates[name]
        figures[name] = {
            "limit": rates[name],
            "invoices": per_store[name],
            "answers": len(answers),
            "429": statuses.count(429),
            "503": statuses.count(503),
            "share_429": statuses.count(429) / len(answers) if answers else None,
            "first_10s_429": sum(1 for t, s in answers if s == 429 and t < first + FIRST_S)
            if first is not None else 0,
            "time_over_ideal": (max(oks) + c.latency - start) / ideal if oks else None,
            "invoices_not_final": incomplete.get(name, 0),
            "healthy": bool(oks) and not incomplete.get(name, 0),
        }  # fmt: skip
    return figures


def _per_second(timeline: list[Any], start: float) -> list[list[int]]:
    """``[second, answers 2xx, 429, 503]`` per second after the start (server's clock)."""
    rows: dict[int, list[int]] = {}
    for t, status, _ in timeline:
        second = int(t - start) if t >= start else -1
        row = rows.setdefault(second, [second, 0, 0, 0])
        column = 1 if status < 300 else {429: 2, 503: 3}.get(status)
        if column is not None:
            row[column] += 1
    return [rows[k] for k in sorted(rows)]


def _cpu_now(pid: int) -> tuple[float, float, float]:
    """Seconds of CPU: the machine busy and in all, and process ``pid`` (Linux; else 0s)."""
    try:
        cpu = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0, 0.0
    idle = cpu[3] + cpu[4]
    return (sum(cpu) - idle) / tick, sum(cpu) / tick, (float(own[11]) + float(own[12])) / tick


def _lost(oms: FakeOMSProcess, finals: dict[tuple[str, str], tuple[int, str]]) -> Any:
    """Invoices whose last accepted body is not their final snapshot, per store; updates of
    those invoices; bodies accepted after a newer one (rollbacks)."""
    last = {(o, i): (events, rollbacks) for o, i, events, _, rollbacks in oms._ask("final")}
    incomplete: dict[str, int] = {}
    lost_updates = 0
    for key, (count, store) in finals.items():
        if last.get(key, (0, 0))[0] != count:
            incomplete[store] = incomplete.get(store, 0) + 1
            lost_updates += count
    return incomplete, lost_updates, sum(r for _, r in last.values())


def _run_figures(
    c: HubSettings, fleet: Fleet, oms: FakeOMSProcess, rates: dict[str, float],
    expected: tuple[dict[tuple[str, str], tuple[int, str]], dict[str, int]],
) -> dict[str, Any] | None:  # fmt: skip
    if fleet.start_at is None:
        return None
    finals, per_store = expected
    timeline = oms.timeline()
    incomplete, lost_updates, rollbacks = _lost(oms, finals)
    stores = _store_figures(c, timeline, fleet.start_at, rates, per_store, incomplete)
    for name, f in stores.items():  # the pace each SDK sender had for the store at its end
        ends = [r["rate_at_end"].get(name) for r in fleet.results if r and "rate_at_end" in r]
        f["rate_at_end"] = sorted(x for x in ends if x is not None)
    statuses = [s for _, s, _ in timeline]
    healthy = {n: f["time_over_ideal"] for n, f in stores.items() if f["healthy"]}
    times = [f["time_over_ideal"] for f in stores.values() if f["time_over_ideal"]]
    slowest = max(healthy, key=healthy.__getitem__, default=None)
    done = [r for r in fleet.results if r is not None]
    cpu, requests = sum(r["cpu_s"] for r in done), sum(r["requests"] for r in done)
    return {
        "answers": len(statuses),
        "share_429": statuses.count(429) / len(statuses) if statuses else None,
        "share_503": statuses.count(503) / len(statuses) if statuses else None,
        "worst_store_share_429": max((f["share_429"] or 0) for f in stores.values()),
        "first_10s_429_max": max(f["first_10s_429"] for f in stores.values()),
        "stores_over_3_in_first_10s": sum(f["first_10s_429"] > 3 for f in stores.values()),
        "slowest_over_ideal": healthy.get(slowest) if slowest else None,
        "slowest_store": slowest,
        "slowest_limit": rates[slowest] if slowest else None,
        "median_over_ideal": statistics.median(healthy.values()) if healthy else None,
        "slowest_any_over_ideal": max(times, default=None),
        "stores_incomplete": len(incomplete),
        "requests_per_invoice": len(statuses) / len(finals),
        "invoices_not_final": sum(incomplete.values()),
        "lost_updates": lost_updates + sum(r["n"] - r["results"] for r in done),
        "results_missing": sum(r["n"] - r["results"] for r in done),
        "failed": sum(r["failed"] for r in done),
        "stopped": sum(r["stopped"] for r in done),
        "rollbacks": rollbacks,
        "senders_ok": len(done),
        "cpu_s": cpu,
        "sender_requests": requests,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else None,
        "senders": [{k: v for k, v in r.items() if k != "rate_at_end"} for r in done],
        "by_store": stores,
        "per_second": _per_second(timeline, fleet.start_at),
    }


def _log_run(label: str, f: dict[str, Any] | None, failures: list[str]) -> None:
    for failure in failures:
        log(f"    {label:<6} sender trouble: {failure}")
    if f is None:
        log(f"    {label:<6} BROKEN (see failed_runs)")
        return
    slowest = f["slowest_over_ideal"]
    log(
        f"    {label:<6} slowest store {'-' if slowest is None else f'{slowest:.2f}'} x ideal"
        f" (limit {f['slowest_limit'] or 0:g}/s), median {f['median_over_ideal'] or 0:.2f} x;"
        f" 429s {(f['share_429'] or 0) * 100:.1f} % (worst store"
        f" {f['worst_store_share_429'] * 100:.1f} %, first {FIRST_S:g} s max"
        f" {f['first_10s_429_max']}, {f['stores_over_3_in_first_10s']} stores > 3);"
        f" 503s {(f['share_503'] or 0) * 100:.1f} %; {f['requests_per_invoice']:.2f}"
        f" requests/invoice; lost {f['lost_updates']}, failed {f['failed']}, stopped"
        f" {f['stopped']}, incomplete stores {f['stores_incomplete']};"
        f" CPU {f['cpu_us_per_request'] or 0:.0f} us/request; machine busy"
        f" {(f.get('machine_busy_share') or 0) * 100:.0f} %, server CPU"
        f" {f.get('server_cpu_s') or 0:.1f} s"
    )


SUMMARY_KEYS = (
    "share_429", "worst_store_share_429", "first_10s_429_max", "stores_over_3_in_first_10s",
    "slowest_over_ideal", "median_over_ideal", "requests_per_invoice", "share_503",
    "lost_updates", "failed", "stopped", "stores_incomplete", "cpu_us_per_request",
    "slowest_any_over_ideal", "machine_busy_share", "server_cpu_s",
)  # fmt: skip


def _summary(runs: list[dict[str, Any] | None]) -> dict[str, Any]:
    done = [f for f in runs if f is not None]
    summary: dict[str, Any] = {key: spread([f.get(key) for f in done]) for key in SUMMARY_KEYS}
    summary["slowest_limit"] = [f["slowest_limit"] for f in done]
    summary.update(runs_ok=len(done), runs_failed=len(runs) - len(done), runs=done)
    return summary


def _runs(c: HubSettings, redis: RedisServer, oms: FakeOMSProcess) -> dict[str, Any]:
    rates = {store_name(k): rate for k, rate in enumerate(limits(_day_params(c)))}
    expected = _expected(c)
    kinds = [k for k in KINDS if c.local or k != "local"]
    runs: dict[str, list[Any]] = {kind: [] for kind in kinds}
    failures: list[str] = []
    for rep in range(c.reps):
        log(f" repetition {rep + 1}/{c.reps}")
        redis.flush()
        for kind in kinds:
            oms.reset()
            with tempfile.TemporaryDirectory(prefix="vtex-bench-hub-") as tmp:
                shared = None if kind == "local" else redis.url
                params = _params(c, oms.urls, shared, Path(tmp))
                before = _cpu_now(oms.process.pid)
                fleet = run_hub_fleet(params, c.deadline_s + 15.0)
                after = _cpu_now(oms.process.pid)
            failures += [f"{kind}: {x}" for x in fleet.failures]
            figures = _run_figures(c, fleet, oms, rates, expected)
            if figures is not None:
                busy, total, server = (b - a for a, b in zip(before, after, strict=True))
                figures["machine_busy_share"] = busy / total if total else None
                figures["server_cpu_s"] = server
            runs[kind].append(figures)
            _log_run(kind, figures, fleet.failures)
    section: dict[str, Any] = {kind: _summary(runs[kind]) for kind in kinds}
    if c.local:
        section["cpu_per_request_shared_over_local"] = paired_ratios(
            runs["first"], runs["local"], "cpu_us_per_request"
        )
    section["failed_runs"] = failures
    return section


def hub_day(s: Settings) -> Section:
    c = HubSettings.of(s)
    why = missing()
    if why is not None:
        log(f"\n== hub day: SKIPPED: {why} ==")
        return {"skipped": why}, [target(t, t, None, 0, "<=", skipped=why) for t in TARGET_IDS]
    rates = limits(_day_params(c))
    finals, _ = _expected(c)
    updates = sum(count for count, _ in finals.values())
    log(
        f"\n== hub day: {c.stores} stores at {min(rates):g}-{max(rates):g}/s (burst {c.burst},"
        f" Retry-After {RETRY_AFTER}, latency {c.latency:g} s, ~{c.fail_share * 100:g} % 503"
        f" in bursts), {len(finals):,} invoices, {updates:,} updates (ideal {c.ideal_s:g} s);"
        f" {c.sdk_processes} SDK + {c.cli_processes} CLI processes; first/second"
        f"{'/local' if c.local else ''}; {c.reps} reps =="
    )
    with (
        RedisServer() as redis,
        fake_oms_server(None, c.burst, RETRY_AFTER, stores=_server_stores(c, rates),
                        latency=c.latency, ports=c.stores) as oms,
    ):  # fmt: skip
        section = _runs(c, redis, oms)
        redis_version = redis.version
    section.update(
        settings=c.__dict__,
        invoices=len(finals),
        updates=updates,
        limits={store_name(k): rate for k, rate in enumerate(rates)},
        redis=redis_version,
        method="server timeline (arrival, status, store) and final accepted body per invoice;"
        " a store's time: its last 2xx arrival + latency after the common start, over"
        " (invoices - burst) / limit; lost: updates of invoices whose last accepted body is not"
        " their final snapshot, plus updates without a result; CPU: time.process_time() of"
        " each sender around its push, over the requests it reports",
    )
    return section, _targets(c, section)


TARGET_IDS = ("hub_day_429_share", "hub_day_worst_store_429", "hub_day_first_10s_429",
              "hub_day_slowest_store", "hub_day_second_time", "hub_day_second_429",
              "hub_day_requests", "hub_day_cpu", "hub_day_lost")  # fmt: skip


def _median(figure: dict[str, Any] | None, scale: float = 1.0) -> float | None:
    return figure["median"] * scale if figure else None


def _targets(c: HubSettings, section: dict[str, Any]) -> list[dict[str, Any]]:
    first, second = section["first"], section["second"]
    label = f"hub day ({c.stores} stores, {c.processes} processes, Redis new)"
    lost = [f["lost_updates"] for kind in KINDS if kind in section for f in section[kind]["runs"]]
    cpu = section.get("cpu_per_request_shared_over_local")
    return [
        target("hub_day_429_share", f"{label}: < 1 % of answers are 429",
               _median(first["share_429"], 100), 1.0, "<", unit="%"),
        target("hub_day_worst_store_429", f"{label}: no store > 3 % 429",
               _median(first["worst_store_share_429"], 100), 3.0, "<=", unit="%"),
        target("hub_day_first_10s_429", f"{label}: <= 3 429s per store in its first 10 s",
               _median(first["first_10s_429_max"]), 3, "<="),
        target("hub_day_slowest_store", f"{label}: slowest healthy store <= 1.1 x ideal",
               _median(first["slowest_over_ideal"]), 1.1, "<=", unit="x"),
        target("hub_day_second_time", "hub day, second run (rates kept): slowest <= 1.05 x",
               _median(second["slowest_over_ideal"]), 1.05, "<=", unit="x"),
        target("hub_day_second_429", "hub day, second run: < 0.3 % of answers are 429",
               _median(second["share_429"], 100), 0.3, "<", unit="%"),
        target("hub_day_requests", f"{label}: requests <= 1.1 x invoices",
               _median(first["requests_per_invoice"]), 1.1, "<=", unit="x"),
        target("hub_day_cpu", "hub day: CPU per request, shared pace <= 1.5 x local",
               _median(cpu), 1.5, "<=", unit="x",
               skipped=None if c.local else "no local baseline in quick mode"),
        target("hub_day_lost", "hub day: 0 updates lost (every run)",
               max(lost) if lost else None, 0, "<="),
    ]  # fmt: skip
