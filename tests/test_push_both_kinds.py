"""Both kinds of update in one push: the tracking number (the invoice's PATCH) and the events
(the tracking PUT). An item with both sends the number first; each item gets one result that
says what VTEX confirmed; order per invoice holds across kinds; skip-unchanged and
merge_snapshots never drop a number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vtex_tracking import (
    InvoiceTracking,
    PushResult,
    TrackingNumberUpdate,
    TrackingUpdate,
    UnchangedState,
)
from vtex_tracking.testing import FakeOMS

from .conftest import ClientFactory, history

pytestmark = pytest.mark.anyio

NUMBER = InvoiceTracking("BR1", tracking_url="https://rastreio.example.com/BR1")


def _calls(oms: FakeOMS) -> list[tuple[str, str]]:
    """(method, invoice number) of every request the server saw, in arrival order."""
    return [(r.method, r.raw_path.rsplit("/", 2)[-2 if r.method == "PUT" else -1])
            for r in oms.requests]  # fmt: skip


async def _push(client: Any, items: list[Any], **options: Any) -> list[PushResult]:
    async with client.push(items, **options) as stream:
        return sorted([r async for r in stream], key=lambda r: r.index)


async def test_a_mixed_push_sends_the_number_first_and_says_what_was_sent(
    make_client: ClientFactory,
) -> None:
    """Number-only, events-only and both: one result each, naming what VTEX confirmed; the
    invoice with both gets its PATCH before its PUT, so the server applies its events."""
    items = [
        TrackingUpdate("o-1", "NF-1", history(1), tracking=NUMBER),
        TrackingNumberUpdate("o-2", "NF-2", InvoiceTracking("BR2")),
        TrackingUpdate("o-3", "NF-3", history(0)),
    ]
    async with FakeOMS(require_tracking_number=True) as oms, make_client(oms) as client:
        results = await _push(client, items)
    assert [r.sent for r in results] == [("tracking_number", "events"), ("tracking_number",),
                                         ("events",)]  # fmt: skip
    assert all(r.ok and r.receipt is not None for r in results)
    calls = _calls(oms)
    assert calls.index(("PATCH", "NF-1")) < calls.index(("PUT", "NF-1"))
    assert sorted(calls) == sorted([("PATCH", "NF-1"), ("PUT", "NF-1"), ("PATCH", "NF-2"),
                                    ("PUT", "NF-3")])  # fmt: skip
    assert oms.tracking_number("o-1", "NF-1") is not None
    assert len(oms.accepted("o-1", "NF-1")[-1]["events"]) == 2
    # The events-only invoice has no number: the server's trap (200, not applied) shows it.
    assert oms.unapplied == [("o-3", "NF-3")]


async def test_a_failed_number_sends_no_events_and_a_failed_put_keeps_the_number(
    make_client: ClientFactory,
) -> None:
    """The PATCH refused: the item's result is its error and its events are never sent. The
    PATCH confirmed and the PUT refused: the result is the PUT's error and ``sent`` says the
    number went through."""
    async with FakeOMS() as oms, make_client(oms) as client:
        oms.fail_next(1, 400)
        first = await _push(client, [TrackingUpdate("o-1", "NF-1", history(0), tracking=NUMBER)])
        assert _calls(oms) == [("PATCH", "NF-1")]
        oms.reset()
        receipt = {"date": "2026-11-02T12:00:00Z", "orderId": "o-2", "receipt": "r-1"}
        oms.fail_next(1, 200, body=receipt)  # the PATCH's answer, as VTEX gives it
        oms.fail_next(1, 400)  # the PUT's
        second = await _push(client, [TrackingUpdate("o-2", "NF-2", history(0), tracking=NUMBER)])
    (failed_number,) = first
    assert not failed_number.ok and failed_number.sent == ()
    assert failed_number.status_code == 400
    (failed_events,) = second
    assert _calls(oms) == [("PATCH", "NF-2"), ("PUT", "NF-2")]
    assert not failed_events.ok and failed_events.receipt is None
    assert failed_events.sent == ("tracking_number",) and failed_events.status_code == 400


async def test_skip_unchanged_skips_a_confirmed_number_but_sends_new_events(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """The number VTEX confirmed is not sent again while new events are; the same item twice
    sends nothing the second time; a new number for the invoice is sent."""
    state = UnchangedState(str(tmp_path / "unchanged.sqlite"))
    async with FakeOMS() as oms, make_client(oms) as client:
        await _push(client, [TrackingUpdate("o-1", "NF-1", history(0), tracking=NUMBER)],
                    skip_unchanged=state)  # fmt: skip
        oms.reset()
        again = await _push(client, [TrackingUpdate("o-1", "NF-1", history(0), tracking=NUMBER)],
                            skip_unchanged=state)  # fmt: skip
        assert oms.requests == []
        newer = await _push(client, [TrackingUpdate("o-1", "NF-1", history(1), tracking=NUMBER)],
                            skip_unchanged=state)  # fmt: skip
        assert _calls(oms) == [("PUT", "NF-1")]
        oms.reset()
        other = InvoiceTracking("BR9")
        renumbered = await _push(client, [TrackingNumberUpdate("o-1", "NF-1", other)],
                                 skip_unchanged=state)  # fmt: skip
        assert _calls(oms) == [("PATCH", "NF-1")]
    assert again[0].skipped == "unchanged" and again[0].sent == () and again[0].ok
    assert newer[0].sent == ("events",) and newer[0].ok
    assert renumbered[0].sent == ("tracking_number",)


async def test_merging_never_drops_a_waiting_number(make_client: ClientFactory) -> None:
    """With merge_snapshots, a newer events-only snapshot does not replace a waiting update
    that carries the invoice's number (both are sent, in order); a newer one that carries a
    number too replaces it."""
    items = [
        TrackingUpdate("o-1", "NF-1", history(0)),  # replaced: the next one carries it all
        TrackingUpdate("o-1", "NF-1", history(1), tracking=NUMBER),
        TrackingUpdate("o-1", "NF-1", history(2)),  # must not replace the one before
        TrackingUpdate("o-2", "NF-2", history(0)),
        TrackingUpdate("o-2", "NF-2", history(1), tracking=InvoiceTracking("OLD")),
        TrackingUpdate("o-2", "NF-2", history(2), tracking=InvoiceTracking("NEW")),
    ]
    async with FakeOMS() as oms, make_client(oms) as client:
        results = await _push(client, items, merge_snapshots=True)
    assert [r.skipped for r in results] == ["superseded", None, None, "superseded",
                                            "superseded", None]  # fmt: skip
    assert all(r.ok for r in results)
    assert results[0].superseded_by == 1 and results[0].sent == ("tracking_number", "events")
    one = [c for c in _calls(oms) if c[1] == "NF-1"]
    assert one == [("PATCH", "NF-1"), ("PUT", "NF-1"), ("PUT", "NF-1")]
    assert [len(b["events"]) for b in oms.accepted("o-1", "NF-1")] == [2, 3]
    assert oms.tracking_number("o-2", "NF-2")["trackingNumber"] == "NEW"  # type: ignore[index]
    assert [t["trackingNumber"] for t in oms.tracking_numbers[("o-2", "NF-2")]] == ["NEW"]


async def test_send_with_a_number_patches_then_puts(make_client: ClientFactory) -> None:
    """``send`` of a ``TrackingUpdate`` with ``tracking`` sends both, the number first, and
    returns the events' receipt; the sync facade does the same."""
    update = TrackingUpdate("o-1", "NF-1", history(0), tracking=NUMBER)
    async with FakeOMS(require_tracking_number=True) as oms, make_client(oms) as client:
        receipt = await client.send(update)
    assert _calls(oms) == [("PATCH", "NF-1"), ("PUT", "NF-1")] and oms.unapplied == []
    assert receipt.order_id == "o-1"
    with FakeOMS(require_tracking_number=True) as oms:
        make_client.sync(oms).send(update)
    assert _calls(oms) == [("PATCH", "NF-1"), ("PUT", "NF-1")] and oms.unapplied == []


def test_celery_wire_form_carries_the_number_both_ways() -> None:
    """What ``enqueue`` puts on the broker for either kind decodes, in the task, to the same
    update: the number is never dropped between producer and worker."""
    from vtex_tracking._input._records import update_from_json
    from vtex_tracking.celery._producer import wire_form

    both = TrackingUpdate("o-1", "NF-1", history(1), account_name="loja", tracking=NUMBER)
    alone = TrackingNumberUpdate("o-2", "NF-2", InvoiceTracking("BR2", courier="Correios"))
    for update in (both, alone):
        doc = wire_form(update)
        assert doc["trackingNumber"] == update.tracking.tracking_number  # type: ignore[union-attr]
        decoded = update_from_json(doc)
        assert type(decoded) is type(update) and decoded.tracking == update.tracking
        assert (decoded.order_id, decoded.account_name) == (update.order_id, update.account_name)


def test_the_events_key_is_the_one_earlier_versions_wrote() -> None:
    """State written before the tracking number existed still holds: an invoice's events key
    is the digest earlier versions computed (target, account, order, invoice), and its
    number's key is another, so neither can vouch for the other."""
    import hashlib

    from vtex_tracking._remember import invoice_digest

    old = hashlib.blake2b(b"http://h\x00acme\x00o-1\x00NF-1", digest_size=8).digest()
    events = invoice_digest("http://h", "acme", "o-1", "NF-1")
    assert events == int.from_bytes(old, "big", signed=True)
    number = invoice_digest("http://h", "acme", "o-1", "NF-1", part="tracking_number")
    assert number != events
    assert number != invoice_digest("http://staging", "acme", "o-1", "NF-1", part="tracking_number")
