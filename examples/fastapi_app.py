"""FastAPI recipe: one ``AsyncTrackingClient`` per application, shared by every request.

The client is opened in the app's lifespan (configured from the environment), kept on
``app.state``, handed to handlers through a dependency, and closed at shutdown. One endpoint
forwards a tracking update to VTEX and maps the SDK's errors to HTTP answers.

Run it from the repository's root::

    export VTEX_ACCOUNT_NAME=minhaloja VTEX_APP_KEY=vtexappkey-minhaloja-XXXX VTEX_APP_TOKEN=...
    uvicorn examples.fastapi_app:app

Without an account: start ``vtex-tracking fake-server --port 8080`` in another terminal, export
the key and token it prints, and ``VTEX_BASE_URL=http://127.0.0.1:8080`` (read by this recipe,
not by the SDK). Then::

    curl -X PUT localhost:8000/orders/1172452900788-01/invoices/000030711/tracking \\
      -H 'Content-Type: application/json' \\
      -d '{"isDelivered": false, "deliveredDate": null, "events": [{"city": "Recife",
           "state": "PE", "description": "Postado", "date": "2026-11-02"}]}'
"""

import logging
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from vtex_tracking import (
    APIError,
    AsyncTrackingClient,
    AuthCooldownError,
    NotFoundError,
    PaceTimeoutError,
    RateLimitError,
    RetryPolicy,
    TrackingEvent,
    TrackingStatus,
    TransportError,
    TransportTimeoutError,
    ValidationError,
)

logger = logging.getLogger(__name__)

#: The client's settings for a web handler. The SDK's defaults suit batch jobs (4 attempts of
#: up to 30 s, a minute's wait for the account's pace); a caller waiting on an HTTP answer
#: should hear back before its proxy gives up, so this bounds the worst case at about 30 s:
#: 5 s of pace wait + 2 attempts of 10 s + a Retry-After of at most 5 s. What does not fit
#: becomes a 503 with Retry-After, and the caller retries later.
CLIENT_OPTIONS: dict[str, Any] = {
    "timeout": 10.0,
    "pace_timeout": 5.0,
    "retry": RetryPolicy(max_attempts=2, max_retry_after=5.0),
}
#: Retry-After (seconds) for a 503 when nothing better is known.
DEFAULT_RETRY_AFTER = 30


class EventIn(BaseModel):
    """One tracking event, as in VTEX's body."""

    city: str
    state: str
    description: str
    date: str = Field(description="YYYY-MM-DD, or an ISO 8601 date and time")


class TrackingIn(BaseModel):
    """VTEX's request body, field for field (camelCase, as carriers already produce it)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    # strict: "yes" or 1 is a mistake in a carrier's feed, not a boolean to guess at.
    is_delivered: bool = Field(alias="isDelivered", strict=True)
    delivered_date: str | None = Field(default=None, alias="deliveredDate")
    events: list[EventIn]


class ReceiptOut(BaseModel):
    """VTEX's receipt, and how many attempts it took."""

    order_id: str = Field(serialization_alias="orderId")
    receipt: str
    date: str
    attempts: int
    request_id: str | None = Field(serialization_alias="requestId")


def create_app(**client_options: Any) -> FastAPI:
    """The application; ``client_options`` override ``CLIENT_OPTIONS`` and the environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        options = {**CLIENT_OPTIONS, **client_options}
        if os.environ.get("VTEX_BASE_URL"):  # a proxy, or a fake VTEX to try the recipe
            options.setdefault("base_url", os.environ["VTEX_BASE_URL"])
        # One client for the process (each uvicorn worker runs its own lifespan): it holds
        # the connection pool and each account's pace, so concurrent handlers share the
        # account's rate limit instead of each discovering it with 429s. A client per request
        # would open a new pool every time and forget what it learned. Missing credentials
        # raise ConfigurationError here, so the app refuses to start rather than failing
        # on every request. The client is created inside the running loop, as aiohttp wants.
        async with AsyncTrackingClient.from_env(**options) as client:
            app.state.tracking = client
            yield
        # Leaving the block closed the pool; uvicorn runs this after the last request ended.

    app = FastAPI(title="vtex-tracking FastAPI recipe", lifespan=lifespan)
    add_error_handlers(app)
    app.put(
        "/orders/{order_id}/invoices/{invoice_number}/tracking",
        response_model=ReceiptOut,
        summary="Replace an invoice's tracking events in VTEX",
    )(update_tracking)
    return app


def tracking_client(request: Request) -> AsyncTrackingClient:
    """The application's shared client (a FastAPI dependency)."""
    client: AsyncTrackingClient = request.app.state.tracking
    return client


async def update_tracking(
    order_id: str,
    invoice_number: str,
    body: TrackingIn,
    client: Annotated[AsyncTrackingClient, Depends(tracking_client)],
) -> ReceiptOut:
    """Forward the body to VTEX as the invoice's whole tracking history."""
    # The models validate here (ValidationError, handled below as 422); nothing is sent then.
    status = TrackingStatus(
        [TrackingEvent(e.city, e.state, e.description, e.date) for e in body.events],
        is_delivered=body.is_delivered,
        delivered_date=body.delivered_date,
    )
    receipt = await client.update_tracking_status(order_id, invoice_number, status)
    return ReceiptOut(
        order_id=receipt.order_id,
        receipt=receipt.receipt,
        date=receipt.date,
        attempts=receipt.attempts,
        request_id=receipt.request_id,
    )


def _error(status: int, exc: Exception, headers: dict[str, str] | None = None) -> JSONResponse:
    # The SDK's messages never contain credentials, so they can go back to the caller.
    content: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ValidationError):
        content["field"] = exc.field
    if isinstance(exc, APIError):
        content["vtexStatus"] = exc.status_code
        content["vtexRequestId"] = exc.request_id
    return JSONResponse(content, status_code=status, headers=headers)


def _retry_after(seconds: float | None) -> dict[str, str]:
    wait = DEFAULT_RETRY_AFTER if seconds is None else max(1, math.ceil(seconds))
    return {"Retry-After": str(wait)}


def add_error_handlers(app: FastAPI) -> None:
    """Map the SDK's errors to HTTP answers (Starlette picks the most specific class).

    - ``ValidationError`` -> 422: the caller's data cannot form a valid update; nothing was
      sent. (A body that is not even VTEX's shape gets FastAPI's own 422 before that.)
    - ``NotFoundError`` -> 404: VTEX does not know the order or invoice the caller named.
    - ``RateLimitError``, ``PaceTimeoutError``, ``AuthCooldownError`` -> 503 with
      ``Retry-After``: the VTEX account is busy (or its key is cooling down), not the caller
      too fast; 429 would blame the caller for a limit all callers share.
    - ``TransportTimeoutError`` -> 504, any other ``TransportError`` or ``APIError`` -> 502:
      VTEX failed or refused after the SDK's retries (a refused key is our configuration,
      which the caller cannot fix, so it is logged for us and answered as a gateway error).
    """

    @app.exception_handler(ValidationError)
    async def invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, exc)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, exc)

    @app.exception_handler(RateLimitError)
    async def rate_limited(request: Request, exc: RateLimitError) -> JSONResponse:
        return _error(503, exc, _retry_after(exc.retry_after))

    @app.exception_handler(PaceTimeoutError)
    async def pace_timeout(request: Request, exc: PaceTimeoutError) -> JSONResponse:
        # Never sent: the account's queue was longer than this request could wait.
        return _error(503, exc, _retry_after(exc.waited))

    @app.exception_handler(AuthCooldownError)
    async def auth_cooldown(request: Request, exc: AuthCooldownError) -> JSONResponse:
        logger.error("VTEX keeps refusing the credentials: %s", exc)
        return _error(503, exc, _retry_after(exc.retry_in))

    @app.exception_handler(TransportTimeoutError)
    async def timed_out(request: Request, exc: TransportTimeoutError) -> JSONResponse:
        return _error(504, exc)

    @app.exception_handler(TransportError)
    async def unreachable(request: Request, exc: TransportError) -> JSONResponse:
        logger.warning("VTEX unreachable: %s", exc)
        return _error(502, exc)

    @app.exception_handler(APIError)
    async def refused(request: Request, exc: APIError) -> JSONResponse:
        logger.warning("VTEX refused the update: %s", exc)
        return _error(502, exc)


app = create_app()
