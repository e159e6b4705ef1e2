"""``manage.py push_tracking FILE``: push a JSONL file of tracking updates with the project's
client, printing each failure and a summary.

For a file alone, the ``vtex-tracking push`` command does more (CSV, a re-pushable failures
file, progress). This is the pattern for updates that come from your own models: replace
``read_updates`` with a generator over a queryset (``.iterator()`` keeps memory flat).
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shipments.feed import read_updates
from shipments.tracking import client


class Command(BaseCommand):
    help = "Push the tracking updates of a JSONL file to VTEX."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSONL: a VTEX body per line, with orderId, invoiceNumber")
        parser.add_argument(
            "--rate-limit",
            type=float,
            default=None,
            help="at most this many requests per second (default: learn VTEX's limit)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        problems: list[str] = []
        updates = read_updates(options["file"], problems)
        # push() reads the generator lazily, keeps each invoice's updates in order, paces the
        # account and gives one result per update. It shares the client, and so the
        # account's pace, with the views of this process.
        with client.push(updates, rate_limit=options["rate_limit"]) as stream:
            for result in stream:
                if not result.ok:
                    update = result.update
                    self.stderr.write(f"{update.order_id}/{update.invoice_number}: {result.error}")
            summary = stream.summary()  # counts the results the loop received too
        for problem in problems:
            self.stderr.write(problem)
        self.stdout.write(
            f"Pushed {summary.total} updates: {summary.succeeded} succeeded,"
            f" {summary.failed} failed; {len(problems)} unreadable lines."
        )
        if summary.failed or problems:
            raise CommandError(f"{summary.failed + len(problems)} updates not confirmed by VTEX")
