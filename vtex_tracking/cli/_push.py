"""``vtex-tracking push``: stream input files into VTEX through the SDK's push engine.

Every input record ends up either confirmed by the server or in the failures file: malformed
records as they are read, refused or failed updates as their results arrive, and after Ctrl-C
or SIGTERM everything not confirmed, including the input not read yet (see ``_signals`` for the
one exception, a second Ctrl-C, which the summary then reports precisely).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs

from vtex_tracking import (
    Accounts,
    AsyncTrackingClient,
    ConfigurationError,
    PushResult,
    PushStoppedError,
    PushStream,
    RetryPolicy,
    TrackingUpdate,
)
from vtex_tracking.testing import FakeAccount, FakeOMS

from ._feed import Feed
from ._readers import InputError, Record, check_inputs, read_inputs
from ._records import update_record
from ._report import Console, FailuresFile, Progress, Tally, print_summary
from ._signals import EXIT_INTERRUPTED, Interrupts

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
#: Seconds the main thread waits for a record before checking for a second Ctrl-C.
_DRAIN_POLL_S = 0.1


class _Run:
    """One ``push`` command: its input feed, counts, failures file and interrupts."""

    def __init__(
        self,
        args: argparse.Namespace,
        console: Console,
        feed: Feed,
        failures: FailuresFile,
        interrupts: Interrupts,
    ) -> None:
        self.args = args
        self.console = console
        self.feed = feed
        self.failures = failures
        self.interrupts = interrupts
        self.tally = Tally(dry_run=args.dry_run)
        # Source (file:line) of each update handed to the engine, by the engine's index,
        # until its result arrives: bounded by the engine's read-ahead.
        self.sources: dict[int, str] = {}
        # The store of updates without an accountName (None: there is none), once known.
        self.default_account: str | None = None

    def malformed(self, record: Record) -> None:
        """A record that could not be read: reported, counted and kept raw."""
        assert record.error is not None
        self.tally.add("invalid", ok=False)
        self.failures.add({"source": record.source, "raw": record.raw, "error": record.error})
        self.console.failure(f"{record.source}: {record.error}")

    def failed(
        self, update: TrackingUpdate, source: str, outcome: str, error: str, account: str | None
    ) -> None:
        """An update that was not confirmed: counted and written in the input format (with
        its accountName, so that pushing the failures file sends it to the same store)."""
        self.tally.add(outcome, ok=False, account=account)
        self.failures.add({**update_record(update), "source": source, "error": error})

    def result(self, result: PushResult) -> None:
        """Account for one result of the push engine."""
        source = self.sources.pop(result.index, "?")
        if result.ok:
            self.tally.add(result.outcome, ok=True, account=result.account)
            return
        error = result.error
        if isinstance(error, PushStoppedError):
            # Consequences of a stop: counted, kept, not echoed one by one.
            if error.reason == "auth":
                self.tally.stopped_for_auth = True
            outcome = "cancelled in flight" if error.in_flight else "not sent"
            self.failed(result.update, source, outcome, str(error), result.account)
            return
        self.failed(result.update, source, result.outcome, str(error), result.account)
        update = result.update
        self.console.failure(f"{source}: {update.order_id}/{update.invoice_number}: {error}")

    def stop(self, stream: PushStream) -> None:
        """The first Ctrl-C/SIGTERM, in the event loop: stop sending."""
        self.console.note(
            "\nInterrupted: stopping; in-flight requests are cancelled and everything not"
            " confirmed goes to the failures file (Ctrl-C again to stop reading the input)."
        )
        stream.stop()


class _Updates:
    """The valid updates of the feed, for the push engine; malformed records, and updates
    that name no store when there is no default one, are recorded on the way, so the
    engine's indexes count updates only."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._index = 0

    def __aiter__(self) -> _Updates:
        return self

    async def __anext__(self) -> TrackingUpdate:
        run = self._run
        while True:
            record = await run.feed.aget()
            if record is None:
                raise StopAsyncIteration
            if record.update is None:
                run.malformed(record)
                continue
            if record.update.account_name is None and run.default_account is None:
                error = f"accountName: missing, and there is no default account ({_NO_DEFAULT})"
                run.failed(record.update, record.source, "invalid", error, None)
                run.console.failure(f"{record.source}: {error}")
                continue
            run.sources[self._index] = record.source
            self._index += 1
            return record.update


#: Where a default store comes from, for messages.
_NO_DEFAULT = "give each line an accountName, or pass --account or set VTEX_ACCOUNT_NAME"


class _AnySecret(Mapping[str, str]):
    """An environment in which every variable is set: ``--fake`` reads an accounts file for
    its store names and limits only, without the secrets its ``*_env`` keys point to (the
    fake stores get test credentials of their own)."""

    def __getitem__(self, name: str) -> str:
        return "not-a-secret"

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, name: object) -> bool:
        return True


def _registry(args: argparse.Namespace) -> Accounts | None:
    """The stores of this run: ``--accounts FILE``, else ``VTEX_ACCOUNTS`` (with the
    ``VTEX_<NAME>_*`` variables), else None (one store)."""
    listed = os.environ.get("VTEX_ACCOUNTS", "")
    if args.accounts:
        registry = Accounts.from_toml(args.accounts, environ=_AnySecret() if args.fake else None)
    elif listed and args.fake:  # the store names only: the fake stores make their own keys
        names = [name.strip() for name in listed.split(",") if name.strip()]
        registry = Accounts.from_mapping({n: {"app_key": "-", "app_token": "-"} for n in names})
    elif listed:
        registry = Accounts.from_env()
    else:
        return None
    if args.base_url:  # every store goes there (a proxy, a fake server)
        moved = {name: attrs.evolve(a, base_url=args.base_url) for name, a in registry.items()}
        registry = Accounts(moved)
    return registry


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace, console: Console) -> AsyncIterator[AsyncTrackingClient]:
    """The client for this run: VTEX (credentials from options or environment; other stores
    from ``--accounts``) or, with ``--fake``, an embedded FakeOMS with test credentials."""
    settings: dict[str, Any] = {"retry": RetryPolicy(max_attempts=args.max_attempts)}
    if args.concurrency is not None:
        settings["max_concurrency"] = args.concurrency
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    registry = _registry(args)
    default = args.account or os.environ.get("VTEX_ACCOUNT_NAME") or None
    if args.fake:
        async with _fake(registry, default, settings, console) as client:
            yield client
        return
    if registry is not None and (default is None or default in registry):
        client = AsyncTrackingClient.from_accounts(registry, default=default, **settings)
        async with client:
            yield client
        return
    options = dict(settings, accounts=registry)
    for option, name in (
        ("account", "account_name"),
        ("environment", "environment"),
        ("app_key", "app_key"),
        ("app_token", "app_token"),
        ("user_token", "user_token"),
        ("base_url", "base_url"),
    ):
        value = getattr(args, option)
        if value:
            options[name] = value
    async with AsyncTrackingClient.from_env(**options) as client:
        yield client


@contextlib.asynccontextmanager
async def _fake(
    registry: Accounts | None, default: str | None, settings: dict[str, Any], console: Console
) -> AsyncIterator[AsyncTrackingClient]:
    """``--fake``: an embedded FakeOMS; with an accounts file, one fake store per account
    (test credentials, answering 429 past the account's ``rate_limit`` as VTEX would)."""
    if registry is None:
        async with FakeOMS() as oms, AsyncTrackingClient(
            "fake", oms.app_key, oms.app_token, base_url=oms.url, **settings
        ) as client:
            console.note(f"--fake: pushing to an embedded fake VTEX at {oms.url}, not to VTEX.")
            yield client
        return
    names = list(registry) + ([default] if default and default not in registry else [])
    limits = {name: registry.get(name) for name in names}
    stores = {
        name: FakeAccount(
            f"vtexappkey-{name}-fake",
            f"fake-token-{name}",
            account.rate_limit if account is not None else None,
        )
        for name, account in limits.items()
    }
    async with FakeOMS(accounts=stores) as oms:
        fakes = Accounts.from_mapping(
            {
                name: {
                    "app_key": store.app_key,
                    "app_token": store.app_token,
                    "base_url": oms.url,
                    "rate_limit": getattr(limits[name], "rate_limit", None),
                    "max_concurrency": getattr(limits[name], "max_concurrency", None),
                }
                for name, store in stores.items()
            }
        )
        async with AsyncTrackingClient.from_accounts(
            fakes, default=default, **settings
        ) as client:
            console.note(
                f"--fake: pushing to {len(stores)} fake stores at {oms.url}, not to VTEX."
            )
            yield client


async def _push(run: _Run) -> None:
    args = run.args
    loop = asyncio.get_running_loop()
    async with _client(args, run.console) as client:
        run.default_account = client.default_account
        run.tally.multi_account = client.accounts is not None
        run.feed.attach(loop)
        run.feed.start()
        if run.interrupts.stop_sending:
            return
        stream = client.push(
            _Updates(run), concurrency=args.concurrency, rate_limit=args.rate_limit
        )

        def on_interrupt() -> None:
            loop.call_soon_threadsafe(run.stop, stream)

        run.interrupts.on_first = on_interrupt
        run.interrupts.wake_loop(loop)
        progress = Progress(run.console, run.tally, stream.progress)
        ticker = loop.create_task(progress.run())
        try:
            async with stream:
                async for result in stream:
                    run.result(result)
            for result in stream.unfinished:
                run.result(result)
        finally:
            run.interrupts.on_first = None
            run.interrupts.unwake_loop(loop)
            run.feed.detach()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            progress.close()
            run.tally.requests = stream.progress.requests
            run.tally.throttled = stream.progress.throttled
            run.tally.add_account_counts(stream.progress)


def _drain(run: _Run, *, keep: bool) -> None:
    """Take the rest of the input in the main thread: with ``keep``, into the failures file
    (after a stop); otherwise to validate it (``--dry-run``). A Ctrl-C (a second one, after a
    stop) ends it; records already read are still taken, then the position is noted."""
    tally = run.tally
    if keep:
        run.feed.start()  # in case the stop came before the push started
    while True:
        stopping = run.interrupts.count >= (2 if keep else 1)
        try:
            record = run.feed.get_nowait() if stopping else run.feed.get(_DRAIN_POLL_S)
        except queue.Empty:
            if not stopping:
                continue
            tally.reading_stopped, tally.unread_after = True, run.feed.last
            run.console.note(f"Stopped reading the input after {run.feed.last or 'nothing'}.")
            return
        if record is None:
            return
        if record.update is None:
            run.malformed(record)
        elif keep:
            account = record.update.account_name or run.default_account
            run.failed(
                record.update, record.source, "not sent", "not sent: push interrupted", account
            )
        else:
            tally.add("valid", ok=True)


def run_push(args: argparse.Namespace, console: Console) -> int:
    """The ``push`` command; returns the exit status."""
    started = time.monotonic()
    try:
        inputs = check_inputs(args.files, args.format)
        failures = FailuresFile(args.failed, args.files)
    except InputError as exc:
        console.note(f"vtex-tracking: {exc}")
        return EXIT_USAGE
    with Interrupts() as interrupts:
        run = _Run(args, console, Feed(read_inputs(inputs)), failures, interrupts)
        try:
            if args.dry_run:
                run.feed.start()
                _drain(run, keep=False)
            else:
                asyncio.run(_push(run))
                if interrupts.stop_sending:
                    _drain(run, keep=True)
            failures.finish()
        except ConfigurationError as exc:  # raised before anything was read or sent
            console.note(f"vtex-tracking: {exc}")
            return EXIT_USAGE
        finally:
            run.feed.close()
            failures.close()
        run.tally.interrupted = interrupts.stop_sending
        print_summary(run.tally, failures, time.monotonic() - started, as_json=args.json)
    if run.tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if run.tally.failed == 0 else EXIT_FAILURES
