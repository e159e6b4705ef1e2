"""Mapping a failed response to the right error, tolerant of VTEX's three body shapes."""

from __future__ import annotations

import pytest

from vtex_tracking import (
    APIError,
    RateLimitError,
    ServerError,
    TransportError,
    TransportTimeoutError,
    UnexpectedResponseError,
    VtexTrackingError,
)
from vtex_tracking._errors import error_from_response, parse_error_body

from .conftest import ERROR_FOR_STATUS


@pytest.mark.parametrize(
    ("status", "cls"),
    [*ERROR_FOR_STATUS, (418, APIError), (302, UnexpectedResponseError)],
)
def test_status_selects_the_error_class(status: int, cls: type[APIError]) -> None:
    """Each status maps to its class, all APIError and VtexTrackingError."""
    error = error_from_response(status, {}, b"", order_id="o", invoice_number="i")
    assert type(error) is cls
    assert isinstance(error, VtexTrackingError)
    assert error.status_code == status


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            b'{"error": {"code": "OMS007", "message": "Order Not Found", "exception": null}}',
            "OMS007",
            "Order Not Found",
        ),
        (b'{"Message": "The request is invalid."}', None, "The request is invalid."),
        (b'{"error": "Invoice Not Found"}', None, "Invoice Not Found"),
        (b"No authorized", None, "No authorized"),
        (b"<html><head><title>Login</title></head></html>", None, "an HTML page"),
        (b"", None, None),
        (b"\xff\xfe garbage", None, "\ufffd\ufffd garbage"),
    ],
)
def test_error_bodies_of_every_shape_are_parsed(
    body: bytes, code: str | None, message: str | None
) -> None:
    """OMS JSON, other JSON, plain text, HTML and junk all give a code/message or None."""
    parsed_code, parsed_message = parse_error_body(body)
    assert parsed_code == code
    if message is None:
        assert parsed_message is None
    else:
        assert parsed_message is not None and parsed_message.startswith(message)


def test_api_error_carries_what_the_user_needs() -> None:
    """The message is a sentence; attributes hold status, VTEX code, request id, ids, attempts."""
    error = error_from_response(
        404,
        {"X-Request-Id": "req-42"},
        b'{"error": {"code": "OMS007", "message": "Order Not Found"}}',
        order_id="v1-01",
        invoice_number="NF-9",
        attempts=1,
    )
    assert (error.code, error.message, error.request_id) == ("OMS007", "Order Not Found", "req-42")
    assert (error.order_id, error.invoice_number, error.attempts) == ("v1-01", "NF-9", 1)
    text = str(error)
    assert "HTTP 404" in text and "v1-01" in text and "OMS007: Order Not Found" in text
    assert "req-42" in text


def test_403_says_which_permission_is_missing() -> None:
    """A 403 names the License Manager resource the key needs."""
    assert "Notify invoice" in str(error_from_response(403, {}, b"Forbidden"))


def test_404_for_invoice_with_slash_explains_vtex_routing() -> None:
    """A 404 on an invoice number containing '/' says VTEX does not route such numbers."""
    error = error_from_response(404, {}, b"", order_id="o", invoice_number="NF/123")
    assert "'/'" in str(error)
    assert "'/'" not in str(error_from_response(404, {}, b"", order_id="o", invoice_number="1"))


def test_rate_limit_error_keeps_retry_after() -> None:
    """RateLimitError exposes the server's requested wait."""
    error = error_from_response(429, {}, b"", retry_after=12.0)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 12.0


def test_redirect_is_reported_with_its_target() -> None:
    """Redirects are not followed (they would carry the token elsewhere) and are reported."""
    error = error_from_response(302, {"Location": "https://login.example/"}, b"")
    assert "https://login.example/" in str(error)


def test_transport_errors_are_builtin_connection_and_timeout_errors() -> None:
    """`except ConnectionError` / `except TimeoutError` catch our transport errors."""
    timeout = TransportTimeoutError("timed out", order_id="o", invoice_number="i", attempts=3)
    assert isinstance(timeout, TimeoutError)
    assert isinstance(timeout, ConnectionError)
    assert isinstance(timeout, TransportError)
    assert str(timeout) == "timed out"
    assert timeout.attempts == 3


def test_an_html_body_hints_at_the_login_page_only_below_500() -> None:
    """A 401 HTML page is usually VTEX's login page; a 502 HTML page is a gateway's."""
    page = b"<!DOCTYPE html><html><body>...</body></html>"
    assert "login page" in str(error_from_response(401, {}, page))
    assert "login page" not in str(error_from_response(502, {}, page))


def test_a_deeply_nested_error_body_is_quoted_not_a_crash() -> None:
    """A body of 100,000 '[' (found while fuzzing) made json.loads raise RecursionError; it is
    now an ordinary ServerError quoting the start of the body."""
    error = error_from_response(500, {}, b"[" * 100_000)
    assert isinstance(error, ServerError)
    assert "[[[[" in str(error)


def test_credentials_echoed_by_a_server_are_redacted() -> None:
    """A proxy that echoes the request headers must not carry the token into the error."""
    body = b'{"error": {"code": "E", "message": "bad header X-VTEX-API-AppToken: TOK-123"}}'
    error = error_from_response(
        400, {"X-Echo": "AppKey=KEY-9"}, body, secrets=("KEY-9", "TOK-123")
    )
    text = f"{error} {error.body!r} {dict(error.headers)} {error.message}"
    assert "TOK-123" not in text and "KEY-9" not in text
    assert "<redacted>" in str(error) and error.headers["X-Echo"] == "AppKey=<redacted>"
