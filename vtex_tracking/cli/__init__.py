"""The ``vtex-tracking`` command: push tracking files to VTEX, or run a fake VTEX server.

Built on the public API only (plus the SDK's converter for the failures file).
"""

from __future__ import annotations

import argparse
import logging
import sys

from vtex_tracking import __version__

from ._fake import run_fake_server
from ._push import EXIT_USAGE, environment_help, run_push


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also documents the options in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="vtex-tracking",
        description="Send tracking events to VTEX's 'Update order tracking status' endpoint.",
    )
    parser.add_argument("--version", action="version", version=f"vtex-tracking {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    push = commands.add_parser(
        "push",
        help="push tracking updates from JSONL or CSV files",
        description="Push tracking updates from JSONL (one update per line) or CSV (one event"
        " per row, grouped by invoice) files. Credentials default to the VTEX_* environment"
        f" variables ({environment_help()}).",
    )
    push.add_argument("files", nargs="+", metavar="FILE", help="input files; - reads stdin (JSONL)")
    push.add_argument("--format", choices=("jsonl", "csv"), help="override the format")
    push.add_argument("--account", help="VTEX account name [VTEX_ACCOUNT_NAME]")
    push.add_argument("--environment", help="VTEX environment [VTEX_ENVIRONMENT]")
    push.add_argument("--app-key", help="app key [VTEX_APP_KEY]")
    push.add_argument("--app-token", help="app token [VTEX_APP_TOKEN]")
    push.add_argument("--user-token", help="user token, instead of the key pair [VTEX_USER_TOKEN]")
    push.add_argument("--base-url", help="send to this URL instead of VTEX (a proxy)")
    push.add_argument("--concurrency", type=_positive_int, default=16, help="requests in flight")
    push.add_argument("--rate-limit", type=_positive_float, help="cap, in requests per second")
    push.add_argument("--failed", metavar="FILE", help="where failed updates go (JSONL)")
    push.add_argument("--dry-run", action="store_true", help="read and validate, send nothing")
    push.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    push.add_argument("--fake", action="store_true", help="push to an embedded fake VTEX server")
    push.add_argument("-v", "--verbose", action="store_true", help="log every request")

    fake = commands.add_parser("fake-server", help="run a fake VTEX tracking endpoint")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8080)
    fake.add_argument("--rate-limit", type=_positive_float, help="requests/s; 429 past it")
    fake.add_argument("--fail-rate", type=float, default=0.0, help="fraction answered 503")
    fake.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failures, 2 usage, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if getattr(args, "verbose", False):
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("vtex_tracking").setLevel(logging.DEBUG)
    if args.command == "push":
        return run_push(args)
    if args.command == "fake-server":
        return run_fake_server(args)
    return EXIT_USAGE  # pragma: no cover - argparse requires a command
