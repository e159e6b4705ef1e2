"""Validate JSON documents against the schemas in VTEX's OpenAPI file (the packaged copy).

A deliberately small validator for the subset of JSON Schema the file uses (``type``,
``required``, ``properties``, ``items``, ``nullable``, ``$ref``), so the fake server needs no
extra dependency and cannot drift from the contract: it reads the contract itself. The
contract's path template also drives how the fake server finds the ids in a request path.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any
from urllib.parse import unquote

from .._dates import delivered_date_problem, event_date_problem

_TRACKING_PATH = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"
_INVOICE_PATH = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}"
_ORDER_PATH = "/api/oms/pvt/orders/{orderId}"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


@functools.lru_cache(maxsize=2)
def _packaged(name: str) -> dict[str, Any]:
    text = importlib.resources.files("vtex_tracking.testing").joinpath(name).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def openapi() -> dict[str, Any]:
    """The packaged copy of VTEX's OpenAPI description of the endpoint."""
    return _packaged("vtex-tracking-openapi.json")


def flow_openapi() -> dict[str, Any]:
    """The packaged copy of VTEX's description of the carrier's whole flow (an excerpt of the
    Orders API: PATCH of the invoice's tracking number, PUT of its events, GET of the order)."""
    return _packaged("vtex-orders-tracking-flow-openapi.json")


def tracking_number_request_schema() -> dict[str, Any]:
    """The PATCH's body schema (``Updatepartialinvoice.SendTrackingNumber.Request``)."""
    operation = flow_openapi()["paths"][_INVOICE_PATH]["patch"]
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


def tracking_number_receipt_schema() -> dict[str, Any]:
    """The PATCH's 200 answer schema (``Updatepartialinvoice.SendTrackingNumber``)."""
    content = flow_openapi()["paths"][_INVOICE_PATH]["patch"]["responses"]["200"]["content"]
    schema: dict[str, Any] = next(iter(content.values()))["schema"]
    return schema


def _operation() -> dict[str, Any]:
    operation: dict[str, Any] = openapi()["paths"][_TRACKING_PATH]["put"]
    return operation


def request_schema() -> dict[str, Any]:
    """The request body schema (``UpdateTrackingStatusRequest``)."""
    schema: dict[str, Any] = _operation()["requestBody"]["content"]["application/json"]["schema"]
    return schema


def receipt_schema() -> dict[str, Any]:
    """The 200 response schema (``UpdateTrackingStatus``)."""
    content = _operation()["responses"]["200"]["content"]
    schema: dict[str, Any] = next(iter(content.values()))["schema"]
    return schema


def parse_order_path(raw_path: str) -> str | None:
    """The order id from a raw path of the order ("Get order"), percent-decoded; None when
    the path is not the order's."""
    path = raw_path.split("?", 1)[0].replace("%2F", "/").replace("%2f", "/")
    parts = path.split("/")
    template = _ORDER_PATH.split("/")
    if len(parts) != len(template) or parts[:-1] != template[:-1] or not parts[-1]:
        return None
    return unquote(parts[-1])


def parse_invoice_path(
    raw_path: str, *, routes_encoded_slash: bool = False
) -> tuple[str, str] | None:
    """``(order_id, invoice_number)`` from a raw path of the invoice (the tracking number's
    PATCH), as ``parse_tracking_path`` does for the events' path."""
    return _parse_path(_INVOICE_PATH, raw_path, routes_encoded_slash)


def parse_tracking_path(
    raw_path: str, *, routes_encoded_slash: bool = False
) -> tuple[str, str] | None:
    """``(order_id, invoice_number)`` from a raw request path matching the contract's path
    template, each segment percent-decoded; None when the path does not match.

    VTEX decodes ``%2F`` before routing, so ``NF%2F123`` becomes two segments and the path
    matches nothing (404): the default here too. ``routes_encoded_slash`` splits the raw
    path instead, keeping each id one segment, as the contract has it.
    """
    return _parse_path(_TRACKING_PATH, raw_path, routes_encoded_slash)


def _parse_path(
    template_path: str, raw_path: str, routes_encoded_slash: bool
) -> tuple[str, str] | None:
    template = template_path.split("/")
    path = raw_path.split("?", 1)[0]
    if not routes_encoded_slash:
        path = path.replace("%2F", "/").replace("%2f", "/")
    parts = path.split("/")
    if len(parts) != len(template):
        return None
    ids: dict[str, str] = {}
    for expected, part in zip(template, parts, strict=True):
        if expected.startswith("{"):
            if not part:
                return None
            ids[expected[1:-1]] = unquote(part)
        elif part != expected:
            return None
    return ids["orderId"], ids["invoiceNumber"]


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"unsupported $ref {ref!r}")
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


#: The schema keywords this validator reads, and those that only annotate; any other keyword
#: in the contract fails loudly (a constraint silently ignored would pass bad bodies).
_CHECKED = {"type", "required", "properties", "items", "nullable", "$ref"}
_ANNOTATIONS = {"title", "description", "example", "default", "deprecated"}


def validate(
    doc: object, schema: dict[str, Any], path: str = "", root: dict[str, Any] | None = None
) -> list[str]:
    """Problems of ``doc`` against ``schema`` (its ``$ref`` resolved in ``root``: the
    tracking contract by default), each prefixed by its JSON path; [] if valid."""
    root = root if root is not None else openapi()
    schema = _resolve(schema, root)
    unknown = set(schema) - _CHECKED - _ANNOTATIONS
    if unknown:
        raise ValueError(f"schema keywords this validator does not check: {sorted(unknown)}")
    where = path or "body"
    if doc is None:
        if schema.get("nullable"):
            return []
        return [f"{where}: expected {schema.get('type')}, got null"]
    expected = schema.get("type")
    if expected is not None:
        allowed = _TYPES.get(expected)
        if allowed is None:
            raise ValueError(f"unsupported schema type {expected!r}")
        # JSON booleans are not numbers, although bool is an int in Python.
        if not isinstance(doc, allowed) or (isinstance(doc, bool) and bool not in allowed):
            return [f"{where}: expected {expected}, got {_type_name(doc)}"]
    problems: list[str] = []
    if isinstance(doc, dict):
        for name in schema.get("required", []):
            if name not in doc:
                problems.append(f"{path + '.' if path else ''}{name}: required field missing")
        for name, subschema in schema.get("properties", {}).items():
            if name in doc:
                problems += validate(
                    doc[name], subschema, f"{path + '.' if path else ''}{name}", root
                )
    elif isinstance(doc, list) and "items" in schema:
        for index, item in enumerate(doc):
            problems += validate(item, schema["items"], f"{where}[{index}]", root)
    return problems


def validate_request_body(doc: object) -> list[str]:
    """Problems of a tracking request body against VTEX's schema, and of its dates against
    the forms VTEX documents (the SDK's one date rule, ``_dates``); [] when valid."""
    problems = validate(doc, request_schema())
    if problems or not isinstance(doc, dict):
        return problems
    for n, event in enumerate(doc.get("events") or ()):
        date = event.get("date") if isinstance(event, dict) else None
        if isinstance(date, str) and (problem := event_date_problem(date)) is not None:
            problems.append(f"events[{n}].date: {problem}")
    delivered = doc.get("deliveredDate")
    if isinstance(delivered, str) and (problem := delivered_date_problem(delivered)):
        problems.append(f"deliveredDate: {problem}")
    return problems


def validate_tracking_number_body(doc: object) -> list[str]:
    """Problems of a tracking-number (PATCH) body against VTEX's schema; [] when valid."""
    return validate(doc, tracking_number_request_schema(), root=flow_openapi())


def validate_tracking_number_receipt(doc: object) -> list[str]:
    """Problems of a PATCH's 200 answer against VTEX's schema; [] when valid."""
    return validate(doc, tracking_number_receipt_schema(), root=flow_openapi())


def validate_receipt(doc: object) -> list[str]:
    """Problems of a 200 answer against VTEX's receipt schema; [] when valid."""
    return validate(doc, receipt_schema())
