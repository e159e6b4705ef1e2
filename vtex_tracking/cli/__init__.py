"""The ``vtex-tracking`` command: push tracking files to VTEX, or run a fake VTEX server.

Built on the public API (``vtex_tracking`` and ``vtex_tracking.testing``) only.

    vtex-tracking push FILE... [options]      JSONL or CSV files, or - for stdin
    vtex-tracking check FILE... [options]     what VTEX holds for a sample of their invoices
    vtex-tracking fake-server [options]       a fake VTEX tracking endpoint, until Ctrl-C

The grammar is ``_parser``'s; ``_push`` runs a push, ``_fake`` the fake server.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from ._check import run_check
from ._fake import run_fake_server
from ._parser import UsageError, build_parser, wants_json
from ._push import EXIT_USAGE, run_push
from ._report import Console, ConsoleLogHandler
from ._summary import print_json_error

__all__ = ["build_parser", "main"]


@contextlib.contextmanager
def _logging(console: Console, verbose: bool) -> Iterator[None]:
    """Route the SDK's logger to the console for one run: everything with ``-v``, otherwise
    errors only (retries are counted in the progress and the summary instead)."""
    logger = logging.getLogger("vtex_tracking")
    handler = ConsoleLogHandler(console)
    handler.setLevel(logging.DEBUG if verbose else logging.ERROR)
    level = logger.level
    if verbose:
        logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status:
    0 all confirmed, 1 some failed, 2 usage error or unreadable input, 130 interrupted."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:  # argparse already told stderr
        if wants_json(argv):
            print_json_error("usage", str(exc))
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "fake-server":
        return run_fake_server(args)
    console = Console(verbose=args.verbose, quiet=args.quiet)
    with _logging(console, args.verbose):
        if args.command == "check":
            return run_check(args, console)
        return run_push(args, console)
