"""Celery tasks that push tracking updates from many worker processes and lose nothing when a
worker dies (optional extra ``celery``: ``pip install "vtex-tracking[celery]"``).

In your Celery app module (imported by every worker and by the producers)::

    from celery import Celery
    from vtex_tracking.celery import configure, register_tasks

    app = Celery("tracking")
    configure(app, broker_url="redis://redis:6379/0", visibility_timeout=1800)
    tasks = register_tasks(app)         # credentials: VTEX_* variables of each worker

A producer (a cron job, a web view) enqueues and, if it wants the outcome, collects::

    from vtex_tracking.celery import collect, enqueue_file

    batches = enqueue_file(tasks, "today.jsonl", batch_size=100)
    report = collect(batches, timeout=3600)   # one result per line, each exactly once
    print(report.succeeded, report.failed, report.redelivered)

Why a module and not an example app to copy: users import it, so the choices below (acks
late, requeue on a lost worker, prefetch 1, a visibility timeout with a restore loop that
really runs) travel with every upgrade instead of rotting in copied code; and CI tests this
very code with real prefork workers, real Redis and ``kill -9`` (``tests/test_celery.py``).

What happens when things die (measured in ``tests/test_celery.py``):

* a pool child killed (SIGKILL, OOM killer): the task is declared ``acks_late`` and
  ``reject_on_worker_lost``, so the worker puts the message back at once and another child
  runs the whole batch again;
* the whole worker killed (main process and children, a lost machine): its unacknowledged
  batches stay in Redis and come back once they are older than the visibility timeout, when
  some worker's restore sweep runs; ``configure`` makes that sweep run every
  ``restore_interval`` seconds (kombu's default scans only every ~100 s);
* either way a batch may run twice, so some PUTs reach VTEX twice. That is harmless: each
  PUT replaces the invoice's whole history with the same body, and an identical resend
  e-mails nobody. Results say ``redelivered`` for items of such batches; ``collect`` gives
  each item's final result once and counts the repeats.

The task runs a batch with one ``TrackingClient`` per worker process, made on first use (after
Celery's fork) and shared by the batches that process runs. Celery's own ``rate_limit`` is per
worker, not per account; with ``shared_pace`` (or ``VTEX_SHARED_PACE``) every process of
every worker takes its turn in each account's one pace, through Redis. This module imports
Celery; nothing else in the package imports this module.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypedDict, cast

import attrs
import orjson

# Celery ships no type information: its objects are typed ``Any`` here, on purpose, at the
# edges only (the app, the task, AsyncResult). "unused-ignore": for sites with celery-types.
from celery.exceptions import TimeoutError as CeleryTimeoutError  # type: ignore[import-untyped, unused-ignore]
from celery.signals import worker_process_shutdown  # type: ignore[import-untyped, unused-ignore]

from ._accounts import ENV_ACCOUNTS, Accounts
from ._constants import ENV_ACCOUNT_NAME, ENV_SHARED_PACE
from ._errors import ValidationError
from ._input._readers import InputError, ReadOptions, check_inputs, read_inputs
from ._input._records import RecordError, update_from_json
from ._models import PushResult, TrackingUpdate
from ._serde import encode_status
from ._sync import TrackingClient

__all__ = [
    "TASK_NAME",
    "Batch",
    "Collected",
    "ItemResult",
    "TrackingTasks",
    "collect",
    "configure",
    "enqueue",
    "enqueue_file",
    "register_tasks",
    "wire_form",
]

logger = logging.getLogger("vtex_tracking.celery")

#: The name of the task ``register_tasks`` defines.
TASK_NAME = "vtex_tracking.push_batch"
#: Updates per task: big enough to amortize a task's overhead, small enough that a batch
#: runs again quickly when its worker dies.
DEFAULT_BATCH_SIZE = 100
#: Seconds an unacknowledged batch waits before Redis gives it to another worker. It must
#: exceed the longest run of one batch (a batch running longer is delivered again while it
#: still runs); it is also how long a dead worker's batches wait.
DEFAULT_VISIBILITY_TIMEOUT = 1800.0
#: Ceiling of the seconds between two restore sweeps (``configure`` uses a tenth of the
#: visibility timeout, between 1 s and this).
MAX_RESTORE_INTERVAL = 60.0
#: Seconds between two looks at the result backend in ``collect``.
COLLECT_INTERVAL = 0.5


class ItemResult(TypedDict):
    """The JSON result of one update, as the task returns it and ``collect`` gives it back.

    ``index``: position in the input of ``enqueue``; ``source``: ``file:line`` for
    ``enqueue_file``; ``ok``: VTEX confirmed it; ``status``: the last HTTP status (None when
    none); ``outcome``: a label (``"200"``, ``"429"``, ``"invalid"``, ``"TransportError"``...);
    ``receipt``/``requestId``: VTEX's receipt id and request id; ``error``: why it failed
    (never a credential); ``field``: the input field at fault for ``invalid``; ``attempts``:
    requests made; ``redelivered``: its batch was delivered more than once, so it may have
    been sent twice (harmless, see the module's docstring).
    """

    index: int
    source: str | None
    orderId: str | None
    invoiceNumber: str | None
    accountName: str | None
    ok: bool
    status: int | None
    outcome: str
    receipt: str | None
    requestId: str | None
    error: str | None
    field: str | None
    attempts: int
    redelivered: bool


def configure(
    app: Any,  # a celery.Celery
    *,
    broker_url: str,
    result_backend: str | None = None,
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
    restore_interval: float | None = None,
) -> None:
    """Set the worker and broker settings these tasks rely on; other settings are kept.

    * ``broker_url`` (Redis) and ``result_backend`` (default: the broker), JSON only;
    * ``worker_prefetch_multiplier=1``: a worker holds only the batches it runs, so one busy
      worker never hoards batches while others idle, and a dead worker strands no more;
    * ``broker_transport_options``: ``visibility_timeout`` (see
      ``DEFAULT_VISIBILITY_TIMEOUT``), and ``unacked_restore_interval`` with
      ``unacked_restore_throttle=1`` so that a dead worker's batches come back within
      ``visibility_timeout + restore_interval`` seconds instead of kombu's ~100 s sweeps;
    * ``worker_deduplicate_successful_tasks``: a batch that finished but whose worker died
      before acknowledging it is not run again.

    ``task_acks_late`` and ``task_reject_on_worker_lost`` are not set app-wide: they would
    change how your other tasks behave, and ``push_batch`` declares both itself.
    """
    if restore_interval is None:
        restore_interval = min(MAX_RESTORE_INTERVAL, max(1.0, visibility_timeout / 10))
    transport = dict(app.conf.broker_transport_options or {})
    transport.update(
        visibility_timeout=visibility_timeout,
        unacked_restore_interval=restore_interval,
        unacked_restore_throttle=1,
    )
    app.conf.update(
        broker_url=broker_url,
        result_backend=result_backend or broker_url,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        worker_deduplicate_successful_tasks=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )


class TrackingTasks:
    """The tasks ``register_tasks`` put on an app: ``push_batch`` (a Celery task), and the
    per-process client behind it (``client()``)."""

    def __init__(
        self,
        app: Any,  # a celery.Celery
        *,
        client_settings: Mapping[str, Any] | None,
        client_factory: Callable[[], TrackingClient] | None,
        name: str,
    ) -> None:
        if client_settings is not None and client_factory is not None:
            raise TypeError("pass client_settings or client_factory, not both")
        self.app = app
        self.name = name
        self._settings = dict(client_settings or {})
        self._factory = client_factory
        self._lock = threading.Lock()
        self._client: TrackingClient | None = None
        owner = self

        # acks_late + reject_on_worker_lost: a batch is acknowledged only once it ran, and
        # one whose pool child died is put back instead of acknowledged (celery issue 2840).
        @app.task(name=name, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator, unused-ignore]
        def push_batch(
            task: Any,
            batch: list[Any],
            account_name: str | None = None,
            indexes: list[int] | None = None,
            sources: list[str] | None = None,
        ) -> list[ItemResult]:
            """Send a batch of updates in VTEX's wire form; one result per item."""
            redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
            return owner.run_batch(
                batch,
                account_name=account_name,
                indexes=indexes,
                sources=sources,
                redelivered=redelivered,
            )

        #: The Celery task: ``push_batch.delay(batch, account_name=None)``.
        self.push_batch: Any = push_batch
        worker_process_shutdown.connect(_close_on_shutdown(self), weak=False)
        os.register_at_fork(after_in_child=_reset_lock_after_fork(self))

    def __repr__(self) -> str:
        return f"TrackingTasks(name={self.name!r})"

    def client(self) -> TrackingClient:
        """This process's client, made on first use from the settings or the factory."""
        with self._lock:
            if self._client is None:
                factory = self._factory or (lambda: _client_from_settings(self._settings))
                self._client = factory()
            return self._client

    def close(self) -> None:
        """Close this process's client (a worker process does it when it exits)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def run_batch(
        self,
        batch: Sequence[Any],
        *,
        account_name: str | None = None,
        indexes: Sequence[int] | None = None,
        sources: Sequence[str] | None = None,
        redelivered: bool = False,
    ) -> list[ItemResult]:
        """What ``push_batch`` does, in this process: one result per item, in batch order.

        Each item is checked as the CLI checks a JSONL line; an invalid one gets its own
        ``invalid`` result naming the field and the others are sent, with one ``push``.
        """
        started = time.monotonic()
        if indexes is not None and len(indexes) != len(batch):
            raise ValueError(f"{len(indexes)} indexes for a batch of {len(batch)}")
        if sources is not None and len(sources) != len(batch):
            raise ValueError(f"{len(sources)} sources for a batch of {len(batch)}")
        rows = [
            _Row(
                indexes[n] if indexes is not None else n,
                sources[n] if sources is not None else None,
                doc,
            )
            for n, doc in enumerate(batch)
        ]
        updates: list[TrackingUpdate] = []
        sent: list[_Row] = []
        for row in rows:
            try:
                update = update_from_json(row.doc)
                if update.account_name is None and account_name:
                    update = attrs.evolve(update, account_name=account_name)
            except (RecordError, ValidationError) as exc:
                row.result = _invalid(row, exc, account_name, redelivered)
                continue
            updates.append(update)
            sent.append(row)
        if updates:
            self._send(updates, sent, redelivered)
        elapsed = time.monotonic() - started
        visibility = (self.app.conf.broker_transport_options or {}).get("visibility_timeout")
        if visibility and elapsed > visibility / 2:
            logger.warning(
                "a batch of %d took %.0f s, more than half the visibility timeout (%.0f s):"
                " raise visibility_timeout or lower batch_size, or batches will run twice",
                len(batch),
                elapsed,
                visibility,
            )
        return [row.result for row in rows if row.result is not None]

    def _send(self, updates: list[TrackingUpdate], rows: list[_Row], redelivered: bool) -> None:
        try:
            client = self.client()
        except Exception as exc:  # a worker without credentials: every item says so
            for row, update in zip(rows, updates, strict=True):
                row.result = _result(
                    row.index,
                    row.source,
                    **_ids(update),
                    outcome=type(exc).__name__,
                    error=f"no client in this worker: {exc}",
                    redelivered=redelivered,
                )
            return
        secrets = _secrets(client)
        with client.push(updates) as stream:
            for result in stream:
                row = rows[result.index]
                row.result = _pushed(row, updates[result.index], result, redelivered, secrets)


def register_tasks(
    app: Any,  # a celery.Celery
    *,
    client_settings: Mapping[str, Any] | None = None,
    client_factory: Callable[[], TrackingClient] | None = None,
    name: str = TASK_NAME,
) -> TrackingTasks:
    """Define ``vtex_tracking.push_batch(batch, account_name=None)`` on ``app``.

    Each worker process makes one ``TrackingClient`` on its first batch:
    ``client_factory()`` if given, else ``TrackingClient.from_env(**client_settings)``
    (``VTEX_*`` variables, settings win; with ``VTEX_ACCOUNTS`` a hub client for those
    stores; ``VTEX_SHARED_PACE`` or ``shared_pace=`` to share each account's pace between
    all workers through Redis). Call it at import time of your app module, once per app.
    """
    return TrackingTasks(
        app, client_settings=client_settings, client_factory=client_factory, name=name
    )


# -- producing ---------------------------------------------------------------------------


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


def wire_form(update: TrackingUpdate) -> dict[str, Any]:
    """An update as the task takes it: VTEX's body as the SDK sends it, plus ``orderId``,
    ``invoiceNumber`` and (when set) ``accountName``."""
    doc: dict[str, Any] = {"orderId": update.order_id, "invoiceNumber": update.invoice_number}
    doc.update(orjson.loads(encode_status(update.status)))
    if update.account_name is not None:
        doc["accountName"] = update.account_name
    return doc


def enqueue(
    target: TrackingTasks | Any,  # or a celery.Celery: the task is sent by name
    updates: Iterable[Mapping[str, Any] | TrackingUpdate],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    account_name: str | None = None,
    queue: str | None = None,
) -> list[Batch]:
    """Send ``updates`` (wire-form mappings or ``TrackingUpdate``) in batches of
    ``batch_size`` to ``push_batch``; ``account_name`` for items that name no account.

    Items are checked here first: an invalid one is not sent, and its ``invalid`` result
    (naming the field) travels in the returned ``Batch`` for ``collect``.
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


# -- collecting --------------------------------------------------------------------------


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
                for result in _batch_results(waiting.pop(task_id), meta):
                    keep(result)
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


# -- internals ---------------------------------------------------------------------------

#: Every key of an ``ItemResult`` but ``index`` and ``source``, with its default.
_EMPTY: dict[str, Any] = {
    "orderId": None,
    "invoiceNumber": None,
    "accountName": None,
    "ok": False,
    "status": None,
    "outcome": "",
    "receipt": None,
    "requestId": None,
    "error": None,
    "field": None,
    "attempts": 0,
    "redelivered": False,
}


def _result(index: int, source: str | None, **fields: Any) -> ItemResult:
    return cast(ItemResult, {"index": index, "source": source, **_EMPTY, **fields})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@attrs.define
class _Row:
    index: int
    source: str | None
    doc: Any
    result: ItemResult | None = None


@attrs.frozen
class _Checked:
    """An input item after the producer's checks: its wire form, or why it was refused."""

    doc: dict[str, Any] | None
    source: str | None = None
    error: str | None = None
    field: str | None = None


def _checked(updates: Iterable[Mapping[str, Any] | TrackingUpdate]) -> Iterator[_Checked]:
    for item in updates:
        try:
            if isinstance(item, TrackingUpdate):
                yield _Checked(wire_form(item))
            elif isinstance(item, Mapping):
                yield _Checked(wire_form(update_from_json(dict(item))))
            else:
                kind = type(item).__name__
                yield _Checked(None, error=f"expected a mapping or a TrackingUpdate, got {kind}")
        except (RecordError, ValidationError) as exc:
            yield _Checked(None, error=str(exc), field=_field_of(str(exc)))


def _enqueue(
    target: Any, items: Iterable[_Checked], size: int, account: str | None, queue: str | None
) -> list[Batch]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {size!r}")
    tasks = target if isinstance(target, TrackingTasks) else None
    app, name = (tasks.app, tasks.name) if tasks else (target, TASK_NAME)
    batches: list[Batch] = []
    docs: list[dict[str, Any]] = []
    indexes: list[int] = []
    sources: list[str] = []
    refused: list[ItemResult] = []

    def flush() -> None:
        result = None
        named = tuple(sources) if any(sources) else None
        if docs:
            kwargs = {"account_name": account, "indexes": list(indexes), "sources": named}
            result = app.send_task(name, args=[list(docs)], kwargs=kwargs, queue=queue)
        batches.append(Batch(result, tuple(indexes), tuple(refused), named))
        for pending in (docs, indexes, sources, refused):
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
            sources.append(item.source or "")
        if len(docs) >= size:
            flush()
    if docs or refused:
        flush()
    return batches


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


def _field_of(message: str) -> str | None:
    """The field a ``field: problem`` message names (``events[2].city``), if it names one."""
    head, sep, _ = message.partition(": ")
    return head if sep and head and " " not in head else None


def _wire_name(field: str) -> str:
    """A model field as the wire names it (``TrackingUpdate.invoice_number``: ``invoiceNumber``)."""
    first, *rest = field.rsplit(".", 1)[-1].split("_")
    return first + "".join(word.capitalize() for word in rest)


def _invalid(row: _Row, exc: Exception, account: str | None, redelivered: bool) -> ItemResult:
    doc = row.doc if isinstance(row.doc, Mapping) else {}
    message, field = str(exc), _field_of(str(exc))
    if isinstance(exc, ValidationError):  # the account_name given to the task
        message, field = f"accountName: {exc.problem}", "accountName"
    return _result(
        row.index,
        row.source,
        orderId=_text(doc.get("orderId")),
        invoiceNumber=_text(doc.get("invoiceNumber")),
        accountName=_text(doc.get("accountName")) or account,
        outcome="invalid",
        error=f"{row.source}: {message}" if row.source else message,
        field=field,
        redelivered=redelivered,
    )


def _ids(update: TrackingUpdate) -> dict[str, Any]:
    return {
        "orderId": update.order_id,
        "invoiceNumber": update.invoice_number,
        "accountName": update.account_name,
    }


def _pushed(
    row: _Row, update: TrackingUpdate, result: PushResult, redelivered: bool, secrets: list[str]
) -> ItemResult:
    receipt, error = result.receipt, result.error
    ids = _ids(update)
    ids["accountName"] = result.account or update.account_name
    return _result(
        row.index,
        row.source,
        **ids,
        ok=result.ok,
        status=result.status_code,
        outcome=result.outcome,
        receipt=receipt.receipt if receipt else None,
        requestId=receipt.request_id if receipt else getattr(error, "request_id", None),
        error=None if error is None else _redact(f"{type(error).__name__}: {error}", secrets),
        field=_wire_name(error.field) if isinstance(error, ValidationError) else None,
        attempts=result.attempts,
        redelivered=redelivered,
    )


def _secrets(client: TrackingClient) -> list[str]:
    found = list(client.config.credentials.secrets())
    for account in (client.accounts or {}).values():
        found.extend(account.credentials.secrets())
    return found


def _redact(text: str, secrets: list[str]) -> str:
    # The SDK's errors never hold credentials; this is the belt to those braces, because a
    # result travels to the result backend and into the producer's logs.
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def _client_from_settings(settings: Mapping[str, Any]) -> TrackingClient:
    """``TrackingClient.from_env`` with ``settings`` on top; a hub client when
    ``VTEX_ACCOUNTS`` lists the stores (as the CLI does)."""
    options = dict(settings)
    registry = options.pop("accounts", None)
    if registry is None and os.environ.get(ENV_ACCOUNTS, "").strip():
        registry = Accounts.from_env()
    default = options.get("account_name") or os.environ.get(ENV_ACCOUNT_NAME) or None
    if registry is not None and (default is None or default in registry):
        options.pop("account_name", None)
        if os.environ.get(ENV_SHARED_PACE):  # from_env reads it; from_accounts does not
            options.setdefault("shared_pace", os.environ[ENV_SHARED_PACE])
        return TrackingClient.from_accounts(registry, default=default, **options)
    return TrackingClient.from_env(accounts=registry, **options)


def _close_on_shutdown(tasks: TrackingTasks) -> Callable[..., None]:
    ref = weakref.ref(tasks)

    def close(**_: Any) -> None:
        owner = ref()
        if owner is not None:
            owner.close()

    return close


def _reset_lock_after_fork(tasks: TrackingTasks) -> Callable[[], None]:
    ref = weakref.ref(tasks)

    def reset() -> None:
        # Another thread may have held the lock at fork time. The client itself survives
        # fork: it starts a new thread and pool in the child.
        owner = ref()
        if owner is not None:
            owner._lock = threading.Lock()

    return reset
