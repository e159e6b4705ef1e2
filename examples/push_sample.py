"""Push a few sample tracking updates and print VTEX's receipts.

With VTEX credentials in the environment (VTEX_ACCOUNT_NAME plus VTEX_APP_KEY and
VTEX_APP_TOKEN, or VTEX_USER_TOKEN) the updates go to that store; without them, to an embedded
FakeOMS on 127.0.0.1, so this runs anywhere with no account:

    python examples/push_sample.py
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator

from vtex_tracking import (
    AsyncTrackingClient,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
    VtexTrackingError,
)
from vtex_tracking.testing import FakeOMS

SAMPLE_UPDATES = [
    TrackingUpdate(
        "1172452900788-01",
        "000030711",
        TrackingStatus(
            [
                TrackingEvent(
                    "Rio de Janeiro", "RJ", "Coletado pela transportadora", dt.date(2026, 11, 2)
                ),
                TrackingEvent("São Paulo", "SP", "Em trânsito para Curitiba", dt.date(2026, 11, 3)),
            ]
        ),
    ),
    TrackingUpdate(
        "1172452900790-01",
        "NF-000412",
        TrackingStatus(
            [
                TrackingEvent("Recife", "PE", "Objeto postado", dt.date(2026, 11, 1)),
                TrackingEvent(
                    "Recife", "PE", "Saiu para entrega ao destinatário", dt.date(2026, 11, 4)
                ),
                TrackingEvent("Olinda", "PE", "Entregue ao destinatário", dt.date(2026, 11, 4)),
            ],
            is_delivered=True,
            delivered_date=dt.datetime(2026, 11, 4, 15, 42),
        ),
    ),
    TrackingUpdate(
        "1172452900791-01",
        "000030799",
        TrackingStatus(
            [TrackingEvent("Belo Horizonte", "MG", "Aguardando retirada na agência", "2026-11-05")]
        ),
    ),
]


def _has_vtex_credentials() -> bool:
    env = os.environ
    return bool(env.get("VTEX_ACCOUNT_NAME")) and bool(
        env.get("VTEX_USER_TOKEN") or (env.get("VTEX_APP_KEY") and env.get("VTEX_APP_TOKEN"))
    )


@contextlib.asynccontextmanager
async def open_client() -> AsyncIterator[AsyncTrackingClient]:
    """A client for the real store when credentials are set, else for an embedded FakeOMS."""
    if _has_vtex_credentials():
        async with AsyncTrackingClient.from_env() as client:
            print(f"Sending to VTEX: {client.config.url_prefix}")
            yield client
        return
    async with (
        FakeOMS() as oms,
        AsyncTrackingClient("sandbox", oms.app_key, oms.app_token, base_url=oms.url) as client,
    ):
        print(f"No VTEX credentials set: sending to an embedded FakeOMS at {oms.url}")
        yield client


async def main() -> int:
    failures = 0
    async with open_client() as client:
        results = await asyncio.gather(
            *(client.send(update) for update in SAMPLE_UPDATES), return_exceptions=True
        )
    for update, result in zip(SAMPLE_UPDATES, results, strict=True):
        if isinstance(result, VtexTrackingError):
            failures += 1
            print(f"FAILED  {update.order_id} / {update.invoice_number}: {result}")
        elif isinstance(result, BaseException):
            raise result
        else:
            print(
                f"OK      {update.order_id} / {update.invoice_number}: receipt {result.receipt}"
                f" at {result.date} ({result.attempts} attempt(s))"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
