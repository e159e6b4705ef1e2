"""What a run leaves behind: the machine's description, the printed tables, results.json and
the chart."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = (
    "vtex-tracking",
    "aiohttp",
    "anyio",
    "attrs",
    "cattrs",
    "orjson",
    "yarl",
    "multidict",
    "httpx",
    "httpcore",
    "requests",
    "urllib3",
    "pyinstrument",
    "matplotlib",
)

NAMES = {
    "sdk_push": "vtex_tracking push_all",
    "sdk_push_shared": "push_all, shared_pace (Redis)",
    "sdk_push_uvloop": "push_all on uvloop",
    "raw_aiohttp": "raw aiohttp pool (a)",
    "raw_aiohttp_orjson": "raw aiohttp pool, orjson",
    "httpx_pool": "httpx.AsyncClient pool (b)",
    "requests_threads": "requests, 64 threads (c)",
    "sdk_send_pool": "client.send, 64 tasks (diag.)",
    "sdk_traced": "push_all, traced (OTel SDK)",
    "sdk_traced_sampled": "push_all, traced, 1 % sampled",
    "sdk_sync_seq": "TrackingClient (sync)",
    "requests_seq": "requests.Session",
    "sdk_async_seq": "AsyncTrackingClient, awaited",
    "sdk_push_stores_fixed": "many stores, pace fixed",
    "sdk_push_fixed": "one store, pace fixed",
    "sdk_push_stores": "many new stores, adaptive",
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and package versions, and the time of the run."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gb: float | None = round(pages / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "packages": packages,
        "load_average_at_start": list(os.getloadavg()),
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _range(spread: dict[str, Any] | None, digits: int = 0) -> str:
    if spread is None:
        return "-"
    low, high = _fmt(spread["min"], digits), _fmt(spread["max"], digits)
    return f"{_fmt(spread['median'], digits)} [{low}-{high}]"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join(
        ["  " + line(headers), "  " + line(["-" * w for w in widths])]
        + ["  " + line(r) for r in rows]
    )


def _compare_table(section: dict[str, Any], subject: str) -> str:
    ratios = section["ratios_of_" + subject]
    rows = []
    for name, c in section["contenders"].items():
        ratio = ratios.get(name, {})
        rows.append(
            [
                NAMES.get(name, name),
                f"{c['n']:,}",
                _range(c["rps"]),
                _range(c["cpu_us_per_req"]),
                _range(c["peak_rss_mb"], 1),
                "1 (subject)" if name == subject else _range(ratio.get("speed"), 2),
                "" if name == subject else _range(ratio.get("cpu"), 2),
            ]
        )
    for name, why in section["skipped"].items():
        rows.append([NAMES.get(name, name), "-", f"skipped: {why}", "", "", "", ""])
    headers = [
        "contender",
        "n",
        "req/s",
        "CPU us/req",
        "peak RSS MB",
        f"speed: {NAMES[subject]} / this",
        "CPU: ... / this",
    ]
    return _table(headers, rows)


def render(results: dict[str, Any]) -> str:
    """The human-readable summary printed at the end of a run."""
    m = results["machine"]
    # A scenario whose harness broke left only {"error": ...} (its note says why): skip it.
    sc = {name: section for name, section in results["scenarios"].items() if "error" not in section}
    out = [
        f"\n== vtex-tracking benchmarks ({results['mode']}), {m['date']} ==",
        f"{m['cpu_model']}, {m['usable_cpus']} CPUs, {m['python']},"
        f" server: {results['server'].get('version', '-')}",
        "Figures: median [min-max] over repetitions; ratios paired per repetition.",
    ]
    if "bulk" in sc:
        out += [
            "",
            f"Bulk push, concurrency 64 ({sc['bulk']['reps']} reps):",
            _compare_table(sc["bulk"], "sdk_push"),
        ]
    if "sync" in sc:
        out += [
            "",
            f"Sequential single calls ({sc['sync']['reps']} reps):",
            _compare_table(sc["sync"], "sdk_sync_seq"),
        ]
    if "instructions" in sc and "k_instructions_per_request" in sc["instructions"]:
        section = sc["instructions"]
        rows = [
            [NAMES.get(name, name), _fmt(value, 1)]
            for name, value in section["k_instructions_per_request"].items()
        ]
        ratios = ", ".join(
            f"{NAMES.get(other, other)} {_fmt(value, 2)} x"
            for other, value in section["push_vs"].items()
            if value is not None
        )
        out += [
            "",
            f"CPU instructions per request (valgrind, {section['n']:,} requests, client only):",
            _table(["contender", "k instructions/request"], rows),
            f"  push_all does the work of one request in 1 / x of: {ratios}",
        ]
        of_push = {k: v for k, v in section.get("of_push", {}).items() if v is not None}
        if of_push:
            out.append(
                "  work per request as a share of push_all's: "
                + ", ".join(f"{NAMES.get(k, k)} {_fmt(v, 2)} x" for k, v in of_push.items())
            )
    if "many_stores_bulk" in sc:
        section = sc["many_stores_bulk"]
        first = (section.get("first_contact") or {}).get("speed")
        out += [
            "",
            f"Many stores, unthrottled ({section['stores']} stores vs one,"
            f" {section['reps']} reps):",
            _compare_table(section, "sdk_push_stores_fixed"),
            f"  first contact (adaptive pace, every account new): many / one ="
            f" {_fmt(first['median'], 2) if first else '-'} x",
        ]
    if "tracing" in sc:
        out += _tracing_section(sc["tracing"])
    if "memory" in sc:
        rows = []
        for label, key in (
            ("vtex_tracking push", "sdk"),
            ("raw aiohttp pool", "baseline_raw_aiohttp"),
        ):
            f = sc["memory"].get(key)
            if f:
                rows.append(
                    [
                        label,
                        f"{f['n']:,}",
                        _fmt(f["rss_start_mb"], 1),
                        _fmt(f["rss_mark_mb"], 1),
                        _fmt(f["rss_end_mb"], 1),
                        _fmt(f["peak_rss_mb"], 1),
                        _fmt(f["growth_after_mark_mb"], 1),
                        _fmt(f["rps"]),
                    ]
                )
        out += [
            "",
            f"Memory, lazily generated input (mark at {sc['memory']['mark']:,} results):",
            _table(
                [
                    "contender",
                    "n",
                    "RSS start MB",
                    "at mark",
                    "at end",
                    "peak",
                    "end - mark",
                    "req/s",
                ],
                rows,
            ),
        ]
    if "rate_limited" in sc:
        r = sc["rate_limited"]
        rows = [
            [
                mode,
                _range(r[mode]["time_over_ideal"], 2),
                _range(r[mode]["wall_s"], 1),
                _range(_pct(r[mode]["share_429"]), 1),
                str(r[mode]["failed"]),
            ]
            for mode in ("adaptive", "fixed")
        ]
        out += [
            "",
            f"Rate-limited ({r['n']:,} updates at {r['rate_limit']:g}/s, ideal"
            f" {r['ideal_s']:.1f} s, {r['reps']} reps, {r['server']}):",
            _table(["pacing", "time / ideal", "seconds", "429 share %", "failed"], rows),
        ]
    out += _pace_sections(sc)
    if "scale_out" in sc:
        from ._report_scale import scale_out_lines

        out += scale_out_lines(sc["scale_out"])
    if "hub_day" in sc:
        out += _hub_day_section(sc["hub_day"])
    if sc.get("profile", {}).get("sdk_push"):
        p = sc["profile"]["sdk_push"]
        rows = [[f"{row['share'] * 100:.1f} %", row["area"]] for row in p["by_area"][:10]]
        rows2 = [[f"{row['share'] * 100:.1f} %", row["where"]] for row in p["top_functions"][:15]]
        out += [
            "",
            f"Profile of the bulk push ({p['tool']}; full report in"
            f" {sc['profile']['file']}): own time by area",
            _table(["share", "area"], rows),
            "",
            "Top functions by own time:",
            _table(["share", "function"], rows2),
        ]
    rows = [
        [
            t["status"],
            t["description"],
            _fmt(t["measured"], 2) + f" {t['unit']}".rstrip(),
            f"{t['comparison']} {t['threshold']:g}",
            t["note"],
        ]
        for t in results["targets"]
    ]
    out += ["", "Targets:", _table(["", "target", "measured", "wanted", "note"], rows)]
    for note in results["notes"]:
        out.append(f"note: {note}")
    return "\n".join(out) + "\n"


def _tracing_section(t: dict[str, Any]) -> list[str]:
    """Bulk push with and without a tracer provider, and the spans counted."""
    if "contenders" not in t:
        why = t.get("skipped", {}).get("sdk_traced", "-")
        return ["", f"Tracing: skipped ({why})"]
    spans = t["spans"]["runs"]
    counted = ", ".join(f"{r['spans_exported']:,}/{r['requests']:,}" for r in spans) or "-"
    sampled = t.get("ratios_of_sdk_traced_sampled", {}).get("sdk_push", {})
    return [
        "",
        f"Tracing: bulk push with a TracerProvider + BatchSpanProcessor (spans counted,"
        f" dropped) vs none, concurrency 64 ({t['reps']} reps):",
        _compare_table(t, "sdk_traced"),
        f"  CPU a span adds per request: {_range(t['traced_extra_cpu_us_per_req'], 1)} us;"
        f" spans exported / requests per run: {counted}",
        f"  1 % sampled / untraced push: speed"
        f" {_range(sampled.get('speed'), 2)}, CPU per request {_range(sampled.get('cpu'), 2)}",
    ]


def _failed_cell(mode: dict[str, Any]) -> str:
    classes = ", ".join(f"{name} {count}" for name, count in mode["failed_by_class"].items())
    return f"{mode['failed']}" + (f" ({classes})" if classes else "")


def _call_cell(runs: list[dict[str, Any]]) -> str:
    """Median over runs of the p50 and p95 single-call durations, in seconds."""
    calls = [r["call_s"] for r in runs if r.get("call_s") and r["call_s"].get("p50") is not None]
    if not calls:
        return "-"
    p50 = sorted(c["p50"] for c in calls)[len(calls) // 2]
    p95 = sorted(c["p95"] for c in calls)[len(calls) // 2]
    return f"{p50:.2f} / {p95:.2f}"


SINGLE_CALLS_HEADERS = [
    "callers", "time / ideal", "seconds", "429 share %", "failed", "call p50 / p95 s"
]  # fmt: skip
MIXED_HEADERS = [
    "work", "time / ideal", "seconds", "push done s", "calls done s", "429 share %", "failed"
]  # fmt: skip
LATENCY_HEADERS = [
    "latency", "case", "n", "confirmed/s", "steady /s", "429 share %", "failed", "stopped"
]  # fmt: skip


def _pace_sections(sc: dict[str, Any]) -> list[str]:
    """The single calls, mixed and latency sections (``_scenarios_pace``)."""
    out: list[str] = []
    if "single_calls" in sc:
        r = sc["single_calls"]
        callers = {
            "async": f"{r['coroutines']} coroutines, one AsyncTrackingClient",
            "threads": f"{r['thread_count']} threads, one TrackingClient",
        }
        rows = [
            [
                label,
                _range(r[kind]["time_over_ideal"], 2),
                _range(r[kind]["wall_s"], 1),
                _range(_pct(r[kind]["share_429"]), 1),
                _failed_cell(r[kind]),
                _call_cell(r[kind]["runs"]),
            ]
            for kind, label in callers.items()
        ]
        out += [
            "",
            f"Single calls ({r['n']:,} calls at {r['rate_limit']:g}/s, ideal {r['ideal_s']:.1f} s,"
            f" max_attempts {r['max_attempts']}, {r['reps']} reps, {r['server']}):",
            _table(SINGLE_CALLS_HEADERS, rows),
        ]
    if "mixed" in sc:
        r = sc["mixed"]
        m = r["mixed"]
        rows = [
            [
                f"push_all {r['push_n']:,} + {r['single_n']:,} calls ({r['tasks']} coroutines)",
                _range(m["time_over_ideal"], 2),
                _range(m["wall_s"], 1),
                _range(m.get("push_s"), 1),
                _range(m.get("singles_s"), 1),
                _range(_pct(m["share_429"]), 1),
                _failed_cell(m),
            ]
        ]
        out += [
            "",
            f"Mixed, one client ({r['n']:,} updates at {r['rate_limit']:g}/s, ideal"
            f" {r['ideal_s']:.1f} s, {r['reps']} reps):",
            _table(MIXED_HEADERS, rows),
        ]
    if "latency" in sc:
        r = sc["latency"]
        rows = []
        for ms, by_case in r["by_latency_ms"].items():
            for case, c in by_case.items():
                if case == "latency_s":
                    continue
                rows.append(
                    [
                        f"{ms} ms",
                        c["what"],
                        f"{c['n']:,}",
                        _range(c["rps_whole"]),
                        _range(c["rps_steady"]),
                        _range(_pct(c["share_429"]), 1),
                        str(c["failed"]),
                        f"{c['stopped_runs']}/{c['runs_ok']}",
                    ]
                )
        out += [
            "",
            f"Latency (server adds the latency to every answer; one account at"
            f" {r['rate_limit']:g}/s, {r['stores']} accounts at {r['store_rate_limit']:g}/s each;"
            f" {r['reps']} reps; confirmed/s, steady: after {r['steady_after_s']:g} s; runs"
            f" stopped at {r['deadline_factor']:g} x ideal):",
            _table(LATENCY_HEADERS, rows),
        ]
    return out


def _hub_day_section(r: dict[str, Any]) -> list[str]:
    """The printed section of the ``hub_day`` scenario (``_scenarios_hub``)."""
    if "skipped" in r:
        return ["", f"Hub day: skipped ({r['skipped']})"]
    c = r["settings"]
    headers = ["run", "slowest / ideal", "its limit", "median / ideal", "429 %",
               "worst store 429 %", "first 10 s max (> 3)", "req / invoice", "503 %", "lost",
               "failed", "CPU us/req"]  # fmt: skip
    rows = []
    for kind in ("first", "second", "local"):
        f = r.get(kind)
        if not f:
            continue
        rows.append([
            kind, _range(f["slowest_over_ideal"], 2),
            "/".join(_fmt(x, 1) for x in f["slowest_limit"]) or "-",
            _range(f["median_over_ideal"], 2), _range(_pct(f["share_429"]), 2),
            _range(_pct(f["worst_store_share_429"]), 1),
            f"{_range(f['first_10s_429_max'])} ({_range(f['stores_over_3_in_first_10s'])})",
            _range(f["requests_per_invoice"], 3), _range(_pct(f["share_503"]), 2),
            _range(f["lost_updates"]), _range(f["failed"]), _range(f["cpu_us_per_request"]),
        ])  # fmt: skip
    cpu = r.get("cpu_per_request_shared_over_local")
    return [
        "",
        f"Hub day: {c['stores']} stores, limits drawn from {c['low']:g}-{c['high']:g}/s"
        f" (burst {c['burst']}, latency {c['latency']:g} s, ~{c['fail_share'] * 100:g} % 503"
        " in bursts),"
        f" {r['invoices']:,} invoices, {r['updates']:,} updates, ideal {c['ideal_s']:g} s;"
        f" {c['sdk_processes']} SDK + {c['cli_processes']} CLI processes ({c['reps']} reps;"
        f" {r['redis']}):",
        _table(headers, rows),
        f"  CPU per request, shared (first) / local: {_range(cpu, 2)}; failed runs:"
        f" {len(r['failed_runs'])}; slowest store of all (complete or not) / ideal, machine"
        " busy % during the run, server CPU s: "
        + "; ".join(
            f"{kind} {_range(r[kind]['slowest_any_over_ideal'], 2)},"
            f" {_range(_pct(r[kind]['machine_busy_share']))}, {_range(r[kind]['server_cpu_s'], 1)}"
            for kind in ("first", "second", "local")
            if r.get(kind)
        ),
    ]


def _pct(spread: dict[str, Any] | None) -> dict[str, Any] | None:
    if spread is None:
        return None
    return {k: (v * 100 if k != "runs" else v) for k, v in spread.items()}


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
