"""Per-invoice order across batches in ``vtex_tracking.celery``: an older snapshot of an
invoice whose batch runs after a newer one's is not sent (``superseded``). Real parts only:
redis-server as broker and order state, Celery prefork workers (``tests/celery_app.py``),
FakeOMS as VTEX."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from vtex_tracking import RetryPolicy, TrackingClient
from vtex_tracking.celery import ItemResult, TrackingTasks, collect, enqueue
from vtex_tracking.celery._order import ORDER_PREFIX, InvoiceOrder, invoice_key, next_stamp
from vtex_tracking.testing import FakeOMS

from .celery_app import OMS_ENV, SKIP_UNCHANGED_ENV, make_app
from .conftest import APP_KEY, APP_TOKEN
from .redis_server import RedisServer, free_port
from .test_celery import VISIBILITY_TIMEOUT, Worker, body, wire, worker_env


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Starts workers for one test (``start_worker(name, env, queue)``, ready on return) and
    stops every one of them at the end, however the test ended."""
    workers: list[Worker] = []

    def start(name: str, env: dict[str, str], queue: str) -> Worker:
        worker = Worker(name, env, queue, tmp_path / f"{name}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


def snapshots() -> tuple[dict[str, Any], dict[str, Any]]:
    """Two snapshots of one invoice: X1 (one event) and the newer X2 (two events)."""
    return wire(1, events=1), wire(1, events=2)


def reorder(
    redis_server: RedisServer, start_worker: Callable[..., Worker], env: dict[str, str]
) -> tuple[Any, Any, Any]:
    """Enqueue X1, then X2, in two batches; let X2's batch run and be confirmed first (X1's
    waits in a queue no worker takes), then start a worker for X1's queue. Returns the app
    and what ``collect`` gave for X2's and X1's batches."""
    x1, x2 = snapshots()
    start_worker("prompt", env, "order-now")
    app, _ = make_app(redis_server.url, env[OMS_ENV], VISIBILITY_TIMEOUT)
    older = enqueue(app, [x1], queue="order-late")  # no worker takes this queue yet
    newer = enqueue(app, [x2], queue="order-now")
    first = collect(newer, timeout=60)
    assert first.by_outcome == {"200": 1}, first.results
    start_worker("late", env, "order-late")
    second = collect(older, timeout=60)
    return app, first, second


@pytest.mark.timeout(180)
def test_an_older_snapshot_whose_batch_runs_after_the_newer_one_is_not_sent(
    redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """X1 then X2 of one invoice in two batches, X2's batch confirmed first: X1 is not sent
    (``superseded``, ok) and VTEX ends holding X2."""
    x1, x2 = snapshots()
    with FakeOMS() as oms:
        _, _, second = reorder(redis_server, start_worker, worker_env(redis_server.url, oms))
        sent = [r.json() for r in oms.requests]
        final = oms.accepted(x2["orderId"], x2["invoiceNumber"])
        url = oms.url

    assert sent == [body(x2)], "X1 reached VTEX after X2"
    # The order state: one hash for the invoice, in the broker's Redis, keyed by a digest of
    # account, base URL, order and invoice (no ids in clear), expiring, X2 confirmed.
    state = redis.Redis.from_url(redis_server.url)
    key = invoice_key("acme", url, x2["orderId"], x2["invoiceNumber"])
    assert [k.decode() for k in state.keys(f"{ORDER_PREFIX}:*")] == [key]
    assert x2["orderId"] not in key and x2["invoiceNumber"] not in key
    assert state.hkeys(key) == [b"d"] and state.pttl(key) > 0
    assert final == [body(x2)]
    (result,) = second.results
    assert (result["outcome"], result["ok"], result["status"]) == ("superseded", True, None)
    assert (result["orderId"], result["invoiceNumber"], result["attempts"]) == (
        x1["orderId"], x1["invoiceNumber"], 0,
    )  # fmt: skip
    assert second.ok and second.by_outcome == {"superseded": 1}


@pytest.mark.timeout(180)
def test_after_a_superseded_snapshot_the_unchanged_state_still_holds_the_newer_one(
    redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """With ``skip_unchanged`` in Redis, after X1 was superseded by X2, enqueueing X2 again
    is recognised as ``unchanged`` (the state records X2, as VTEX holds) and not sent."""
    _, x2 = snapshots()
    with FakeOMS() as oms:
        env = worker_env(redis_server.url, oms)
        env[SKIP_UNCHANGED_ENV] = redis_server.url
        app, _, second = reorder(redis_server, start_worker, env)
        again = collect(enqueue(app, [x2], queue="order-now"), timeout=60)
        sent = [r.json() for r in oms.requests]

    assert second.by_outcome == {"superseded": 1}, second.results
    assert again.ok and again.by_outcome == {"unchanged": 1}, again.results
    assert sent == [body(x2)], "X1 reached VTEX after X2"


# -- in this process: run_batch with a real Redis and FakeOMS, another worker played by hand --


class Local:
    """``TrackingTasks`` run in this process (``run_batch``) against FakeOMS, with the order
    state in ``redis_server`` (as the broker's Redis); ``other`` plays another worker."""

    def __init__(
        self, redis_url: str, oms: FakeOMS, visibility: float, broker: str | None, **options: Any
    ) -> None:
        app = Celery("vtex_tracking_order_tests")
        app.conf.update(
            broker_url=broker or redis_url,
            broker_transport_options={"visibility_timeout": visibility},
        )
        self.oms = oms
        self.tasks = TrackingTasks(
            app,
            client_settings=None,
            client_factory=lambda: TrackingClient(
                "acme", APP_KEY, APP_TOKEN, base_url=oms.url,
                retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01),
            ),
            name=f"order-test-{next_stamp()}",
            **options,
        )  # fmt: skip
        self.other = InvoiceOrder(redis_url, visibility_timeout=60, ttl=60)
        self.redis = redis.Redis.from_url(redis_url)

    def key(self, update: dict[str, Any]) -> str:
        """The order state key of an update's invoice at FakeOMS."""
        return invoice_key("acme", self.oms.url, update["orderId"], update["invoiceNumber"])

    def run(self, updates: list[dict[str, Any]], stamps: list[int] | None) -> list[ItemResult]:
        """One batch, as a worker runs it."""
        return self.tasks.run_batch(updates, stamps=stamps)

    def close(self) -> None:
        """Close the clients."""
        self.tasks.close()
        self.other.close()
        self.redis.close()


@pytest.fixture
def local(redis_server: RedisServer) -> Iterator[Callable[..., Local]]:
    """Makes ``Local`` setups (``local(visibility=60, broker=None, **register_options)``) on
    one FakeOMS and closes them at the end."""
    made: list[Local] = []
    with FakeOMS() as oms:

        def make(visibility: float = 60.0, broker: str | None = None, **options: Any) -> Local:
            setup = Local(redis_server.url, oms, visibility, broker, **options)
            made.append(setup)
            return setup

        yield make
        for setup in made:
            setup.close()


def warnings_of(caplog: pytest.LogCaptureFixture, text: str) -> int:
    """How many warnings of ``vtex_tracking.celery`` contain ``text``."""
    return sum(
        1
        for r in caplog.records
        if r.name == "vtex_tracking.celery" and r.levelno == logging.WARNING and text in r.message
    )


@pytest.mark.timeout(60)
def test_an_older_snapshot_is_not_sent_while_a_newer_one_is_in_flight_elsewhere(
    local: Callable[..., Local],
) -> None:
    """While another batch holds a claim for X2, a batch with the older X1 does not send it:
    ``superseded``, ok, no request."""
    setup = local()
    x1, _ = snapshots()
    s1, s2 = next_stamp(), next_stamp()
    assert setup.other.claim({setup.key(x1): s2}) == {setup.key(x1): (0, None)}

    (result,) = setup.run([x1], [s1])

    assert (result["outcome"], result["ok"], result["attempts"]) == ("superseded", True, 0)
    assert setup.oms.requests == []


@pytest.mark.timeout(60)
def test_a_newer_snapshot_waits_until_the_older_one_in_flight_elsewhere_is_confirmed(
    local: Callable[..., Local],
) -> None:
    """While another batch holds a claim for the older X1, a batch with X2 waits; once that
    claim is released (X1 confirmed), X2 is sent."""
    setup = local()
    x1, x2 = snapshots()
    s1, s2 = next_stamp(), next_stamp()
    setup.other.claim({setup.key(x1): s1})
    results: list[ItemResult] = []
    runner = threading.Thread(target=lambda: results.extend(setup.run([x2], [s2])))
    runner.start()
    time.sleep(0.5)  # a window in which nothing may happen: nothing to wait for
    waited = runner.is_alive() and not setup.oms.requests
    setup.other.release({setup.key(x1): (s1, s1)})
    runner.join(15)

    assert waited, "X2 was sent while X1 was in flight"
    assert [r["outcome"] for r in results] == ["200"]
    assert [r.json() for r in setup.oms.requests] == [body(x2)]
    assert setup.redis.hget(setup.key(x2), "d") == str(s2).encode()


@pytest.mark.timeout(60)
def test_a_newer_snapshot_is_sent_when_the_older_one_stays_in_flight_past_the_wait(
    local: Callable[..., Local], caplog: pytest.LogCaptureFixture
) -> None:
    """When an older snapshot's claim is held past a quarter of the visibility timeout, the
    newer one is sent anyway, with a warning; the late confirmation of the older one is
    warned about too, and never lowers what is recorded."""
    setup = local(visibility=2.0)  # waits at most 0.5 s
    x1, x2 = snapshots()
    s1, s2 = next_stamp(), next_stamp()
    setup.other.claim({setup.key(x1): s1})
    started = time.monotonic()

    (result,) = setup.run([x2], [s2])
    waited = time.monotonic() - started
    setup.other.release({setup.key(x1): (s1, s1)})

    assert result["outcome"] == "200" and 0.5 <= waited < 5, waited
    assert warnings_of(caplog, "sending the newer one anyway") == 1
    assert warnings_of(caplog, "may have reached VTEX last") == 1
    assert setup.redis.hget(setup.key(x2), "d") == str(s2).encode()


@pytest.mark.timeout(60)
def test_batches_without_stamps_are_sent_unchecked(local: Callable[..., Local]) -> None:
    """A batch from an older producer (no ``stamps``) is sent as before, even when a newer
    snapshot of its invoice was confirmed."""
    setup = local()
    x1, _ = snapshots()
    newer = next_stamp()
    setup.other.claim({setup.key(x1): newer})
    setup.other.release({setup.key(x1): (newer, newer)})

    (result,) = setup.run([x1], None)

    assert result["outcome"] == "200"
    assert [r.json() for r in setup.oms.requests] == [body(x1)]


@pytest.mark.timeout(60)
def test_garbage_in_the_order_state_counts_as_absent(local: Callable[..., Local]) -> None:
    """A key of another type, or a hash whose fields are not numbers, is treated as absent:
    the updates are sent and the keys then hold what was confirmed."""
    setup = local()
    a, b = wire(5), wire(6)
    setup.redis.set(setup.key(a), "junk")
    setup.redis.hset(setup.key(b), mapping={"d": "x", "c": "y", "e": "z"})
    stamps = [next_stamp(), next_stamp()]

    results = setup.run([a, b], stamps)

    assert [r["outcome"] for r in results] == ["200", "200"]
    for update, stamp in zip([a, b], stamps, strict=True):
        assert setup.redis.hgetall(setup.key(update)) == {b"d": str(stamp).encode()}
        assert setup.redis.pttl(setup.key(update)) > 0


@pytest.mark.timeout(60)
def test_an_order_state_redis_that_is_down_never_fails_an_update(
    local: Callable[..., Local], caplog: pytest.LogCaptureFixture
) -> None:
    """With ``order_state`` on a Redis that does not answer, two batches are sent as without
    ordering, with one warning."""
    setup = local(order_state=f"redis://127.0.0.1:{free_port()}/0")
    first = setup.run([wire(1)], [next_stamp()])
    second = setup.run([wire(2)], [next_stamp()])

    assert [r["outcome"] for r in first + second] == ["200", "200"]
    assert len(setup.oms.requests) == 2
    assert warnings_of(caplog, "order_state: Redis did not answer") == 1


@pytest.mark.timeout(60)
def test_without_a_redis_for_the_order_state_batches_are_sent_with_one_warning(
    local: Callable[..., Local], caplog: pytest.LogCaptureFixture
) -> None:
    """A broker that is not Redis and no ``skip_unchanged``: batches are sent unchecked and
    the process says once how to turn ordering on; ``order_state=False`` says nothing."""
    noted = local(broker="memory://")
    quiet = local(broker="memory://", order_state=False)
    for setup in (noted, noted, quiet):
        (result,) = setup.run([wire(1)], [next_stamp()])
        assert result["outcome"] == "200"

    assert len(noted.oms.requests) == 3
    assert warnings_of(caplog, "order_state='redis://...'") == 1
