"""``vtex-tracking fake-server``: run FakeOMS standalone, to point an integration at."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from vtex_tracking.testing import FakeOMS


async def _serve(args: argparse.Namespace) -> int:
    oms = FakeOMS(
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        fail_rate=args.fail_rate,
        latency=args.latency,
    )
    try:
        await oms.start()
    except OSError as exc:
        print(
            f"vtex-tracking: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        # FakeOMS's credentials are fixed test values, not secrets: printing them is the point.
        print(
            f"FakeOMS (a fake VTEX tracking endpoint) listening on {oms.url}\n"
            f"It accepts app key {oms.app_key} with app token {oms.app_token}. Try:\n"
            f"  VTEX_ACCOUNT_NAME=fake VTEX_APP_KEY={oms.app_key}"
            f" VTEX_APP_TOKEN={oms.app_token} \\\n"
            f"    vtex-tracking push --base-url {oms.url} examples/sample-updates.jsonl\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await oms.stop()
    accepted = sum(len(bodies) for bodies in oms.updates.values())
    print(
        f"Stopped after {len(oms.requests)} requests: {accepted} updates accepted"
        f" for {len(oms.updates)} invoices.",
        flush=True,
    )
    return 0


def run_fake_server(args: argparse.Namespace) -> int:
    """The ``fake-server`` command; returns the exit status (0 after Ctrl-C)."""
    return asyncio.run(_serve(args))
