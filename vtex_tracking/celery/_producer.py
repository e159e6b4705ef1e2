"""The producer side: ``enqueue`` and ``enqueue_file`` check the updates, cut them into
batches (``Batch``) and send them to ``push_batch`` in their wire form (``wire_form``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs
import orjson

from .._errors import ValidationError
from .._input._readers import InputError, ReadOptions, check_inputs, read_inputs
from .._input._records import RecordError, tracking_record, update_from_json
from .._models import AnyUpdate, TrackingNumberUpdate, TrackingUpdate
from .._serde import encode_status
from ._order import next_stamp
from ._results import ItemResult, _field_of, _result
from ._tasks import DEFAULT_QUEUE, TASK_NAME, TrackingTasks

#: Updates per task: big enough to amortize a task's overhead, small enough that a batch
#: runs again quickly when its worker dies.
DEFAULT_BATCH_SIZE = 100


@attrs.frozen
class Batch:
    """One enqueued batch: its Celery ``AsyncResult`` (None when every item of it was refused
    before sending), the input positions of the items sent, and the results of items refused
    at enqueue time (bad lines). The batches of one ``enqueue`` cover each input item once."""

    result: Any  # a celery.result.AsyncResult, or None
    indexes: tuple[int, ...]
    refused: tuple[ItemResult, ...] = ()
    sources: tuple[str, ...] | None = None

    @property
    def id(self) -> str | None:
        """The Celery task id."""
        return None if self.result is None else str(self.result.id)


def wire_form(update: AnyUpdate) -> dict[str, Any]:
    """An update as the task takes it: VTEX's body as the SDK sends it, plus ``orderId``,
    ``invoiceNumber``, the tracking number's fields (when it has one) and (when set)
    ``accountName``."""
    doc: dict[str, Any] = {"orderId": update.order_id, "invoiceNumber": update.invoice_number}
    if isinstance(update, TrackingNumberUpdate):
        doc.update(tracking_record(update.tracking))
    else:
        doc.update(tracking_record(update.tracking))
        doc.update(orjson.loads(encode_status(update.status)))
    if update.account_name is not None:
        doc["accountName"] = update.account_name
    return doc


def enqueue(
    target: TrackingTasks | Any,  # or a celery.Celery: the task is sent by name
    updates: Iterable[Mapping[str, Any] | AnyUpdate],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    account_name: str | None = None,
    queue: str | None = None,
) -> list[Batch]:
    """Send ``updates`` (wire-form mappings or ``TrackingUpdate``) in batches of
    ``batch_size`` to ``push_batch``; ``account_name`` for items that name no account.

    Batches go to ``queue``, else the task's (``register_tasks(queue=...)``; for an app
    that did not register the task, ``DEFAULT_QUEUE``), always as JSON whatever the app's
    ``task_serializer``.

    Items are checked here first: an invalid one is not sent, and its ``invalid`` result
    (naming the field) travels in the returned ``Batch`` for ``collect``.

    Each item sent is stamped (the task's ``stamps``; the wire form is unchanged) so that
    workers keep each invoice's order across batches: stamps grow with input order within
    a producer process and follow the wall clock across producers, so give an invoice's
    snapshots to ``enqueue`` in the order they were made (and keep producers' clocks
    synchronized). Workers must be of this version or later: older ones refuse ``stamps``.
    """
    return _enqueue(target, _checked(updates), batch_size, account_name, queue)


def enqueue_file(
    target: TrackingTasks | Any,  # or a celery.Celery
    path: str | os.PathLike[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    account_name: str | None = None,
    queue: str | None = None,
    format: str | None = None,  # the CLI's --format: "jsonl" or "csv"
    encoding: str | None = None,
    date_format: str = "iso",
) -> list[Batch]:
    """Like ``enqueue`` for a JSONL (one update per line) or CSV file, read as the CLI reads
    it (streamed; ``format``, ``encoding`` and ``date_format`` (``"iso"`` or
    ``"dd/mm/yyyy"``) as its options). A bad line gets
    an ``invalid`` result whose ``error`` starts with ``file:line``. Raises ``ValueError``
    when the file cannot be read at all (missing, unknown type, bad CSV header)."""
    name = os.fspath(path)
    try:
        inputs = check_inputs([name], format, ReadOptions(encoding, date_format))
    except InputError as exc:
        raise ValueError(str(exc)) from None

    def items() -> Iterator[_Checked]:
        for record in read_inputs(inputs):
            if record.update is not None:
                yield _Checked(wire_form(record.update), record.source)
            else:
                error = record.error or ""
                yield _Checked(None, record.source, f"{record.source}: {error}", _field_of(error))

    return _enqueue(target, items(), batch_size, account_name, queue)


@attrs.frozen
class _Checked:
    """An input item after the producer's checks: its wire form, or why it was refused."""

    doc: dict[str, Any] | None
    source: str | None = None
    error: str | None = None
    field: str | None = None


def _checked(updates: Iterable[Mapping[str, Any] | AnyUpdate]) -> Iterator[_Checked]:
    for item in updates:
        try:
            if isinstance(item, (TrackingUpdate, TrackingNumberUpdate)):
                yield _Checked(wire_form(item))
            elif isinstance(item, Mapping):
                yield _Checked(wire_form(update_from_json(dict(item))))
            else:
                kind = type(item).__name__
                expected = "a mapping, a TrackingUpdate or a TrackingNumberUpdate"
                yield _Checked(None, error=f"expected {expected}, got {kind}")
        except (RecordError, ValidationError) as exc:
            yield _Checked(None, error=str(exc), field=_field_of(str(exc)))


def _queue_of(app: Any, name: str) -> str | None:
    """None (the app's routes, where ``register_tasks`` put the task's queue) when ``app``
    registered the task ``name``; ``DEFAULT_QUEUE`` when it did not (a producer that sends
    by name)."""
    return None if name in app.tasks else DEFAULT_QUEUE


def _enqueue(
    target: Any, items: Iterable[_Checked], size: int, account: str | None, queue: str | None
) -> list[Batch]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {size!r}")
    tasks = target if isinstance(target, TrackingTasks) else None
    app, name = (tasks.app, tasks.name) if tasks else (target, TASK_NAME)
    if queue is None:
        queue = tasks.queue if tasks else _queue_of(app, name)
    batches: list[Batch] = []
    docs: list[dict[str, Any]] = []
    indexes: list[int] = []
    stamps: list[int] = []
    sources: list[str] = []
    refused: list[ItemResult] = []

    def flush() -> None:
        result = None
        named = tuple(sources) if any(sources) else None
        if docs:
            kwargs = {
                "account_name": account,
                "indexes": list(indexes),
                "sources": named,
                "stamps": list(stamps),
            }
            result = app.send_task(
                name, args=[list(docs)], kwargs=kwargs, queue=queue, serializer="json"
            )
        batches.append(Batch(result, tuple(indexes), tuple(refused), named))
        for pending in (docs, indexes, sources, stamps, refused):
            pending.clear()

    for index, item in enumerate(items):
        if item.doc is None:
            refused.append(
                _result(index, item.source, accountName=account, outcome="invalid",
                        error=item.error, field=item.field)
            )  # fmt: skip
        else:
            docs.append(item.doc)
            indexes.append(index)
            stamps.append(next_stamp())
            sources.append(item.source or "")
        if len(docs) >= size:
            flush()
    if docs or refused:
        flush()
    return batches
