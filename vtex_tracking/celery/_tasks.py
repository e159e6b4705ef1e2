"""The worker side: ``register_tasks`` and the ``push_batch`` task behind ``TrackingTasks``,
with the per-process client, its redaction and its shutdown/fork hooks; ``configure``, kept
for the apps that call it (deprecated)."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

# Celery ships no type information: its objects are typed ``Any`` here, on purpose, at the
# edges only (the app, the task, AsyncResult). "unused-ignore": for sites with celery-types.
from celery.signals import (  # type: ignore[import-untyped, unused-ignore]
    celeryd_after_setup,
    worker_process_shutdown,
)

from .._accounts import ENV_ACCOUNTS, Accounts
from .._constants import ENV_ACCOUNT_NAME, ENV_SHARED_PACE
from .._errors import ConfigurationError, ValidationError
from .._fork import at_fork_in_child
from .._input._records import RecordError, update_from_json
from .._models import AnyUpdate
from .._remember import UnchangedState
from .._reports import PushResult
from .._sync import TrackingClient
from ._order import InvoiceOrder, is_redis_url, item_of, open_order_state, valid_stamp
from ._results import ItemResult, _field_of, _result

logger = logging.getLogger("vtex_tracking.celery")

#: The name of the task ``register_tasks`` defines.
TASK_NAME = "vtex_tracking.push_batch"
#: The queue ``push_batch`` goes to unless ``register_tasks(queue=...)`` says otherwise: its
#: own, so that the workers started for it (``-Q vtex_tracking --prefetch-multiplier 1``) run
#: only batches, and the app's other workers never take one.
DEFAULT_QUEUE = "vtex_tracking"
#: The visibility timeout ``configure`` sets (deprecated; Redis' own default is 3,600 s).
DEFAULT_VISIBILITY_TIMEOUT = 1800.0
#: Ceiling of the seconds between two restore sweeps (``configure`` uses a tenth of the
#: visibility timeout, between 1 s and this).
MAX_RESTORE_INTERVAL = 60.0
#: The task options ``register_tasks`` sets itself (the guarantees rest on them), so
#: ``task_options`` may not.
OWN_TASK_OPTIONS = frozenset(
    {"name", "bind", "shared", "acks_late", "reject_on_worker_lost", "serializer", "queue"}
)


def configure(
    app: Any,  # a celery.Celery
    *,
    broker_url: str,
    result_backend: str | None = None,
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
    restore_interval: float | None = None,
) -> None:
    """Deprecated: set the broker, result backend and transport options in your app as usual
    (README, "Celery"); ``register_tasks`` alone sets what the tasks need, on the tasks.

    Kept so that apps calling it keep working; it now sets only what its arguments name and
    adds, never removes: ``broker_url``; ``result_backend`` (when given, else the broker when
    the app has none); ``broker_transport_options`` merged with ``visibility_timeout``,
    ``unacked_restore_interval`` (a tenth of it, 1 to 60 s) and
    ``unacked_restore_throttle=1`` (Redis; other brokers ignore them);
    ``broker_connection_retry_on_startup``. It no longer sets the app's serializers,
    ``accept_content``, ``worker_prefetch_multiplier`` or
    ``worker_deduplicate_successful_tasks``: those changed every task of the app.
    """
    warnings.warn(
        "vtex_tracking.celery.configure() is deprecated: set broker_url, result_backend and"
        " broker_transport_options in your Celery app yourself; register_tasks() puts the"
        " tasks' own options on the tasks. It no longer sets app-wide serializers,"
        " accept_content or worker_prefetch_multiplier: start the tracking workers with"
        f" -Q {DEFAULT_QUEUE} --prefetch-multiplier 1",
        DeprecationWarning,
        stacklevel=2,
    )
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
        result_backend=result_backend or app.conf.result_backend or broker_url,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
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
        queue: str | None = DEFAULT_QUEUE,
        task_options: Mapping[str, Any] | None = None,
        skip_unchanged: UnchangedState | str | None = None,
        order_state: str | bool | None = None,
    ) -> None:
        if client_settings is not None and client_factory is not None:
            raise TypeError("pass client_settings or client_factory, not both")
        owned = sorted(OWN_TASK_OPTIONS & set(task_options or {}))
        if owned:
            raise TypeError(
                f"task_options may not set {', '.join(owned)}: register_tasks sets them"
                " (queue: its own argument)"
            )
        if isinstance(order_state, str) and not is_redis_url(order_state):
            raise ConfigurationError(
                "order_state: expected a redis://, rediss:// or unix:// URL, False or None"
            )
        self.app = app
        self.name = name
        #: The queue ``push_batch`` goes to (None: the app's routes or default queue).
        self.queue = queue
        self._skip_unchanged = skip_unchanged
        self._order_setting = order_state
        self._order: InvoiceOrder | None = None
        self._order_resolved = False
        self._settings = dict(client_settings or {})
        self._factory = client_factory
        self._lock = threading.Lock()
        self._client: TrackingClient | None = None
        owner = self

        # Every option on the task, none on the app: the app's other tasks keep their own.
        # acks_late + reject_on_worker_lost: a batch is acknowledged only once it ran, and
        # one whose pool child died is put back instead of acknowledged (celery issue 2840).
        # JSON: the batches are plain data, whatever the app's serializer. Not shared: the
        # task belongs to this app (and this client), not to every app made after it.
        options = {
            **(task_options or {}),
            "name": name,
            "bind": True,
            "shared": False,
            "acks_late": True,
            "reject_on_worker_lost": True,
            "serializer": "json",
        }

        @app.task(**options)  # type: ignore[untyped-decorator, unused-ignore]
        def push_batch(
            task: Any,
            batch: list[Any],
            account_name: str | None = None,
            indexes: list[int] | None = None,
            sources: list[str] | None = None,
            stamps: list[int] | None = None,
        ) -> list[ItemResult]:
            """Send a batch of updates in VTEX's wire form; one result per item."""
            redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
            if redelivered:
                done = _finished_result(task)
                if done is not None:  # it ran, but its worker died before acknowledging it
                    return done
            return owner.run_batch(
                batch,
                account_name=account_name,
                indexes=indexes,
                sources=sources,
                stamps=stamps,
                redelivered=redelivered,
            )

        #: The Celery task: ``push_batch.delay(batch, account_name=None)``.
        self.push_batch: Any = push_batch
        worker_process_shutdown.connect(_close_on_shutdown(self), weak=False)
        celeryd_after_setup.connect(_warn_if_queue_not_consumed(self), weak=False)
        _on_configured(app, _accept_json)
        if queue is not None:
            _on_configured(app, _route(name, queue))
        at_fork_in_child(_reset_lock_after_fork(self))

    def __repr__(self) -> str:
        return f"TrackingTasks(name={self.name!r}, queue={self.queue!r})"

    def client(self) -> TrackingClient:
        """This process's client, made on first use from the settings or the factory."""
        with self._lock:
            if self._client is None:
                factory = self._factory or (lambda: _client_from_settings(self._settings))
                self._client = factory()
            return self._client

    def close(self) -> None:
        """Close this process's client and order state (a worker process does it when it
        exits)."""
        with self._lock:
            client, self._client = self._client, None
            order, self._order, self._order_resolved = self._order, None, False
        if order is not None:
            order.close()
        if client is not None:
            client.close()

    def order_state(self) -> InvoiceOrder | None:
        """This process's per-invoice order state, made on first use; None when off."""
        with self._lock:
            if not self._order_resolved:
                self._order_resolved = True
                self._order = open_order_state(
                    self._order_setting, self._skip_unchanged, self.app.conf
                )
            return self._order

    def run_batch(
        self,
        batch: Sequence[Any],
        *,
        account_name: str | None = None,
        indexes: Sequence[int] | None = None,
        sources: Sequence[str] | None = None,
        stamps: Sequence[int] | None = None,
        redelivered: bool = False,
    ) -> list[ItemResult]:
        """What ``push_batch`` does, in this process: one result per item, in batch order.

        Each item is checked as the CLI checks a JSONL line; an invalid one gets its own
        ``invalid`` result naming the field and the others are sent, with one ``push``.
        With ``stamps`` (``enqueue`` sends them) and an order state, an item older than a
        snapshot of its invoice confirmed or being sent by another batch is not sent
        (``superseded``), and items whose invoice has an older snapshot in flight elsewhere
        wait for it (see ``vtex_tracking.celery._order``).
        """
        started = time.monotonic()
        if indexes is not None and len(indexes) != len(batch):
            raise ValueError(f"{len(indexes)} indexes for a batch of {len(batch)}")
        if sources is not None and len(sources) != len(batch):
            raise ValueError(f"{len(sources)} sources for a batch of {len(batch)}")
        if stamps is not None and len(stamps) != len(batch):
            raise ValueError(f"{len(stamps)} stamps for a batch of {len(batch)}")
        rows = [
            _Row(
                indexes[n] if indexes is not None else n,
                sources[n] if sources is not None else None,
                doc,
                valid_stamp(stamps[n]) if stamps is not None else None,
            )
            for n, doc in enumerate(batch)
        ]
        updates: list[AnyUpdate] = []
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
            self._send_in_order(updates, sent, redelivered)
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

    def _send_in_order(
        self, updates: list[AnyUpdate], rows: list[_Row], redelivered: bool
    ) -> None:
        """``_send``, checked against the other batches' snapshots of the same invoices when
        the items carry stamps and there is an order state."""
        order = self.order_state() if any(row.stamp is not None for row in rows) else None
        try:
            client = self.client() if order is not None else None
        except Exception:  # no client: _send gives every item its result
            client = None
        if order is None or client is None:
            self._send(updates, rows, redelivered)
            return

        def send(positions: list[int]) -> dict[int, bool]:
            self._send([updates[p] for p in positions], [rows[p] for p in positions], redelivered)
            return {p: _confirmed(rows[p]) for p in positions}

        items = [item_of(client, u, row.stamp) for u, row in zip(updates, rows, strict=True)]
        for p in order.send_in_order(items, send):
            rows[p].result = _result(
                rows[p].index,
                rows[p].source,
                **_ids(updates[p]),
                ok=True,
                outcome="superseded",
                redelivered=redelivered,
            )

    def _send(self, updates: list[AnyUpdate], rows: list[_Row], redelivered: bool) -> None:
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
        with client.push(updates, skip_unchanged=self._skip_unchanged) as stream:
            for result in stream:
                row = rows[result.index]
                row.result = _pushed(row, updates[result.index], result, redelivered, secrets)


def register_tasks(
    app: Any,  # a celery.Celery
    *,
    client_settings: Mapping[str, Any] | None = None,
    client_factory: Callable[[], TrackingClient] | None = None,
    name: str = TASK_NAME,
    queue: str | None = DEFAULT_QUEUE,
    task_options: Mapping[str, Any] | None = None,
    skip_unchanged: UnchangedState | str | None = None,
    order_state: str | bool | None = None,
) -> TrackingTasks:
    """Define ``vtex_tracking.push_batch(batch, account_name=None)`` on ``app`` (producers
    also pass ``indexes``, ``sources`` and ``stamps``), changing no setting of your other
    tasks: it only adds ``"json"`` to ``accept_content`` when missing, and one route, first
    in ``task_routes``, for this task alone.

    The task carries its own options: ``acks_late``, ``reject_on_worker_lost`` and
    ``serializer="json"``; the route sends it to ``queue`` (``DEFAULT_QUEUE``; None adds no
    route, so your routes or default queue decide), so run its workers with
    ``-Q vtex_tracking --prefetch-multiplier 1``. ``task_options`` adds Celery task options
    of yours (``rate_limit``, ``time_limit``, ``soft_time_limit``...), not the ones above.
    A batch delivered again after it ran to the end (its worker died before acknowledging
    it) returns its stored result instead of running again.

    Each worker process makes one ``TrackingClient`` on its first batch:
    ``client_factory()`` if given, else ``TrackingClient.from_env(**client_settings)``
    (``VTEX_*`` variables, settings win; with ``VTEX_ACCOUNTS`` a hub client for those
    stores; ``VTEX_SHARED_PACE`` or ``shared_pace=`` to share each account's pace between
    all workers through Redis). ``skip_unchanged`` (a Redis URL, or an ``UnchangedState``)
    lets every worker skip an update whose body VTEX last confirmed for its invoice, whoever
    sent it (outcome ``"unchanged"``). Call it at import time of your app module, once per
    app.

    ``order_state`` keeps each invoice's order across batches: an update that ``enqueue``
    stamped is not sent when a newer snapshot of its invoice was confirmed or is being sent
    by another batch (outcome ``"superseded"``, ok), and waits while an older one is in
    flight elsewhere. It lives in Redis: by default (None) the one of ``skip_unchanged``,
    else the broker's when it is Redis (with neither, each worker process logs a warning
    and sends unordered); a ``redis://`` URL to choose; False to turn it off. Redis
    failing never fails an update: the batch is sent unchecked, with a warning.
    """
    return TrackingTasks(
        app,
        client_settings=client_settings,
        client_factory=client_factory,
        name=name,
        queue=queue,
        task_options=task_options,
        skip_unchanged=skip_unchanged,
        order_state=order_state,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@attrs.define
class _Row:
    index: int
    source: str | None
    doc: Any
    stamp: int | None = None
    result: ItemResult | None = None


def _confirmed(row: _Row) -> bool:
    return row.result is not None and row.result["ok"]


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


def _ids(update: AnyUpdate) -> dict[str, Any]:
    return {
        "orderId": update.order_id,
        "invoiceNumber": update.invoice_number,
        "accountName": update.account_name,
    }


def _pushed(
    row: _Row, update: AnyUpdate, result: PushResult, redelivered: bool, secrets: list[str]
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
        sent=list(result.sent),
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


def _on_configured(app: Any, change: Callable[[Any], None]) -> None:
    """Apply ``change(conf)`` to the app's settings now if they are loaded, and each time
    the app loads them (first use, ``config_from_object``), so that it is never lost."""

    def apply(source: Any = None, **_: Any) -> None:
        change(source if source is not None else app.conf)

    app.on_after_configure.connect(apply, weak=False)
    if app.configured:
        apply()


def _accept_json(conf: Any) -> None:
    """Add ``"json"`` to ``accept_content`` when missing, keeping every type the app
    accepts (pickle included)."""
    accepted = conf.accept_content
    if accepted is None:  # Celery's None: accept anything
        return
    names = [accepted] if isinstance(accepted, str) else list(accepted)
    if not {"json", "application/json"} & set(names):
        conf.accept_content = [*names, "json"]


def _route(name: str, queue: str) -> Callable[[Any], None]:
    """A change that puts one route first in ``task_routes``: task ``name`` to ``queue``,
    the app's own routes kept after it for every other task."""
    ours = {name: {"queue": queue}}

    def add(conf: Any) -> None:
        routes = conf.task_routes
        if routes is None:
            routes = ()
        elif not isinstance(routes, (list, tuple)):  # one router: Celery's (router,)
            routes = (routes,)
        if ours not in routes:
            conf.task_routes = (ours, *routes)

    return add


def _finished_result(task: Any) -> list[ItemResult] | None:
    """The stored result of this task when it already ran to the end, else None (as
    Celery's ``worker_deduplicate_successful_tasks``, for this task only)."""
    backend = task.backend
    if not getattr(backend, "persistent", False):  # rpc://, none: nothing stored to look up
        return None
    try:
        meta = backend.get_task_meta(task.request.id)
    except Exception:  # no result backend, or it does not answer: run the batch again
        return None
    result = meta.get("result")
    if meta.get("status") == "SUCCESS" and isinstance(result, list):
        logger.info("batch %s already ran to the end: its stored result stands", task.request.id)
        return result
    return None


def _warn_if_queue_not_consumed(tasks: TrackingTasks) -> Callable[..., None]:
    """A worker of this app that takes its default queue but not the tasks' queue: most
    likely started as before ``push_batch`` had its own queue, so say where batches go."""
    ref = weakref.ref(tasks)

    def check(instance: Any = None, **_: Any) -> None:
        owner = ref()
        app = getattr(instance, "app", None)
        if owner is None or owner.queue is None or app is None or app is not owner.app:
            return
        consumed = set(app.amqp.queues.consume_from or ())
        if app.conf.task_default_queue in consumed and owner.queue not in consumed:
            logger.warning(
                "this worker does not take queue %r, where %s goes: start one with"
                " -Q %s --prefetch-multiplier 1 (or register_tasks(queue=None) to route it"
                " as the app's other tasks)",
                owner.queue,
                owner.name,
                owner.queue,
            )

    return check


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
