"""The Django recipe (examples/django_project) with FakeOMS as VTEX: the view through Django's
test client, the push_tracking command through call_command, and the module-level client in
a forked worker.

Django's settings are process-wide: this module sets them up once (module-scoped fixture) with
DJANGO_SETTINGS_MODULE pointing at the recipe, and no other test module uses Django.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import signal
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.test.utils import setup_test_environment, teardown_test_environment

from vtex_tracking import RetryPolicy, TrackingClient
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN

PROJECT = pathlib.Path(__file__).resolve().parents[1] / "examples" / "django_project"
BODY: dict[str, Any] = {
    "isDelivered": False,
    "deliveredDate": None,
    "events": [
        {"city": "Recife", "state": "PE", "description": "Postado", "date": "2026-11-02"},
        {"city": "Olinda", "state": "PE", "description": "Saiu para entrega", "date": "2026-11-03"},
    ],
}


def _url(order_id: str, invoice_number: str) -> str:
    return f"/orders/{order_id}/invoices/{invoice_number}/tracking"


@pytest.fixture(scope="module")
def oms() -> Iterator[FakeOMS]:
    """One FakeOMS for the module: the recipe's client is built once, with its URL."""
    with FakeOMS() as server:
        yield server


@pytest.fixture(scope="module")
def project(oms: FakeOMS) -> Iterator[ModuleType]:
    """The recipe set up as Django would run it (credentials in the environment); yields
    its ``shipments.tracking`` module, whose client is closed at the end."""
    assert not settings.configured, "another test module configured Django first"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_SETTINGS_MODULE", "tracking_site.settings")
        patch.setenv("VTEX_ACCOUNT_NAME", "acme")
        patch.setenv("VTEX_APP_KEY", APP_KEY)
        patch.setenv("VTEX_APP_TOKEN", APP_TOKEN)
        patch.setenv("VTEX_BASE_URL", oms.url)
        patch.delenv("VTEX_USER_TOKEN", raising=False)
        patch.syspath_prepend(str(PROJECT))
        django.setup()
        setup_test_environment()  # lets the test client's "testserver" host in
        import shipments.tracking

        try:
            yield shipments.tracking
        finally:
            shipments.tracking.client.close()
            teardown_test_environment()


@pytest.fixture
def http(project: ModuleType, oms: FakeOMS) -> Iterator[Client]:
    """Django's test client, with FakeOMS's records and knobs reset."""
    oms.reset()
    yield Client()
    oms.strict = False
    oms.known_invoices.clear()


def test_view_forwards_the_body_and_answers_the_receipt(http: Client, oms: FakeOMS) -> None:
    """A PUT to the view reaches VTEX unchanged and answers VTEX's receipt."""
    response = http.put(
        _url("1172452900788-01", "000030711"), json.dumps(BODY), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["orderId"], answer["attempts"]) == ("1172452900788-01", 1)
    assert len(answer["receipt"]) == 32
    assert oms.accepted("1172452900788-01", "000030711") == [BODY]
    assert oms.requests[0].headers["X-VTEX-API-AppKey"] == APP_KEY


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"isDelivered": False, "deliveredDate": None}, "events"),
        ({**BODY, "events": [{"city": "Recife"}]}, "events[0].state"),
        ({**BODY, "isDelivred": True}, "isDelivred"),
        ({**BODY, "isDelivered": "no"}, "TrackingStatus.is_delivered"),
        (
            {**BODY, "events": [{**BODY["events"][0], "description": "x" * 5001}]},
            "TrackingEvent.description",
        ),
        ([BODY], "body"),
    ],
    ids=["no-events", "incomplete-event", "unknown-field", "not-boolean", "too-long", "array"],
)
def test_view_answers_422_naming_the_field(
    http: Client, oms: FakeOMS, body: object, field: str
) -> None:
    """A body that cannot form a valid update answers 422 naming the field; nothing is sent."""
    response = http.put(_url("o-1", "NF-1"), json.dumps(body), content_type="application/json")
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert response.json()["error"] == "ValidationError"
    assert oms.requests == []


def test_view_answers_400_to_a_body_that_is_not_json(http: Client, oms: FakeOMS) -> None:
    """A body that is not JSON answers 400 and nothing is sent."""
    response = http.put(_url("o-1", "NF-1"), "{oops", content_type="application/json")
    assert response.status_code == 400
    assert oms.requests == []


def test_view_refuses_other_methods(http: Client, oms: FakeOMS) -> None:
    """Only PUT is routed to VTEX; a GET answers 405."""
    assert http.get(_url("o-1", "NF-1")).status_code == 405
    assert oms.requests == []


@pytest.mark.parametrize(
    ("vtex_status", "headers", "status", "retry_after"),
    [
        (404, {}, 404, None),
        (429, {"Retry-After": "7"}, 503, "7"),
        (429, {}, 503, "30"),
        (500, {}, 502, None),
        (403, {}, 502, None),
    ],
)
def test_view_maps_vtex_errors_to_http_answers(
    http: Client,
    oms: FakeOMS,
    monkeypatch: pytest.MonkeyPatch,
    vtex_status: int,
    headers: dict[str, str],
    status: int,
    retry_after: str | None,
) -> None:
    """VTEX's refusals become 404, 503 with Retry-After, or 502, with VTEX's status. (A
    one-attempt client stands in for the project's, whose pace must not learn these 429s.)"""
    import shipments.views

    one_attempt = TrackingClient(
        "acme", APP_KEY, APP_TOKEN, base_url=oms.url, retry=RetryPolicy.disabled()
    )
    monkeypatch.setattr(shipments.views, "client", one_attempt)
    oms.fail_next(1, vtex_status, headers=headers)
    try:
        response = http.put(_url("o-1", "NF-1"), json.dumps(BODY), content_type="application/json")
    finally:
        one_attempt.close()
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    assert response.json()["vtexStatus"] == vtex_status
    assert APP_TOKEN not in response.content.decode()
    assert len(oms.requests) == 1


def _write_feed(path: pathlib.Path, lines: list[object]) -> str:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return str(path)


def test_command_pushes_a_file_in_order_and_prints_a_summary(
    http: Client, oms: FakeOMS, tmp_path: pathlib.Path
) -> None:
    """push_tracking FILE sends every update, one invoice's in file order, and prints the
    totals."""
    first = {**BODY, "events": BODY["events"][:1]}
    feed = _write_feed(
        tmp_path / "eventos.jsonl",
        [
            {"orderId": "o-1", "invoiceNumber": "NF-1", **first},
            {"orderId": "o-2", "invoiceNumber": "NF-2", **BODY},
            {"orderId": "o-1", "invoiceNumber": "NF-1", **BODY},
        ],
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("push_tracking", feed, stdout=out, stderr=err)
    assert out.getvalue().strip() == (
        "Pushed 3 updates: 3 succeeded, 0 failed; 0 unreadable lines."
    )
    assert err.getvalue() == ""
    assert oms.accepted("o-1", "NF-1") == [first, BODY]
    assert oms.accepted("o-2", "NF-2") == [BODY]


def test_command_reports_each_failure_and_fails(
    http: Client, oms: FakeOMS, tmp_path: pathlib.Path
) -> None:
    """An unknown invoice (VTEX's 404) and an unreadable line are each reported, the rest is
    sent, and the command ends with CommandError."""
    oms.strict = True
    oms.add_invoice("o-1", "NF-1")
    feed = _write_feed(
        tmp_path / "eventos.jsonl",
        [
            {"orderId": "o-1", "invoiceNumber": "NF-1", **BODY},
            "{not json",
            {"orderId": "o-9", "invoiceNumber": "NF-9", **BODY},
        ],
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="2 updates not confirmed"):
        call_command("push_tracking", feed, stdout=out, stderr=err)
    assert "Pushed 2 updates: 1 succeeded, 1 failed; 1 unreadable lines." in out.getvalue()
    errors = err.getvalue().splitlines()
    assert errors[0].startswith("o-9/NF-9: ") and "404" in errors[0]
    assert errors[1].startswith(f"{feed}:2: ")
    assert oms.accepted("o-1", "NF-1") == [BODY]
    assert APP_TOKEN not in out.getvalue() + err.getvalue()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads, Python 3.12+
def test_module_level_client_serves_a_forked_worker(http: Client, oms: FakeOMS) -> None:
    """As under gunicorn --preload: the parent used the module-level client, then forks; the
    worker's requests go through, and the parent's client still works."""
    body = json.dumps(BODY)
    assert http.put(_url("parent", "1"), body, content_type="application/json").status_code == 200
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            response = Client().put(_url("worker", "1"), body, content_type="application/json")
            code = 0 if response.status_code == 200 else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, exit_status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked worker hung")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(exit_status) == 0
    assert http.put(_url("parent", "2"), body, content_type="application/json").status_code == 200
    assert {order for order, _ in oms.updates} == {"parent", "worker"}
