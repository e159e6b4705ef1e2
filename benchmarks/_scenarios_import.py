"""What ``import vtex_tracking`` costs a process, against ``import aiohttp`` (its largest
dependency, which it imports anyway): the price of a CLI start, a worker's boot, a test run.

Each import runs in a fresh interpreter (nothing cached in ``sys.modules``), the two
interleaved (rotated each repetition), timed inside the process around the ``import`` alone
(the interpreter's own start is the same for both and left out): wall and CPU time. Ratios are
paired per repetition, then their median taken.

Both load compiled bytecode, as an installed package does (pip compiles it at install): the
processes keep their ``.pyc`` files in a private cache (``PYTHONPYCACHEPREFIX``), filled by one
untimed import of each module first, with ``PYTHONDONTWRITEBYTECODE`` left out. Otherwise the
figure depended on the machine's state: with that variable set (as in some sandboxes and CI
images) and no ``__pycache__`` next to an editable install's sources, vtex_tracking was
compiled from source at every import while aiohttp's site-packages bytecode was loaded (the
release before 2026-12-03's import work: 1.63 x that way, 1.33 x from bytecode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from ._scenarios import Settings, log
from ._stats import paired_ratios, spread, target

MODULES = ("aiohttp", "vtex_tracking")
_PROBE = (
    "import time; w, c = time.perf_counter(), time.process_time(); import {module};"
    " print(__import__('json').dumps([time.perf_counter() - w, time.process_time() - c]))"
)
#: At least this many repetitions: one import is milliseconds, and the machine is shared.
MIN_REPS = 7


def _env(pycache: str) -> dict[str, str]:
    """The environment of the timed processes: bytecode written to and read from ``pycache``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def _once(module: str, env: dict[str, str]) -> dict[str, float] | None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        log(f"  import {module} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    wall, cpu = json.loads(done.stdout)
    return {"wall_ms": wall * 1000, "cpu_ms": cpu * 1000}


def import_time(s: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``import vtex_tracking`` vs ``import aiohttp``, each in fresh processes."""
    reps = max(MIN_REPS, s.reps * 3)
    log(f"\n== import time: import vtex_tracking vs import aiohttp, {reps} fresh processes each ==")
    runs: dict[str, list[dict[str, float] | None]] = {name: [] for name in MODULES}
    with tempfile.TemporaryDirectory(prefix="vtex-tracking-pycache-") as pycache:
        env = _env(pycache)
        for module in MODULES:  # untimed: compiles each module's bytecode into the cache
            _once(module, env)
        for rep in range(reps):
            shift = rep % len(MODULES)
            for module in MODULES[shift:] + MODULES[:shift]:
                runs[module].append(_once(module, env))
    for module in MODULES:
        walls = ", ".join(f"{r['wall_ms']:.0f}" for r in runs[module] if r)
        log(f"  import {module:<14} ms: {walls}")
    section = {
        "reps": reps,
        "method": "wall and CPU ms of the import statement in a fresh interpreter, interleaved,"
        " bytecode compiled beforehand (a private PYTHONPYCACHEPREFIX, one untimed import);"
        " ratios paired per repetition",
        "modules": {
            module: {
                key: spread([r[key] for r in runs[module] if r]) for key in ("wall_ms", "cpu_ms")
            }
            for module in MODULES
        },
        "ratio_wall": paired_ratios(runs["vtex_tracking"], runs["aiohttp"], "wall_ms"),
        "ratio_cpu": paired_ratios(runs["vtex_tracking"], runs["aiohttp"], "cpu_ms"),
    }
    ratio = section["ratio_cpu"]
    targets = [
        target(
            "import_time_vs_aiohttp",
            "import vtex_tracking <= 1.15 x import aiohttp (CPU ms, fresh processes, paired)",
            ratio["median"] if ratio else None,
            1.15,
            "<=",
            unit="x",
        )
    ]
    return section, targets
