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
import difflib
import os
import queue
import time

from vtex_tracking import (
    ConfigurationError,
    Journal,
    PushResult,
    PushStoppedError,
    PushStream,
    TrackingNumberUpdate,
    UnchangedState,
    ValidationError,
)

from .._input._dates import ISO
from .._input._readers import InputError, ReadOptions, Record, check_inputs, read_inputs
from .._input._records import update_record
from .._loop import run as run_loop
from .._models import AnyUpdate
from ._checks import build_checks, describe
from ._clients import has_registry, open_client
from ._feed import Feed
from ._hints import hint_for, in_cli_terms
from ._parser import uvloop_choice
from ._report import Console, FailuresFile, InputShare, Progress, Tally
from ._retry import retry_command
from ._signals import EXIT_INTERRUPTED, Interrupts
from ._summary import Retry, print_json_error, print_summary

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
        # Source (file:line) and bytes of each update handed to the engine, by the engine's
        # index, until its result arrives: bounded by the engine's read-ahead.
        self.sources: dict[int, tuple[str, int]] = {}
        # How far through the input files: for the progress's percentage and ETA.
        self.share = InputShare(args.files)
        # The record number in the failures file of each update the engine reported failed,
        # by the engine's index, in case a newer update of its invoice is confirmed later
        # (``PushResult.supersedes``): as many entries as failures, no more.
        self.failed_records: dict[int, int] = {}
        # The store of updates without an accountName (None: there is none), once known.
        self.default_account: str | None = None
        # --dry-run with many stores: every store the client has credentials for.
        self.stores: frozenset[str] | None = None
        # What the client refuses before sending; --dry-run refuses the same.
        self.checks = build_checks(args)

    def take(self, record: Record) -> int:
        """Show a record's notice, once, even when quiet; the JSON summary lists it too.
        Returns the record's bytes, to count as done (``share.finish``) with its result."""
        if record.notice is not None:
            self.console.warn(record.notice)
            self.tally.notices.append(record.notice)
        return self.share.take(record.offset)

    def malformed(self, record: Record) -> None:
        """A record that could not be read: reported, counted and kept raw."""
        assert record.error is not None
        self.tally.add("invalid", ok=False)
        self.failures.add({"source": record.source, "raw": record.raw, "error": record.error})
        self.console.failure(f"{record.source}: {record.error}")

    def failed(
        self, update: AnyUpdate, source: str, outcome: str, error: str, account: str | None
    ) -> int:
        """An update that was not confirmed: counted and written in the input format (with
        its accountName, so that pushing the failures file sends it to the same store).
        Returns its record number in the failures file."""
        self.tally.add(outcome, ok=False, account=account)
        return self.failures.add({**update_record(update), "source": source, "error": error})

    def result(self, result: PushResult) -> None:
        """Account for one result of the push engine."""
        source, size = self.sources.pop(result.index, ("?", 0))
        self.share.finish(size)
        if result.ok:
            self.tally.add(result.outcome, ok=True, account=result.account)
            for index in result.supersedes:
                # VTEX holds this newer update of the invoice now: resending the older one
                # that failed would roll the invoice back. It still counts as failed.
                number = self.failed_records.pop(index, None)
                if number is not None:
                    self.failures.leave_out(number)
            return
        error = result.error
        if isinstance(error, PushStoppedError):
            # Consequences of a stop: counted, kept, not echoed one by one.
            if error.reason == "auth":
                self.tally.stopped_for_auth = True
            outcome = "cancelled in flight" if error.in_flight else "not sent"
            number = self.failed(result.update, source, outcome, str(error), result.account)
            self.failed_records[result.index] = number
            return
        # The client's checks name the SDK's fields and options: tell them in the input's.
        text = describe(error) if isinstance(error, ValidationError) else in_cli_terms(str(error))
        hint = hint_for(error)
        if hint is not None:
            self.tally.add_hint(*hint)
            text = f"{text} {hint[1]}"
        number = self.failed(result.update, source, result.outcome, text, result.account)
        self.failed_records[result.index] = number
        update = result.update
        self.console.failure(f"{source}: {update.order_id}/{update.invoice_number}: {text}")

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

    async def __anext__(self) -> AnyUpdate:
        run = self._run
        while True:
            record = await run.feed.aget()
            if record is None:
                raise StopAsyncIteration
            size = run.take(record)
            if record.update is None:
                run.malformed(record)
                run.share.finish(size)
                continue
            if record.update.account_name is None and run.default_account is None:
                _refuse(run, record.source, record.update, _no_default(), None)
                run.share.finish(size)
                continue
            run.sources[self._index] = (record.source, size)
            self._index += 1
            return record.update


def _no_default() -> str:
    return (
        "accountName: missing, and there is no default account (give each line an accountName,"
        " or pass --account or set VTEX_ACCOUNT_NAME)"
    )


def _refuse(
    run: _Run, source: str, update: AnyUpdate, error: str, account: str | None
) -> None:
    """An update refused before sending (as a push would refuse it): counted, kept, shown."""
    run.failed(update, source, "invalid", error, account)
    run.console.failure(f"{source}: {error}")


def _dry_check(run: _Run, source: str, update: AnyUpdate) -> None:
    """``--dry-run``: refuse what a push would refuse without sending it (a store it has no
    credentials for, the client's checks), else count it valid (under its store)."""
    account = update.account_name or run.default_account
    stores = run.stores
    if stores is not None and update.account_name is None and run.default_account is None:
        _refuse(run, source, update, _no_default(), None)
        return
    if stores is not None and account is not None and account not in stores:
        close = difflib.get_close_matches(account, sorted(stores), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        error = f"accountName: no credentials for account {account!r}{hint}"
        _refuse(run, source, update, error, account)
        return
    account = account if stores is not None else None
    try:
        if isinstance(update, TrackingNumberUpdate):
            run.checks.check_tracking_number(update)
        else:
            run.checks.check(update)
            if update.tracking is not None:
                number = TrackingNumberUpdate(
                    update.order_id, update.invoice_number, update.tracking
                )
                run.checks.check_tracking_number(number)
    except ValidationError as exc:
        _refuse(run, source, update, describe(exc), account)
        return
    run.tally.add("valid", ok=True, account=account)


async def _learn_stores(run: _Run) -> None:
    """``--dry-run`` with many stores: build the client a push would build (so a bad accounts
    file, or missing credentials, is the same exit 2), send nothing, note what it can reach."""
    async with open_client(run.args, run.console) as client:
        run.default_account = client.default_account
        run.stores = frozenset([*(client.accounts or ()), client.config.account_name])
        run.tally.multi_account = client.accounts is not None


async def _push(run: _Run) -> None:
    args = run.args
    loop = asyncio.get_running_loop()
    async with open_client(args, run.console) as client:
        run.default_account = client.default_account
        run.tally.multi_account = client.accounts is not None
        run.feed.attach(loop)
        run.feed.start()
        if run.interrupts.stop_sending:
            return
        stream = client.push(
            _Updates(run),
            concurrency=args.concurrency,
            rate_limit=args.rate_limit,
            journal=_journal(args),
            skip_unchanged=UnchangedState(args.skip_unchanged, force=args.force)
            if args.skip_unchanged
            else None,
            merge_snapshots=args.merge_snapshots,
        )

        def on_interrupt() -> None:
            loop.call_soon_threadsafe(run.stop, stream)

        run.interrupts.on_first = on_interrupt
        run.interrupts.wake_loop(loop)
        progress = Progress(run.console, run.tally, stream.progress, run.share)
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


def _journal(args: argparse.Namespace) -> Journal | None:
    """``--journal``: named after the input files (path, size, modification time), so a
    journal is not used for an input that changed; stdin cannot be told apart."""
    if not args.journal:
        return None
    if "-" in args.files:
        return Journal(args.journal)
    names = []
    for name in args.files:
        stat = os.stat(name)
        names.append(f"{os.path.abspath(name)} ({stat.st_size} bytes, mtime {stat.st_mtime_ns})")
    return Journal(args.journal, input_id="; ".join(names))


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
        run.take(record)
        if record.update is None:
            run.malformed(record)
        elif keep:
            account = record.update.account_name or run.default_account
            run.failed(
                record.update, record.source, "not sent", "not sent: push interrupted", account
            )
        else:
            _dry_check(run, record.source, record.update)


def _cannot_start(args: argparse.Namespace, console: Console, kind: str, exc: Exception) -> int:
    """A run that cannot start: the reason on stderr (and as JSON on stdout with ``--json``)."""
    message = in_cli_terms(str(exc))
    console.warn(f"vtex-tracking: {message}")
    if args.json:
        print_json_error(kind, message)
    return EXIT_USAGE


def run_push(args: argparse.Namespace, console: Console) -> int:
    """The ``push`` command; returns the exit status: 0 when no update failed, 1 when some
    did, 2 when the run could not start, 130 when interrupted.

    Exit 1 stays tied to "some update failed", including failed updates that a newer update
    of their invoice, confirmed later in the run, made moot (they are left out of the
    failures file: resending them would roll the invoice back). They did fail, and scripts
    that read 1 as "look at the failures" keep working; whether anything is left to resend
    is the failures file's count (``failures_file`` in ``--json``: None when nothing is).
    """
    started = time.monotonic()
    if args.force and not args.skip_unchanged:
        return _cannot_start(
            args, console, "usage", ValueError("--force applies to --skip-unchanged only")
        )
    try:
        options = ReadOptions(args.encoding, args.date_format)
        inputs = check_inputs(args.files, args.format, options)
        failures = FailuresFile(args.failed, args.files)
    except InputError as exc:
        return _cannot_start(args, console, "input", exc)
    with Interrupts() as interrupts:
        run = _Run(args, console, Feed(read_inputs(inputs)), failures, interrupts)
        try:
            if args.dry_run:
                if has_registry(args):
                    run_loop(_learn_stores(run), use_uvloop=uvloop_choice(args))
                run.feed.start()
                _drain(run, keep=False)
            else:
                run_loop(_push(run), use_uvloop=uvloop_choice(args))
                if interrupts.stop_sending:
                    _drain(run, keep=True)
            failures.finish()
            if failures.rewrite_error is not None:
                console.warn(
                    f"vtex-tracking: {failures.path}: could not take out the failed updates"
                    f" made moot by a newer update of their invoice ({failures.rewrite_error}):"
                    " the file still holds them, and resending those would roll their"
                    " invoices back to an older history"
                )
        except ConfigurationError as exc:  # raised before anything was read or sent
            return _cannot_start(args, console, "configuration", exc)
        finally:
            run.feed.close()
            failures.close()
        run.tally.interrupted = interrupts.stop_sending
        reformatted = args.encoding is not None or args.date_format != ISO
        command, needs = retry_command(args, failures.path)
        note = " (UTF-8 JSONL, ISO dates: no --encoding or --date-format)" if reformatted else ""
        print_summary(
            run.tally,
            failures,
            time.monotonic() - started,
            as_json=args.json,
            retry=Retry(command, needs, note),
        )
    if run.tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if run.tally.failed == 0 else EXIT_FAILURES
