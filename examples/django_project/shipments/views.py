"""A view forwarding one tracking update to VTEX, with the SDK's errors as HTTP answers."""

import json
import logging
import math

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from vtex_tracking import (
    APIError,
    AuthCooldownError,
    NotFoundError,
    PaceTimeoutError,
    RateLimitError,
    TransportError,
    TransportTimeoutError,
    ValidationError,
    VtexTrackingError,
)

from .feed import status_from_json
from .tracking import client

logger = logging.getLogger(__name__)

#: Retry-After (seconds) for a 503 when nothing better is known.
DEFAULT_RETRY_AFTER = 30


@csrf_exempt  # an API for machines, not a form; authenticate it your own way
@require_http_methods(["PUT"])
def update_tracking(request: HttpRequest, order_id: str, invoice_number: str) -> JsonResponse:
    """Replace the invoice's tracking history in VTEX with the JSON body; answer the receipt."""
    try:
        doc = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "BadRequest", "message": "the body is not JSON"}, status=400)
    try:
        status = status_from_json(doc)
        receipt = client.update_tracking_status(order_id, invoice_number, status)
    except VtexTrackingError as exc:
        return error_response(exc)
    return JsonResponse(
        {
            "orderId": receipt.order_id,
            "receipt": receipt.receipt,
            "date": receipt.date,
            "attempts": receipt.attempts,
            "requestId": receipt.request_id,
        }
    )


def error_response(exc: VtexTrackingError) -> JsonResponse:
    """The HTTP answer for an SDK error (the same mapping as the FastAPI recipe).

    422: the data cannot form a valid update (nothing sent). 404: VTEX does not know the
    order or invoice. 503 with Retry-After: the VTEX account is busy (429 after the retries,
    its pace queue too long) or its key is cooling down; not the caller's fault, so not 429.
    504: VTEX did not answer in time. 502: any other refusal or failure, after the retries.
    """
    # The SDK's messages never contain credentials, so they can go back to the caller.
    body: dict[str, object] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, APIError):
        body |= {"vtexStatus": exc.status_code, "vtexRequestId": exc.request_id}
    retry_after: float | None = None
    if isinstance(exc, ValidationError):
        body["field"] = exc.field
        status = 422
    elif isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, (RateLimitError, PaceTimeoutError, AuthCooldownError)):
        status = 503
        if isinstance(exc, RateLimitError):
            retry_after = exc.retry_after
        elif isinstance(exc, PaceTimeoutError):
            retry_after = exc.waited
        else:
            retry_after = exc.retry_in
            logger.error("VTEX keeps refusing the credentials: %s", exc)
    elif isinstance(exc, TransportTimeoutError):
        status = 504
    else:  # APIError, TransportError, ConfigurationError...
        if isinstance(exc, (APIError, TransportError)):
            logger.warning("VTEX refused or failed: %s", exc)
        status = 502
    response = JsonResponse(body, status=status)
    if status == 503:
        wait = DEFAULT_RETRY_AFTER if retry_after is None else max(1, math.ceil(retry_after))
        response["Retry-After"] = str(wait)
    return response
