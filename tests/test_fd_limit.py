"""Clients in a process that may open few files (``ulimit -n 256``, macOS' default): the pool
fits the limit, and running out of descriptors is waited out, not reported as a failure.

Each client runs in a child process whose ``RLIMIT_NOFILE`` is lowered before the client is
made; FakeOMS runs here, in the test process, so the server's own sockets stay unlimited.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The child: lower the limit, make a client, do what ``mode`` says, print one JSON line.
CHILD = r"""
import asyncio, datetime as dt, json, logging, os, resource, sys, time

limit, mode, url, app_key, app_token = int(sys.argv[1]), sys.argv[2], *sys.argv[3:6]
options = json.loads(sys.argv[6])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

from vtex_tracking import (
    AsyncTrackingClient, RetryPolicy, TrackingEvent, TrackingStatus, TrackingUpdate,
    TransportError,
)

records = []

class Keep(logging.Handler):
    def emit(self, record):
        if "connection pool" in record.getMessage():
            records.append([record.levelname, record.getMessage()])

logging.getLogger("vtex_tracking").addHandler(Keep())
logging.getLogger("vtex_tracking").setLevel(logging.INFO)
STATUS = TrackingStatus([TrackingEvent("Campinas", "SP", "Em trânsito", dt.date(2026, 11, 1))])

def updates(count):
    return (TrackingUpdate(f"order-{i}", "NF-1", STATUS) for i in range(count))

def hold_files(count):
    held = []
    try:
        while count is None or len(held) < count:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass  # the limit: every descriptor is taken
    return held

async def main():
    if "max_attempts" in options:
        options["retry"] = RetryPolicy(
            max_attempts=options.pop("max_attempts"), initial_backoff=0.001, max_backoff=0.01
        )
    out = {}
    async with AsyncTrackingClient(
        "acme", app_key, app_token, base_url=url, **options
    ) as client:
        if mode == "push":
            # Other files of the application, taken after the client sized its pool.
            held = hold_files(int(os.environ.get("HOLD_FILES", "0")))
            failures = []
            attempts = 0
            async for result in client.push(updates(int(os.environ["UPDATES"]))):
                attempts = max(attempts, result.attempts)
                if not result.ok:
                    failures.append(str(result.error))
            for fd in held:
                os.close(fd)
            metrics = client.metrics()["acme"]
            out.update(failures=failures, max_attempts=attempts, retries=metrics.retries,
                       no_answer=metrics.no_answer)
        elif mode == "exhausted":
            held = hold_files(None)
            started = time.monotonic()
            try:
                await client.send(next(updates(1)))
            except Exception as exc:
                out.update(message=str(exc), attempts=getattr(exc, "attempts", None),
                           is_transport_error=isinstance(exc, TransportError),
                           is_connection_error=isinstance(exc, ConnectionError))
            out["elapsed"] = time.monotonic() - started
            for fd in held:
                os.close(fd)
    out["records"] = records
    print(json.dumps(out))

asyncio.run(main())
"""


def _run_child(
    oms: FakeOMS, limit: int, mode: str, options: dict[str, Any], **env: str
) -> dict[str, Any]:
    """Run CHILD against ``oms`` under an open-files limit of ``limit``; its JSON answer."""
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(limit),
            mode,
            oms.url,
            APP_KEY,
            APP_TOKEN,
            json.dumps(options),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    answer: dict[str, Any] = json.loads(process.stdout.splitlines()[-1])
    return answer


def test_default_push_under_a_256_file_limit_confirms_all_1200_updates() -> None:
    """Under ``ulimit -n 256`` a default client's push of 1,200 updates to a slow server is
    all confirmed: its pool stays within the limit (192 at once), none fails for want of files."""
    with FakeOMS(latency=0.5) as oms:
        answer = _run_child(oms, 256, "push", {}, UPDATES="1200")
        assert answer["failures"] == []
        assert len({r.order_id for r in oms.requests if r.status == 200}) == 1200
        assert 0 < oms.max_in_flight <= 192


@pytest.mark.parametrize(
    ("limit", "max_concurrency", "note"),
    [
        (256, None, ("INFO", "connection pool sized to 192 (max_concurrency=512)", 683)),
        (256, 300, ("WARNING", "connection pool sized to 192 (max_concurrency=300)", 400)),
        (4096, None, None),
    ],
    ids=["default-shrunk-info", "explicit-shrunk-warning", "room-enough-silent"],
)
def test_pool_sized_down_to_the_file_limit_is_noted_once_in_the_log(
    limit: int, max_concurrency: int | None, note: tuple[str, str, int] | None
) -> None:
    """A pool shrunk to fit the open-files limit is said once in the log (INFO for the
    default, WARNING for a ``max_concurrency`` the user chose), with the ``ulimit -n`` fix."""
    options = {} if max_concurrency is None else {"max_concurrency": max_concurrency}
    with FakeOMS() as oms:
        answer = _run_child(oms, limit, "push", options, UPDATES="1")
    assert answer["failures"] == []
    if note is None:
        assert answer["records"] == []
        return
    [(level, message)] = answer["records"]
    expected_level, start, enough = note
    assert level == expected_level
    assert message.startswith(start)
    assert "may open only 256 files" in message
    assert f"`ulimit -n {enough}`" in message


def test_running_out_of_files_mid_push_is_waited_out_without_spending_attempts() -> None:
    """When the application's other files leave the pool short of descriptors, connections
    that cannot open wait and try again: every update confirmed at its first attempt."""
    with FakeOMS(latency=0.2) as oms:
        # 192 pooled connections + 150 held files > 256: some connects meet EMFILE.
        answer = _run_child(oms, 256, "push", {}, UPDATES="600", HOLD_FILES="150")
    assert answer["failures"] == []
    assert answer["no_answer"] > 0  # it did run out of files
    assert (answer["max_attempts"], answer["retries"]) == (1, 0)


def test_waiting_for_a_file_descriptor_is_bounded_by_the_attempt_timeout() -> None:
    """With no descriptor ever free, a send waits about one attempt ``timeout`` and then
    fails through its retries as a ``TransportError`` naming the open-files limit."""
    with FakeOMS() as oms:
        answer = _run_child(oms, 256, "exhausted", {"timeout": 1.0, "max_attempts": 3})
    assert answer["is_transport_error"]
    assert answer["is_connection_error"]
    assert "Too many open files" in answer["message"]
    assert "ulimit -n" in answer["message"]
    assert answer["attempts"] == 3
    assert 1.0 <= answer["elapsed"] < 10.0
