"""The Celery app of ``tests/test_celery.py``, configured as a user would configure theirs:
an app with settings of its own (pickle as its serializer, its own prefetch) and a pickle
task of its own, on which ``register_tasks`` installs the SDK's task.

Workers run it as ``celery -A tests.celery_app worker ...`` with the environment naming the
broker (``VTEX_TEST_BROKER_URL``), the fake VTEX (``VTEX_TEST_OMS_URL``), the visibility
timeout (``VTEX_TEST_VISIBILITY_TIMEOUT``), optionally a rate limit (``VTEX_TEST_RATE_LIMIT``)
and the credentials and shared pace (the usual ``VTEX_*``: ``TrackingClient.from_env``). The
test process builds its own producer with ``make_app``. Importing this module connects to
nothing: Celery apps connect on first use.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from vtex_tracking import RetryPolicy
from vtex_tracking.celery import TrackingTasks, register_tasks

BROKER_ENV = "VTEX_TEST_BROKER_URL"
OMS_ENV = "VTEX_TEST_OMS_URL"
VISIBILITY_ENV = "VTEX_TEST_VISIBILITY_TIMEOUT"
#: Requests per second per account (the client's ``rate_limit``), when set.
RATE_LIMIT_ENV = "VTEX_TEST_RATE_LIMIT"
#: The unchanged state the workers share (a Redis URL), when set.
SKIP_UNCHANGED_ENV = "VTEX_TEST_SKIP_UNCHANGED"
#: Requests in flight per worker process: few, so that a batch takes long enough for a kill
#: to land in the middle of it.
MAX_CONCURRENCY = 2
#: The app's own settings, as an app with older pickle tasks has them. Installing the SDK's
#: task must leave every one as it is (``accept_content`` only gains ``"json"``).
APP_SETTINGS: dict[str, Any] = {
    "task_serializer": "pickle",
    "result_serializer": "pickle",
    "accept_content": ["pickle"],
    "worker_prefetch_multiplier": 3,
}
#: The name of the app's own pickle task.
PICKLE_TASK = "tests.app_settings"


def make_app(broker_url: str, oms_url: str, visibility_timeout: float) -> tuple[Any, TrackingTasks]:
    """The app with its own settings and pickle task, and the SDK's tasks sending to
    ``oms_url``; the broker settings the README gives for Redis."""
    app = Celery("vtex_tracking_tests")
    app.conf.update(
        APP_SETTINGS,
        broker_url=broker_url,
        result_backend=broker_url,
        broker_connection_retry_on_startup=True,
        # README, Celery, Redis: longer than the slowest batch; a restore sweep every tenth
        # of it, so a dead worker's batches come back within the test.
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": max(1.0, visibility_timeout / 10),
            "unacked_restore_throttle": 1,
        },
    )

    @app.task(name=PICKLE_TASK, shared=False)  # type: ignore[untyped-decorator, unused-ignore]
    def app_settings(probe: Any) -> tuple[Any, dict[str, Any]]:
        """Echo ``probe`` (pickle only: a set, an object) and the settings this worker runs
        with."""
        conf = app.conf
        names = [*APP_SETTINGS, "task_acks_late", "worker_deduplicate_successful_tasks"]
        return probe, {name: conf[name] for name in names}

    settings: dict[str, Any] = {
        "base_url": oms_url,
        "max_concurrency": MAX_CONCURRENCY,
        "retry": RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.2),
    }
    if os.environ.get(RATE_LIMIT_ENV):
        settings["rate_limit"] = float(os.environ[RATE_LIMIT_ENV])
    skip = os.environ.get(SKIP_UNCHANGED_ENV) or None
    return app, register_tasks(app, client_settings=settings, skip_unchanged=skip)


# Defaults that reach nothing (port 9 on loopback) when a variable is missing, never VTEX.
app, tasks = make_app(
    os.environ.get(BROKER_ENV, "redis://127.0.0.1:9/0"),
    os.environ.get(OMS_ENV, "http://127.0.0.1:9"),
    float(os.environ.get(VISIBILITY_ENV, "6")),
)
