"""The command line's grammar: every option, its help, and how a usage error is raised."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from typing import NoReturn

from vtex_tracking import RetryPolicy, __version__

from .._input._dates import DATE_FORMATS, ISO
from .._input._encoding import check_encoding
from ._checks import add_options as add_check_options

_DESCRIPTION = """\
Send tracking events to VTEX's 'Update order tracking status' endpoint from JSONL or CSV
files, or run a fake VTEX server to try an integration without an account.

  vtex-tracking push FILE... [options]    push the updates of JSONL or CSV files
  vtex-tracking check FILE... [options]   what VTEX holds for a sample of their invoices
  vtex-tracking fake-server [options]     a fake VTEX tracking endpoint, until Ctrl-C

'vtex-tracking push --help' lists push's options, with examples.
"""

_PUSH_EPILOG = """\
Credentials default to the environment variables VTEX_ACCOUNT_NAME, VTEX_ENVIRONMENT,
VTEX_APP_KEY, VTEX_APP_TOKEN and VTEX_USER_TOKEN; prefer them to --app-token/--user-token,
which other users of the machine can see in the process list.

Many stores: --accounts FILE (a TOML table per account: app_key, app_token_env = "VAR" or
user_token_env, optional environment, base_url, rate_limit, max_concurrency), or
VTEX_ACCOUNTS=a,b with VTEX_<NAME>_APP_KEY and so on. Each line's accountName (a JSONL field,
a CSV column) picks its store; lines without one go to --account/VTEX_ACCOUNT_NAME.

Input is UTF-8 (a BOM is accepted). A file that is not is read as cp1252 (Windows-1252) when
that cannot change the meaning of lines already read, and a notice says so; --encoding ENC
reads every file as ENC. The failures file is always UTF-8 JSONL with ISO dates: push it
without --encoding or --date-format.

examples:
  # a CSV saved by Excel on Brazilian Windows ("CSV (separado por vírgulas)")
  vtex-tracking push eventos.csv --encoding cp1252 --date-format dd/mm/yyyy
  # from cron: one JSON object on stdout, no progress, failures in a known place
  vtex-tracking push eventos.jsonl --json -q --failed /var/spool/vtex/failed.jsonl
  # retry exactly what failed last time
  vtex-tracking push eventos.failed.jsonl
  # check a file, and each line's store, without sending anything
  vtex-tracking push eventos.csv --accounts lojas.toml --dry-run
  # a long push that survives a crash: run the same command again to resume
  vtex-tracking push milhao.jsonl --journal milhao.journal
  # the daily export of active shipments: send only what changed since yesterday
  vtex-tracking push ativos.csv --skip-unchanged ~/.cache/vtex-ativos.db --merge-snapshots

exit status: 0 all confirmed, 1 some failed (see the failures file), 2 usage error or
unreadable input, 130 interrupted (Ctrl-C or SIGTERM; everything not confirmed is in the
failures file).
"""


class UsageError(Exception):
    """A command line argparse refused; the message is argparse's, already shown on stderr."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps each paragraph of a description or epilog to the terminal's width, and keeps
    lines that start with a space (examples, command lines) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in re.split(r"\n[ \t]*\n", text.strip("\n")):
            lines: list[str] = []
            words: list[str] = []
            for line in [*block.splitlines(), ""]:
                if line.startswith(" ") or not line:
                    if words:
                        lines += textwrap.wrap(
                            " ".join(words),
                            width,
                            initial_indent=indent,
                            subsequent_indent=indent,
                            break_on_hyphens=False,  # never split an option's name
                            break_long_words=False,
                        )
                        words = []
                    if line:
                        lines.append(indent + line)
                else:
                    words.append(line.strip())
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise ``UsageError`` instead of exiting, so that
    ``--json`` can answer them with a JSON object (argparse's own message still goes to
    stderr, as usual)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise UsageError(message)


def wants_json(argv: list[str]) -> bool:
    """Whether a command line argparse refused asked for ``--json`` (or an abbreviation of it,
    which argparse accepts), before any ``--``."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    return any(len(arg) >= 3 and "--json".startswith(arg) for arg in options)


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


def _encoding(text: str) -> str:
    try:
        return check_encoding(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--help`` documents every option."""
    parser = _Parser(prog="vtex-tracking", description=_DESCRIPTION, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"vtex-tracking {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    push = commands.add_parser(
        "push",
        help="push tracking updates from JSONL or CSV files",
        description="Push tracking updates from JSONL files (one update per line: orderId,"
        " invoiceNumber, isDelivered, deliveredDate, events) or CSV files (one event per row;"
        " consecutive rows of an invoice form one update). Files are streamed.",
        epilog=_PUSH_EPILOG,
        formatter_class=_Formatter,
    )
    _push_options(push)
    _loop_option(push)
    check = commands.add_parser(
        "check",
        help="what VTEX holds for a sample of the files' invoices (needs 'View order')",
        description="Read back, for the first N invoices of the input files (--sample), what"
        " VTEX holds: whether the order and the invoice exist, whether the invoice has a"
        " tracking number and URL, and whether VTEX's events are the file's; and, per store,"
        " whether its credentials are accepted and may read orders ('View order'). Sends"
        " nothing. Exit 0: every sampled invoice as the file has it; 1: some differ or a"
        " store cannot be read; 2: usage, input or configuration error.",
        formatter_class=_Formatter,
    )
    _check_options(check)
    _loop_option(check)
    fake = commands.add_parser(
        "fake-server",
        help="run a fake VTEX tracking endpoint until Ctrl-C",
        description="Run FakeOMS, a fake VTEX tracking endpoint, to try an integration"
        " without an account. It prints its URL and the test credentials it accepts.",
        formatter_class=_Formatter,
    )
    _fake_server_options(fake)
    _loop_option(fake)
    return parser


def _loop_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--no-uvloop",
        action="store_true",
        help="run on asyncio's own event loop even when uvloop is installed (the default uses"
        " it when installed: pip install 'vtex-tracking[uvloop]') [VTEX_TRACKING_UVLOOP=0]",
    )


def uvloop_choice(args: argparse.Namespace) -> bool | None:
    """``use_uvloop`` for ``_loop.run``: False with ``--no-uvloop``, else None (as
    ``VTEX_TRACKING_UVLOOP`` says: by default, when installed)."""
    return False if args.no_uvloop else None


def _check_options(check: argparse.ArgumentParser) -> None:
    check.add_argument("files", nargs="+", metavar="FILE", help="input file; - reads stdin")
    _reading_options(check)
    _store_options(check)
    check.add_argument(
        "--sample",
        type=_positive_int,
        default=20,
        metavar="N",
        help="check the first N invoices of the input (default 20)",
    )
    check.add_argument(
        "--timeout",
        type=_number(0, low_ok=False),
        metavar="S",
        help="seconds one attempt may take (default: the SDK's, 30)",
    )
    check.add_argument(
        "--json",
        action="store_true",
        help="stdout is one JSON object: each invoice's findings and each store's access",
    )
    talk = check.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="the summary only")
    talk.add_argument("-v", "--verbose", action="store_true", help="log requests")
    add_check_options(check)
    # What the client of a push reads that a check does not set.
    check.set_defaults(
        max_attempts=RetryPolicy().max_attempts, shared_pace=None, limits_file=None,
        concurrency=None,
    )  # fmt: skip


def _push_options(push: argparse.ArgumentParser) -> None:
    push.add_argument("files", nargs="+", metavar="FILE", help="input file; - reads stdin")
    _reading_options(push)
    _store_options(push)
    _pace_options(push)


def _reading_options(push: argparse.ArgumentParser) -> None:
    reading = push.add_argument_group("reading the input")
    reading.add_argument(
        "--format", choices=("jsonl", "csv"), help="input format (default: by file extension)"
    )
    reading.add_argument(
        "--encoding",
        type=_encoding,
        metavar="ENC",
        help="read every input as ENC, e.g. cp1252 (default: UTF-8, or cp1252 for a file that"
        " is not UTF-8, with a notice)",
    )
    reading.add_argument(
        "--date-format",
        choices=DATE_FORMATS,
        default=ISO,
        help="how dates are written: iso (YYYY-MM-DD, deliveredDate 'YYYY-MM-DD hh:mm') or"
        " dd/mm/yyyy (deliveredDate 'dd/mm/yyyy hh:mm'); default iso",
    )


def _store_options(push: argparse.ArgumentParser) -> None:
    stores = push.add_argument_group("where to send")
    stores.add_argument(
        "--account",
        metavar="NAME",
        help="VTEX account name [VTEX_ACCOUNT_NAME]; with --accounts, the store of lines"
        " without an accountName",
    )
    stores.add_argument(
        "--accounts",
        metavar="FILE",
        help="TOML file of stores (credentials, limits) for lines with an accountName"
        " [VTEX_ACCOUNTS]",
    )
    stores.add_argument("--environment", metavar="NAME", help="VTEX environment [VTEX_ENVIRONMENT]")
    stores.add_argument("--app-key", metavar="KEY", help="app key [VTEX_APP_KEY]")
    stores.add_argument("--app-token", metavar="TOKEN", help="app token [VTEX_APP_TOKEN]")
    stores.add_argument(
        "--user-token", metavar="TOKEN", help="user token, instead of the key [VTEX_USER_TOKEN]"
    )
    target = stores.add_mutually_exclusive_group()
    target.add_argument(
        "--base-url", metavar="URL", help="send to this URL instead of VTEX (a proxy, a fake)"
    )
    target.add_argument(
        "--fake", action="store_true", help="push to an embedded fake VTEX (no credentials)"
    )
    stores.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http --base-url (or accounts file base_url) to a host other than"
        " this machine, which sends the credentials in clear text (default: refused)",
    )
    stores.add_argument(
        "--trust-env",
        action="store_true",
        help="use the proxies of HTTPS_PROXY/HTTP_PROXY/NO_PROXY (and .netrc), as curl would",
    )


def _pace_options(push: argparse.ArgumentParser) -> None:
    sending = push.add_argument_group("pace and retries")
    sending.add_argument(
        "--shared-pace",
        metavar="URL",
        help="share each store's pace with every process pointed at this Redis"
        " (redis://host:6379/0), so pushes on several machines keep to one rate limit"
        " [VTEX_SHARED_PACE]",
    )
    sending.add_argument(
        "--limits-file",
        metavar="FILE",
        help="keep each store's measured rate limit in FILE between runs, so the next run"
        " starts each store at it instead of slowly from 2 requests per second (one process;"
        " --shared-pace keeps them in Redis for many)",
    )
    sending.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="most requests in flight over all stores (default: the SDK's, 512; each store's"
        " window grows to what its rate needs at its round trip)",
    )
    sending.add_argument(
        "--rate-limit",
        type=_number(0, low_ok=False),
        metavar="R",
        help="at most R requests per second (default: adapt to VTEX's 429/503 answers)",
    )
    sending.add_argument(
        "--timeout",
        type=_number(0, low_ok=False),
        metavar="S",
        help="seconds one attempt may take, body included (default: the SDK's, 30)",
    )
    sending.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=RetryPolicy().max_attempts,
        metavar="N",
        help=f"attempts per update, retries included (default {RetryPolicy().max_attempts})",
    )
    add_check_options(push)
    less = push.add_argument_group("sending less")
    less.add_argument(
        "--journal",
        metavar="FILE",
        help="record what VTEX confirmed in FILE (SQLite, about 20 bytes an update), so that"
        " after a crash the same command sends only the rest; refused if FILE belongs to"
        " another input; delete FILE to start over",
    )
    less.add_argument(
        "--skip-unchanged",
        metavar="FILE",
        help="remember in FILE the body VTEX last confirmed per invoice, and do not send an"
        " update equal to it (kept 30 days, at most 1,000,000 invoices); a redis:// URL"
        " instead of FILE shares it between machines",
    )
    less.add_argument(
        "--force",
        action="store_true",
        help="with --skip-unchanged: send every update anyway (FILE still learns)",
    )
    less.add_argument(
        "--merge-snapshots",
        action="store_true",
        help="while an update of an invoice waits behind one in flight, let a newer update of"
        " it take its place (the input holds whole histories, so only the newest matters)",
    )
    output = push.add_argument_group("results")
    output.add_argument(
        "--failed",
        metavar="FILE",
        help="write every update not confirmed here, as JSONL that push reads again, except"
        " those a newer update of their invoice confirmed in the same run made moot"
        " (default: <first input>.failed.jsonl, only if something is left to resend)",
    )
    output.add_argument(
        "--dry-run",
        action="store_true",
        help="read and check everything (with --accounts, each line's store), send nothing",
    )
    output.add_argument(
        "--json",
        action="store_true",
        help='stdout is one JSON object: the summary, or {"error": ...} for a usage error;'
        " the summary in words goes to stderr",
    )
    talk = output.add_mutually_exclusive_group()
    talk.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress and no failures one by one: the summary only (for cron)",
    )
    talk.add_argument(
        "-v", "--verbose", action="store_true", help="log requests, show every failure"
    )


def _fake_server_options(fake: argparse.ArgumentParser) -> None:
    fake.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to listen on")
    fake.add_argument(
        "--port",
        type=int,
        default=8080,
        metavar="PORT",
        help="port to listen on (default 8080; 0: any free)",
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
    fake.add_argument(
        "--apply-without-tracking-number",
        action="store_true",
        help="apply events sent to an invoice without a tracking number (VTEX answers them 200"
        " and does not apply them; so does the fake server by default)",
    )
