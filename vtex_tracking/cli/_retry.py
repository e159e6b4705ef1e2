"""The command the summary prints to push the failures file again: the options of this run
that choose where and how to send, so that the retry reaches the same stores in the same way,
shell-quoted, and never a secret.

Left out on purpose: how the input was read (the failures file is UTF-8 JSONL with ISO
dates), ``--journal`` (it belongs to this run's input files and would refuse another),
``--failed`` (the retry's own failures get a new default name), ``--dry-run`` and the output
options. Credentials are never repeated: the command names the environment variables that
must hold them, as they did for this run (or set them, when this run had them as options).
"""

from __future__ import annotations

import argparse
import os
import shlex
from urllib.parse import urlsplit

from vtex_tracking import RetryPolicy

#: Options repeated as they were given: (attribute, option), flags first as the help has them.
_FLAGS = (
    ("fake", "--fake"),
    ("allow_insecure_http", "--allow-insecure-http"),
    ("trust_env", "--trust-env"),
    ("allow_empty_events", "--allow-empty-events"),
    ("allow_slash_in_invoice", "--allow-slash-in-invoice"),
    ("allow_undated_delivery", "--allow-undated-delivery"),
    ("merge_snapshots", "--merge-snapshots"),
    ("force", "--force"),
)
_VALUES = (
    ("account", "--account"),
    ("accounts", "--accounts"),
    ("environment", "--environment"),
    ("base_url", "--base-url"),
    ("limits_file", "--limits-file"),
    ("concurrency", "--concurrency"),
    ("rate_limit", "--rate-limit"),
    ("timeout", "--timeout"),
    ("time_zone", "--time-zone"),
    ("skip_unchanged", "--skip-unchanged"),
)
#: Options whose value may be a URL with a password (a Redis): then it is not printed.
_URLS = (("shared_pace", "--shared-pace"),)
#: Secrets given as options, and the variable a retry reads them from instead.
_SECRETS = (
    ("app_key", "--app-key", "VTEX_APP_KEY"),
    ("app_token", "--app-token", "VTEX_APP_TOKEN"),
    ("user_token", "--user-token", "VTEX_USER_TOKEN"),
)
#: Variables a run reads when their option is not given: (attribute, variable).
_FROM_ENVIRONMENT = (
    ("account", "VTEX_ACCOUNT_NAME"),
    ("environment", "VTEX_ENVIRONMENT"),
    ("app_key", "VTEX_APP_KEY"),
    ("app_token", "VTEX_APP_TOKEN"),
    ("user_token", "VTEX_USER_TOKEN"),
    ("accounts", "VTEX_ACCOUNTS"),
    ("shared_pace", "VTEX_SHARED_PACE"),
)

#: What ``--fake`` reads from the environment: the store names only.
_STORE_NAMES = ("VTEX_ACCOUNT_NAME", "VTEX_ACCOUNTS")


def _has_password(value: str) -> bool:
    try:
        return urlsplit(value).password is not None
    except ValueError:
        return False


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def retry_command(args: argparse.Namespace, failures_path: str) -> tuple[str, str | None]:
    """The command that pushes ``failures_path`` as this run would, and what it needs that
    the command cannot say (environment variables, a password), or None."""
    argv = ["vtex-tracking", "push", failures_path]
    needs: list[str] = []
    for attribute, option in _FLAGS:
        if getattr(args, attribute, False):
            argv.append(option)
    for attribute, option in _VALUES:
        value = getattr(args, attribute, None)
        if value is None or value is False:
            continue
        if isinstance(value, str) and _has_password(value):
            needs.append(f"{option} as given to this run (not printed: its URL holds a password)")
            continue
        argv += [option, _number(value) if isinstance(value, (int, float)) else str(value)]
    if getattr(args, "max_attempts", None) not in (None, RetryPolicy().max_attempts):
        argv += ["--max-attempts", str(args.max_attempts)]
    for attribute, option in _URLS:
        value = getattr(args, attribute, None)
        if not value:
            continue
        if _has_password(value):
            needs.append(f"{option} as given to this run (not printed: its URL holds a password)")
        else:
            argv += [option, value]
    needs += _environment(args)
    return shlex.join(argv), "; ".join(needs) or None


def _environment(args: argparse.Namespace) -> list[str]:
    """What the retry must find in the environment, as this run did: the variables this run
    read, the ones the accounts file names, and the secrets it was given as options (with
    ``--fake``, only the store names: the fake stores need no credentials)."""
    needs = []
    given = [(option, variable) for a, option, variable in _SECRETS if getattr(args, a, None)]
    if given and not args.fake:
        options = ", ".join(option for option, _ in given)
        variables = ", ".join(variable for _, variable in given)
        needs.append(f"{variables} set to this run's {options} (secrets are not printed)")
    read = [
        variable
        for attribute, variable in _FROM_ENVIRONMENT
        if not getattr(args, attribute, None)
        and os.environ.get(variable)
        and (not args.fake or variable in _STORE_NAMES)
    ]
    if "VTEX_ACCOUNTS" in read and not args.fake:
        read.append("VTEX_<NAME>_* of each store")
    if args.accounts and not args.fake:
        read.append(f"the variables {args.accounts} names")
    if read:
        needs.append(f"{', '.join(read)} set as for this run")
    return needs
