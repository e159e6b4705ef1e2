"""The SDK's ``Checks`` (what VTEX would refuse or regret) from the command line: the options
that relax them, and their refusals told in the input's field names and options."""

from __future__ import annotations

import argparse
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vtex_tracking import Checks, ValidationError

#: The SDK's field names in a refusal -> the input's.
_INPUT_FIELDS = {
    "TrackingUpdate.invoice_number": "invoiceNumber",
    "TrackingUpdate.order_id": "orderId",
    "TrackingStatus.events": "events",
    "TrackingStatus.delivered_date": "deliveredDate",
    "TrackingStatus.is_delivered": "isDelivered",
}
# "pass Checks(allow_empty_events=True)" -> "pass --allow-empty-events"
_CHECKS_HINT = re.compile(r"Checks\((\w+)=True\)")


def default_time_zone() -> str:
    """The zone ``Checks`` uses when none is given (for the help)."""
    return str(Checks().time_zone)


def time_zone(text: str) -> str:
    """An argparse type: an IANA time zone name that zoneinfo knows."""
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown time zone {text!r}; use an IANA name such as America/Sao_Paulo,"
            " America/Manaus or America/Noronha"
        ) from None
    return text


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``Checks``, as a group of ``push``."""
    group = parser.add_argument_group(
        "checks", "what a push refuses before sending, because VTEX would refuse or regret it"
    )
    group.add_argument(
        "--allow-empty-events",
        action="store_true",
        help="send updates with no events, which erase the invoice's history at VTEX",
    )
    group.add_argument(
        "--allow-slash-in-invoice",
        action="store_true",
        help="send invoice numbers with '/', which VTEX does not route (404) on most accounts",
    )
    group.add_argument(
        "--allow-undated-delivery",
        action="store_true",
        help="send isDelivered true without a deliveredDate (marketplaces reject it)",
    )
    group.add_argument(
        "--time-zone",
        type=time_zone,
        metavar="ZONE",
        help="the zone of deliveredDate, for refusing deliveries in the future (default"
        f" {default_time_zone()})",
    )


def build_checks(args: argparse.Namespace) -> Checks:
    """The ``Checks`` of a run, from its options."""
    zone = {"time_zone": args.time_zone} if args.time_zone is not None else {}
    return Checks(
        allow_empty_events=args.allow_empty_events,
        allow_slash_in_invoice=args.allow_slash_in_invoice,
        allow_undated_delivery=args.allow_undated_delivery,
        **zone,
    )


def describe(error: ValidationError) -> str:
    """A refusal as ``field: problem`` in the input's field names, pointing at the option
    that relaxes it."""
    field = _INPUT_FIELDS.get(error.field, error.field)
    problem = _CHECKS_HINT.sub(lambda m: "--" + m[1].replace("_", "-"), error.problem)
    return f"{field}: {problem}"
