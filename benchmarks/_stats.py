"""Medians, ranges and paired ratios over repetitions, and the PASS/MISS verdicts."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Median, min, max and every value of the runs that produced one (None: no run did)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "runs": list(present),
    }


def paired_ratios(
    numerators: Sequence[dict[str, Any] | None],
    denominators: Sequence[dict[str, Any] | None],
    key: str,
) -> dict[str, Any] | None:
    """``num[key] / den[key]`` for each repetition where both ran; then their spread.

    Pairing runs of the same repetition cancels most of a shared machine's slow phases.
    """
    ratios: list[float | None] = []
    for num, den in zip(numerators, denominators, strict=True):
        if num is None or den is None or not den.get(key):
            continue
        ratios.append(num[key] / den[key])
    return spread(ratios)


def target(
    target_id: str,
    description: str,
    measured: float | None,
    threshold: float,
    comparison: str,
    *,
    unit: str = "",
    skipped: str | None = None,
) -> dict[str, Any]:
    """A target's verdict: PASS, MISS, or SKIP (with why) when nothing was measured."""
    if measured is None or skipped is not None:
        status = "SKIP"
    elif comparison == ">=":
        status = "PASS" if measured >= threshold else "MISS"
    elif comparison == "<=":
        status = "PASS" if measured <= threshold else "MISS"
    elif comparison == "<":
        status = "PASS" if measured < threshold else "MISS"
    else:
        raise ValueError(f"unknown comparison {comparison!r}")
    return {
        "id": target_id,
        "description": description,
        "measured": measured,
        "comparison": comparison,
        "threshold": threshold,
        "unit": unit,
        "status": status,
        "note": skipped or "",
    }
