"""Celery tasks that push tracking updates from many worker processes and lose nothing when a
worker dies (optional extra ``celery``: ``pip install "vtex-tracking[celery]"``).

In your Celery app module (imported by every worker and by the producers; your existing
app, its broker and settings are fine)::

    from celery import Celery
    from vtex_tracking.celery import register_tasks

    app = Celery("tracking", broker="redis://redis:6379/0", backend="redis://redis:6379/0")
    tasks = register_tasks(app)         # credentials: VTEX_* variables of each worker

and workers for the task's own queue: ``celery -A tracking worker -Q vtex_tracking
--prefetch-multiplier 1``. ``register_tasks`` changes no setting of your other tasks: the
task carries its options (acks late, requeue on a lost worker, JSON), and the app only gains
``"json"`` in ``accept_content`` when missing and one route, for this task alone, to
``DEFAULT_QUEUE``. ``configure`` is deprecated (see its docstring).

A producer (a cron job, a web view) enqueues and, if it wants the outcome, collects::

    from vtex_tracking.celery import collect, enqueue_file

    batches = enqueue_file(tasks, "today.jsonl", batch_size=100)
    report = collect(batches, timeout=3600)   # one result per line, each exactly once
    print(report.succeeded, report.failed, report.redelivered)

Why a module and not an example app to copy: users import it, so the choices below (acks
late, requeue on a lost worker, a dedicated queue) travel with every upgrade instead of
rotting in copied code; and CI tests this very code with real prefork workers, real Redis
and ``kill -9`` (``tests/test_celery.py``).

What happens when things die (measured in ``tests/test_celery.py``):

* a pool child killed (SIGKILL, OOM killer): the task is declared ``acks_late`` and
  ``reject_on_worker_lost``, so the worker puts the message back at once and another child
  runs the whole batch again;
* the whole worker killed (main process and children, a lost machine): with Redis as the
  broker its unacknowledged batches come back once they are older than the visibility
  timeout, when some worker's restore sweep runs (the app's ``broker_transport_options``:
  ``unacked_restore_interval``; kombu's default sweeps only every ~100 s); with RabbitMQ as
  soon as the broker sees the connection drop;
* either way a batch may run twice, so some PUTs reach VTEX twice. That is harmless: each
  PUT replaces the invoice's whole history with the same body, and an identical resend
  e-mails nobody. Results say ``redelivered`` for items of such batches; ``collect`` gives
  each item's final result once and counts the repeats.

Order per invoice holds across batches, too: each PUT replaces the invoice's whole
history, so an older snapshot must never land after a newer one, yet two batches may run on
two workers in any order, or one may run again after the other. ``enqueue`` stamps each
item, and the worker asks Redis (``order_state=``, else ``skip_unchanged``'s, else the
broker's) before sending: an item older than a snapshot of its invoice that another batch confirmed
or is sending is not sent (``"superseded"``), and an item whose invoice has an older
snapshot in flight elsewhere waits for it (see ``register_tasks``; measured in
``tests/test_celery_order.py``).

The task runs a batch with one ``TrackingClient`` per worker process, made on first use (after
Celery's fork) and shared by the batches that process runs. Celery's own ``rate_limit`` is per
worker, not per account; with ``shared_pace`` (or ``VTEX_SHARED_PACE``) every process of
every worker takes its turn in each account's one pace, through Redis. This module imports
Celery; nothing else in the package imports this module.
"""

from __future__ import annotations

from ._collector import Collected, collect
from ._producer import Batch, enqueue, enqueue_file, wire_form
from ._results import ItemResult
from ._tasks import DEFAULT_QUEUE, TASK_NAME, TrackingTasks, configure, register_tasks

__all__ = [
    "DEFAULT_QUEUE",
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
