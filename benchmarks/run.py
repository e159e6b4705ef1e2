"""Run the benchmark suite and write ``results.json``, ``chart.png`` and ``profile.txt``.

    python -m benchmarks                 # everything, a quarter of an hour or more
    python -m benchmarks --quick         # a smoke run, a few minutes
    python -m benchmarks --quick --only bulk --n 200 --out /tmp/r/results.json

Targets are reported as PASS/MISS/SKIP and never change the exit status: a noisy or slow
machine is not an error. The exit status is 1 only when the harness itself broke.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from . import (
    _report,
    _scenarios,
    _scenarios_hub,
    _scenarios_import,
    _scenarios_instructions,
    _scenarios_pace,
    _scenarios_scale,
    _scenarios_send_less,
)
from ._server import local_server

SCENARIOS = (
    "bulk",
    "sync",
    "memory",
    "rate_limited",
    "many_stores",
    "many_stores_bulk",
    "tracing",
    "single_calls",
    "mixed",
    "latency",
    "profile",
    "scale_out",
    "send_less",
    "hub_day",
    "import_time",
    "instructions",
)
#: Scenarios of ``_scenarios_pace`` (single calls, mixed, latency); the rest are ``_scenarios``.
PACE = ("single_calls", "mixed", "latency")
#: Scenarios that start their own FakeOMS instead of using the local receipt server.
OWN_SERVER = ("rate_limited", "many_stores", "hub_day", "import_time", *PACE)
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
#: Quick runs are smoke tests: they must not overwrite the published full results.
QUICK_OUT = Path(__file__).resolve().parent / "results" / "quick" / "results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repetitions")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios (default: all of {', '.join(SCENARIOS)})",
    )
    parser.add_argument("--n", type=int, help="updates per bulk (and tracing, and profile) run")
    parser.add_argument("--reps", type=int, help="repetitions per scenario")
    parser.add_argument(
        "--server",
        choices=("auto", "nginx", "aiohttp"),
        default="auto",
        help="local server: nginx when installed (auto), or the aiohttp fallback",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results.json path; chart.png and profile.txt go next to it (default:"
        " benchmarks/results.json, or benchmarks/results/quick/ with --quick)",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw chart.png")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {list(SCENARIOS)}")
    if args.n is not None and args.n < 1:
        parser.error("--n must be >= 1")
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be >= 1")
    return args


def _on_sigterm(signum: int, frame: Any) -> None:
    # Unwind normally, so the servers' context managers kill what they started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    settings = _scenarios.Settings.quick() if args.quick else _scenarios.Settings.full()
    if args.n is not None:
        settings = settings.with_bulk_n(args.n)
    if args.reps is not None:
        settings = settings.with_reps(args.reps)
    out: Path = (args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {
        "schema": 1,
        "mode": settings.mode,
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": _report.machine_info(),
        "settings": settings.__dict__,
        "server": {},
        "scenarios": {},
        "targets": [],
        "notes": [],
    }
    broken = False
    needs_server = [s for s in args.only if s not in OWN_SERVER]
    with local_server(args.server) if needs_server else _no_server() as server:
        if server is not None:
            results["server"] = server.describe()
            _scenarios.log(f"local server: {server.version} at {server.url}")
            results["notes"].extend(server.notes)
        for name in args.only:
            try:
                broken |= _run_scenario(name, settings, server, out, results)
            except KeyboardInterrupt:
                results["notes"].append(f"{name}: interrupted")
                raise
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    _report.write_json(results, out)
    if not args.no_chart:
        from ._chart import draw

        why_not = draw(results, out.with_name("chart.png"))
        if why_not:
            results["notes"].append(why_not)
            _report.write_json(results, out)
    print(_report.render(results), flush=True)
    print(f"wrote {out}", flush=True)
    return 1 if broken else 0


def _run_scenario(
    name: str, settings: _scenarios.Settings, server: Any, out: Path, results: dict[str, Any]
) -> bool:
    """Run one scenario into ``results``; True when the harness broke (not for timing)."""
    try:
        if name == "profile":
            section = _scenarios.profile(settings, server, out.with_name("profile.txt"))
            targets: list[dict[str, Any]] = []
        elif name == "scale_out":
            # Its own FakeOMS and Redis, and the local server for its overhead part.
            section, targets = _scenarios_scale.scale_out(settings, server)
        elif name == "send_less":
            section, targets = _scenarios_send_less.send_less(settings, server)
        elif name == "hub_day":
            # Its own FakeOMS (one port per store) and Redis.
            section, targets = _scenarios_hub.hub_day(settings)
        elif name == "import_time":
            section, targets = _scenarios_import.import_time(settings)
        elif name == "instructions":
            section, targets = _scenarios_instructions.instructions(settings, server)
        elif name in PACE:
            section, targets = getattr(_scenarios_pace, name)(settings)
        elif name in OWN_SERVER:
            section, targets = getattr(_scenarios, name)(settings)
        else:
            section, targets = getattr(_scenarios, name)(settings, server)
    except Exception:
        text = traceback.format_exc()
        print(text, file=sys.stderr, flush=True)
        results["scenarios"][name] = {"error": text.strip().splitlines()[-1]}
        results["notes"].append(f"{name}: the harness failed: {text.strip().splitlines()[-1]}")
        return True
    section["load_average_after"] = list(os.getloadavg())
    results["scenarios"][name] = section
    results["targets"].extend(targets)
    return False


class _no_server:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
