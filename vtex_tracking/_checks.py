"""``Checks``: what the SDK refuses before sending, because VTEX would refuse it or regret it.

The models check what an update *is* (types, lengths, path-safe ids). These checks are about
what VTEX *does* with it (``../shared/VTEX-FACTS.md``): it does not route invoice numbers with
``/``, an empty event list wipes the invoice's history, ``deliveredDate`` carries no time
zone, and marketplaces downstream reject deliveries dated in the future or not dated at all.
Each check names the field and the way out; each refusal can be switched off.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from ._constants import DEFAULT_TIME_ZONE, DELIVERED_DATE_TOLERANCE
from ._errors import ValidationError
from ._models import TrackingNumberUpdate, TrackingStatus, TrackingUpdate, parse_vtex_timestamp

__all__ = ["Checks", "localize_status", "to_time_zone"]


def to_time_zone(value: str | dt.tzinfo) -> dt.tzinfo:
    """A ``tzinfo`` from an IANA name (``"America/Sao_Paulo"``) or a ``tzinfo``."""
    if isinstance(value, dt.tzinfo):
        return value
    if isinstance(value, str):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # not with the package: rarely

        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise ValidationError(
        "Checks.time_zone", f"expected an IANA time zone such as 'America/Sao_Paulo', got {value!r}"
    )


def _flag(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ValidationError(f"Checks.{attribute.name}", f"expected True or False, got {value!r}")


def _wall_clock(text: str) -> dt.datetime | None:
    """A ``deliveredDate`` string as a datetime (aware when it names an offset), or None
    when it cannot be read (the models admit only ``YYYY-MM-DD hh:mm``, which can)."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


@attrs.frozen
class Checks:
    """What the client refuses before sending (``ValidationError``, naming the field), and
    the time zone of ``deliveredDate``.

    ``allow_slash_in_invoice``: send invoice numbers containing ``/`` (VTEX answers 404 even
    to ``%2F``; some accounts route them). ``allow_empty_events``: send ``events: []``, which
    wipes the invoice's tracking history. ``allow_undated_delivery``: send ``isDelivered:
    true`` without a ``deliveredDate``. ``time_zone``: aware ``delivered_date`` datetimes are
    sent as wall-clock time in this zone, naive ones are taken to be in it; a delivery more
    than 10 minutes in the future is refused.
    """

    allow_slash_in_invoice: bool = attrs.field(default=False, validator=_flag)
    allow_empty_events: bool = attrs.field(default=False, validator=_flag)
    allow_undated_delivery: bool = attrs.field(default=False, validator=_flag)
    time_zone: dt.tzinfo = attrs.field(
        factory=lambda: to_time_zone(DEFAULT_TIME_ZONE), converter=to_time_zone
    )

    def check(self, update: TrackingUpdate, *, now: dt.datetime | None = None) -> TrackingUpdate:
        """Return ``update`` as it will be sent (``delivered_date`` in ``time_zone``), or
        raise ``ValidationError`` for what VTEX would refuse or regret. ``now``: for tests."""
        if not self.allow_slash_in_invoice and "/" in update.invoice_number:
            raise ValidationError(
                "TrackingUpdate.invoice_number",
                f"{update.invoice_number!r} contains '/', which VTEX does not route even"
                " percent-encoded (it answers 404); use the invoice number without it, or"
                " Checks(allow_slash_in_invoice=True) for an account known to route it",
            )
        status = update.status
        if not status.events and not self.allow_empty_events:
            raise ValidationError(
                "TrackingStatus.events",
                "is empty: VTEX would replace the invoice's whole tracking history with"
                " nothing; pass Checks(allow_empty_events=True) to clear it on purpose",
            )
        delivered = status.delivered_date
        if delivered is None:
            if status.is_delivered and not self.allow_undated_delivery:
                raise ValidationError(
                    "TrackingStatus.delivered_date",
                    "is missing while is_delivered is True: marketplaces reject deliveries"
                    " without a date; send when it was delivered, or pass"
                    " Checks(allow_undated_delivery=True)",
                )
            return update
        when = _wall_clock(delivered) if isinstance(delivered, str) else delivered
        if when is None:
            return update
        local = when.astimezone(self.time_zone) if when.tzinfo is not None else when
        self._refuse_future(local.replace(tzinfo=None), now)
        if isinstance(delivered, dt.datetime) and delivered.tzinfo is not None:
            # The wire has no zone: send the store's wall-clock time, not the caller's.
            return attrs.evolve(update, status=localize_status(status, self.time_zone))
        return update

    def check_tracking_number(
        self, update: TrackingNumberUpdate, *, now: dt.datetime | None = None
    ) -> TrackingNumberUpdate:
        """Return ``update`` as it will be sent (a naive ``dispatched_date`` given
        ``time_zone``), or raise ``ValidationError``: the invoice-number rule of ``check``, and
        no dispatch more than 10 minutes in the future."""
        if not self.allow_slash_in_invoice and "/" in update.invoice_number:
            raise ValidationError(
                "TrackingNumberUpdate.invoice_number",
                f"{update.invoice_number!r} contains '/', which VTEX does not route even"
                " percent-encoded (it answers 404); use the invoice number without it, or"
                " Checks(allow_slash_in_invoice=True) for an account known to route it",
            )
        dispatched = update.tracking.dispatched_date
        if dispatched is None:
            return update
        when = parse_vtex_timestamp(dispatched) if isinstance(dispatched, str) else dispatched
        if when is None:
            return update
        if when.tzinfo is None:
            when = when.replace(tzinfo=self.time_zone)
        local = when.astimezone(self.time_zone).replace(tzinfo=None)
        self._refuse_future(local, now, "InvoiceTracking.dispatched_date", "dispatches")
        if isinstance(dispatched, dt.datetime) and dispatched.tzinfo is None:
            # VTEX reads an offset; a naive time is the store's wall clock.
            tracking = attrs.evolve(update.tracking, dispatched_date=when)
            return attrs.evolve(update, tracking=tracking)
        return update

    def _refuse_future(
        self,
        local: dt.datetime,
        now: dt.datetime | None,
        field: str = "TrackingStatus.delivered_date",
        what: str = "deliveries",
    ) -> None:
        current = (now or dt.datetime.now(dt.timezone.utc)).astimezone(self.time_zone)
        current = current.replace(tzinfo=None)
        if (local - current).total_seconds() > DELIVERED_DATE_TOLERANCE:
            raise ValidationError(
                field,
                f"{local:%Y-%m-%d %H:%M} is in the future (it is {current:%Y-%m-%d %H:%M} in"
                f" {self.time_zone}): marketplaces reject future {what}; check the time"
                " zone and the day/month order",
            )


def localize_status(status: TrackingStatus, zone: dt.tzinfo) -> TrackingStatus:
    """``status`` with an aware ``delivered_date`` turned into wall-clock time in ``zone``."""
    delivered = status.delivered_date
    if isinstance(delivered, dt.datetime) and delivered.tzinfo is not None:
        local = delivered.astimezone(zone).replace(tzinfo=None)
        return attrs.evolve(status, delivered_date=local)
    return status
