"""The pacing scenarios: do single calls, a push mixed with single calls, and pushes against a
slow (high-latency) server keep to the server's rate limit without 429 storms or idle time?

Like ``_scenarios``: contenders run as fresh subprocesses (``_contenders_pace``), interleaved
over repetitions, summarised with ``spread`` (median [min-max]); the server is FakeOMS in its
own process (``_fake_oms_server``), reset before each run and asked afterwards how many of its
answers were 429. Every run is bounded: pushes stop after ``lat_deadline_factor`` x their
ideal time, and ``run_contender`` kills a process after its timeout.
"""

from __future__ import annotations

from typing import Any

from ._scenarios import Settings, log, run_contender, take_failures
from ._server import FakeOMSProcess, fake_oms_server
from ._stats import spread, target
from ._workload import store_name

Section = tuple[dict[str, Any], list[dict[str, Any]]]

#: Burst and Retry-After of every pacing scenario's rate limits.
BURST = 10
RETRY_AFTER = "1"


def _share_429(statuses: dict[str, int]) -> float | None:
    answers = sum(statuses.values())
    return statuses.get("429", 0) / answers if answers else None


def _pct(value: float | None) -> float | None:
    return value * 100 if value is not None else None


def _median(figure: dict[str, Any] | None) -> float | None:
    return figure["median"] if figure else None


def _run_timeout(ideal_s: float) -> float:
    """``run_contender``'s limit for a run whose ideal time is ``ideal_s``."""
    return 60.0 + 10.0 * ideal_s


def _rate_figures(run: dict[str, Any], ideal: float, oms: FakeOMSProcess) -> dict[str, Any]:
    """A rate-limited run's figures: time over ideal, the server's 429 share, failures."""
    statuses = oms.statuses()
    return {
        "wall_s": run["wall_s"],
        "time_over_ideal": run["wall_s"] / ideal,
        "server_statuses": statuses,
        "share_429": _share_429(statuses),
        "failed": run["failed"],
        "failed_by_class": run.get("failed_by_class", {}),
        "call_s": run.get("call_s"),
        "cpu_us_per_req": run["cpu_us_per_req"],
        **{key: run[key] for key in ("push_s", "singles_s", "push_failed", "singles_failed")
           if key in run},
    }  # fmt: skip


def _summarise(figures_list: list[dict[str, Any]], runs_wanted: int) -> dict[str, Any]:
    failed_by_class: dict[str, int] = {}
    for f in figures_list:
        for name, count in f["failed_by_class"].items():
            failed_by_class[name] = failed_by_class.get(name, 0) + count
    return {
        "time_over_ideal": spread([f["time_over_ideal"] for f in figures_list]),
        "share_429": spread([f["share_429"] for f in figures_list]),
        "wall_s": spread([f["wall_s"] for f in figures_list]),
        "failed": sum(f["failed"] for f in figures_list),
        "failed_by_class": failed_by_class,
        "runs_ok": len(figures_list),
        "runs_failed": runs_wanted - len(figures_list),
        "runs": figures_list,
    }


def _log_rate(label: str, f: dict[str, Any]) -> None:
    classes = ", ".join(f"{k} {v}" for k, v in f["failed_by_class"].items())
    log(
        f"    {label:<8} {f['wall_s']:6.1f} s = {f['time_over_ideal']:.2f} x ideal, 429s"
        f" {(f['share_429'] or 0) * 100:4.1f} %, failed {f['failed']}"
        + (f" ({classes})" if classes else "")
    )


def _rate_targets(
    prefix: str, label: str, mode: dict[str, Any], time_max: float, share_max: float
) -> list[dict[str, Any]]:
    runs_failed = mode["runs_failed"]
    return [
        target(
            f"{prefix}_time",
            f"{label} <= {time_max:g} x ideal time",
            _median(mode["time_over_ideal"]),
            time_max,
            "<=",
            unit="x",
        ),
        target(
            f"{prefix}_429_share",
            f"{label}: < {share_max:g} % of answers are 429",
            _pct(_median(mode["share_429"])),
            share_max,
            "<",
            unit="%",
        ),
        target(
            f"{prefix}_failed",
            f"{label}: 0 failed calls (all runs)",
            mode["failed"] if mode["runs_ok"] else None,
            0,
            "<=",
            skipped=f"{runs_failed} run(s) broke" if runs_failed and not mode["runs_ok"] else None,
        ),
    ]


def single_calls(s: Settings) -> Section:
    """Single calls (``update_tracking_status``) from many coroutines, and from many threads,
    sharing one client, against one account's rate limit."""
    ideal = s.sc_n / s.sc_rate
    log(
        f"\n== single calls: {s.sc_n:,} calls from {s.sc_tasks} coroutines (one"
        f" AsyncTrackingClient) and from {s.sc_threads} threads (one TrackingClient), FakeOMS at"
        f" {s.sc_rate:g}/s (burst {BURST}, Retry-After {RETRY_AFTER}), ideal {ideal:.1f} s =="
    )
    kinds = {
        "async": ("pace_single_async", {"tasks": s.sc_tasks}),
        "threads": ("pace_single_threads", {"threads": s.sc_threads}),
    }
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with fake_oms_server(s.sc_rate, BURST, RETRY_AFTER) as oms:
        for rep in range(s.sc_reps):
            log(f" repetition {rep + 1}/{s.sc_reps}")
            order = list(kinds)
            order = order[rep % 2 :] + order[: rep % 2]
            for kind in order:
                contender, extra = kinds[kind]
                oms.reset()
                params = {"url": oms.url, "n": s.sc_n, "max_attempts": s.sc_max_attempts, **extra}
                run = run_contender(contender, params, _run_timeout(ideal))
                if run is None:
                    continue
                figures = _rate_figures(run, ideal, oms)
                runs[kind].append(figures)
                _log_rate(kind, figures)
    section: dict[str, Any] = {
        "n": s.sc_n,
        "rate_limit": s.sc_rate,
        "burst": BURST,
        "retry_after": RETRY_AFTER,
        "ideal_s": ideal,
        "coroutines": s.sc_tasks,
        "thread_count": s.sc_threads,
        "max_attempts": s.sc_max_attempts,
        "reps": s.sc_reps,
        "client": "default settings but RetryPolicy(max_attempts=...)",
        "server": "FakeOMS in its own process (benchmarks/_fake_oms_server.py)",
        "failed_runs": take_failures(),
    }
    for kind in kinds:
        section[kind] = _summarise(runs[kind], s.sc_reps)
    targets = _rate_targets(
        "single_calls_async",
        f"single calls, {s.sc_tasks} coroutines",
        section["async"],
        1.15,
        3.0,
    ) + _rate_targets(
        "single_calls_threads",
        f"single calls, {s.sc_threads} threads (sync)",
        section["threads"],
        1.15,
        3.0,
    )
    return section, targets


def mixed(s: Settings) -> Section:
    """One ``push_all`` and single calls at once on one client, one account's rate limit."""
    n = s.mix_push_n + s.mix_single_n
    ideal = n / s.sc_rate
    log(
        f"\n== mixed: push_all of {s.mix_push_n:,} + {s.mix_single_n:,} single calls from"
        f" {s.mix_tasks} coroutines, one client, FakeOMS at {s.sc_rate:g}/s (burst {BURST},"
        f" Retry-After {RETRY_AFTER}), ideal {ideal:.1f} s =="
    )
    figures_list: list[dict[str, Any]] = []
    with fake_oms_server(s.sc_rate, BURST, RETRY_AFTER) as oms:
        for rep in range(s.mix_reps):
            log(f" repetition {rep + 1}/{s.mix_reps}")
            oms.reset()
            params = {
                "url": oms.url,
                "n": n,
                "push_n": s.mix_push_n,
                "single_n": s.mix_single_n,
                "tasks": s.mix_tasks,
                "max_attempts": s.sc_max_attempts,
            }
            run = run_contender("pace_mixed", params, _run_timeout(ideal))
            if run is None:
                continue
            figures = _rate_figures(run, ideal, oms)
            figures_list.append(figures)
            _log_rate("mixed", figures)
            log(
                f"             push done at {run['push_s'] or 0:.1f} s (failed"
                f" {run['push_failed']}), single calls at {run['singles_s'] or 0:.1f} s (failed"
                f" {run['singles_failed']})"
            )
    section: dict[str, Any] = {
        "n": n,
        "push_n": s.mix_push_n,
        "single_n": s.mix_single_n,
        "tasks": s.mix_tasks,
        "rate_limit": s.sc_rate,
        "burst": BURST,
        "retry_after": RETRY_AFTER,
        "ideal_s": ideal,
        "max_attempts": s.sc_max_attempts,
        "reps": s.mix_reps,
        "client": "default settings but RetryPolicy(max_attempts=...)",
        "server": "FakeOMS in its own process (benchmarks/_fake_oms_server.py)",
        "failed_runs": take_failures(),
        "mixed": _summarise(figures_list, s.mix_reps),
    }
    section["mixed"]["push_s"] = spread([f.get("push_s") for f in figures_list])
    section["mixed"]["singles_s"] = spread([f.get("singles_s") for f in figures_list])
    targets = _rate_targets("mixed", "push_all + single calls", section["mixed"], 1.1, 5.0)
    return section, targets


#: The latency scenario's contenders: label -> (contender, what it is).
LATENCY_CASES = {
    "push": ("pace_push_timed", "(a) one account, AsyncTrackingClient defaults, push"),
    "push_c16": ("pace_push_timed", "(a) with max_concurrency=16, for comparison"),
    "stores": ("pace_push_timed", "(b) many accounts, from_accounts defaults, push"),
    "cli": ("pace_cli", "(c) vtex-tracking push FILE --base-url URL --json, defaults"),
}


def latency(s: Settings) -> Section:
    """Pushes against a server that adds latency to every answer: does the default client
    keep enough requests in flight to reach the rate limit?"""
    stores = [store_name(k) for k in range(s.lat_stores)]
    total_rate = s.lat_stores * s.lat_store_rate
    ideal = s.lat_n / s.lat_rate
    ideal_stores = s.lat_stores_n / total_rate
    log(
        f"\n== latency: server adds {', '.join(f'{x * 1000:g} ms' for x in s.lat_latencies)}; (a)"
        f" {s.lat_n:,} updates to one account at {s.lat_rate:g}/s, ideal {ideal:.1f} s; (b)"
        f" {s.lat_stores_n:,} over {s.lat_stores} accounts at {s.lat_store_rate:g}/s each,"
        f" ideal {ideal_stores:.1f} s; (c) the CLI on (a); burst {BURST}, Retry-After"
        f" {RETRY_AFTER}; pushes stopped after {s.lat_deadline_factor:g} x ideal =="
    )
    store_limits = {name: {"rate_limit": s.lat_store_rate, "burst": BURST} for name in stores}
    by_latency: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    for index, lat in enumerate(s.lat_latencies):
        ms = f"{lat * 1000:g}"
        cases = ["push", "stores", "cli"]
        if s.lat_compare_c16 and index == 0:
            cases.append("push_c16")
        common = {"steady_after_s": s.lat_steady_after_s}
        params_for: dict[str, dict[str, Any]] = {
            "push": {**common, "n": s.lat_n, "max_attempts": 10},
            "push_c16": {**common, "n": s.lat_n, "max_attempts": 10, "max_concurrency": 16},
            "stores": {**common, "n": s.lat_stores_n, "stores": s.lat_stores},
            "cli": {"n": s.lat_n},
        }
        ideal_of = {"push": ideal, "push_c16": ideal, "stores": ideal_stores, "cli": ideal}
        runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
        log(f" -- latency {ms} ms --")
        with fake_oms_server(
            s.lat_rate, BURST, RETRY_AFTER, stores=store_limits, latency=lat
        ) as oms:
            for rep in range(s.lat_reps):
                log(f" repetition {rep + 1}/{s.lat_reps}")
                shift = rep % len(cases)
                for case in cases[shift:] + cases[:shift]:
                    oms.reset()
                    deadline = s.lat_deadline_factor * ideal_of[case]
                    params = {**params_for[case], "url": oms.url, "deadline_s": deadline}
                    contender = LATENCY_CASES[case][0]
                    run = run_contender(contender, params, 60.0 + 2 * deadline)
                    if run is None:
                        continue
                    statuses = oms.statuses()
                    figures = {
                        "rps_whole": run["rps_whole"],
                        "rps_steady": run.get("rps_steady"),
                        "confirmed": run["ok"],
                        "failed": run["failed"],
                        "outcomes": run["statuses"],
                        "stopped_at_deadline": run["stopped"],
                        "stopped_results": run.get("stopped_results", 0),
                        "wall_s": run["wall_s"],
                        "share_429": _share_429(statuses),
                        "server_statuses": statuses,
                        "cpu_us_per_req": run["cpu_us_per_req"],
                        **{key: run[key] for key in ("rps_process", "cli_exit_status", "command")
                           if key in run},
                    }  # fmt: skip
                    runs[case].append(figures)
                    steady = figures["rps_steady"]
                    log(
                        f"    {case:<8} {figures['rps_whole']:6.0f} confirmed/s whole run,"
                        f" {'-' if steady is None else f'{steady:.0f}'} steady; 429s"
                        f" {(figures['share_429'] or 0) * 100:4.1f} %; confirmed"
                        f" {figures['confirmed']:,}, failed {figures['failed']}"
                        + (" (stopped at the deadline)" if figures["stopped_at_deadline"] else "")
                    )
        section_lat: dict[str, Any] = {"latency_s": lat}
        for case in cases:
            done = runs[case]
            section_lat[case] = {
                "what": LATENCY_CASES[case][1],
                "n": params_for[case]["n"],
                "ideal_s": ideal_of[case],
                "rps_whole": spread([f["rps_whole"] for f in done]),
                "rps_steady": spread([f["rps_steady"] for f in done]),
                "share_429": spread([f["share_429"] for f in done]),
                "wall_s": spread([f["wall_s"] for f in done]),
                "failed": sum(f["failed"] for f in done),
                "stopped_runs": sum(1 for f in done if f["stopped_at_deadline"]),
                "runs_ok": len(done),
                "runs_failed": s.lat_reps - len(done),
                "runs": done,
            }
        by_latency[ms] = section_lat
        for case, rate, label in (
            ("push", s.lat_rate, f"(a) push to one account at {s.lat_rate:g}/s"),
            ("stores", total_rate, f"(b) push to {s.lat_stores} accounts at {total_rate:g}/s"),
            ("cli", s.lat_rate, f"(c) CLI push to one account at {s.lat_rate:g}/s"),
        ):
            # "Reaches 0.9 x the limit" is the steady rate; the whole run also pays the slow
            # start and the first probe (a fixed few seconds), so it is scored beside it.
            targets.append(
                target(
                    f"latency_{ms}ms_{case}_rps_steady",
                    f"{ms} ms latency: {label}, steady >= 0.9 x {rate:g} confirmed/s",
                    _median(section_lat[case]["rps_steady"]),
                    0.9 * rate,
                    ">=",
                    unit="/s",
                )
            )
            targets.append(
                target(
                    f"latency_{ms}ms_{case}_rps",
                    f"{ms} ms latency: {label}, whole run >= 0.9 x {rate:g} confirmed/s",
                    _median(section_lat[case]["rps_whole"]),
                    0.9 * rate,
                    ">=",
                    unit="/s",
                )
            )
    section: dict[str, Any] = {
        "latencies_s": list(s.lat_latencies),
        "rate_limit": s.lat_rate,
        "n": s.lat_n,
        "stores": s.lat_stores,
        "store_rate_limit": s.lat_store_rate,
        "stores_n": s.lat_stores_n,
        "burst": BURST,
        "retry_after": RETRY_AFTER,
        "ideal_s": ideal,
        "ideal_stores_s": ideal_stores,
        "steady_after_s": s.lat_steady_after_s,
        "deadline_factor": s.lat_deadline_factor,
        "reps": s.lat_reps,
        "method": "confirmed/s from each confirmation's time (on_result); whole run: to the"
        " last confirmation; steady: confirmations after steady_after_s; the CLI: its --json"
        " summary's succeeded / elapsed_s; a push not done by deadline_factor x ideal is"
        " stopped (the CLI by SIGTERM) and counted as far as it got",
        "server": "FakeOMS in its own process (benchmarks/_fake_oms_server.py --latency)",
        "by_latency_ms": by_latency,
        "failed_runs": take_failures(),
    }
    return section, targets
