"""Pins the public types: checked by `mypy --strict`, never run (no test_ prefix)."""

from __future__ import annotations

import datetime as dt

from typing_extensions import assert_type

from vtex_tracking import (
    APIError,
    AsyncTrackingClient,
    AsyncTrackingHistory,
    AuthCooldownError,
    CourierEvent,
    InvoiceTracking,
    Journal,
    Order,
    PaceTimeoutError,
    Package,
    RateLimitError,
    RetryPolicy,
    TrackingClient,
    TrackingEvent,
    TrackingHistory,
    TrackingNumberUpdate,
    TrackingReceipt,
    TrackingStatus,
    TrackingUpdate,
    UnchangedState,
    ValidationError,
    parse_update,
    read_updates,
    status_from_events,
)


async def async_usage() -> None:
    status = TrackingStatus(
        [TrackingEvent("Recife", "PE", "Saiu para entrega", dt.date(2026, 1, 2))],
        is_delivered=True,
        delivered_date=dt.datetime(2026, 1, 2, 10, 0),
    )
    async with AsyncTrackingClient(
        "acme", "key", "token", retry=RetryPolicy(max_attempts=2), max_concurrency=4
    ) as client:
        receipt = await client.update_tracking_status("o", "1", status)
        assert_type(receipt, TrackingReceipt)
        assert_type(receipt.status_code, int)
        assert_type(receipt.request_id, str | None)
        assert_type(await client.send(TrackingUpdate("o", "1", status)), TrackingReceipt)


def sync_usage(status: TrackingStatus) -> None:
    with TrackingClient.from_env(timeout=5.0) as client:
        try:
            assert_type(client.update_tracking_status("o", "1", status), TrackingReceipt)
        except RateLimitError as exc:
            assert_type(exc.retry_after, float | None)
        except APIError as exc:
            assert_type(exc.status_code, int)
            assert_type(exc.code, str | None)


async def paced_usage(status: TrackingStatus) -> None:
    async with AsyncTrackingClient(
        "acme", "key", "token", rate_limit=50.0, adaptive=True, pace_timeout=5.0
    ) as client:
        try:
            await client.update_tracking_status("o", "1", status)
        except PaceTimeoutError as exc:
            assert_type(exc.waited, float)
            assert_type(exc.attempts, int)
        except AuthCooldownError as exc:
            assert_type(exc.retry_in, float)
            assert_type(exc.account, str)


async def send_less_usage(updates: list[TrackingUpdate]) -> None:
    async with AsyncTrackingClient("acme", "key", "token") as client:
        summary = await client.push_all(
            updates,
            journal=Journal("push.journal", input_id="today.jsonl"),
            skip_unchanged=UnchangedState("redis://localhost:6379/0", max_age=86_400.0),
            merge_snapshots=True,
        )
        assert_type(summary.by_outcome["unchanged"], int)
        async with client.push(updates, journal="push.journal") as stream:
            async for result in stream:
                assert_type(result.skipped, str | None)
                assert_type(result.superseded_by, int | None)


async def tracking_flow_usage(status: TrackingStatus) -> None:
    async with AsyncTrackingClient("acme", "key", "token") as client:
        receipt = await client.send_tracking_number(
            "o", "1", "BR1", tracking_url="https://t.example/BR1", courier="Correios",
            dispatched_date=dt.datetime(2026, 11, 2, 9, 15),
        )  # fmt: skip
        assert_type(receipt, TrackingReceipt)
        order = await client.get_order("o")
        assert_type(order, Order)
        package = order.package("1")
        assert_type(package, Package | None)
        if package is not None:
            assert_type(package.tracking_number, str | None)
            assert_type(package.events, tuple[CourierEvent, ...])
    with TrackingClient("acme", "key", "token") as sync_client:
        assert_type(sync_client.send_tracking_number("o", "1", "BR1"), TrackingReceipt)
        assert_type(sync_client.get_order("o"), Order)
        update = TrackingNumberUpdate("o", "1", InvoiceTracking("BR1"))
        assert_type(sync_client.send(update), TrackingReceipt)


async def history_usage(event: TrackingEvent) -> None:
    async with (
        AsyncTrackingClient("acme", "key", "token") as client,
        AsyncTrackingHistory("histories.db", client) as histories,
    ):
        status = await histories.add("o", "1", event, account_name=None)
        assert_type(status, TrackingStatus)
        assert_type(await histories.get("o", "1"), TrackingStatus | None)
        assert_type(await histories.forget("o", "1"), bool)
    with (
        TrackingClient("acme", "key", "token") as sync_client,
        TrackingHistory("redis://localhost:6379/0", sync_client, max_age=86_400.0) as history,
    ):
        added = history.add("o", "1", [event], is_delivered=False, returned=None)
        assert_type(added, TrackingStatus)
        assert_type(history.replace("o", "1", status), TrackingStatus)
    assert_type(status_from_events([event], returned=True), TrackingStatus)
    errors: list[ValidationError] = []
    for update in read_updates("eventos.csv", date_format="dd/mm/yyyy", on_error=errors.append):
        assert_type(update, TrackingUpdate | TrackingNumberUpdate)
    assert_type(parse_update({"orderId": "o"}), TrackingUpdate | TrackingNumberUpdate)
    assert_type(TrackingUpdate.from_wire({}), TrackingUpdate)
