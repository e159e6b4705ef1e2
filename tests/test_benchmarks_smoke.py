"""The benchmark harness runs end to end (smallest bulk run) and writes the expected results."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_quick_bulk_benchmark_writes_results_with_verdicts(tmp_path: pathlib.Path) -> None:
    """`python -m benchmarks --quick --only bulk --n 200` exits 0 and writes a results.json
    with machine info, the bulk figures and a verdict per target (never failing on timing)."""
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "bulk", "--n", "200",
         "--reps", "1", "--no-chart", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert {"date", "cpu_model", "usable_cpus", "python", "packages"} <= results["machine"].keys()
    assert results["mode"] == "quick"
    assert results["server"]["kind"] in ("nginx", "aiohttp")
    bulk = results["scenarios"]["bulk"]
    sdk = bulk["contenders"]["sdk_push"]
    assert sdk["n"] == 200 and sdk["runs_ok"] == 1 and sdk["errors"] == 0
    assert {"median", "min", "max"} <= sdk["rps"].keys()
    assert sdk["cpu_us_per_req"]["median"] > 0 and sdk["peak_rss_mb"]["median"] > 0
    targets = {t["id"]: t for t in results["targets"]}
    assert {"bulk_vs_raw_aiohttp", "bulk_vs_httpx"} <= targets.keys()
    assert all(t["status"] in ("PASS", "MISS", "SKIP") for t in targets.values())


def test_mixed_push_benchmark_checks_every_line(tmp_path: pathlib.Path) -> None:
    """`python -m benchmarks.mixed_push` on a small day: every line one result, one request
    per part, no events before their number (its checks pass: exit 0)."""
    out = tmp_path / "mixed.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.mixed_push", "--lines", "400", "--rate", "400",
         "--timeout", "60", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["results"] == 400 and all(figures["checks"].values())
    assert figures["sent"] == {"tracking_number": 160, "events": 160, "tracking_number+events": 80}
    assert figures["server"]["patches_accepted"] + figures["server"]["puts_accepted"] == 480
