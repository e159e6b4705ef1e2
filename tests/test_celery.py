"""``vtex_tracking.celery`` with real parts only: redis-server as broker and result store, Celery
prefork workers started as subprocesses (``tests/celery_app.py``), FakeOMS as VTEX, and
``kill -9`` of a pool child and of a whole worker in the middle of a run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
from celery import Celery

from vtex_tracking import (
    InvoiceTracking,
    TrackingEvent,
    TrackingNumberUpdate,
    TrackingStatus,
    TrackingUpdate,
)
from vtex_tracking.celery import (
    DEFAULT_QUEUE,
    TASK_NAME,
    Batch,
    collect,
    configure,
    enqueue,
    enqueue_file,
    register_tasks,
)
from vtex_tracking.testing import FakeOMS

from .celery_app import (
    APP_SETTINGS,
    BROKER_ENV,
    OMS_ENV,
    PICKLE_TASK,
    RATE_LIMIT_ENV,
    SKIP_UNCHANGED_ENV,
    VISIBILITY_ENV,
    make_app,
)
from .conftest import APP_KEY, APP_TOKEN
from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
#: The visibility timeout of these tests' workers: small, so a dead worker's batches come
#: back within the test (production: longer than the slowest batch, see the module).
VISIBILITY_TIMEOUT = 6.0
#: Restore sweep period ``configure`` derives from it (a tenth, at least 1 s).
RESTORE_INTERVAL = 1.0
#: Seconds a worker may take to start on a loaded 2-CPU machine.
WORKER_START_TIMEOUT = 45.0
#: Margin for a loaded machine on top of what Celery promises.
SLACK = 4.0
#: Seconds between the prefork pool's own checks for dead children (Celery's ``AsynPool``
#: timer). A child's death is normally seen at once through its process sentinel (0.1 s);
#: on a loaded machine it took 4.8 s once in CI, within this periodic check.
POOL_CHECK_INTERVAL = 5.0


# -- helpers -------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or fail after
    ``timeout`` seconds saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc: no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group is still alive (zombies count as gone)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Worker:
    """One ``celery worker`` (prefork, 2 children) in its own process group, logging to a
    file; ``kill()`` is ``kill -9`` of the main process and its children at once.

    Started as the README says for the tracking workers (``-Q <queue> --prefetch-multiplier
    1``), or with ``queue=None`` as an app's other workers are: no ``-Q``, no prefetch flag.
    """

    def __init__(self, name: str, env: dict[str, str], queue: str | None, log: Path) -> None:
        self.name = name
        self.log = log
        command = [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            "-P", "prefork", "--concurrency", "2",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{name}@%h", "--loglevel", "INFO",
        ]  # fmt: skip
        if queue is not None:
            command += ["-Q", queue, "--prefetch-multiplier", "1"]
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.process.pid

    def wait_ready(self) -> None:
        """Wait until the worker says it is ready (consuming) with both children up."""
        wait_for(
            lambda: self.process.poll() is not None or " ready." in self.text(),
            WORKER_START_TIMEOUT,
            f"worker {self.name} ready",
        )
        assert self.process.poll() is None, f"worker {self.name} exited:\n{self.text()}"
        wait_for(lambda: len(self.children()) >= 2, 10, f"worker {self.name}'s 2 children")

    def children(self) -> list[int]:
        """The pool children's process ids."""
        return child_pids(self.process.pid)

    def text(self) -> str:
        """The worker's log so far."""
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to every process of the worker at once, and wait until none is left."""
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.pgid, signal.SIGKILL)
        self.process.wait(timeout=10)
        wait_for(lambda: not group_alive(self.pgid), 10, f"every process of {self.name} gone")

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL for whatever is left; never leaves a
        process behind."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed below
                self.process.wait(timeout=15)
        self.kill()
        self._log_file.close()


def worker_env(broker_url: str, oms: FakeOMS) -> dict[str, str]:
    """The environment of a test worker: broker, FakeOMS and its credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTEX_")}
    env.update(
        {
            BROKER_ENV: broker_url,
            OMS_ENV: oms.url,
            VISIBILITY_ENV: str(VISIBILITY_TIMEOUT),
            "VTEX_ACCOUNT_NAME": "acme",
            "VTEX_APP_KEY": APP_KEY,
            "VTEX_APP_TOKEN": APP_TOKEN,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
    )
    if os.geteuid() == 0:  # CI containers: Celery refuses pickle as root unless told
        env["C_FORCE_ROOT"] = "1"
    return env


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Starts workers for one test (``start_worker(name, env, queue)``) and stops every one
    of them at the end, however the test ended."""
    workers: list[Worker] = []

    def start(name: str, env: dict[str, str], queue: str | None, ready: bool = True) -> Worker:
        worker = Worker(name, env, queue, tmp_path / f"{name}.log")
        workers.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wire(index: int, *, events: int = 2) -> dict[str, Any]:
    """Update number ``index`` in VTEX's wire form, with ids that tell its index."""
    return {
        "orderId": f"{1_000_000 + index}-01",
        "invoiceNumber": f"NF{index:05d}",
        "isDelivered": False,
        "deliveredDate": None,
        "events": [
            {"city": "Recife", "state": "PE", "description": f"evento {n}", "date": "2026-11-02"}
            for n in range(events)
        ],
    }


def body(update: dict[str, Any]) -> dict[str, Any]:
    """What VTEX receives for a wire-form update: the body, without the ids of the path."""
    return {k: update[k] for k in ("events", "isDelivered", "deliveredDate")}


def held(client: redis.Redis) -> dict[str, str]:
    """Batches taken by a worker and not yet acknowledged: delivery tag -> task id (kombu's
    ``unacked`` hash, where a dead worker's batches wait for the visibility timeout)."""
    found = {}
    for tag, value in client.hgetall("unacked").items():
        payload = json.loads(value)[0]
        found[tag.decode()] = payload["headers"]["id"]
    return found


def queued(client: redis.Redis, queue: str) -> set[str]:
    """Task ids waiting in ``queue``."""
    return {json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)}


def accepted_count(oms: FakeOMS, batch: Batch, updates: list[dict[str, Any]]) -> int:
    """How many items of ``batch`` FakeOMS has accepted so far."""
    keys = [(updates[i]["orderId"], updates[i]["invoiceNumber"]) for i in batch.indexes]
    return sum(1 for key in keys if oms.updates.get(key))


# -- a worker shared by the happy-path tests -----------------------------------------------


class Shared:
    """One redis-server, one FakeOMS and one worker for the tests that kill nothing."""

    queue = "vtex-tests"

    def __init__(self, redis_url: str, oms: FakeOMS, worker: Worker) -> None:
        self.oms = oms
        self.worker = worker
        self.app, self.tasks = make_app(redis_url, oms.url, VISIBILITY_TIMEOUT)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """A module-wide redis-server, FakeOMS and running worker (stopped at the end)."""
    log = tmp_path_factory.mktemp("celery") / "shared-worker.log"
    with RedisServer() as server, FakeOMS() as oms:
        worker = Worker("shared", worker_env(server.url, oms), Shared.queue, log)
        try:
            worker.wait_ready()
            yield Shared(server.url, oms, worker)
        finally:
            worker.stop()


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_batch_gives_one_result_per_item_and_reports_the_invalid_one(shared: Shared) -> None:
    """A batch round trip gives one JSON result per item in order; an invalid item gets its
    own ``invalid`` result naming the field, and FakeOMS receives exactly the valid bodies."""
    shared.oms.reset()
    good = [wire(i) for i in range(3)]
    invalid = wire(3)
    del invalid["events"][1]["date"]
    batch = [good[0], invalid, good[1], good[2]]

    async_result = shared.tasks.push_batch.apply_async(args=[batch], queue=Shared.queue)
    results = async_result.get(timeout=60)

    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["ok"] for r in results] == [True, False, True, True]
    bad = results[1]
    assert (bad["outcome"], bad["field"], bad["attempts"]) == ("invalid", "events[1].date", 0)
    assert bad["error"] == "events[1].date: required field missing"
    assert bad["orderId"] == invalid["orderId"]
    for result, update in zip([results[0], *results[2:]], good, strict=True):
        assert result["orderId"] == update["orderId"]
        assert result["invoiceNumber"] == update["invoiceNumber"]
        assert (result["accountName"], result["status"], result["outcome"]) == ("acme", 200, "200")
        assert result["receipt"] and result["requestId"] and result["attempts"] == 1
        assert result["error"] is None and result["redelivered"] is False
    assert {key: docs for key, docs in shared.oms.updates.items()} == {
        (u["orderId"], u["invoiceNumber"]): [body(u)] for u in good
    }
    seen = json.dumps(results) + shared.worker.text()
    assert APP_TOKEN not in seen and APP_KEY not in seen


@pytest.mark.timeout(180)
def test_a_300_line_file_in_batches_of_20_is_confirmed_once_per_line(
    shared: Shared, tmp_path: Path
) -> None:
    """``enqueue_file`` sends a 300-line JSONL file as 15 batches of 20; ``collect`` gives
    each line's result exactly once, all confirmed, and FakeOMS accepted each update once."""
    shared.oms.reset()
    updates = [wire(i) for i in range(300)]
    path = tmp_path / "today.jsonl"
    path.write_text("".join(json.dumps(u) + "\n" for u in updates))

    started = time.monotonic()
    batches = enqueue_file(shared.app, path, batch_size=20, queue=Shared.queue)
    # Celery subscribes to each batch's result channel as it is sent; collect lets go of
    # them once it has the results, so no AsyncResult talks to Redis when collected later.
    backend = shared.app.backend
    channels = {backend.get_key_for_task(b.id) for b in batches}
    assert channels <= backend.result_consumer.subscribed_to
    report = collect(batches, timeout=150)
    elapsed = time.monotonic() - started
    assert not channels & backend.result_consumer.subscribed_to

    assert len(batches) == 15 and all(len(b.indexes) == 20 for b in batches)
    assert [r["index"] for r in report.results] == list(range(300))
    assert [r["source"] for r in report.results] == [f"{path}:{n}" for n in range(1, 301)]
    assert report.ok, report.by_outcome
    assert (report.succeeded, report.duplicates, report.redelivered, report.pending) == (
        300, 0, 0, 0,
    )  # fmt: skip
    assert {r["orderId"] for r in report.results} == {u["orderId"] for u in updates}
    assert sorted(len(docs) for docs in shared.oms.updates.values()) == [1] * 300
    print(f"\n300 updates in 15 batches through one worker (2 processes): {elapsed:.1f} s")


@pytest.mark.timeout(120)
def test_bad_lines_of_a_file_are_reported_by_file_and_line_and_the_rest_is_sent(
    shared: Shared, tmp_path: Path
) -> None:
    """A JSONL file with a malformed line and a line missing a field: those two get
    ``invalid`` results naming ``file:line`` (never sent), the other lines are confirmed."""
    shared.oms.reset()
    missing = wire(3)
    del missing["invoiceNumber"]
    lines = [json.dumps(wire(0)), "{not json", json.dumps(wire(2)), json.dumps(missing)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")

    report = collect(enqueue_file(shared.app, path, batch_size=2, queue=Shared.queue), timeout=60)

    assert [r["index"] for r in report.results] == [0, 1, 2, 3]
    assert [r["outcome"] for r in report.results] == ["200", "invalid", "200", "invalid"]
    assert report.results[1]["error"].startswith(f"{path}:2: not valid JSON")
    assert report.results[3]["error"] == f"{path}:4: invoiceNumber: required field missing"
    assert report.results[3]["field"] == "invoiceNumber"
    assert len(shared.oms.requests) == 2


@pytest.mark.timeout(120)
def test_enqueue_takes_models_and_wire_dicts_and_refuses_invalid_ones_before_sending(
    shared: Shared,
) -> None:
    """``enqueue`` takes ``TrackingUpdate`` models and wire-form dicts alike (sent as the SDK
    would send them); an item that cannot be an update is refused at enqueue time, never
    sent, and still gets its ``invalid`` result from ``collect``."""
    shared.oms.reset()
    event = TrackingEvent("Recife", "PE", "Saiu para entrega", dt.date(2026, 11, 23))
    model = TrackingUpdate("2000-01", "NF-M", TrackingStatus([event]))
    typo = wire(1) | {"isDelivred": True}

    batches = enqueue(shared.tasks, [model, wire(0), typo, 42], batch_size=2, queue=Shared.queue)
    report = collect(batches, timeout=60)

    assert [r["outcome"] for r in report.results] == ["200", "200", "invalid", "invalid"]
    assert report.results[2]["field"] == "isDelivred"
    assert "did you mean 'isDelivered'" in report.results[2]["error"]
    assert report.results[3]["error"] == (
        "expected a mapping, a TrackingUpdate or a TrackingNumberUpdate, got int"
    )
    assert shared.oms.accepted("2000-01", "NF-M") == [
        {
            "events": [
                {"city": "Recife", "state": "PE", "description": "Saiu para entrega",
                 "date": "2026-11-23"}
            ],
            "isDelivered": False,
            "deliveredDate": None,
        }
    ]  # fmt: skip
    assert len(shared.oms.requests) == 2


def test_a_batch_carries_tracking_numbers_sent_before_their_events(shared: Shared) -> None:
    """A worker sends a line's tracking number (PATCH) before its events, a number alone as
    the PATCH only, and each result says what VTEX confirmed (``sent``)."""
    shared.oms.reset()
    number = {"trackingNumber": "BR1", "trackingUrl": "https://rastreio.example.com/BR1"}
    both = wire(0) | number
    alone = {"orderId": "3000-01", "invoiceNumber": "NF-N", "trackingNumber": "BR2"}
    model = TrackingNumberUpdate("3001-01", "NF-M", InvoiceTracking("BR3"))

    report = collect(enqueue(shared.tasks, [both, alone, model], queue=Shared.queue), timeout=60)

    assert [r["sent"] for r in report.results] == [
        ["tracking_number", "events"], ["tracking_number"], ["tracking_number"]
    ]  # fmt: skip
    assert all(r["ok"] for r in report.results)
    calls = [(r.method, r.order_id) for r in shared.oms.requests]
    assert calls.index(("PATCH", both["orderId"])) < calls.index(("PUT", both["orderId"]))
    assert sorted(calls) == sorted([("PATCH", both["orderId"]), ("PUT", both["orderId"]),
                                    ("PATCH", "3000-01"), ("PATCH", "3001-01")])  # fmt: skip
    assert shared.oms.tracking_number("3001-01", "NF-M")["trackingNumber"] == "BR3"  # type: ignore[index]


@pytest.mark.timeout(240)
def test_kill_9_of_a_child_and_of_a_whole_worker_loses_no_update(
    redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """kill -9 of a pool child, then of a whole worker, mid-run: every update is confirmed
    at FakeOMS, ``collect`` gives each item's final result once (re-delivered items counted,
    not repeated), and the dead worker's batches come back within the visibility timeout.

    Re-delivered batches PUT some updates twice. That is harmless: each PUT replaces the
    invoice's whole history with its body (VTEX-FACTS.md), and a re-delivered batch sends the
    same body again, so the history VTEX ends with is the one body, as the test asserts.
    """
    queue = "vtex-kill"
    size, count = 10, 160
    updates = [wire(i) for i in range(count)]
    broker = redis.Redis.from_url(redis_server.url)
    with FakeOMS(latency=0.25) as oms:  # ~1.3 s per batch: kills land mid-batch
        env = worker_env(redis_server.url, oms)
        first = start_worker("first", env, queue)
        app, _ = make_app(redis_server.url, oms.url, VISIBILITY_TIMEOUT)
        batches = enqueue(app, updates, batch_size=size, queue=queue)
        by_task = {b.id: b for b in batches}

        def two_half_done_batches() -> dict[str, str] | None:
            # Two batches held, each with some but not all items accepted: killing either
            # runner now makes a batch run again over updates VTEX already has.
            now = held(broker)
            partial = [1 <= accepted_count(oms, by_task[t], updates) < size for t in now.values()]
            return now if len(now) == 2 and all(partial) else None

        # 1. kill -9 one pool child: its batch goes back to the queue at once.
        before = wait_for(two_half_done_batches, 60, "two batches half done")
        os.kill(first.children()[0], signal.SIGKILL)
        killed_at = time.monotonic()

        def requeued() -> str | None:
            now, waiting = held(broker), queued(broker, queue)
            for tag, task in before.items():
                if tag not in now and (task in waiting or task in now.values()):
                    return task
            return None

        child_task = wait_for(requeued, 30, "the killed child's batch back in the queue")
        child_requeue_s = time.monotonic() - killed_at

        # 2. kill -9 the whole worker (main process and children at once) mid-batch.
        wait_for(two_half_done_batches, 60, "two batches half done again")
        first.kill()
        killed_at = time.monotonic()
        stranded = held(broker)  # nobody acknowledges for a dead worker
        delivered_at = {
            tag.decode(): score
            for tag, score in broker.zrange("unacked_index", 0, -1, withscores=True)
        }
        assert stranded and set(stranded) <= set(delivered_at)
        second = start_worker("second", env, queue)
        ready_wall = time.time()  # a sweep needs a live worker: none runs before this
        back_at: dict[str, float] = {}

        def all_back() -> bool:
            now, wall = held(broker), time.time()
            for tag in set(stranded) - set(now) - set(back_at):
                back_at[tag] = wall
            return len(back_at) == len(stranded)

        wait_for(all_back, VISIBILITY_TIMEOUT + RESTORE_INTERVAL + 30, "stranded batches back")
        restore_after_kill_s = time.monotonic() - killed_at
        waited = [back_at[tag] - delivered_at[tag] for tag in stranded]
        # Due: once older than the visibility timeout and a live worker sweeps.
        due = [max(VISIBILITY_TIMEOUT, ready_wall - delivered_at[tag]) for tag in stranded]

        report = collect(batches, timeout=120)
        second.stop()

    duplicated = {key: docs for key, docs in oms.updates.items() if len(docs) > 1}
    redelivered_tasks = {child_task, *stranded.values()}
    figures = (
        f"child batch requeued {child_requeue_s:.2f} s after its kill; dead worker's "
        f"{len(stranded)} batches all back {restore_after_kill_s:.1f} s after the kill, each "
        f"{min(waited):.1f}-{max(waited):.1f} s after its delivery (visibility timeout "
        f"{VISIBILITY_TIMEOUT:.0f} s, sweep every {RESTORE_INTERVAL:.0f} s); "
        f"{len(duplicated)} of {count} updates PUT twice or more, {len(oms.requests)} "
        f"requests; collect: {report.redelivered} items redelivered, {report.duplicates} "
        f"duplicates"
    )
    print("\n" + figures)

    assert report.ok, (report.by_outcome, figures)
    assert [r["index"] for r in report.results] == list(range(count)), figures
    assert report.duplicates == 0 and report.pending == 0, figures
    assert report.redelivered == size * len(redelivered_tasks), figures
    assert all(oms.accepted(u["orderId"], u["invoiceNumber"]) for u in updates), figures
    assert duplicated, f"a kill mid-batch must repeat some PUTs: {figures}"
    for (order_id, invoice), docs in duplicated.items():
        expected = body(updates[int(order_id.split("-")[0]) - 1_000_000])
        assert docs == [expected] * len(docs), invoice
        assert oms.accepted(order_id, invoice)[-1] == expected  # the final history
    # The child's batch came back because the worker saw its child die (reject on worker
    # lost), not through the visibility timeout: the worker logged the loss for that task.
    first_log = first.text()
    assert "WorkerLostError" in first_log and "signal 9" in first_log, first_log[-3000:]
    assert child_requeue_s < POOL_CHECK_INTERVAL + SLACK, figures
    late = [w - d for w, d in zip(waited, due, strict=True)]
    assert max(late) <= RESTORE_INTERVAL + SLACK, figures
    assert min(waited) >= VISIBILITY_TIMEOUT, figures
    second_log = second.text()
    assert APP_TOKEN not in second_log and APP_KEY not in second_log


@pytest.mark.timeout(180)
def test_a_dead_workers_batches_wait_for_a_live_workers_restore_sweep(
    redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """With no worker alive, a dead worker's batches stay taken past the visibility timeout:
    Redis re-delivers only when a live worker's restore sweep runs (the next one to start
    sweeps at once), and then every update is confirmed."""
    queue = "vtex-sweep"
    updates = [wire(i) for i in range(40)]
    broker = redis.Redis.from_url(redis_server.url)
    with FakeOMS(latency=0.25) as oms:
        env = worker_env(redis_server.url, oms)
        first = start_worker("lonely", env, queue)
        app, _ = make_app(redis_server.url, oms.url, VISIBILITY_TIMEOUT)
        batches = enqueue(app, updates, batch_size=10, queue=queue)
        wait_for(lambda: len(held(broker)) == 2, 60, "two batches taken")
        first.kill()
        stranded = held(broker)
        time.sleep(VISIBILITY_TIMEOUT + 2 * RESTORE_INTERVAL)  # nothing alive to sweep
        still_held = set(held(broker))
        started = time.monotonic()
        second = start_worker("rescuer", env, queue, ready=False)
        wait_for(lambda: not set(stranded) & set(held(broker)), 60, "stranded batches back")
        back_after_start_s = time.monotonic() - started
        report = collect(batches, timeout=120)
        second.stop()

    print(
        f"\nno worker for {VISIBILITY_TIMEOUT + 2 * RESTORE_INTERVAL:.0f} s: "
        f"{len(set(stranded) & still_held)} of 2 batches still taken; back "
        f"{back_after_start_s:.1f} s after a new worker was started"
    )
    assert set(stranded) <= still_held
    assert report.ok and report.redelivered == 20, report.by_outcome
    assert all(oms.accepted(u["orderId"], u["invoiceNumber"]) for u in updates)


def test_importing_the_package_never_imports_celery() -> None:
    """``import vtex_tracking`` (and its CLI and testing modules) loads neither Celery nor
    ``vtex_tracking.celery``: the extra stays optional."""
    code = (
        "import sys, vtex_tracking, vtex_tracking.cli, vtex_tracking.testing;"
        "print(sorted(m for m in sys.modules if m == 'celery' or m.endswith('.celery')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.timeout(180)
def test_workers_with_a_shared_pace_keep_the_accounts_rate_together(
    redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """Two workers (four processes) with ``VTEX_SHARED_PACE`` and ``rate_limit=10`` send to
    the account at 10 requests per second in all, not 10 each: the pace lives in Redis.
    (Without it: 60 requests in 1.4 s, 40 in the busiest second.)"""
    queue = "vtex-shared"
    rate = 10.0
    updates = [wire(i) for i in range(60)]
    broker = redis.Redis.from_url(redis_server.url)
    with FakeOMS(latency=0.05) as oms:
        env = worker_env(redis_server.url, oms)
        env.update({"VTEX_SHARED_PACE": redis_server.url, RATE_LIMIT_ENV: str(rate)})
        start_worker("left", env, queue)
        start_worker("right", env, queue)
        app, _ = make_app(redis_server.url, oms.url, VISIBILITY_TIMEOUT)
        report = collect(enqueue(app, updates, batch_size=5, queue=queue), timeout=120)

    arrivals = sorted(r.received_at for r in oms.requests)
    first = sum(1 for t in arrivals if t < arrivals[0] + 1)
    later = [t for t in arrivals if t >= arrivals[0] + 1]  # after each process's first lease
    steady = (len(later) - 1) / (later[-1] - later[0])
    busiest = max(sum(1 for t in later if start <= t < start + 1) for start in later)
    pace_keys = broker.keys("vtex-tracking:pace:*")
    print(
        f"\nshared pace, 4 processes at rate_limit {rate:.0f}: {len(arrivals)} requests in"
        f" {arrivals[-1] - arrivals[0]:.1f} s; first second {first}, then {steady:.1f}/s,"
        f" busiest second after it {busiest}"
    )
    assert report.ok, report.by_outcome
    assert pace_keys, "no account pace in Redis"
    assert steady <= rate * 1.3, steady
    assert busiest <= rate * 1.5, busiest


@pytest.mark.timeout(180)
def test_workers_share_the_unchanged_state_and_skip_what_vtex_has(
    redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """Two workers with ``skip_unchanged`` in Redis: the second enqueue of the same 40
    updates (with one changed) sends only the changed one, whichever worker gets which batch:
    the others come back ``unchanged`` and ``ok``."""
    queue = "vtex-unchanged"
    updates = [wire(i) for i in range(40)]
    with FakeOMS() as oms:
        env = worker_env(redis_server.url, oms)
        env[SKIP_UNCHANGED_ENV] = redis_server.url
        start_worker("one", env, queue)
        start_worker("two", env, queue)
        app, _ = make_app(redis_server.url, oms.url, VISIBILITY_TIMEOUT)
        first = collect(enqueue(app, updates, batch_size=4, queue=queue), timeout=120)
        assert first.ok and first.by_outcome == {"200": 40}, first.by_outcome
        oms.reset()
        updates[7] = wire(7, events=3)
        second = collect(enqueue(app, updates, batch_size=4, queue=queue), timeout=120)
        sent = [(r.order_id, len(r.json()["events"])) for r in oms.requests]
    assert second.ok and second.by_outcome == {"unchanged": 39, "200": 1}, second.by_outcome
    assert sent == [(updates[7]["orderId"], 3)]


# -- the app around the tasks: its own settings, its pickle tasks, its other workers --------


class _AppConfig:
    """Settings an app loads with ``config_from_object``: pickle, routes of its own."""

    task_serializer = "pickle"
    accept_content: ClassVar[list[str]] = ["pickle"]
    task_routes: ClassVar[dict[str, Any]] = {"reports.*": {"queue": "reports"}}


def test_register_tasks_puts_its_options_on_its_task_and_changes_no_other_setting() -> None:
    """On an app with pickle settings and routes of its own, ``register_tasks`` changes two
    settings and only by adding: ``accept_content`` gains ``"json"`` (pickle kept) and
    ``task_routes`` gains a first route for the SDK's task alone, to ``vtex_tracking``; the
    rest (acks late, JSON, rate limit) is on the task. Both additions survive a later
    ``config_from_object``."""
    app = Celery("settings_kept", set_as_current=False)
    app.config_from_object(_AppConfig)
    before = dict(app.conf)

    tasks = register_tasks(app, task_options={"rate_limit": "5/s"})

    after = dict(app.conf)
    assert {k for k in after if after[k] != before.get(k)} == {"accept_content", "task_routes"}
    assert after["accept_content"] == ["pickle", "json"]
    assert after["task_routes"] == ({TASK_NAME: {"queue": DEFAULT_QUEUE}}, _AppConfig.task_routes)
    task = tasks.push_batch
    assert (task.serializer, task.acks_late, task.reject_on_worker_lost) == ("json", True, True)
    assert task.rate_limit == "5/s"
    route = app.amqp.router.route
    assert route({}, TASK_NAME)["queue"].name == DEFAULT_QUEUE
    assert route({}, "reports.daily")["queue"].name == "reports"
    assert route({}, "billing.charge")["queue"].name == app.conf.task_default_queue

    app.config_from_object(_AppConfig, force=True)  # a reload keeps both additions
    assert app.conf.accept_content == ["pickle", "json"]
    assert app.conf.task_routes[0] == {TASK_NAME: {"queue": DEFAULT_QUEUE}}
    with pytest.raises(TypeError, match="acks_late"):
        register_tasks(app, name="vtex_tracking.other", task_options={"acks_late": False})
    untouched = Celery("no_route", set_as_current=False)
    register_tasks(untouched, queue=None)
    assert untouched.conf.task_routes is None and list(untouched.conf.accept_content) == ["json"]


def test_configure_is_deprecated_and_sets_only_what_it_is_given() -> None:
    """``configure`` (public before 0.x, kept for the apps that call it) warns, and sets only
    the broker, result backend and transport options it is given, merged into the app's;
    the app's serializers, ``accept_content`` and prefetch stay its own."""
    app = Celery("configure_kept", set_as_current=False)
    app.config_from_object(_AppConfig)
    app.conf.update(worker_prefetch_multiplier=8, broker_transport_options={"max_connections": 7})

    with pytest.warns(DeprecationWarning, match="-Q vtex_tracking --prefetch-multiplier 1"):
        configure(app, broker_url="redis://127.0.0.1:9/0", visibility_timeout=600)

    conf = app.conf
    assert (conf.task_serializer, conf.accept_content) == ("pickle", ["pickle"])
    assert (conf.worker_prefetch_multiplier, conf.worker_deduplicate_successful_tasks) == (8, False)
    assert conf.result_serializer == "json" and conf.task_acks_late is False
    assert (conf.broker_url, conf.result_backend) == ("redis://127.0.0.1:9/0",) * 2
    assert conf.broker_transport_options == {
        "max_connections": 7,
        "visibility_timeout": 600,
        "unacked_restore_interval": 60.0,
        "unacked_restore_throttle": 1,
    }


@pytest.mark.timeout(240)
def test_batches_take_their_own_queue_and_the_apps_pickle_tasks_keep_running(
    redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """The test app has pickle as its serializer, its own prefetch and a pickle task. A
    worker started as the app's other workers are (no ``-Q``) runs the pickle task with
    every setting of the app as it was (``accept_content`` only gained ``"json"``), never
    receives a batch, and says at start where batches go; a worker started with
    ``-Q vtex_tracking --prefetch-multiplier 1`` runs them all (``enqueue`` and ``delay``
    without a queue alike)."""
    updates = [wire(i) for i in range(6)]
    broker = redis.Redis.from_url(redis_server.url)
    with FakeOMS() as oms:
        env = worker_env(redis_server.url, oms)
        other = start_worker("other", env, None)
        app, tasks = make_app(redis_server.url, oms.url, VISIBILITY_TIMEOUT)
        batches = enqueue(tasks, updates, batch_size=2)  # no queue: the task's own
        direct = tasks.push_batch.delay([wire(6)])  # the route register_tasks added
        probe = {1, 2, 3}  # a set: pickle carries it, JSON cannot
        echoed, settings = app.tasks[PICKLE_TASK].delay(probe).get(timeout=60)
        # The other worker ran a task sent after the batches: it had them to take, and did not.
        time.sleep(1.0)
        waiting = queued(broker, DEFAULT_QUEUE)
        sent_before = len(oms.requests)
        tracking = start_worker("tracking", env, DEFAULT_QUEUE)
        report = collect(batches, timeout=90)
        direct_results = direct.get(timeout=60)

    assert echoed == probe
    assert settings == {
        **APP_SETTINGS,
        "accept_content": ["pickle", "json"],
        "task_acks_late": False,
        "worker_deduplicate_successful_tasks": False,
    }
    assert waiting == {b.id for b in batches} | {direct.id}
    assert sent_before == 0
    other_log = other.text()
    assert f"Task {PICKLE_TASK}[" in other_log
    assert f"Task {TASK_NAME}[" not in other_log, other_log[-3000:]
    assert f"does not take queue '{DEFAULT_QUEUE}', where {TASK_NAME} goes" in other_log
    assert report.ok and report.by_outcome == {"200": 6}, report.by_outcome
    assert [r["outcome"] for r in direct_results] == ["200"]
    tracking_log = tracking.text()
    assert tracking_log.count(f"Task {TASK_NAME}[") >= 2 * 4  # received and succeeded
    assert "does not take queue" not in tracking_log
    assert len(oms.requests) == 7


@pytest.mark.timeout(180)
def test_a_batch_redelivered_after_it_ran_returns_its_stored_result(
    redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """A batch delivered again (``redelivered``, as kombu marks a batch it restores) whose
    result is already stored as a success is not run again: its stored result stands, and
    nothing reaches VTEX. One redelivered without a stored result runs as usual. (Celery's
    ``worker_deduplicate_successful_tasks``, for this task alone: the app keeps it off.)"""
    queue = "vtex-redelivered"
    broker = redis.Redis.from_url(redis_server.url)
    with FakeOMS() as oms:
        env = worker_env(redis_server.url, oms)
        app, tasks = make_app(redis_server.url, oms.url, VISIBILITY_TIMEOUT)
        ran, fresh = enqueue(tasks, [wire(0), wire(1)], batch_size=1, queue=queue)
        first = wire(0)
        stored = [
            {
                "index": 0, "source": None, "orderId": first["orderId"],
                "invoiceNumber": first["invoiceNumber"], "accountName": "acme", "ok": True,
                "status": 200, "outcome": "200", "receipt": "stored by the first run",
                "requestId": "first-run", "error": None, "field": None, "attempts": 1,
                "redelivered": False, "sent": ["events"],
            }
        ]  # fmt: skip
        with warnings.catch_warnings():  # Celery's Redis backend calls redis-py's setex
            warnings.simplefilter("ignore", DeprecationWarning)
            app.backend.store_result(ran.id, stored, "SUCCESS")
        # Mark both waiting messages as kombu marks the batches it restores.
        messages = [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]
        assert len(messages) == 2
        for message in messages:
            message["properties"]["delivery_info"]["redelivered"] = True
        broker.delete(queue)
        broker.rpush(queue, *(json.dumps(m) for m in messages))
        worker = start_worker("again", env, queue)
        report = collect([ran, fresh], timeout=60)
        worker.stop()

    assert report.results[0] == stored[0]
    assert report.results[1]["outcome"] == "200" and report.results[1]["redelivered"] is True
    assert [r.order_id for r in oms.requests] == [wire(1)["orderId"]]
    assert f"batch {ran.id} already ran to the end" in worker.text()
