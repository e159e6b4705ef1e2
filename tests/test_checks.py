"""``Checks``: what the SDK refuses before sending, and the time zone of ``deliveredDate``."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import orjson
import pytest

from vtex_tracking import (
    Accounts,
    Checks,
    NotFoundError,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
    ValidationError,
)
from vtex_tracking._serde import encode_status
from vtex_tracking.testing import FakeAccount, FakeOMS

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio

EVENTS = [TrackingEvent("Recife", "PE", "Entregue ao destinatário", dt.date(2026, 11, 20))]
NOW = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.timezone.utc)  # 12:00 in São Paulo
UTC = dt.timezone.utc


def _delivered(when: dt.datetime | str | None) -> TrackingUpdate:
    status = TrackingStatus(EVENTS, is_delivered=True, delivered_date=when)
    return TrackingUpdate("1172452900000-01", "000030700", status)


# -- invoice numbers with "/" -------------------------------------------------------------------


async def test_an_invoice_number_with_a_slash_is_refused_before_sending(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """'/' in an invoice number fails with a message that says VTEX does not route it, and
    nothing reaches the server."""
    async with FakeOMS() as oms, make_client(oms) as client:
        with pytest.raises(ValidationError, match="does not route") as caught:
            await client.update_tracking_status("1172452900000-01", "NF/123", status)
        assert oms.requests == []
    assert caught.value.field == "TrackingUpdate.invoice_number"
    assert "allow_slash_in_invoice" in str(caught.value)


async def test_fake_oms_answers_an_encoded_slash_as_vtex_does(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """With the check switched off, FakeOMS (like VTEX) routes nothing for NF%2F123: the
    404 says why."""
    allow = Checks(allow_slash_in_invoice=True)
    async with FakeOMS() as oms, make_client(oms, checks=allow) as client:
        with pytest.raises(NotFoundError, match="does not route invoice numbers"):
            await client.update_tracking_status("1172452900000-01", "NF/123", status)
        assert [r.raw_path.split("/")[7] for r in oms.requests] == ["NF%2F123"]


async def test_an_account_that_routes_slashes_accepts_them_when_allowed(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """Checks(allow_slash_in_invoice=True) sends the invoice number as one segment."""
    allow = Checks(allow_slash_in_invoice=True)
    async with FakeOMS(routes_encoded_slash=True) as oms, make_client(oms, checks=allow) as c:
        await c.update_tracking_status("1172452900000-01", "NF/123", status)
        assert oms.accepted("1172452900000-01", "NF/123")


# -- empty event lists --------------------------------------------------------------------------


async def test_an_empty_event_list_is_refused_by_default(make_client: ClientFactory) -> None:
    """events=[] would wipe the invoice's history: refused, naming the field."""
    async with FakeOMS() as oms, make_client(oms) as client:
        with pytest.raises(ValidationError, match="whole tracking history") as caught:
            await client.update_tracking_status("o-1", "NF-1", TrackingStatus([]))
        assert oms.requests == []
    assert caught.value.field == "TrackingStatus.events"


async def test_an_empty_event_list_is_sent_when_allowed(make_client: ClientFactory) -> None:
    """Checks(allow_empty_events=True) clears the history on purpose."""
    async with (
        FakeOMS() as oms,
        make_client(oms, checks=Checks(allow_empty_events=True)) as client,
    ):
        await client.update_tracking_status("o-1", "NF-1", TrackingStatus([]))
        assert oms.accepted("o-1", "NF-1")[0]["events"] == []


# -- deliveredDate ------------------------------------------------------------------------------


async def test_an_aware_delivered_date_is_sent_as_brasilia_wall_clock_time(
    make_client: ClientFactory,
) -> None:
    """A UTC datetime is converted to America/Sao_Paulo (UTC-3) before it goes on the wire."""
    async with FakeOMS() as oms, make_client(oms) as client:
        await client.send(_delivered(dt.datetime(2026, 11, 20, 18, 30, tzinfo=UTC)))
        [body] = oms.accepted("1172452900000-01", "000030700")
    assert body["deliveredDate"] == "2026-11-20 15:30"


async def test_the_time_zone_is_configurable(make_client: ClientFactory) -> None:
    """Checks(time_zone="America/Manaus") sends Manaus wall-clock time (UTC-4)."""
    checks = Checks(time_zone="America/Manaus")
    async with FakeOMS() as oms, make_client(oms, checks=checks) as client:
        await client.send(_delivered(dt.datetime(2026, 11, 20, 18, 30, tzinfo=UTC)))
        [body] = oms.accepted("1172452900000-01", "000030700")
    assert body["deliveredDate"] == "2026-11-20 14:30"


def test_a_naive_delivered_date_is_sent_as_it_is() -> None:
    """A naive datetime is taken to be in the store's zone already: sent unchanged."""
    update = Checks().check(_delivered(dt.datetime(2026, 11, 20, 18, 30)), now=NOW)
    assert orjson.loads(encode_status(update.status))["deliveredDate"] == "2026-11-20 18:30"


def test_encoding_an_aware_date_without_a_client_uses_brasilia_time() -> None:
    """The converter alone follows the same rule, so no path sends a UTC wall clock."""
    status = TrackingStatus(
        EVENTS, is_delivered=True, delivered_date=dt.datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    )
    assert orjson.loads(encode_status(status))["deliveredDate"] == "2026-11-20 00:00"


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2026, 11, 30, 12, 11),  # naive: 11 minutes ahead of São Paulo's 12:00
        dt.datetime(2026, 11, 30, 15, 11, tzinfo=UTC),
        "2026-11-30 12:11",
    ],
)
def test_a_delivered_date_in_the_future_is_refused(when: dt.datetime | str) -> None:
    """A delivery more than 10 minutes ahead of the store's clock is refused, naming the
    field and the likely causes."""
    with pytest.raises(ValidationError, match="in the future") as caught:
        Checks().check(_delivered(when), now=NOW)
    assert caught.value.field == "TrackingStatus.delivered_date"
    assert "day/month order" in str(caught.value)


@pytest.mark.parametrize(
    "when",
    [dt.datetime(2026, 11, 30, 12, 9), "2026-11-30 12:09"],
)
def test_a_delivered_date_within_the_clock_tolerance_passes(
    when: dt.datetime | str,
) -> None:
    """Up to 10 minutes ahead is clock skew, accepted. (A string in another form never gets
    here: the models refuse it, see tests/test_dates_and_parsers.py.)"""
    assert Checks().check(_delivered(when), now=NOW).status.delivered_date == when


def test_the_future_is_judged_in_the_configured_zone() -> None:
    """13:00 naive is future in São Paulo at 12:00 but past in Lisbon (15:00 there)."""
    update = _delivered(dt.datetime(2026, 11, 30, 13, 0))
    with pytest.raises(ValidationError):
        Checks().check(update, now=NOW)
    assert Checks(time_zone="Europe/Lisbon").check(update, now=NOW) is update


async def test_a_delivery_without_a_date_is_refused_unless_allowed(
    make_client: ClientFactory,
) -> None:
    """isDelivered without deliveredDate is refused by default and sent when allowed."""
    undated = _delivered(None)
    async with FakeOMS() as oms, make_client(oms) as client:
        with pytest.raises(ValidationError, match="without a date") as caught:
            await client.send(undated)
        assert oms.requests == []
    assert caught.value.field == "TrackingStatus.delivered_date"
    async with (
        FakeOMS() as oms,
        make_client(oms, checks=Checks(allow_undated_delivery=True)) as client,
    ):
        await client.send(undated)
        assert oms.accepted("1172452900000-01", "000030700")[0]["isDelivered"] is True


def test_an_unknown_time_zone_names_the_field() -> None:
    """A misspelt zone fails at construction, naming Checks.time_zone."""
    with pytest.raises(ValidationError, match=r"Checks\.time_zone"):
        Checks(time_zone="America/Sao Paulo")
    assert Checks(time_zone=ZoneInfo("UTC")).time_zone == ZoneInfo("UTC")


def test_checks_flags_must_be_booleans() -> None:
    """A flag given as a string (a common env-var slip) is refused, naming it."""
    with pytest.raises(ValidationError, match=r"Checks\.allow_empty_events"):
        Checks(allow_empty_events="yes")  # type: ignore[arg-type]


# -- in a push ----------------------------------------------------------------------------------


async def test_a_push_reports_refused_items_unsent_and_sends_the_rest(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """Each refused update gets its own result (attempts 0, outcome 'invalid', the reason);
    the others are sent; the server never sees the refused ones."""
    updates = [
        TrackingUpdate("o-1", "NF-1", status),
        TrackingUpdate("o-2", "NF/2", status),
        TrackingUpdate("o-3", "NF-3", TrackingStatus([])),
        TrackingUpdate("o-4", "NF-4", status),
    ]
    async with FakeOMS() as oms, make_client(oms) as client:
        results = sorted([r async for r in client.push(updates)], key=lambda r: r.index)
        assert {r.invoice_number for r in oms.requests} == {"NF-1", "NF-4"}
    assert [r.ok for r in results] == [True, False, False, True]
    assert [r.outcome for r in results] == ["200", "invalid", "invalid", "200"]
    assert [r.attempts for r in results if not r.ok] == [0, 0]
    assert "does not route" in str(results[1].error)
    assert "whole tracking history" in str(results[2].error)


async def test_an_account_of_the_registry_may_allow_slashes_for_itself(
    make_client: ClientFactory, status: TrackingStatus
) -> None:
    """allow_slash_in_invoice in one account's settings (TOML, env, mapping) lets that store
    send 'NF/1'; the client's other stores still refuse it."""
    accounts = {"routes": FakeAccount("vtexappkey-routes", "token-routes")}
    async with FakeOMS(accounts=accounts, routes_encoded_slash=True) as oms:
        registry = Accounts.from_mapping(
            {
                "routes": {
                    "app_key": "vtexappkey-routes",
                    "app_token": "token-routes",
                    "base_url": oms.url,
                    "allow_slash_in_invoice": "true",
                }
            }
        )
        async with make_client(oms, accounts=registry) as client:
            await client.update_tracking_status("o-1", "NF/1", status, account_name="routes")
            with pytest.raises(ValidationError, match="does not route"):
                await client.update_tracking_status("o-2", "NF/2", status)
        assert [r.invoice_number for r in oms.requests] == ["NF/1"]
