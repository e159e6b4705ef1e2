"""``vtex-tracking fake-server``: run FakeOMS standalone, to point an integration at."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from vtex_tracking import Accounts, ConfigurationError
from vtex_tracking.testing import FakeAccount, FakeOMS

from .._loop import run as run_loop
from ._parser import uvloop_choice
from ._signals import SIGNALS


def _fake_accounts(path: str, rate_limit: float | None) -> dict[str, FakeAccount]:
    """One fake store per account of an accounts file, with the credentials ``push
    --accounts`` will send (read the same way, ``*_env`` references included)."""
    stores = {}
    for name, account in Accounts.from_toml(path).items():
        credentials = account.credentials
        if credentials.app_key is None or credentials.app_token is None:
            raise ConfigurationError(
                f"{path}: {name}: the fake server tells stores apart by app key and token;"
                " give this account app_key and app_token (not a user token)"
            )
        limit = account.rate_limit if account.rate_limit is not None else rate_limit
        stores[name] = FakeAccount(credentials.app_key, credentials.app_token, limit)
    return stores


async def _serve(args: argparse.Namespace) -> int:
    try:
        stores = _fake_accounts(args.accounts, args.rate_limit) if args.accounts else {}
    except ConfigurationError as exc:
        print(f"vtex-tracking: {exc}", file=sys.stderr)
        return 2
    oms = FakeOMS(
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        fail_rate=args.fail_rate,
        latency=args.latency,
        accounts=stores,
        require_tracking_number=not args.apply_without_tracking_number,
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
    try:
        with _set_on_signals(stop):
            print(_banner(oms, args.accounts, stores), flush=True)
            await stop.wait()
    finally:
        await oms.stop()
    accepted = sum(len(bodies) for bodies in oms.updates.values())
    print(
        f"Stopped after {len(oms.requests)} requests: {accepted} updates accepted"
        f" for {len(oms.updates)} invoices.",
        flush=True,
    )
    if oms.unapplied:
        print(
            f"{len(oms.unapplied)} updates of {len(set(oms.unapplied))} invoices were answered 200"
            " but NOT applied, as VTEX does: their invoices had no tracking number yet (send it"
            " first: trackingNumber in the file; or --apply-without-tracking-number).",
            flush=True,
        )
    if stores:
        per_account = collections.Counter(r.account or "(unknown)" for r in oms.requests)
        counts = ", ".join(f"{name}: {n}" for name, n in sorted(per_account.items()))
        print(f"Requests per store: {counts or 'none'}.", flush=True)
    return 0


@contextlib.contextmanager
def _set_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on Ctrl-C, SIGTERM or Ctrl-Break (``SIGNALS``) while inside.

    Through the event loop's ``add_signal_handler`` where it has one. Windows' event loop has
    none (NotImplementedError): there a plain handler hands the signal to the loop, which wakes
    by itself (it set a wakeup fd when it started).
    """
    loop = asyncio.get_running_loop()
    try:
        for signum in SIGNALS:
            loop.add_signal_handler(signum, stop.set)
    except NotImplementedError:
        handler = _handled_by_signal_module(lambda: loop.call_soon_threadsafe(stop.set))
    else:
        handler = _handled_by_loop(loop)
    with handler:
        yield


@contextlib.contextmanager
def _handled_by_loop(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Remove the loop's handlers of ``SIGNALS`` on leaving."""
    try:
        yield
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def _handled_by_signal_module(callback: Callable[[], object]) -> Iterator[None]:
    """``callback()`` on any of ``SIGNALS`` while inside, through ``signal.signal``."""

    def handle(signum: int, frame: FrameType | None) -> None:
        callback()

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _banner(oms: FakeOMS, accounts_file: str | None, stores: dict[str, FakeAccount]) -> str:
    """What the server is and how to push to it."""
    head = f"FakeOMS (a fake VTEX tracking endpoint) listening on {oms.url}\n"
    if stores:
        # These credentials came from the user's file or environment: never printed.
        return (
            f"{head}It serves the {len(stores)} stores of {accounts_file}"
            f" ({', '.join(stores)}), told apart by their credentials. Try:\n"
            f"  vtex-tracking push --accounts {accounts_file} --base-url {oms.url} FILE\n"
            "Press Ctrl-C to stop."
        )
    # FakeOMS's own credentials are fixed test values, not secrets: printing them is the point.
    return (
        f"{head}It accepts app key {oms.app_key} with app token {oms.app_token}. Try:\n"
        f"  VTEX_ACCOUNT_NAME=fake VTEX_APP_KEY={oms.app_key}"
        f" VTEX_APP_TOKEN={oms.app_token} \\\n"
        f"    vtex-tracking push --base-url {oms.url} examples/sample-updates.jsonl\n"
        "Press Ctrl-C to stop."
    )


def run_fake_server(args: argparse.Namespace) -> int:
    """The ``fake-server`` command; returns the exit status (0 after Ctrl-C)."""
    try:
        return run_loop(_serve(args), use_uvloop=uvloop_choice(args))
    except ConfigurationError as exc:  # VTEX_TRACKING_UVLOOP: before anything started
        print(f"vtex-tracking: {exc}", file=sys.stderr)
        return 2
