"""``vtex-tracking push``: stream files into VTEX through the SDK's bulk engine.

Every input record ends up either confirmed by the server or in the failures file: bad lines
at once, refused or failed updates as their results arrive, and on Ctrl-C/SIGTERM everything
not confirmed, including the input not read yet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from vtex_tracking import AsyncTrackingClient, ConfigurationError, TrackingUpdate
from vtex_tracking.testing import FakeOMS

from ._readers import InputError, Line, read_inputs
from ._report import FailuresFile, Progress, print_summary

#: Failures echoed to stderr one by one; the rest are only counted (and in the file).
MAX_FAILURES_SHOWN = 20

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def default_failures_path(files: list[str]) -> str:
    """``<first input stem>.failed.jsonl`` in the current directory."""
    stem = "stdin" if files[0] == "-" else Path(files[0]).name.split(".")[0]
    return f"{stem}.failed.jsonl"


class _Run:
    """Counters and outputs of one push command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.failures = FailuresFile(args.failed or default_failures_path(args.files))
        self.outcomes: Counter[str] = Counter()
        self.total = 0
        self.succeeded = 0
        self.shown = 0
        self.sources: dict[int, str] = {}
        self.interrupted = False

    def report_failure(self, source: str, message: str) -> None:
        if self.shown < MAX_FAILURES_SHOWN or self.args.verbose:
            print(f"{source}: {message}", file=sys.stderr)
        elif self.shown == MAX_FAILURES_SHOWN:
            print("(more failures: see the failures file)", file=sys.stderr)
        self.shown += 1

    def malformed(self, line: Line) -> None:
        self.total += 1
        self.outcomes["invalid"] += 1
        assert line.error is not None
        self.failures.add_malformed(line.source, line.raw, line.error)
        self.report_failure(line.source, line.error)

    def updates(self, lines: Iterator[Line]) -> Iterator[TrackingUpdate]:
        """The valid updates, for the engine; bad lines are recorded on the way."""
        index = 0
        for line in lines:
            if line.update is None:
                self.malformed(line)
                continue
            self.sources[index] = line.source
            index += 1
            yield line.update

    def not_sent(self, lines: Iterator[Line]) -> None:
        """After an interruption: the input not read yet goes to the failures file too."""
        for line in lines:
            if line.update is None:
                self.malformed(line)
            else:
                self.total += 1
                self.outcomes["not sent"] += 1
                self.failures.add_update(line.update, "not sent: the push was interrupted")


def _client_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    for name in ("account", "environment", "app_key", "app_token", "user_token", "base_url"):
        value = getattr(args, name)
        if value:
            options["account_name" if name == "account" else name] = value
    options["max_concurrency"] = args.concurrency
    return options


@contextlib.asynccontextmanager
async def _open_client(args: argparse.Namespace) -> AsyncIterator[AsyncTrackingClient]:
    if args.fake:
        async with FakeOMS() as oms, AsyncTrackingClient(
            "fake", oms.app_key, oms.app_token, base_url=oms.url, max_concurrency=args.concurrency
        ) as client:
            print(f"Pushing to an embedded fake VTEX server at {oms.url}", file=sys.stderr)
            yield client
        return
    async with AsyncTrackingClient.from_env(**_client_options(args)) as client:
        yield client


async def _push(args: argparse.Namespace, run: _Run, lines: Iterator[Line]) -> None:
    async with _open_client(args) as client:
        stream = client.push(
            run.updates(lines), concurrency=args.concurrency, rate_limit=args.rate_limit
        )
        progress = Progress(stream.progress, enabled=True)
        loop = asyncio.get_running_loop()

        def interrupt() -> None:
            if not run.interrupted:
                run.interrupted = True
                print("\nInterrupted: stopping; in-flight requests are cancelled.", file=sys.stderr)
                stream.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupt)
        try:
            async with stream:
                async for result in stream:
                    run.total += 1
                    run.outcomes[result.outcome] += 1
                    source = run.sources.pop(result.index, "?")
                    if result.ok:
                        run.succeeded += 1
                    else:
                        assert isinstance(result.update, TrackingUpdate)
                        run.failures.add_update(result.update, str(result.error))
                        run.report_failure(
                            source,
                            f"{result.update.order_id} / {result.update.invoice_number}:"
                            f" {result.error}",
                        )
                    progress.tick()
            for result in stream.unfinished:
                run.total += 1
                run.outcomes[result.outcome] += 1
                if result.ok:
                    run.succeeded += 1
                else:
                    run.failures.add_update(result.update, str(result.error))
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            progress.close()
    if run.interrupted:
        run.not_sent(lines)


def _dry_run(run: _Run, lines: Iterator[Line]) -> None:
    for update in run.updates(lines):
        run.total += 1
        run.succeeded += 1
        run.outcomes["valid"] += 1
        del update
    run.sources.clear()


def run_push(args: argparse.Namespace) -> int:
    """The ``push`` command; returns the exit status."""
    run = _Run(args)
    started = time.monotonic()
    try:
        lines = read_inputs(args.files, args.format)
        first = next(lines, None)  # surfaces a missing file before anything is sent
        lines = _chain(first, lines)
        if args.dry_run:
            _dry_run(run, lines)
        else:
            asyncio.run(_push(args, run, lines))
    except InputError as exc:
        print(f"vtex-tracking: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigurationError as exc:
        print(f"vtex-tracking: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        run.failures.close()
    print_summary(
        total=run.total,
        succeeded=run.succeeded,
        outcomes=run.outcomes,
        elapsed=time.monotonic() - started,
        failures=run.failures,
        interrupted=run.interrupted,
        as_json=args.json,
    )
    if run.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if run.succeeded == run.total else EXIT_FAILURES


def _chain(first: Line | None, rest: Iterator[Line]) -> Iterator[Line]:
    if first is not None:
        yield first
        yield from rest


def environment_help() -> str:
    """Which credentials the environment provides (names only, never values)."""
    names = ("VTEX_ACCOUNT_NAME", "VTEX_APP_KEY", "VTEX_APP_TOKEN", "VTEX_USER_TOKEN")
    return ", ".join(f"{n}={'set' if os.environ.get(n) else 'unset'}" for n in names)
