"""``collect``: wait for the batches of ``enqueue`` and give each item's final result once
(``Collected``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import attrs

# Celery ships no type information: its objects are typed ``Any`` here, on purpose, at the
# edges only (the app, the task, AsyncResult). "unused-ignore": for sites with celery-types.
from celery.exceptions import TimeoutError as CeleryTimeoutError  # type: ignore[import-untyped, unused-ignore]

from ._producer import Batch
from ._results import ItemResult, _result

#: Seconds between two looks at the result backend in ``collect``.
COLLECT_INTERVAL = 0.5


@attrs.frozen
class Collected:
    """Every item's final result, once each, by input position; and how many repeats
    were set aside.

    ``duplicates``: results for an item that already had one (the same item in two
    batches); ``redelivered``: items whose batch was delivered more than once, each maybe
    sent twice (harmless); ``pending``: items whose batch gave no result before ``timeout``
    (reported as ``outcome="pending"``, not ok: the batch may still run).
    """

    results: tuple[ItemResult, ...]
    duplicates: int = 0
    redelivered: int = 0
    pending: int = 0

    @property
    def succeeded(self) -> int:
        """Items VTEX confirmed."""
        return sum(1 for r in self.results if r["ok"])

    @property
    def failed(self) -> int:
        """Items not confirmed (pending ones included)."""
        return len(self.results) - self.succeeded

    @property
    def ok(self) -> bool:
        """True when every item was confirmed."""
        return self.failed == 0

    @property
    def by_outcome(self) -> dict[str, int]:
        """How many items ended with each outcome."""
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        return counts


def collect(
    batches: Iterable[Batch], *, timeout: float | None = None, interval: float = COLLECT_INTERVAL
) -> Collected:
    """Wait for the batches (at most ``timeout`` seconds in all) and return one result per
    item: a confirmed result wins over a failed one, else the last one received."""
    batches = list(batches)
    final: dict[int, ItemResult] = {}
    duplicates = 0

    def keep(result: ItemResult) -> None:
        nonlocal duplicates
        index = result["index"]
        if index in final:
            duplicates += 1
            if final[index]["ok"] and not result["ok"]:
                return
        final[index] = result

    for batch in batches:
        for result in batch.refused:
            keep(result)
    waiting = {b.id: b for b in batches if b.result is not None}
    if waiting:
        backend = next(iter(waiting.values())).result.backend
        try:
            for task_id, meta in backend.get_many(set(waiting), timeout=timeout, interval=interval):
                batch = waiting.pop(task_id)
                for result in _batch_results(batch, meta):
                    keep(result)
                # Celery subscribed to the batch's result channel when it was sent, and only
                # unsubscribes when the AsyncResult is garbage collected: if Redis has stopped
                # by then, that blocks ~20 s on reconnects and raises. Unsubscribe now instead.
                backend.remove_pending_result(batch.result)
        except CeleryTimeoutError:
            pass
    pending = 0
    for batch in waiting.values():
        for n in range(len(batch.indexes)):
            pending += 1
            keep(_lost(batch, n, "pending", f"no result within {timeout} s"))
    results = tuple(final[i] for i in sorted(final))
    redelivered = sum(1 for r in results if r["redelivered"])
    return Collected(results, duplicates, redelivered, pending)


def _batch_results(batch: Batch, meta: Mapping[str, Any]) -> list[ItemResult]:
    if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), list):
        return cast(list[ItemResult], meta["result"])
    # The task itself failed (a bug, a time limit, a revoke): its items failed with it.
    error = meta.get("result")
    if isinstance(error, Mapping):
        error = f"{error.get('exc_type')}: {error.get('exc_message')}"
    outcome = "revoked" if meta.get("status") == "REVOKED" else "batch_failed"
    return [
        _lost(batch, n, outcome, f"the batch failed: {error}") for n in range(len(batch.indexes))
    ]


def _lost(batch: Batch, n: int, outcome: str, error: str) -> ItemResult:
    source = batch.sources[n] if batch.sources else None
    return _result(batch.indexes[n], source, outcome=outcome, error=error)
