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

_TRACKING_PATH = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


@functools.lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    """The packaged copy of VTEX's OpenAPI description of the endpoint."""
    text = (
        importlib.resources.files("vtex_tracking.testing")
        .joinpath("vtex-tracking-openapi.json")
        .read_text(encoding="utf-8")
    )
    doc: dict[str, Any] = json.loads(text)
    return doc


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


def parse_tracking_path(
    raw_path: str, *, routes_encoded_slash: bool = False
) -> tuple[str, str] | None:
    """``(order_id, invoice_number)`` from a raw request path matching the contract's path
    template, each segment percent-decoded; None when the path does not match.

    VTEX decodes ``%2F`` before routing, so ``NF%2F123`` becomes two segments and the path
    matches nothing (404): the default here too. ``routes_encoded_slash`` splits the raw
    path instead, keeping each id one segment, as the contract has it.
    """
    template = _TRACKING_PATH.split("/")
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


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"unsupported $ref {ref!r}")
        node: Any = openapi()
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


def validate(doc: object, schema: dict[str, Any], path: str = "") -> list[str]:
    """Problems of ``doc`` against ``schema``, each prefixed by its JSON path; [] if valid."""
    schema = _resolve(schema)
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
                problems += validate(doc[name], subschema, f"{path + '.' if path else ''}{name}")
    elif isinstance(doc, list) and "items" in schema:
        for index, item in enumerate(doc):
            problems += validate(item, schema["items"], f"{where}[{index}]")
    return problems


def validate_request_body(doc: object) -> list[str]:
    """Problems of a tracking request body against VTEX's schema; [] when valid."""
    return validate(doc, request_schema())


def validate_receipt(doc: object) -> list[str]:
    """Problems of a 200 answer against VTEX's receipt schema; [] when valid."""
    return validate(doc, receipt_schema())
