"""The ``send_less`` scenario (issue 17): what the resume journal costs, and how much a second
run of the same export saves with ``--skip-unchanged``.

1. ``journal_overhead``: ``push_all`` against the unthrottled local server (nginx, else
   aiohttp), with a new journal vs without, paired per repetition.
2. ``journal_memory``: peak RSS of a push of ``memory_n`` lazily generated updates that writes
   a journal (the ``memory`` scenario's contender, with ``journal``).
3. ``skip_unchanged``: the CLI, as a carrier runs it, on a file of ``unchanged_n`` updates:
   a first run against an unthrottled FakeOMS (in its own process) fills the state file; the
   same server is then limited to ``unchanged_rate`` req/s, and the second run of the same
   file is timed, as is a third with 1 % of the lines changed. (One server for all three:
   the state is bound to its target, the base URL.) The first run's time at that rate is at least
   ``unchanged_n / unchanged_rate`` (sending every update); the ratio uses that lower bound, so
   the real saving is larger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._scenarios import Settings, _compare_runs, _timeout, log, run_contender, take_failures
from ._server import Server, child_env, fake_oms_server
from ._stats import target
from ._workload import APP_KEY, APP_TOKEN, EVENTS, invoice_number, order_id

Section = tuple[dict[str, Any], list[dict[str, Any]]]

_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SendLessSettings:
    unchanged_n: int = 100_000
    unchanged_rate: float = 100.0
    changed_share: float = 0.01

    @classmethod
    def of(cls, s: Settings) -> SendLessSettings:
        return cls(unchanged_n=5_000) if s.mode == "quick" else cls()


def _line(i: int, step: str = "") -> str:
    events = [
        {"city": city, "state": state, "description": description + step, "date": date}
        for city, state, description, date in EVENTS
    ]
    return json.dumps(
        {"orderId": order_id(i), "invoiceNumber": invoice_number(i), "events": events},
        ensure_ascii=False,
    )


def _write(path: Path, n: int, changed_every: int = 0) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            changed = changed_every and i % changed_every == 0
            out.write(_line(i, " (atualizado)" if changed else "") + "\n")


def _cli(path: Path, state: Path, url: str, work: Path) -> dict[str, Any]:
    """One ``vtex-tracking push`` run; its JSON summary and wall time."""
    env = child_env() | {
        "VTEX_ACCOUNT_NAME": "bench",
        "VTEX_APP_KEY": APP_KEY,
        "VTEX_APP_TOKEN": APP_TOKEN,
    }
    command = [
        sys.executable, "-m", "vtex_tracking.cli", "push", str(path), "--base-url", url,
        "--skip-unchanged", str(state), "--json", "-q", "--failed", str(work / "failed.jsonl"),
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=work, timeout=3600, check=False
    )
    wall = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"push exited {done.returncode}: {done.stderr.strip()[-300:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    summary["wall_s"] = wall
    return summary


def _unchanged(c: SendLessSettings) -> dict[str, Any]:
    n, rate = c.unchanged_n, c.unchanged_rate
    log(
        f" skip_unchanged: {n:,}-update file; first run to FakeOMS unthrottled, then the same"
        f" file and a 1 %-changed one to the same FakeOMS at {rate:g} req/s"
    )
    with tempfile.TemporaryDirectory(prefix="vtex-bench-unchanged-") as tmp:
        work = Path(tmp)
        path, state = work / "ativos.jsonl", work / "ativos.state"
        _write(path, n)
        # One server for all three runs: what the state remembers is bound to its target
        # (the base URL), so a first run against another server would vouch for nothing.
        with fake_oms_server(None, 10, "1") as oms:
            first = _cli(path, state, oms.url, work)
            log(f"    first run (unthrottled): {first['wall_s']:.1f} s, {first['by_outcome']}")
            oms.limit(rate)
            second = _cli(path, state, oms.url, work)
            log(f"    second run: {second['wall_s']:.2f} s, {second['by_outcome']}")
            changed = work / "ativos-changed.jsonl"
            _write(changed, n, changed_every=round(1 / c.changed_share))
            third = _cli(changed, state, oms.url, work)
            log(f"    1 % changed: {third['wall_s']:.2f} s, {third['by_outcome']}")
        state_bytes = sum(p.stat().st_size for p in work.glob("ativos.state*"))
    first_at_rate = n / rate
    return {
        "n": n,
        "rate": rate,
        "first_run_unthrottled_s": first["wall_s"],
        "first_run_at_rate_lower_bound_s": first_at_rate,
        "second_run_s": second["wall_s"],
        "second_by_outcome": second["by_outcome"],
        "second_skipped_share": second["skipped"]["unchanged"] / n,
        "second_over_first": second["wall_s"] / first_at_rate,
        "changed_run_s": third["wall_s"],
        "changed_by_outcome": third["by_outcome"],
        "changed_over_first": third["wall_s"] / first_at_rate,
        "state_file_bytes": state_bytes,
        "method": "wall time of each `vtex-tracking push --skip-unchanged STATE --json -q`"
        " process (start-up included); the first run's time at the rate is n / rate, a"
        " lower bound",
    }


def send_less(s: Settings, server: Server) -> Section:
    c = SendLessSettings.of(s)
    log("\n== send less: the journal's cost, and a second run with --skip-unchanged ==")
    log(f" journal overhead: push_all of {s.bulk_n:,}, with a new journal vs none")
    common = {"url": server.url, "n": s.bulk_n, "warmup": s.bulk_warmup, "concurrency": 64}
    params_for = {"sdk_push_journal": {**common, "journal": True}, "sdk_push": common}
    overhead, _ = _compare_runs(list(params_for), s.reps, params_for, "sdk_push_journal", 50)
    ratio = overhead["ratios_of_sdk_push_journal"].get("sdk_push", {}).get("speed")
    log(f" journal memory: push of {s.memory_n:,} lazily generated updates with a journal")
    memory = run_contender(
        "sdk_memory_journal",
        {"url": server.url, "n": s.memory_n, "mark": s.memory_mark, "concurrency": 64,
         "warmup": 0, "sample_every": max(1, s.memory_n // 50), "journal": True},
        _timeout(s.memory_n, 300),
    )  # fmt: skip
    unchanged = _unchanged(c)
    section: dict[str, Any] = {
        "journal_overhead": overhead,
        "journal_memory": None
        if memory is None
        else {k: memory.get(k) for k in ("n", "rps", "peak_rss_mb", "errors", "wall_s")},
        "skip_unchanged": unchanged,
        "failed_runs": take_failures(),
        "load_average": list(os.getloadavg()),
    }
    targets = [
        target("send_less_journal_overhead", "push with a journal vs without, unthrottled:"
               " >= 0.90 x the requests/s", ratio["median"] if ratio else None, 0.90, ">=",
               unit="x"),
        target(f"send_less_journal_memory_{s.memory_n}", f"push of {s.memory_n:,} updates"
               " with a journal: peak RSS < 100 MB",
               None if memory is None else memory["peak_rss_mb"], 100.0, "<", unit="MB"),
        target("send_less_unchanged_skipped", f"second run of the same {c.unchanged_n:,}-update"
               " file with --skip-unchanged: >= 99 % skipped",
               unchanged["second_skipped_share"] * 100, 99.0, ">=", unit="%"),
        target("send_less_unchanged_time", f"that second run, to a {c.unchanged_rate:g} req/s"
               " server: < 5 % of the first run's time", unchanged["second_over_first"] * 100,
               5.0, "<", unit="%"),
    ]  # fmt: skip
    return section, targets
