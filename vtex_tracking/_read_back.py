"""An order as VTEX's "Get order" returns it (``get_order``): read back, never sent.

Apart from ``_models`` because few programs read orders back: its classes are made (attrs
generates and compiles their methods, about a millisecond each) on first use, not by
``import vtex_tracking``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._public import present_lazy

__all__ = ["CourierEvent", "CourierStatus", "Order", "Package"]


@attrs.frozen
class CourierEvent:
    """One tracking event as VTEX holds it (``courierStatus.data[]`` of the order's package):
    the fields are VTEX's, as it sent them (dates are its ISO 8601 strings)."""

    city: str | None = None
    state: str | None = None
    description: str | None = None
    #: When the event happened (VTEX's ``createDate``).
    date: str | None = None
    last_change: str | None = None


@attrs.frozen
class CourierStatus:
    """A package's tracking as VTEX holds it (``courierStatus``): ``finished`` once VTEX
    counts it delivered."""

    status: str | None = None
    finished: bool | None = None
    delivered_date: str | None = None
    events: tuple[CourierEvent, ...] = ()


@attrs.frozen
class Package:
    """One invoiced package of an order as VTEX holds it (``packageAttachment.packages[]``):
    the invoice, its tracking number, URL and courier, and its events."""

    invoice_number: str
    tracking_number: str | None = None
    tracking_url: str | None = None
    courier: str | None = None
    courier_status: CourierStatus | None = None
    #: ``Output`` (a sale) or ``Input`` (a return).
    type: str | None = None
    issuance_date: str | None = None

    @property
    def events(self) -> tuple[CourierEvent, ...]:
        """The tracking events VTEX holds for this invoice (none without a status)."""
        return self.courier_status.events if self.courier_status is not None else ()


@attrs.frozen
class Order:
    """An order as VTEX's "Get order" returns it, typed where tracking needs it (``packages``)
    and whole in ``raw`` (the parsed JSON). VTEX shows writes in reads after a few seconds."""

    order_id: str
    status: str | None = None
    packages: tuple[Package, ...] = ()
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    request_id: str | None = attrs.field(default=None, eq=False)

    def package(self, invoice_number: str) -> Package | None:
        """The package of ``invoice_number``, or None when the order has no such invoice."""
        for package in self.packages:
            if package.invoice_number == invoice_number:
                return package
        return None


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
