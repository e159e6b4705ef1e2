"""The end of ``push``: the summary (in words, and with ``--json`` as one JSON object), and
usage errors as JSON.

With ``--json``, stdout carries exactly one JSON object, whatever happens: the summary, or
``{"error": {"kind": ..., "message": ...}}`` when the run could not start (exit status 2;
``kind`` is ``usage`` for the command line, ``input`` for an input or failures file that
cannot be used, ``configuration`` for credentials or an accounts file). Everything meant for a
person, the summary in words included, then goes to stderr, so ``push --json | jq`` works.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from typing import IO

import attrs

from ._report import FailuresFile, Tally

#: Stores listed in the human summary (those with the most failures first); --json has all.
MAX_ACCOUNTS_SHOWN = 20
#: What an account's line says when the push stopped sending to it, by why.
_STOPPED_WHY = {
    "auth": ", stopped: credentials refused",
    "unreachable": ", stopped: unreachable",
}
#: The ``kind`` of a JSON error object.
ERROR_KINDS = ("usage", "input", "configuration")


def print_json_error(kind: str, message: str) -> None:
    """The one JSON object on stdout of a run that could not start."""
    assert kind in ERROR_KINDS
    print(json.dumps({"error": {"kind": kind, "message": message}}, ensure_ascii=False))


@attrs.frozen
class Retry:
    """How to push the failures file again: the command (shell-quoted), what it needs that
    it cannot say (environment variables; None: nothing), and a note on the file's format."""

    command: str
    needs: str | None = None
    note: str = ""


def print_summary(
    tally: Tally,
    failures: FailuresFile,
    elapsed: float,
    *,
    as_json: bool,
    retry: Retry | None = None,
) -> None:
    """The summary in words on stdout; with ``as_json``, on stderr, and one JSON line on stdout.
    ``retry`` is printed when the failures file holds something to resend."""
    out = sys.stderr if as_json else sys.stdout
    retry = retry or Retry(shlex.join(["vtex-tracking", "push", failures.path]))
    _print_words(tally, failures, elapsed, out, retry)
    if as_json:
        summary = _summary(tally, failures, elapsed)
        summary["retry_command"] = retry.command if failures.count else None
        print(json.dumps(summary, ensure_ascii=False), flush=True)


def _print_words(
    tally: Tally, failures: FailuresFile, elapsed: float, out: IO[str], retry: Retry
) -> None:
    def say(text: str) -> None:
        print(text, file=out)

    rate = tally.succeeded / elapsed if elapsed > 0 else 0.0
    if tally.dry_run:
        say(
            f"Dry run: {tally.total} updates read in {elapsed:.1f} s: {tally.succeeded} valid,"
            f" {tally.failed} invalid. Nothing was sent."
        )
    else:
        head = "Interrupted" if tally.interrupted else "Done"
        say(
            f"{head}: {tally.total} updates in {elapsed:.1f} s: {tally.succeeded} succeeded,"
            f" {tally.failed} failed ({rate:.1f} updates/s)."
        )
        say(f"  requests: {tally.requests}, throttled (429/503): {tally.throttled}")
    if tally.outcomes:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(tally.outcomes.items()))
        say(f"  by outcome: {counts}")
    skipped = _skipped(tally)
    if any(skipped.values()):
        say(
            f"  not sent themselves: {skipped['already_done']} already done (--journal),"
            f" {skipped['unchanged']} unchanged (--skip-unchanged), {skipped['superseded']}"
            " superseded by a newer update of their invoice (--merge-snapshots)"
        )
    if tally.multi_account and tally.accounts:
        _print_accounts(tally, say)
    if tally.stopped_for_auth:
        stopped = sorted(
            name
            for name, account_tally in tally.accounts.items()
            if account_tally.stopped == "auth"
        )
        whose = f" of {', '.join(stopped)}" if tally.multi_account and stopped else ""
        say(
            f"  VTEX kept refusing the credentials{whose} (401/403), so the push stopped sending"
            " to that store: check the app key and token, and that the key has the"
            " 'Notify invoice' resource."
        )
    unreachable = _stopped(tally, "unreachable")
    if unreachable:
        one = len(unreachable) == 1
        say(
            f"  no connection could be made to account{'' if one else 's'}"
            f" {', '.join(unreachable)}, so the push stopped sending to {'it' if one else 'them'}:"
            " check the account name (VTEX_ACCOUNT_NAME, --account, accountName or the accounts"
            " file), --base-url, and that the host resolves (DNS) and is reachable from here."
        )
    for what, count in sorted(tally.hinted.items()):
        say(f"  {count} update{'' if count == 1 else 's'} answered {what}. {tally.hints[what]}")
    if failures.left_out:
        one = failures.left_out == 1
        say(
            f"  {failures.left_out} failed update{'' if one else 's'} left out of the failures"
            f" file: a newer update of {'its' if one else 'their'} invoice was confirmed in"
            " this run (resending the older one would roll the invoice back)"
        )
    if failures.count:
        say(
            f"  failed: {failures.count} record{'' if failures.count == 1 else 's'} in"
            f" {failures.path}; retry them with: {retry.command}{retry.note}"
        )
        if retry.needs:
            say(f"  the retry needs {retry.needs}")
    if tally.reading_stopped:
        where = f"after {tally.unread_after}" if tally.unread_after else "from the start"
        say(f"  NOT read, and not in the failures file: the input {where}.")
    out.flush()


def _skipped(tally: Tally) -> dict[str, int]:
    """Updates not sent themselves, by why (``PushResult.skipped``)."""
    return {k: tally.outcomes.get(k, 0) for k in ("already_done", "unchanged", "superseded")}


def _stopped(tally: Tally, reason: str) -> list[str]:
    """The accounts the push stopped sending to for ``reason`` (``PushStoppedError.reason``)."""
    return sorted(name for name, t in tally.accounts.items() if t.stopped == reason)


def _summary(tally: Tally, failures: FailuresFile, elapsed: float) -> dict[str, object]:
    """The ``--json`` summary."""
    return {
        "total": tally.total,
        "succeeded": tally.succeeded,
        "failed": tally.failed,
        "elapsed_s": round(elapsed, 3),
        "by_outcome": dict(sorted(tally.outcomes.items())),
        "skipped": _skipped(tally),
        "requests": tally.requests,
        "throttled": tally.throttled,
        "failures_file": failures.path if failures.count else None,
        "superseded_failures": failures.left_out,
        "stopped_accounts": {
            name: t.stopped for name, t in sorted(tally.accounts.items()) if t.stopped
        },
        "dry_run": tally.dry_run,
        "interrupted": tally.interrupted,
        "unread_after": tally.unread_after if tally.reading_stopped else None,
        "by_account": {name: tally.accounts[name].as_json() for name in sorted(tally.accounts)},
        "notices": tally.notices,
    }


def _print_accounts(tally: Tally, say: Callable[[str], None]) -> None:
    """One line per store: all of them, or the ``MAX_ACCOUNTS_SHOWN`` with most failures."""
    names = sorted(tally.accounts)
    if len(names) > MAX_ACCOUNTS_SHOWN:
        names = sorted(names, key=lambda n: (-tally.accounts[n].failed, n))[:MAX_ACCOUNTS_SHOWN]
    say(f"  by account ({len(tally.accounts)}):")
    for name in names:
        account_tally = tally.accounts[name]
        rate = (
            account_tally.succeeded / account_tally.elapsed_s
            if account_tally.elapsed_s > 0
            else 0.0
        )
        stopped = _STOPPED_WHY.get(account_tally.stopped or "", "")
        t = account_tally
        say(
            f"    {name}: {t.total} updates, {t.succeeded} succeeded, {t.failed}"
            f" failed, {t.requests} requests, {t.throttled} throttled,"
            f" {rate:.1f} updates/s{stopped}"
        )
    hidden = len(tally.accounts) - len(names)
    if hidden:
        say(f"    ... and {hidden} more accounts with fewer failures (all of them in --json)")
