"""FastAPI recipe: a carrier's webhook checkpoints become full-history pushes to VTEX.

Carriers (ShipStation, Easyship, AfterShip and the like) post one checkpoint per webhook;
VTEX's PUT replaces the invoice's whole event list. Forwarding each checkpoint alone would
erase the others, so each one is added to the invoice's ``TrackingHistory`` (SQLite or
Redis) and the whole history is pushed:

* a redelivered webhook changes no history, and the push's ``skip_unchanged`` finds that
  VTEX already confirmed that body: nothing is sent (``"outcome": "unchanged"``). A push
  that failed is not remembered as confirmed, so the carrier's redelivery sends it again;
* checkpoints out of order are put in date order; the history never shrinks;
* the requests of one invoice take turns in this process (add, push, answer), so each push
  carries every checkpoint added before it and the last one VTEX receives is the newest.
  (Several worker processes could land two pushes of one invoice out of order: run one
  worker per account, or see the Celery integration, which keeps the order per invoice.)
* "returned to sender" never goes out as delivered (422 naming ``TrackingStatus.is_delivered``).

Answers: 200 with the outcome; 422 for a checkpoint the SDK refuses (nothing stored);
503 with ``Retry-After`` when the history store or VTEX's account is busy, 502/504 when VTEX
failed: a carrier redelivers on any non-2xx answer, which is what is wanted then.

The checkpoint (POST /webhooks/checkpoint)::

    {"orderId": "1172452900788-01", "invoiceNumber": "000030711",
     "account": null,                       # another store of the client's accounts, or null
     "event": {"city": "Recife", "state": "PE", "description": "Saiu para entrega",
               "date": "2026-11-05"},       # YYYY-MM-DD, or an ISO 8601 date and time
     "delivered": false, "deliveredDate": null,   # "yyyy-mm-dd hh:mm" once delivered
     "returned": null}                      # true: returned to sender; null: read the words

Run it from the repository's root (``TRACKING_HISTORY`` and ``TRACKING_UNCHANGED``: a file
each by default, or ``redis://...`` URLs for several workers)::

    export VTEX_ACCOUNT_NAME=minhaloja VTEX_APP_KEY=vtexappkey-minhaloja-XXXX VTEX_APP_TOKEN=...
    uvicorn examples.webhook_fastapi:app
"""

import asyncio
import contextlib
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from vtex_tracking import (
    APIError,
    AsyncTrackingClient,
    AsyncTrackingHistory,
    AuthCooldownError,
    HistoryUnavailableError,
    NotFoundError,
    PaceTimeoutError,
    PushResult,
    RateLimitError,
    RetryPolicy,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
    TransportTimeoutError,
    UnchangedState,
    ValidationError,
    VtexTrackingError,
)

#: Bounded for a webhook: the carrier should hear back before it gives up (see fastapi_app.py).
CLIENT_OPTIONS: dict[str, Any] = {
    "timeout": 10.0,
    "pace_timeout": 5.0,
    "retry": RetryPolicy(max_attempts=2, max_retry_after=5.0),
}
#: Seconds a webhook waits for its push (its turn, the account's pace, VTEX's answer).
PUSH_TIMEOUT = 25.0
#: Retry-After (seconds) for a 503 when nothing better is known.
DEFAULT_RETRY_AFTER = 30


class EventIn(BaseModel):
    """The checkpoint's event, as in VTEX's body."""

    city: str
    state: str
    description: str
    date: str = Field(description="YYYY-MM-DD, or an ISO 8601 date and time")


class CheckpointIn(BaseModel):
    """One carrier checkpoint for one invoice."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    order_id: str = Field(alias="orderId")
    invoice_number: str = Field(alias="invoiceNumber")
    account: str | None = None
    event: EventIn
    delivered: bool = Field(default=False, strict=True)
    delivered_date: str | None = Field(default=None, alias="deliveredDate")
    returned: bool | None = Field(default=None, strict=True)


class CheckpointOut(BaseModel):
    """What became of the checkpoint: ``"200"`` (pushed) or ``"unchanged"`` (VTEX had it)."""

    outcome: str
    events: int
    is_delivered: bool = Field(serialization_alias="isDelivered")


class InvoiceLocks:
    """One lock per invoice being pushed (dropped when nobody holds or waits for it)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str | None, str, str], tuple[anyio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str | None, str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (anyio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


class Pusher:
    """One push for the process' lifetime, fed by the requests: ``skip_unchanged`` opens its
    state once (a push per request would open and close it every time, ~4 ms of CPU with
    SQLite), and the account's pace and retries are the push's."""

    def __init__(self, client: AsyncTrackingClient, unchanged: UnchangedState) -> None:
        self._client = client
        self._unchanged = unchanged
        self._queue: asyncio.Queue[tuple[TrackingUpdate, asyncio.Future[PushResult]]]
        self._queue = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future[PushResult]] = {}
        self._task: asyncio.Task[None] | None = None

    async def _updates(self) -> AsyncIterator[TrackingUpdate]:
        index = 0
        while True:
            update, future = await self._queue.get()
            self._waiting[index] = future  # a push numbers its input 0, 1, 2...
            index += 1
            yield update

    async def _run(self) -> None:
        try:
            async with self._client.push(self._updates(), skip_unchanged=self._unchanged) as s:
                async for result in s:
                    future = self._waiting.pop(result.index)
                    if not future.done():  # done: its request gave up waiting
                        future.set_result(result)
        finally:
            for future in self._waiting.values():
                future.cancel()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def push(self, update: TrackingUpdate) -> PushResult:
        """Push ``update`` (not sent when VTEX confirmed that body); its result."""
        if self._task is None or self._task.done():
            raise RuntimeError("the push is not running")
        future: asyncio.Future[PushResult] = asyncio.get_running_loop().create_future()
        await self._queue.put((update, future))
        with anyio.fail_after(PUSH_TIMEOUT):
            return await future


def create_app(
    history: str | None = None, skip_unchanged: str | None = None, **client_options: Any
) -> FastAPI:
    """The application; ``history`` and ``skip_unchanged`` (paths or Redis URLs) override
    ``TRACKING_HISTORY``/``TRACKING_UNCHANGED``, ``client_options`` the client's settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        options = {**CLIENT_OPTIONS, **client_options}
        if os.environ.get("VTEX_BASE_URL"):  # a proxy, or a fake VTEX to try the recipe
            options.setdefault("base_url", os.environ["VTEX_BASE_URL"])
        where = history or os.environ.get("TRACKING_HISTORY", "tracking-history.db")
        unchanged = skip_unchanged or os.environ.get("TRACKING_UNCHANGED", "tracking-unchanged.db")
        # One client and one history per process, shared by every request.
        async with (
            AsyncTrackingClient.from_env(**options) as client,
            AsyncTrackingHistory(where, client) as histories,
        ):
            app.state.tracking = client
            app.state.history = histories
            app.state.locks = InvoiceLocks()
            app.state.pusher = pusher = Pusher(client, UnchangedState(unchanged))
            pusher.start()
            try:
                yield
            finally:
                await pusher.stop()

    app = FastAPI(title="vtex-tracking webhook recipe", lifespan=lifespan)
    add_error_handlers(app)
    app.post(
        "/webhooks/checkpoint",
        response_model=CheckpointOut,
        summary="Add a carrier checkpoint to the invoice's history and push the whole history",
    )(receive_checkpoint)
    return app


async def receive_checkpoint(body: CheckpointIn, request: Request) -> CheckpointOut:
    """Add the checkpoint to its invoice's history, then push the whole history."""
    state = request.app.state
    client: AsyncTrackingClient = state.tracking
    histories: AsyncTrackingHistory = state.history
    order, invoice, account = body.order_id, body.invoice_number, body.account
    e = body.event
    checkpoint = TrackingStatus(
        [TrackingEvent(e.city, e.state, e.description, e.date)],
        is_delivered=body.delivered,
        delivered_date=body.delivered_date,
    )
    # What VTEX would refuse is refused before it enters the history (422, nothing stored).
    client.config.checks.check(TrackingUpdate(order, invoice, checkpoint, account_name=account))
    async with state.locks.hold((account, order, invoice)):
        # One request of an invoice at a time, from its add to VTEX's answer: each push
        # carries every checkpoint added before it, so the last one VTEX gets is the newest.
        status = await histories.add(
            order, invoice, checkpoint, returned=body.returned, account_name=account
        )
        update = TrackingUpdate(order, invoice, status, account_name=account)
        result = await state.pusher.push(update)
    if result.error is not None:
        raise result.error
    return CheckpointOut(
        outcome=result.outcome, events=len(status.events), is_delivered=status.is_delivered
    )


def _error(status: int, exc: Exception, retry_after: float | None = None) -> JSONResponse:
    # The SDK's messages never contain credentials, so they can go back to the caller.
    content: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ValidationError):
        content["field"] = exc.field
    if isinstance(exc, APIError):
        content["vtexStatus"] = exc.status_code
    headers = None
    if status == 503:
        wait = DEFAULT_RETRY_AFTER if retry_after is None else max(1, math.ceil(retry_after))
        headers = {"Retry-After": str(wait)}
    return JSONResponse(content, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Map errors to answers; any non-2xx makes the carrier deliver the checkpoint again."""

    @app.exception_handler(VtexTrackingError)
    async def sdk_error(request: Request, exc: VtexTrackingError) -> JSONResponse:
        if isinstance(exc, ValidationError):
            return _error(422, exc)  # the carrier's data: nothing stored, nothing sent
        if isinstance(exc, NotFoundError):
            return _error(404, exc)
        if isinstance(exc, RateLimitError):
            return _error(503, exc, exc.retry_after)
        if isinstance(exc, PaceTimeoutError):
            return _error(503, exc, exc.waited)
        if isinstance(exc, AuthCooldownError):
            return _error(503, exc, exc.retry_in)
        if isinstance(exc, HistoryUnavailableError):
            return _error(503, exc, 5)
        if isinstance(exc, TransportTimeoutError):
            return _error(504, exc)
        return _error(502, exc)

    @app.exception_handler(TimeoutError)
    async def push_timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        return _error(503, exc)


app = create_app()
