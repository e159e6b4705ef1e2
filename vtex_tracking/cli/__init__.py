"""The ``vtex-tracking`` command: push tracking files to VTEX, or run a fake VTEX server.

Built on the public API (``vtex_tracking`` and ``vtex_tracking.testing``) only.

    vtex-tracking push FILE... [options]      JSONL or CSV files, or - for stdin
    vtex-tracking fake-server [options]       a fake VTEX tracking endpoint, until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterator

from vtex_tracking import RetryPolicy, __version__

from ._fake import run_fake_server
from ._push import EXIT_USAGE, run_push
from ._report import Console, ConsoleLogHandler

__all__ = ["build_parser", "main"]

_PUSH_EPILOG = """\
Credentials default to the environment variables VTEX_ACCOUNT_NAME, VTEX_ENVIRONMENT,
VTEX_APP_KEY, VTEX_APP_TOKEN and VTEX_USER_TOKEN; prefer them to --app-token/--user-token,
which other users of the machine can see in the process list.

Many stores: --accounts FILE (a TOML table per account: app_key, app_token_env = "VAR" or
user_token_env, optional environment, base_url, rate_limit, max_concurrency), or
VTEX_ACCOUNTS=a,b with VTEX_<NAME>_APP_KEY and so on. Each line's accountName (a JSONL field,
a CSV column) picks its store; lines without one go to --account/VTEX_ACCOUNT_NAME.

exit status: 0 all confirmed, 1 some failed (see the failures file), 2 usage error or
unreadable input, 130 interrupted (Ctrl-C or SIGTERM; everything not confirmed is in the
failures file).
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _number(low: float, high: float | None = None, *, low_ok: bool) -> Callable[[str], float]:
    """An argparse type: a number above ``low`` (or equal, with ``low_ok``), at most ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < low or (value == low and not low_ok) or (high is not None and value > high):
            bounds = f"{'>=' if low_ok else '>'} {low:g}" + (f" and <= {high:g}" if high else "")
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--help`` documents every option."""
    parser = argparse.ArgumentParser(
        prog="vtex-tracking",
        description="Send tracking events to VTEX's 'Update order tracking status' endpoint.",
    )
    parser.add_argument("--version", action="version", version=f"vtex-tracking {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    push = commands.add_parser(
        "push",
        help="push tracking updates from JSONL or CSV files",
        description="Push tracking updates from JSONL files (one update per line: orderId,"
        " invoiceNumber, isDelivered, deliveredDate, events) or CSV files (one event per row;"
        " consecutive rows of an invoice form one update). Files are streamed.",
        epilog=_PUSH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    push.add_argument("files", nargs="+", metavar="FILE", help="input file; - reads stdin")
    push.add_argument(
        "--format", choices=("jsonl", "csv"), help="input format (default: by file extension)"
    )
    push.add_argument(
        "--account",
        help="VTEX account name [VTEX_ACCOUNT_NAME]; with --accounts, the store of lines"
        " without an accountName",
    )
    push.add_argument(
        "--accounts",
        metavar="FILE",
        help="TOML file of stores (credentials, limits) for lines with an accountName"
        " [VTEX_ACCOUNTS]",
    )
    push.add_argument("--environment", help="VTEX environment [VTEX_ENVIRONMENT]")
    push.add_argument("--app-key", help="app key [VTEX_APP_KEY]")
    push.add_argument("--app-token", help="app token [VTEX_APP_TOKEN]")
    push.add_argument("--user-token", help="user token, instead of the key [VTEX_USER_TOKEN]")
    target = push.add_mutually_exclusive_group()
    target.add_argument("--base-url", help="send to this URL instead of VTEX (a proxy, a fake)")
    target.add_argument(
        "--fake", action="store_true", help="push to an embedded fake VTEX (no credentials)"
    )
    push.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="most requests in flight over all stores (default: the SDK's, 512; each store's"
        " window grows to what its rate needs at its round trip)",
    )
    push.add_argument(
        "--rate-limit",
        type=_number(0, low_ok=False),
        metavar="R",
        help="at most R requests per second (default: adapt to VTEX's 429/503 answers)",
    )
    push.add_argument(
        "--timeout",
        type=_number(0, low_ok=False),
        metavar="S",
        help="seconds one attempt may take, body included (default: the SDK's, 30)",
    )
    push.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=RetryPolicy().max_attempts,
        metavar="N",
        help=f"attempts per update, retries included (default {RetryPolicy().max_attempts})",
    )
    push.add_argument(
        "--failed",
        metavar="FILE",
        help="write every update not confirmed here, as JSONL that push reads again"
        " (default: <first input>.failed.jsonl, only if something failed)",
    )
    push.add_argument("--dry-run", action="store_true", help="read and validate, send nothing")
    push.add_argument(
        "--json", action="store_true", help="end stdout with a one-line JSON summary"
    )
    push.add_argument(
        "-v", "--verbose", action="store_true", help="log requests, show every failure"
    )

    fake = commands.add_parser(
        "fake-server",
        help="run a fake VTEX tracking endpoint until Ctrl-C",
        description="Run FakeOMS, a fake VTEX tracking endpoint, to try an integration"
        " without an account. It prints its URL and the test credentials it accepts.",
    )
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on")
    fake.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free)"
    )
    fake.add_argument(
        "--rate-limit",
        type=_number(0, low_ok=False),
        metavar="R",
        help="answer 429 past R/s (per store with --accounts, unless the file sets rate_limit)",
    )
    fake.add_argument(
        "--accounts",
        metavar="FILE",
        help="serve every store of this TOML file (the one push --accounts reads), each with"
        " its own credentials and limit, told apart by credentials",
    )
    fake.add_argument(
        "--fail-rate",
        type=_number(0, 1, low_ok=True),
        default=0.0,
        metavar="F",
        help="fraction of requests answered 503 (0 to 1)",
    )
    fake.add_argument(
        "--latency",
        type=_number(0, low_ok=True),
        default=0.0,
        metavar="S",
        help="seconds before each answer",
    )
    return parser


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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help/--version
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "fake-server":
        return run_fake_server(args)
    console = Console(verbose=args.verbose)
    with _logging(console, args.verbose):
        return run_push(args, console)
