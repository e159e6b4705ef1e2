"""Measuring inside a contender process: wall and CPU time of a window, RSS, profiles."""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any


class Window:
    """Wall time and process CPU time (user + system, all threads) spent inside ``with``."""

    wall_s = 0.0
    cpu_s = 0.0

    def __enter__(self) -> Window:
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wall_s = time.perf_counter() - self._started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_s = (usage.ru_utime - self._usage.ru_utime) + (
            usage.ru_stime - self._usage.ru_stime
        )


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """The process's resident set size now (``VmRSS``), in MB; None off Linux."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else None


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MB (``VmHWM``, else ``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    by_rusage = peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    hwm = _status_kb("VmHWM")
    return max(by_rusage, hwm / 1024) if hwm is not None else by_rusage


def window_figures(window: Window, n: int, ok: int, statuses: Counter[str]) -> dict[str, Any]:
    """The common figures of a measured run of ``n`` requests."""
    return {
        "n": n,
        "ok": ok,
        "errors": n - ok,
        "statuses": dict(statuses),
        "wall_s": window.wall_s,
        "cpu_s": window.cpu_s,
        "rps": n / window.wall_s if window.wall_s > 0 else 0.0,
        "cpu_us_per_req": window.cpu_s / n * 1e6 if n else 0.0,
    }


class Profile:
    """pyinstrument (sampling) when installed, else cProfile, around a block of code."""

    def __init__(self) -> None:
        try:
            from pyinstrument import Profiler
        except ImportError:
            import cProfile

            self.tool = "cProfile"
            self._cprofile = cProfile.Profile()
        else:
            self.tool = "pyinstrument"
            # Async mode off: we want where the event loop thread's CPU goes, loop included.
            self._pyinstrument = Profiler(interval=0.0005, async_mode="disabled")

    def __enter__(self) -> Profile:
        if self.tool == "pyinstrument":
            self._pyinstrument.start()
        else:
            self._cprofile.enable()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.tool == "pyinstrument":
            self._pyinstrument.stop()
        else:
            self._cprofile.disable()

    def save(self, path: Path, top: int = 25) -> dict[str, Any]:
        """Write the report to ``path``; return the top functions and packages by own time."""
        from ._profile_report import cprofile_report, pyinstrument_report

        if self.tool == "pyinstrument":
            text, summary = pyinstrument_report(self._pyinstrument, top)
        else:
            text, summary = cprofile_report(self._cprofile, top)
        path.write_text(text)
        return {"tool": self.tool, **summary}


def maybe_profile(p: dict[str, Any]) -> Any:
    """A ``Profile`` when the run is asked for one (``profile``: where to write it)."""
    return Profile() if p.get("profile") else contextlib.nullcontext()


def with_profile(result: dict[str, Any], profile: Any, p: dict[str, Any]) -> dict[str, Any]:
    """``result`` with the profile's summary, written to ``p["profile"]``, when one ran."""
    if isinstance(profile, Profile):
        result["profile"] = profile.save(Path(p["profile"]))
    return result
