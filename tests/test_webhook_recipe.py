"""The webhook recipe (examples/webhook_fastapi.py) served by a real uvicorn on 127.0.0.1,
posted to over real HTTP, with FakeOMS as VTEX: checkpoints become full-history pushes and
redeliveries send nothing. The last test is the benchmark's measurement, smaller."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from benchmarks import webhook_recipe as bench
from vtex_tracking import TrackingHistory
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN
from .redis_server import RedisServer
from .test_examples_fastapi import LiveServer, load_example

RECIPE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "webhook_fastapi.py"
ORDER, INVOICE = "1172452900788-01", "000030711"
WEBHOOK = "/webhooks/checkpoint"


recipe = load_example(RECIPE)


def checkpoint(day: int, description: str = "", **extra: Any) -> dict[str, Any]:
    """A webhook body for the test's invoice: one event on day ``day`` of November 2025."""
    event = {
        "city": "Recife",
        "state": "PE",
        "description": description or f"Evento {day}",
        "date": f"2025-11-{day:02d}",
    }
    return {"orderId": ORDER, "invoiceNumber": INVOICE, "event": event, **extra}


@pytest.fixture
def oms(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOMS]:
    """FakeOMS as VTEX, and the environment the recipe configures its client from."""
    with FakeOMS() as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", APP_KEY)
        monkeypatch.setenv("VTEX_APP_TOKEN", APP_TOKEN)
        monkeypatch.setenv("VTEX_BASE_URL", server.url)
        monkeypatch.delenv("VTEX_USER_TOKEN", raising=False)
        yield server


@contextlib.contextmanager
def serving(history: str, unchanged: str, **client_options: Any) -> Iterator[LiveServer]:
    live = LiveServer(recipe.create_app(history, unchanged, **client_options))
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def files(tmp_path: pathlib.Path) -> tuple[str, str]:
    return str(tmp_path / "history.db"), str(tmp_path / "unchanged.db")


@pytest.fixture
def live(oms: FakeOMS, files: tuple[str, str]) -> Iterator[LiveServer]:
    with serving(*files) as server:
        yield server


def post(live: LiveServer, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=live.url, trust_env=False, timeout=30) as http:
        return http.post(WEBHOOK, json=body)


def puts(oms: FakeOMS) -> list[Any]:
    return [r for r in oms.requests if r.method == "PUT"]


def test_checkpoints_out_of_order_become_one_full_history_at_vtex(
    live: LiveServer, oms: FakeOMS
) -> None:
    """Three checkpoints posted 2, 3, 1: each PUT carries the whole history so far, and VTEX
    ends with all three in date order, delivered."""
    assert post(live, checkpoint(2)).json() == {"outcome": "200", "events": 1, "isDelivered": False}
    last = checkpoint(3, "Entregue", delivered=True, deliveredDate="2025-11-03 14:30")
    assert post(live, last).json()["events"] == 2
    answer = post(live, checkpoint(1))
    assert answer.status_code == 200 and answer.json()["isDelivered"] is True
    bodies = oms.accepted(ORDER, INVOICE)
    assert [[e["description"] for e in b["events"]] for b in bodies] == [
        ["Evento 2"],
        ["Evento 2", "Entregue"],
        ["Evento 1", "Evento 2", "Entregue"],
    ]
    assert bodies[-1]["isDelivered"] is True
    assert bodies[-1]["deliveredDate"] == "2025-11-03 14:30"


def test_a_redelivered_webhook_sends_nothing(live: LiveServer, oms: FakeOMS) -> None:
    """The same checkpoint posted again, and an older one again, answer "unchanged" and
    make no request to VTEX."""
    post(live, checkpoint(1))
    post(live, checkpoint(2))
    sent = len(oms.requests)
    assert post(live, checkpoint(2)).json()["outcome"] == "unchanged"
    assert post(live, checkpoint(1)).json()["outcome"] == "unchanged"
    assert len(oms.requests) == sent == 2


def test_a_failed_push_is_sent_again_when_the_carrier_redelivers(
    live: LiveServer, oms: FakeOMS
) -> None:
    """VTEX fails the push (both attempts): the webhook answers 502, so the carrier
    redelivers; the redelivery pushes the history, which VTEX never confirmed."""
    post(live, checkpoint(1))
    oms.fail_next(2, 500)
    failed = post(live, checkpoint(2))
    assert failed.status_code == 502
    assert failed.json()["vtexStatus"] == 500
    again = post(live, checkpoint(2))
    assert again.status_code == 200 and again.json()["outcome"] == "200"
    assert [len(b["events"]) for b in oms.accepted(ORDER, INVOICE)] == [1, 2]
    assert len(puts(oms)) == 4  # 1 + 2 failed attempts + 1


def test_returned_to_sender_is_never_pushed_as_delivered(live: LiveServer, oms: FakeOMS) -> None:
    """After "Devolvido ao remetente", a delivered checkpoint is refused with 422 naming
    TrackingStatus.is_delivered; VTEX never gets isDelivered true."""
    post(live, checkpoint(4, "Objeto devolvido ao remetente"))
    delivered = checkpoint(5, "Entregue", delivered=True, deliveredDate="2025-11-05 09:00")
    refused = post(live, delivered)
    assert refused.status_code == 422
    assert refused.json()["field"] == "TrackingStatus.is_delivered"
    flagged = post(live, checkpoint(6, "Entregue", delivered=True,
                                     deliveredDate="2025-11-06 09:00", returned=True))  # fmt: skip
    assert flagged.status_code == 422
    assert [b["isDelivered"] for b in oms.accepted(ORDER, INVOICE)] == [False]


def test_a_checkpoint_vtex_would_refuse_is_not_stored(
    live: LiveServer, oms: FakeOMS, files: tuple[str, str]
) -> None:
    """A delivery dated in the future gets 422 before it enters the history: nothing is
    stored and nothing is sent."""
    future = checkpoint(5, "Entregue", delivered=True, deliveredDate="2999-01-01 10:00")
    answer = post(live, future)
    assert answer.status_code == 422
    assert answer.json()["field"] == "TrackingStatus.delivered_date"
    assert oms.requests == []
    with TrackingHistory(files[0], live.app.state.tracking) as history:
        assert history.get(ORDER, INVOICE) is None


def test_history_store_down_answers_503_and_sends_nothing(
    oms: FakeOMS, redis_server: RedisServer, tmp_path: pathlib.Path
) -> None:
    """With the histories' Redis stopped, a checkpoint is answered 503 with Retry-After (the
    carrier retries later) and no partial history reaches VTEX."""
    with serving(redis_server.url, str(tmp_path / "unchanged.db")) as live:
        assert post(live, checkpoint(1)).status_code == 200
        redis_server.stop()
        answer = post(live, checkpoint(2))
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.json()["error"] == "HistoryUnavailableError"
        redis_server.start()
    assert len(puts(oms)) == 1


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_carriers_day_ends_with_every_full_history_and_redeliveries_send_nothing(
    oms: FakeOMS, tmp_path: pathlib.Path, request: pytest.FixtureRequest, store: str
) -> None:
    """The benchmark, smaller: 600 checkpoints of 60 invoices posted 16 at a time, 20 %
    redelivered and 10 % out of order: every invoice ends with its whole date-ordered
    history at VTEX, no PUT repeats what VTEX had, and every redelivery says "unchanged"."""
    if store == "redis":
        url = request.getfixturevalue("redis_server").url
        history, unchanged = url, url
    else:
        history, unchanged = str(tmp_path / "h.db"), str(tmp_path / "u.db")
    plan = bench.make_plan(60, 10, redelivered=0.2, out_of_order=0.1)
    assert sum(d.original is not None for d in plan) == 120
    assert sum(d.late for d in plan) == 60
    with serving(history, unchanged) as live:
        answers = asyncio.run(bench.post_all(live.url + WEBHOOK, plan, concurrency=16))
    result = bench.check(oms, plan, answers, steps=10)
    assert result["complete_histories"] == 60
    assert result["rollbacks"] == 0 and result["repeated_bodies"] == 0
    assert result["redelivery_outcomes"] == {"unchanged": 120}
    assert result["webhook_statuses"] == {"200": 720}
    assert result["puts"] == 600
    assert result["ok"] is True
