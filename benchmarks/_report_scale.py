"""The printed section of the ``scale_out`` scenario (``_scenarios_scale``)."""

from __future__ import annotations

from typing import Any

from ._report import _compare_table, _fmt, _pct, _range, _table

FLEET_HEADERS = [
    "pacing", "slowest store / ideal", "median store / ideal", "429 share %", "failed", "stopped"
]  # fmt: skip
FLEET_CASES = {
    "shared": "shared_pace (one Redis)",
    "none": "none (each process alone)",
    "shared_one_url": "shared, all stores behind one URL (diag.)",
}


def scale_out_lines(r: dict[str, Any]) -> list[str]:
    if "skipped" in r:
        return ["", f"Scale out: skipped ({r['skipped']})"]
    c = r["settings"]
    rows = [
        [
            label,
            _range(f["worst_over_ideal"], 2),
            _range(f["median_over_ideal"], 2),
            _range(_pct(f["share_429"]), 1),
            str(f["failed"]),
            str(f["stopped_results"]),
        ]
        for case, label in FLEET_CASES.items()
        if (f := r["fleet"].get(case))
    ]
    out = [
        "",
        f"Scale out: {c['processes']} sender processes, {c['stores']} stores at {c['rate']:g}/s"
        f" each (burst {r['burst']}, Retry-After {r['retry_after']}), {c['per_store']:,} updates"
        f" per store, ideal {r['ideal_s']:.0f} s ({c['reps']} reps; {r['redis']}):",
        _table(FLEET_HEADERS, rows),
    ]
    o = r["outage"]
    run = o.get("run")
    if run is not None and "windows" in o:
        w = o["windows"]
        share = lambda key: _fmt(_pct_value(w[key]["share_429"]), 1)  # noqa: E731
        out += [
            f"  Redis stopped at {o['redis_stopped_s']:.1f} s, started at"
            f" {o['redis_started_s']:.1f} s ({c['outage_per_store']:,} per store, shared):"
            f" failed {run['failed']}, not sent by the deadline {run['stopped_results']};"
            f" slowest store {_fmt(run['worst_over_ideal'], 2)} x ideal",
            f"  429 share during the outage {share('during')} % of {w['during']['answers']:,}"
            f" answers; outside {share('outside')} % (before {share('before')} %, after"
            f" {share('after')} %); lanes (process x store) gone local"
            f" {o['lanes_went_local']}/{o['lanes']}, rejoined {o['lanes_rejoined']}"
            f" (within {_range(o['rejoined_s'], 1)} s of the restart)",
        ]
    elif o.get("failed_runs"):
        out.append(f"  Redis outage run broke: {'; '.join(o['failed_runs'])}")
    h = r["overhead"]
    for case, label in (
        ("unthrottled", "no rate known: nothing leased, a sync every 0.1 s"),
        ("rate_limit", f"diag.: client rate_limit={c['overhead_rate_limit']:g}, tokens leased"),
    ):
        if case in h:
            out += [
                "",
                f"Scale out, overhead: one process, push_all of {h['n']:,} against {h['server']},"
                f" shared_pace vs none ({label}; {h[case]['reps']} reps):",
                _compare_table(h[case], "sdk_push_shared"),
            ]
    return out


def _pct_value(value: float | None) -> float | None:
    return None if value is None else value * 100
