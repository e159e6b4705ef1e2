"""``vtex-tracking fake-server``: run FakeOMS standalone, for trying integrations."""

from __future__ import annotations

import argparse
import asyncio
import signal

from vtex_tracking.testing import FakeOMS


async def _serve(args: argparse.Namespace) -> None:
    async with FakeOMS(
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        fail_rate=args.fail_rate,
        latency=args.latency,
    ) as oms:
        # FakeOMS's credentials are fixed test values, not secrets: printing them is the point.
        print(f"FakeOMS listening on {oms.url}", flush=True)
        print(f"  app key:   {oms.app_key}", flush=True)
        print(f"  app token: {oms.app_token}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print(f"Stopped after {len(oms.requests)} requests.", flush=True)


def run_fake_server(args: argparse.Namespace) -> int:
    """The ``fake-server`` command; returns the exit status."""
    asyncio.run(_serve(args))
    return 0
