"""What only the Redis store of ``TrackingHistory`` does: keys, expiry, damaged or foreign
values, and a Redis that does not answer (a real redis-server, stopped for the outage)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from vtex_tracking import (
    AsyncTrackingClient,
    HistoryUnavailableError,
    TrackingEvent,
    TrackingHistory,
    _history_redis,
)

from .conftest import ClientFactory
from .redis_server import RedisServer

URL = "http://127.0.0.1:9"
ORDER, INVOICE = "1172452900788-01", "000030711"
PREFIX = "vtex-tracking:history"


def event(day: int) -> TrackingEvent:
    return TrackingEvent("Campinas", "SP", f"Evento {day}", dt.date(2026, 11, day))


@pytest.fixture
def client(make_client: ClientFactory) -> AsyncTrackingClient:
    return make_client(URL)


@pytest.fixture
def history(redis_server: RedisServer, client: AsyncTrackingClient) -> Iterator[TrackingHistory]:
    with TrackingHistory(redis_server.url, client, max_age=3600) as opened:
        yield opened


def only_key(direct: Any) -> str:
    keys = direct.keys(f"{PREFIX}:*")
    assert len(keys) == 1
    return str(keys[0])


def test_one_key_per_invoice_expiring_after_max_age_with_no_ids(
    history: TrackingHistory, direct: Any
) -> None:
    """An invoice is one key under the prefix, named by a digest (no order id or invoice
    number in it), expiring within max_age."""
    history.add(ORDER, INVOICE, event(1))
    key = only_key(direct)
    assert ORDER not in key and INVOICE not in key
    assert 3_500_000 < direct.pttl(key) <= 3_600_000
    assert "Evento 1" in direct.get(key)


def test_garbage_in_the_key_reads_as_empty_with_a_warning(
    history: TrackingHistory, direct: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A value that is no history (written by hand) is taken as empty with a warning, and
    the next checkpoint overwrites it."""
    history.add(ORDER, INVOICE, event(1))
    key = only_key(direct)
    direct.set(key, "{not json")
    with caplog.at_level(logging.WARNING, logger="vtex_tracking"):
        assert history.get(ORDER, INVOICE) is None
        status = history.add(ORDER, INVOICE, event(2))
    assert [e.description for e in status.events] == ["Evento 2"]
    assert any(INVOICE in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "Evento 2" in direct.get(key)


def test_a_key_of_another_type_is_overwritten(history: TrackingHistory, direct: Any) -> None:
    """A list where the history should be reads as damaged and is replaced by the next add."""
    history.add(ORDER, INVOICE, event(1))
    key = only_key(direct)
    direct.delete(key)
    direct.rpush(key, "a", "b")
    assert history.get(ORDER, INVOICE) is None
    status = history.add(ORDER, INVOICE, event(3))
    assert [e.description for e in status.events] == ["Evento 3"]
    assert direct.type(key) == "string"


def test_a_writer_that_loses_the_race_merges_again(
    history: TrackingHistory, direct: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another writer changes the key between the read and the write, the merge runs
    again on what it wrote: both checkpoints are kept."""
    history.add(ORDER, INVOICE, event(1))
    key = only_key(direct)
    store = history._store
    real_get = store._get  # type: ignore[attr-defined]
    sneaked: list[bool] = []

    def get_then_another_writer(name: str) -> bytes | None:
        value = real_get(name)
        if not sneaked:  # another worker adds event 2 right after our read
            sneaked.append(True)
            with TrackingHistory(history_url(direct), history._client) as other:
                other.add(ORDER, INVOICE, event(2))
        return value  # type: ignore[no-any-return]

    monkeypatch.setattr(store, "_get", get_then_another_writer)
    status = history.add(ORDER, INVOICE, event(3))
    assert [e.description for e in status.events] == ["Evento 1", "Evento 2", "Evento 3"]
    assert "Evento 2" in direct.get(key) and "Evento 3" in direct.get(key)


def history_url(direct: Any) -> str:
    kwargs = direct.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


def test_redis_down_fails_the_call_without_the_password(
    redis_server: RedisServer, client: AsyncTrackingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis stopped, add raises HistoryUnavailableError (nothing merged) naming Redis
    without its password; the repr hides it too. After a restart the history works."""
    monkeypatch.setattr(_history_redis, "HISTORY_WAIT", 0.5)
    url = redis_server.url.replace("redis://", "redis://:s3cret-pw@")
    redis_server.stop()
    with TrackingHistory(url, client) as history:
        assert "s3cret-pw" not in repr(history)
        with pytest.raises(HistoryUnavailableError) as caught:
            history.add(ORDER, INVOICE, event(1))
        assert "s3cret-pw" not in str(caught.value)
        assert f"127.0.0.1:{redis_server.port}" in str(caught.value)
    redis_server.start()
    with TrackingHistory(redis_server.url, client) as history:
        assert [e.description for e in history.add(ORDER, INVOICE, event(1)).events] == [
            "Evento 1"
        ]
