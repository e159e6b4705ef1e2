"""The public surface is a contract: pinned names, typed package, testing helpers."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import inspect
import json
import pickle
import traceback
import typing
from typing import Any

import vtex_tracking
import vtex_tracking.testing
from vtex_tracking import (
    AuthCooldownError,
    ConfigurationError,
    PushStoppedError,
    RateLimitError,
    TrackingEvent,
    TrackingStatus,
    TransportTimeoutError,
    ValidationError,
)
from vtex_tracking._client import tracking_path
from vtex_tracking._constants import (
    APP_KEY_HEADER,
    APP_TOKEN_HEADER,
    DEFAULT_ENVIRONMENT,
    USER_TOKEN_HEADER,
)
from vtex_tracking._serde import encode_status
from vtex_tracking.testing import validate_receipt, validate_request_body


def test_public_names_are_pinned() -> None:
    """vtex_tracking.__all__ lists exactly the supported names, all importable."""
    assert sorted(vtex_tracking.__all__) == sorted(
        [
            "APIError",
            "Account",
            "AccountMetrics",
            "AccountProgress",
            "AccountSummary",
            "Accounts",
            "AsyncTrackingClient",
            "AsyncTrackingHistory",
            "AuthCooldownError",
            "AuthenticationError",
            "BadRequestError",
            "Checks",
            "ClientClosedError",
            "ClientConfig",
            "ConfigurationError",
            "ConflictError",
            "ConnectError",
            "CourierEvent",
            "CourierStatus",
            "HistoryUnavailableError",
            "InvoiceTracking",
            "Journal",
            "JournalMismatchError",
            "NotFoundError",
            "Order",
            "Package",
            "PaceTimeoutError",
            "PermissionDeniedError",
            "PushProgress",
            "PushResult",
            "PushStoppedError",
            "PushStream",
            "PushSummary",
            "RateLimitError",
            "RetryPolicy",
            "ServerError",
            "SharedPace",
            "SyncPushStream",
            "TrackingClient",
            "TrackingEvent",
            "TrackingHistory",
            "TrackingNumberUpdate",
            "TrackingReceipt",
            "TrackingStatus",
            "TrackingUpdate",
            "TransportError",
            "TransportTimeoutError",
            "UnchangedState",
            "UnexpectedResponseError",
            "ValidationError",
            "VtexTrackingError",
            "__version__",
            "parse_update",
            "read_updates",
            "status_from_events",
        ]
    )
    for name in vtex_tracking.__all__:
        assert getattr(vtex_tracking, name) is not None


def test_package_is_typed() -> None:
    """py.typed ships, so users' type checkers read our annotations."""
    assert importlib.resources.files("vtex_tracking").joinpath("py.typed").is_file()


def test_public_names_report_the_package_as_their_module() -> None:
    """Every public class and function says it is vtex_tracking's (not ``_errors``' or
    ``_models``'), so a traceback reads ``vtex_tracking.RateLimitError: ...``."""
    defined_here = [
        obj
        for name in vtex_tracking.__all__
        if isinstance(obj := getattr(vtex_tracking, name), type) or inspect.isfunction(obj)
    ]
    assert len(defined_here) > 50
    assert {obj.__name__: obj.__module__ for obj in defined_here} == {
        obj.__name__: "vtex_tracking" for obj in defined_here
    }
    error = RateLimitError("VTEX answered 429", status_code=429)
    assert traceback.format_exception_only(error) == [
        "vtex_tracking.RateLimitError: VTEX answered 429\n"
    ]
    assert repr(TrackingEvent) == "<class 'vtex_tracking.TrackingEvent'>"


def test_testing_helpers_report_the_testing_package_as_their_module() -> None:
    """FakeOMS and the testing package's own helpers say vtex_tracking.testing, the path users
    import, and their type hints still resolve (no_waits and friends come from the SDK's
    core and keep its name)."""
    import vtex_tracking.testing as testing

    own = ("FakeAccount", "FakeOMS", "RecordedRequest", "validate_receipt", "validate_request_body")
    for name in own:
        obj = getattr(testing, name)
        assert obj.__module__ == "vtex_tracking.testing", name
        typing.get_type_hints(obj)
    assert repr(testing.FakeOMS) == "<class 'vtex_tracking.testing.FakeOMS'>"


def test_type_hints_of_public_classes_still_resolve() -> None:
    """typing.get_type_hints (cattrs, documentation tools, frameworks) still evaluates the
    annotations of every public class, though they name things ``vtex_tracking`` lacks."""
    for name in vtex_tracking.__all__:
        cls = getattr(vtex_tracking, name)
        if isinstance(cls, type):
            hints = typing.get_type_hints(cls)
            assert not [h for h in hints.values() if isinstance(h, str)], name
    assert typing.get_type_hints(TrackingEvent)["date"] == dt.date | dt.datetime | str


def test_errors_and_models_survive_a_pickle_round_trip() -> None:
    """Errors (Celery and multiprocessing pickle them) come back with their type, message and
    attributes, including those whose __init__ takes keywords; so do models."""
    limited = RateLimitError(
        "VTEX answered 429",
        status_code=429,
        retry_after=3.0,
        request_id="req-1",
        order_id="o-1",
        invoice_number="NF-1",
        headers={"Retry-After": "3"},
        body=b'{"error": "slow down"}',
    )
    errors: list[vtex_tracking.VtexTrackingError] = [
        limited,
        ValidationError("events[0].date", "not a date"),
        TransportTimeoutError("timed out", order_id="o-2", attempts=3),
        AuthCooldownError("refused", account="acme", retry_in=30.0, cause=limited),
        PushStoppedError("stopped", reason="stopped", in_flight=True),
        ConfigurationError("no credentials"),
    ]
    for error in errors:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert (str(back), back.args) == (str(error), error.args)
        assert vars(back).keys() == vars(error).keys()
    back = pickle.loads(pickle.dumps(limited))
    assert (back.status_code, back.retry_after, back.request_id, back.body) == (
        429,
        3.0,
        "req-1",
        b'{"error": "slow down"}',
    )
    cooled = pickle.loads(pickle.dumps(errors[3]))
    assert isinstance(cooled.cause, RateLimitError) and cooled.cause.status_code == 429
    status = TrackingStatus([TrackingEvent("Natal", "RN", "Postado", dt.date(2026, 11, 20))])
    assert pickle.loads(pickle.dumps(status)) == status


# -- the packaged contract (vtex_tracking/testing/vtex-tracking-openapi.json) ------------------

TRACKING_PATH = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"


def _contract() -> dict[str, Any]:
    """The packaged copy of VTEX's OpenAPI file, read as a user's install would find it."""
    text = (
        importlib.resources.files("vtex_tracking.testing")
        .joinpath("vtex-tracking-openapi.json")
        .read_text(encoding="utf-8")
    )
    doc: dict[str, Any] = json.loads(text)
    return doc


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = _contract()["components"]["schemas"][name]
    return schema


def test_contract_describes_one_put_on_the_tracking_path() -> None:
    """The copy's only operation is UpdateTrackingStatus: a PUT with both ids as required
    string path parameters, on the host the SDK builds by default."""
    doc = _contract()
    assert doc["openapi"].startswith("3.")
    assert list(doc["paths"]) == [TRACKING_PATH]
    assert list(doc["paths"][TRACKING_PATH]) == ["put"]
    operation = doc["paths"][TRACKING_PATH]["put"]
    assert operation["operationId"] == "UpdateTrackingStatus"
    path_params = {p["name"]: p for p in operation["parameters"] if p["in"] == "path"}
    assert set(path_params) == {"orderId", "invoiceNumber"}
    for param in path_params.values():
        assert param["required"] is True and param["schema"]["type"] == "string"
    server = doc["servers"][0]
    assert server["url"] == "https://{accountName}.{environment}.com.br"
    assert server["variables"]["environment"]["default"] == DEFAULT_ENVIRONMENT
    assert tracking_path("o-1", "NF-1") == TRACKING_PATH.format(
        orderId="o-1", invoiceNumber="NF-1"
    )


def test_contract_request_body_requires_the_three_fields() -> None:
    """The body requires isDelivered (boolean), deliveredDate (nullable string) and events
    (an array of events each requiring city, state, description and date, all strings)."""
    operation = _contract()["paths"][TRACKING_PATH]["put"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/UpdateTrackingStatusRequest"}
    request = _schema("UpdateTrackingStatusRequest")
    assert request["type"] == "object"
    assert sorted(request["required"]) == ["deliveredDate", "events", "isDelivered"]
    fields = request["properties"]
    assert fields["isDelivered"]["type"] == "boolean"
    assert (fields["deliveredDate"]["type"], fields["deliveredDate"]["nullable"]) == (
        "string",
        True,
    )
    assert "yyyy-mm-dd hh:mm" in fields["deliveredDate"]["description"]
    assert fields["events"]["type"] == "array"
    assert fields["events"]["items"] == {"$ref": "#/components/schemas/Event"}
    event = _schema("Event")
    assert sorted(event["required"]) == ["city", "date", "description", "state"]
    assert {name: f["type"] for name, f in event["properties"].items()} == dict.fromkeys(
        ["city", "state", "description", "date"], "string"
    )


def test_contract_receipt_has_date_order_id_and_receipt() -> None:
    """A 200 answers JSON with the required strings date, orderId and receipt."""
    responses = _contract()["paths"][TRACKING_PATH]["put"]["responses"]
    assert list(responses) == ["200"]
    content = responses["200"]["content"]["application/json; charset=utf-8"]
    assert content["schema"] == {"$ref": "#/components/schemas/UpdateTrackingStatus"}
    receipt = _schema("UpdateTrackingStatus")
    assert sorted(receipt["required"]) == ["date", "orderId", "receipt"]
    assert {name: f["type"] for name, f in receipt["properties"].items()} == dict.fromkeys(
        ["date", "orderId", "receipt"], "string"
    )
    assert validate_receipt(content["example"]) == []


def test_contract_authenticates_with_the_headers_the_sdk_sends() -> None:
    """Key and token together, or a user token, in the header names the SDK uses; the key
    needs the Notify invoice resource (the SDK's 403 message says so)."""
    doc = _contract()
    schemes = doc["components"]["securitySchemes"]
    assert {name: (s["in"], s["name"]) for name, s in schemes.items()} == {
        "appKey": ("header", APP_KEY_HEADER),
        "appToken": ("header", APP_TOKEN_HEADER),
        "VtexIdclientAutCookie": ("header", USER_TOKEN_HEADER),
    }
    assert doc["security"] == [{"appKey": [], "appToken": []}, {"VtexIdclientAutCookie": []}]
    assert "Notify invoice" in doc["paths"][TRACKING_PATH]["put"]["description"]


def test_contract_example_is_what_the_models_send() -> None:
    """The contract's example body, rebuilt from the models, serializes to the same JSON."""
    operation = _contract()["paths"][TRACKING_PATH]["put"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    events = example["events"]
    status = TrackingStatus(
        [TrackingEvent(e["city"], e["state"], e["description"], e["date"]) for e in events],
        example["isDelivered"],
        example["deliveredDate"],
    )
    assert json.loads(encode_status(status)) == example
    assert validate_request_body(example) == []
