"""Each account's measured limit, kept on disk between runs (``limits_file=``).

A new account starts slowly (``_throttle.AdaptiveRate.start``) and learns its limit from its
first 429s. A single process that pushes every day can keep what it learned: the client reads
the file when it first talks to an account, starts that account just below the limit found
last time, and writes what it measured when it closes. Several processes share a pace (and
its memory) through ``shared_pace``, not through this file.

What is kept is bound to the target (the base URL the account's requests go to: a limit
measured against a fake server or a proxy never paces the real account), dated, and taken
lower the older it is (``LIMIT_FRESH``, ``LIMIT_HALF_LIFE``; dropped after ``LIMIT_KEPT``).
The file is a small JSON document, written whole to a temporary file and renamed. A missing
file is an empty one; an unreadable or malformed one, or a malformed entry, is ignored with
one warning (and replaced at the next write): the limit is learned again, nothing fails.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from ._constants import LIMIT_FRESH, LIMIT_HALF_LIFE, LIMIT_KEPT
from ._log import logger

__all__ = ["LimitsFile"]

#: The file's format: bumped when its meaning changes (another version's file is ignored).
FORMAT = 1


class LimitsFile:
    """The limits kept at ``path``: read once, looked up per target, written on ``save``."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Any = time.time) -> None:
        self.path = Path(path).expanduser()
        self._clock = clock
        self._warned = False
        #: target -> (limit in requests per second, when it was measured: Unix time)
        self._limits: dict[str, tuple[float, float]] = self._read()
        self._measured: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"LimitsFile({str(self.path)!r}, accounts={len(self._limits)})"

    def limit_for(self, target: str) -> float | None:
        """The limit to start ``target``'s account at (None: none kept), lower if old."""
        kept = self._limits.get(target)
        if kept is None:
            return None
        rate, at = kept
        age = self._clock() - at
        if age > LIMIT_KEPT:
            return None
        if age > LIMIT_FRESH:
            rate *= 0.5 ** ((age - LIMIT_FRESH) / LIMIT_HALF_LIFE)
        return rate

    def remember(self, target: str, limit: float) -> None:
        """Keep ``limit`` as ``target``'s, measured now (written by ``save``)."""
        if math.isfinite(limit) and limit > 0:
            self._measured[target] = limit

    def save(self) -> None:
        """Write what was measured, over what the file holds now (another run may have
        written since); a failure to write is a warning, never an error."""
        if not self._measured:
            return
        now = self._clock()
        limits = {
            target: kept
            for target, kept in self._read().items()
            if now - kept[1] <= LIMIT_KEPT
        }
        limits.update((target, (rate, now)) for target, rate in self._measured.items())
        document = {
            "format": FORMAT,
            "limits": {t: {"rate": r, "at": at} for t, (r, at) in sorted(limits.items())},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".limits-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            logger.warning(
                "limits file %s: could not write it (%s); the limits learned in this run"
                " are not kept",
                self.path,
                exc,
            )
            return
        self._limits = limits
        self._measured.clear()

    def _read(self) -> dict[str, tuple[float, float]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn(f"could not read it ({exc})")
            return {}
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._warn("it is not JSON")
            return {}
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            self._warn(f"it is not a limits file of format {FORMAT}")
            return {}
        entries = document.get("limits")
        limits: dict[str, tuple[float, float]] = {}
        if not isinstance(entries, dict):
            self._warn("it holds no limits table")
            return {}
        now = self._clock()
        for target, entry in entries.items():
            rate = entry.get("rate") if isinstance(entry, dict) else None
            at = entry.get("at") if isinstance(entry, dict) else None
            if (
                isinstance(rate, (int, float))
                and isinstance(at, (int, float))
                and math.isfinite(rate)
                and math.isfinite(at)
                and rate > 0
                and at <= now + 60  # a clock a little ahead is fine; a date far ahead is not
            ):
                limits[str(target)] = (float(rate), float(at))
            else:
                self._warn(f"the entry of {target!r} is malformed")
        return limits

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "limits file %s: %s; ignored, the limits are learned again", self.path, why
            )
