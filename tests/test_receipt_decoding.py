"""The receipt path's shortcuts behave as the plain code they replace: the receipt's fast
structuring (and its detailed fallback), header look-ups with ``istr`` names, the secret check."""

from __future__ import annotations

import pickle

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from vtex_tracking import TrackingReceipt, UnexpectedResponseError
from vtex_tracking._errors import find_request_id, holds_secret
from vtex_tracking._serde import converter, decode_receipt

_BODY = b'{"date":"2017-03-29T18:04:31.0521233+00:00","orderId":"o","receipt":"r","x":1}'


def _decode(body: bytes, headers: object = None, secrets: tuple[str, ...] = ()) -> TrackingReceipt:
    return decode_receipt(
        201,
        headers if headers is not None else {"Content-Type": "application/json"},  # type: ignore[arg-type]
        body,
        request_id="rid",
        order_id="o",
        invoice_number="i",
        attempts=3,
        secrets=secrets,
    )


def test_a_receipt_has_every_field_in_place() -> None:
    """Built positionally: each value lands in its own field."""
    headers = CIMultiDictProxy(CIMultiDict({"content-type": "application/json; charset=utf-8"}))
    receipt = _decode(_BODY, headers)
    assert receipt == TrackingReceipt(
        date="2017-03-29T18:04:31.0521233+00:00",
        order_id="o",
        receipt="r",
        status_code=201,
        attempts=3,
        request_id="rid",
        content_type="application/json; charset=utf-8",
    )
    assert receipt.headers is headers
    assert receipt.content == _BODY


def test_content_type_is_looked_up_as_before_in_a_plain_dict() -> None:
    """A plain dict's keys are case-sensitive, as they were with a ``str`` name."""
    assert _decode(_BODY, {"Content-Type": "text/json"}).content_type == "text/json"
    assert _decode(_BODY, {"content-type": "text/json"}).content_type == ""
    receipt = _decode(_BODY, {"Content-Type": "text/json"})
    assert pickle.loads(pickle.dumps(receipt)) == receipt


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"date": 5, "orderId": "o"}', ["receipt.date", "receipt.receipt"]),
        (b'{"orderId": "o", "receipt": null}', ["receipt.date", "receipt.receipt"]),
        (b'{"date": "d", "orderId": "o", "receipt": ["r"]}', ["receipt.receipt"]),
    ],
)
def test_a_refused_receipt_names_every_problem(body: bytes, says: list[str]) -> None:
    """The fast hook stops at the first problem; the message still names each of them."""
    with pytest.raises(UnexpectedResponseError) as info:
        _decode(body)
    for where in says:
        assert where in str(info.value)
    assert "does not match VTEX's schema" in str(info.value)


def test_the_converter_still_unstructures_events_to_a_list() -> None:
    """The events hook returns what cattrs' did: a list of dicts."""
    from vtex_tracking import TrackingEvent, TrackingStatus

    status = TrackingStatus([TrackingEvent("Recife", "PE", "Saiu", "2026-11-23")] * 2)
    wire = converter().unstructure(status)
    assert (
        wire["events"]
        == [{"city": "Recife", "state": "PE", "description": "Saiu", "date": "2026-11-23"}] * 2
    )
    assert type(wire["events"]) is list


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        (CIMultiDictProxy(CIMultiDict({"x-vtex-request-id": "v"})), "v"),
        (CIMultiDict({"X-REQUEST-ID": "a", "X-VTEX-Operation-Id": "b"}), "a"),
        (CIMultiDict({"X-Request-Id": "", "X-VTEX-Operation-Id": "b"}), "b"),
        ({"X-VTEX-Request-Id": "v"}, "v"),
        ({"x-vtex-request-id": "v"}, None),
        ({}, None),
    ],
)
def test_request_id_is_found_as_before(headers: object, found: str | None) -> None:
    """Case-insensitive in a CIMultiDict, exact in a plain dict, the first non-empty one."""
    assert find_request_id(headers) == found  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "body", "held"),
    [
        ({"Server": "nginx"}, _BODY, False),
        ({"Echo": "key=sêcret"}, b"{}", True),
        ({"Server": "nginx"}, b'{"echo":"s\xc3\xaacret"}', True),
        ({"Server": "nginx"}, b'{"echo":"s\xeacret"}', False),  # latin-1, not UTF-8
        ({"Server": "nginx"}, b"\xff\xfe other-token \x00", True),
    ],
)
def test_secrets_are_found_in_headers_and_body(
    headers: dict[str, str], body: bytes, held: bool
) -> None:
    """A credential is found as text in a header value and as UTF-8 bytes in the body."""
    assert holds_secret(headers, body, ("sêcret", "other-token")) is held
