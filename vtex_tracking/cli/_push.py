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
import queue
import time
from collections.abc import AsyncIterator
from typing import Any

from vtex_tracking import (
    AsyncTrackingClient,
    ConfigurationError,
    PushResult,
    PushStoppedError,
    PushStream,
    RetryPolicy,
    TrackingUpdate,
)
from vtex_tracking.testing import FakeOMS

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

    def malformed(self, record: Record) -> None:
        """A record that could not be read: reported, counted and kept raw."""
        assert record.error is not None
        self.tally.add("invalid", ok=False)
        self.failures.add({"source": record.source, "raw": record.raw, "error": record.error})
        self.console.failure(f"{record.source}: {record.error}")

    def failed(self, update: TrackingUpdate, source: str, outcome: str, error: str) -> None:
        """An update that was not confirmed: counted and written in the input format."""
        self.tally.add(outcome, ok=False)
        self.failures.add({**update_record(update), "source": source, "error": error})

    def result(self, result: PushResult) -> None:
        """Account for one result of the push engine."""
        source = self.sources.pop(result.index, "?")
        if result.ok:
            self.tally.add(result.outcome, ok=True)
            return
        error = result.error
        if isinstance(error, PushStoppedError):
            # Consequences of a stop: counted, kept, not echoed one by one.
            if error.reason == "auth":
                self.tally.stopped_for_auth = True
            outcome = "cancelled in flight" if error.in_flight else "not sent"
            self.failed(result.update, source, outcome, str(error))
            return
        self.failed(result.update, source, result.outcome, str(error))
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
    """The valid updates of the feed, for the push engine; malformed records are recorded on
    the way, so the engine's indexes count updates only."""

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
            run.sources[self._index] = record.source
            self._index += 1
            return record.update


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace, console: Console) -> AsyncIterator[AsyncTrackingClient]:
    """The client for this run: VTEX (credentials from options or environment) or, with
    ``--fake``, an embedded FakeOMS with its own test credentials."""
    settings: dict[str, Any] = {
        "max_concurrency": args.concurrency,
        "retry": RetryPolicy(max_attempts=args.max_attempts),
    }
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    if args.fake:
        async with FakeOMS() as oms, AsyncTrackingClient(
            "fake", oms.app_key, oms.app_token, base_url=oms.url, **settings
        ) as client:
            console.note(f"--fake: pushing to an embedded fake VTEX at {oms.url}, not to VTEX.")
            yield client
        return
    options = dict(settings)
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


async def _push(run: _Run) -> None:
    args = run.args
    loop = asyncio.get_running_loop()
    async with _client(args, run.console) as client:
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
            run.failed(record.update, record.source, "not sent", "not sent: push interrupted")
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
