"""Lifecycles users get wrong: one client kept at module level and used by one
``asyncio.run`` after another (a Django view, a script per job) leaves no socket behind."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import textwrap

from vtex_tracking import (
    Accounts,
    AsyncTrackingClient,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
)
from vtex_tracking.testing import FakeAccount, FakeOMS

from .conftest import APP_KEY, APP_TOKEN

RUNS = 200
STATUS = TrackingStatus([TrackingEvent("Natal", "RN", "Postado", dt.date(2026, 11, 20))])

def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))  # Linux, as CI


def test_a_client_reused_across_200_asyncio_runs_keeps_its_file_descriptors_flat() -> None:
    """200 asyncio.run() calls through one client, each sending a single call and a push to
    two accounts: every update arrives, and the process ends with the descriptors it had
    after the first run (each run's pool is closed as its loop shuts down)."""
    with FakeOMS(accounts={"globex": FakeAccount("vtexappkey-globex", "token-globex")}) as oms:
        accounts = Accounts.from_mapping(
            {"globex": {"app_key": "vtexappkey-globex", "app_token": "token-globex",
                        "base_url": oms.url}}
        )
        client = AsyncTrackingClient(
            "acme", APP_KEY, APP_TOKEN, base_url=oms.url, accounts=accounts
        )

        async def job(run: int) -> None:
            await client.update_tracking_status(f"single-{run}", "NF-1", STATUS)
            updates = [
                TrackingUpdate(f"push-{run}", "NF-1", STATUS),
                TrackingUpdate(f"push-{run}", "NF-1", STATUS, account_name="globex"),
            ]
            summary = await client.push_all(updates)
            assert summary.succeeded == 2

        asyncio.run(job(0))
        after_first = _open_fds()
        for run in range(1, RUNS):
            asyncio.run(job(run))
        growth = _open_fds() - after_first
        asyncio.run(client.aclose())
        accepted = len(oms.requests)
    assert accepted == 3 * RUNS
    # A leak would be 2 per run and per account (our socket and the server's): 800 here.
    assert growth <= 4, f"{growth} file descriptors more after {RUNS} runs"


def test_a_module_level_client_leaves_no_unclosed_warning_at_exit() -> None:
    """A script using a module-level client in several asyncio.run() calls and never closing
    it exits cleanly: no 'Unclosed connector/session' or unclosed-socket warnings."""
    script = textwrap.dedent(
        f"""
        import asyncio, datetime as dt, gc
        from vtex_tracking import AsyncTrackingClient, TrackingEvent, TrackingStatus
        from vtex_tracking.testing import FakeOMS

        status = TrackingStatus([TrackingEvent("Natal", "RN", "Postado", dt.date(2026, 11, 20))])
        with FakeOMS() as oms:
            client = AsyncTrackingClient("acme", {APP_KEY!r}, {APP_TOKEN!r}, base_url=oms.url)
            for run in range(20):
                asyncio.run(client.update_tracking_status(f"o-{{run}}", "NF-1", status))
            gc.collect()
            print(len(oms.requests))
        """
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "20"
    assert "Unclosed" not in done.stderr and "unclosed" not in done.stderr, done.stderr
