"""``vtex-tracking check``: what VTEX holds for a sample of the input's invoices, before a
big push (does each invoice exist, does it carry a tracking number and URL, can each store's
key read orders) or after it (are VTEX's events the file's). It sends nothing.

The sample is the first ``--sample`` invoices of the input, each compared with its last
update in the whole input (the input is read to its end; only the sample is kept). Orders
are read once each, with the client of a push (same credentials, stores and retries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterable
from typing import Any

import attrs

from vtex_tracking import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    Order,
    PermissionDeniedError,
    TrackingUpdate,
    VtexTrackingError,
)

from .._input._readers import InputError, ReadOptions, check_inputs, read_inputs
from .._loop import run as run_loop
from .._models import AnyUpdate
from ._clients import open_client
from ._hints import in_cli_terms
from ._parser import uvloop_choice
from ._push import EXIT_FAILURES, EXIT_OK, EXIT_USAGE
from ._report import Console
from ._summary import print_json_error

__all__ = ["run_check"]

#: Orders read at once (each a GET through the store's pace).
READS_AT_ONCE = 8


@attrs.define
class Finding:
    """One sampled invoice: what VTEX holds, compared with the input's last update of it."""

    source: str
    account: str | None
    order_id: str
    invoice_number: str
    #: "ok", or what is wrong: "no order", "no invoice", "no tracking number",
    #: "no tracking URL", "events differ", "unreadable" (the store's key cannot read).
    verdict: str = "ok"
    detail: str = ""
    tracking_number: str | None = None
    tracking_url: str | None = None
    events_at_vtex: int | None = None
    events_in_file: int = 0

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _sample(records: Iterable[Any], size: int) -> tuple[dict[tuple[Any, ...], Any], int, int]:
    """The first ``size`` invoices of the input, each with its last update and its first
    line; and how many records and unreadable lines the input has."""
    sample: dict[tuple[Any, ...], tuple[str, AnyUpdate]] = {}
    records_read = bad = 0
    for record in records:
        records_read += 1
        update = record.update
        if update is None:
            bad += 1
            continue
        key = (update.account_name, update.order_id, update.invoice_number)
        if key in sample:
            sample[key] = (sample[key][0], update)
        elif len(sample) < size:
            sample[key] = (record.source, update)
    return sample, records_read, bad


def _describe(events: Iterable[Any]) -> list[tuple[str, str]]:
    """Events as (description, date) pairs, to compare the file's with VTEX's: VTEX keeps the
    date it was sent (``createDate``), possibly with a time and an offset added."""
    return [(str(e.description or "").strip(), str(e.date or "")[:10]) for e in events]


def _events_of(update: AnyUpdate) -> tuple[Any, ...]:
    """The events a line sends (none for a tracking number alone)."""
    return update.status.events if isinstance(update, TrackingUpdate) else ()


def _judge(finding: Finding, update: AnyUpdate, order: Order | None) -> None:
    events = _events_of(update)
    finding.events_in_file = len(events)
    if order is None:
        finding.verdict = "no order"
        return
    package = order.package(update.invoice_number)
    if package is None:
        finding.verdict = "no invoice"
        finding.detail = f"the order has {len(order.packages)} invoice(s), not this one"
        return
    finding.tracking_number = package.tracking_number
    finding.tracking_url = package.tracking_url
    finding.events_at_vtex = len(package.events)
    if not package.tracking_number:
        finding.verdict = "no tracking number"
        finding.detail = "VTEX shows no events for an invoice without one: send it first"
        return
    number = update.tracking
    if number is not None and number.tracking_number != package.tracking_number:
        finding.verdict = "number differs"
        finding.detail = f"the file has {number.tracking_number!r}: pushing it replaces VTEX's"
        return
    if not package.tracking_url:
        finding.verdict = "no tracking URL"
        finding.detail = "VTEX's shipping e-mail needs it"
        return
    if not isinstance(update, TrackingUpdate):
        return  # the number alone: nothing more to compare
    ours = _describe(
        attrs.evolve(e, date=e.date if isinstance(e.date, str) else e.date.isoformat())
        for e in events
    )
    if _describe(package.events) != ours:
        finding.verdict = "events differ"
        finding.detail = f"VTEX holds {len(package.events)}, the file {len(ours)}"


async def _check(
    args: argparse.Namespace, console: Console, sample: dict[tuple[Any, ...], Any]
) -> tuple[list[Finding], dict[str, str]]:
    findings: list[Finding] = []
    access: dict[str, str] = {}  # store -> "ok" or why it cannot be read
    async with open_client(args, console) as client:
        orders: dict[tuple[str | None, str], Order | None] = {}
        limit = asyncio.Semaphore(READS_AT_ONCE)

        async def read(account: str | None, order_id: str) -> None:
            store = account or client.default_account or "-"
            async with limit:
                if access.get(store, "ok") != "ok":
                    return
                try:
                    orders[(account, order_id)] = await client.get_order(
                        order_id, account_name=account
                    )
                except NotFoundError:
                    orders[(account, order_id)] = None
                except AuthenticationError:
                    access[store] = "credentials refused (401): check the app key and token"
                except PermissionDeniedError:
                    access[store] = (
                        "the key may not read orders (403): it needs 'View order' to be"
                        " checked; pushing needs only 'Notify invoice'"
                    )
                access.setdefault(store, "ok")

        wanted = {(update.account_name, update.order_id) for _, update in sample.values()}
        await asyncio.gather(*(read(account, order_id) for account, order_id in wanted))
        for source, update in sample.values():
            store = update.account_name or client.default_account or "-"
            finding = Finding(source, store, update.order_id, update.invoice_number)
            if access.get(store) != "ok":
                finding.verdict = "unreadable"
                finding.detail = access.get(store, "")
                finding.events_in_file = len(_events_of(update))
            else:
                _judge(finding, update, orders.get((update.account_name, update.order_id)))
            findings.append(finding)
    return findings, access


def run_check(args: argparse.Namespace, console: Console) -> int:
    """The ``check`` command; returns 0 when every sampled invoice is as the input has it,
    1 when some are not (or a store cannot be read), 2 when it could not start."""
    try:
        inputs = check_inputs(args.files, args.format, ReadOptions(args.encoding, args.date_format))
    except InputError as exc:
        console.warn(f"vtex-tracking: {exc}")
        if args.json:
            print_json_error("input", str(exc))
        return EXIT_USAGE
    sample, records, bad = _sample(read_inputs(inputs), args.sample)
    if not sample:
        console.warn(f"vtex-tracking: no readable update in the input ({records} record(s))")
        if args.json:
            print_json_error("input", "no readable update in the input")
        return EXIT_USAGE
    try:
        findings, access = run_loop(_check(args, console, sample), use_uvloop=uvloop_choice(args))
    except ConfigurationError as exc:
        message = in_cli_terms(str(exc))
        console.warn(f"vtex-tracking: {message}")
        if args.json:
            print_json_error("configuration", message)
        return EXIT_USAGE
    except (APIError, VtexTrackingError) as exc:
        console.warn(f"vtex-tracking: {exc}")
        if args.json:
            print_json_error("configuration", str(exc))
        return EXIT_FAILURES
    wrong = [f for f in findings if f.verdict != "ok"]
    if args.json:
        print(
            json.dumps(
                {
                    "checked": len(findings),
                    "ok": len(findings) - len(wrong),
                    "records_read": records,
                    "unreadable_lines": bad,
                    "stores": access,
                    "invoices": [f.as_json() for f in findings],
                },
                ensure_ascii=False,
            )
        )
    else:
        for store, state in sorted(access.items()):
            console.note(f"store {store}: {'reads orders' if state == 'ok' else state}")
        for f in findings:
            if f.verdict != "ok" or args.verbose:
                line = f"{f.source}: order {f.order_id} invoice {f.invoice_number}: {f.verdict}"
                console.note(line + (f" ({f.detail})" if f.detail else ""))
        console.warn(
            f"checked {len(findings)} invoice(s) of {records} record(s):"
            f" {len(findings) - len(wrong)} as in the file, {len(wrong)} not"
        )
    return EXIT_OK if not wrong else EXIT_FAILURES
