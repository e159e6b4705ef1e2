"""Histories from checkpoints: ``status_from_events`` and ``TrackingHistory`` (SQLite and
Redis alike, through the ``where`` fixture), and what only the SQLite file does."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import pathlib
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from vtex_tracking import (
    Accounts,
    AsyncTrackingClient,
    AsyncTrackingHistory,
    ConfigurationError,
    HistoryUnavailableError,
    TrackingEvent,
    TrackingHistory,
    TrackingStatus,
    ValidationError,
    _history_sqlite,
    status_from_events,
)
from vtex_tracking._serde import encode_status

from .conftest import ClientFactory

URL = "http://127.0.0.1:9"  # nothing is ever sent: histories only read a client's targets
ORDER, INVOICE = "1172452900788-01", "000030711"


def event(day: int, description: str = "", city: str = "Campinas") -> TrackingEvent:
    """An event on day ``day`` of November 2026."""
    return TrackingEvent(city, "SP", description or f"Evento {day}", dt.date(2026, 11, day))


def descriptions(status: TrackingStatus | None) -> list[str]:
    assert status is not None
    return [e.description for e in status.events]


@pytest.fixture(params=["sqlite", "redis"])
def where(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """A fresh store: a SQLite file, or a real Redis."""
    if request.param == "sqlite":
        return str(tmp_path / "histories.db")
    server = request.getfixturevalue("redis_server")
    return str(server.url)


@pytest.fixture
def client(make_client: ClientFactory) -> AsyncTrackingClient:
    """A client for account acme; never used to send."""
    return make_client(URL)


@pytest.fixture
def history(where: str, client: AsyncTrackingClient) -> Iterator[TrackingHistory]:
    with TrackingHistory(where, client) as opened:
        yield opened


# -- the rules ---------------------------------------------------------------------------------


def test_status_from_events_drops_duplicates_and_orders_by_date() -> None:
    """Events in any order, with repeats, become one date-ordered list, each once."""
    status = status_from_events([event(3), event(1), event(3), event(2), event(1)])
    assert descriptions(status) == ["Evento 1", "Evento 2", "Evento 3"]
    assert status.is_delivered is False


def test_an_event_is_the_same_whatever_its_date_type_or_spacing() -> None:
    """A date and its ISO string, or text differing only in spaces, are one event."""
    first = TrackingEvent("São Paulo", "SP", "Em trânsito", dt.date(2026, 11, 2))
    again = TrackingEvent(" São  Paulo", "SP ", "Em  trânsito", "2026-11-02")
    other_case = TrackingEvent("São Paulo", "SP", "EM TRÂNSITO", "2026-11-02")
    assert status_from_events([first, again]).events == (first,)
    assert len(status_from_events([first, other_case]).events) == 2


def test_events_of_one_day_keep_the_order_they_became_known_in() -> None:
    """Equal dates are not reordered: the first known stays first."""
    posted, collected = event(2, "Postado"), event(2, "Coletado")
    assert descriptions(status_from_events([posted, collected])) == ["Postado", "Coletado"]
    assert descriptions(status_from_events([collected, posted])) == ["Coletado", "Postado"]


def test_datetimes_are_ordered_as_instants_whatever_their_offset() -> None:
    """10:00 at -03:00 (13:00 UTC) comes after 12:00 UTC, and a date at its midnight."""
    brt = dt.timezone(dt.timedelta(hours=-3))
    late = TrackingEvent(
        "Recife", "PE", "Saiu para entrega", dt.datetime(2026, 11, 2, 10, tzinfo=brt)
    )
    early = TrackingEvent("Recife", "PE", "Chegou", "2026-11-02T12:00:00Z")
    day = TrackingEvent("Recife", "PE", "Previsto", "2026-11-02")
    assert descriptions(status_from_events([late, early, day])) == [
        "Previsto",
        "Chegou",
        "Saiu para entrega",
    ]


def test_a_date_that_is_no_date_never_reaches_a_history() -> None:
    """The models' one date rule refuses a string that reads as no date, naming the field,
    before any history could hold it."""
    with pytest.raises(ValidationError) as caught:
        TrackingEvent("Recife", "PE", "Sem data", "ontem")
    assert caught.value.field == "TrackingEvent.date"


def test_delivered_with_returned_flag_is_refused_naming_the_field() -> None:
    """returned=True and is_delivered=True: ValidationError on TrackingStatus.is_delivered."""
    with pytest.raises(ValidationError) as caught:
        status_from_events([event(2)], is_delivered=True, returned=True)
    assert caught.value.field == "TrackingStatus.is_delivered"
    assert "returned to sender" in str(caught.value)


@pytest.mark.parametrize(
    "words",
    [
        "Objeto devolvido ao remetente",
        "ENTREGUE AO REMETENTE",
        "Returned to sender",
        "Devuelto al remitente",
        "En devolución",
    ],
)
def test_delivered_with_a_return_in_the_events_is_refused(words: str) -> None:
    """A description saying the parcel went back (pt-BR, en, es) refuses a delivery."""
    events = [event(2), event(5, words)]
    with pytest.raises(ValidationError) as caught:
        status_from_events(events, is_delivered=True, delivered_date="2026-11-05 10:00")
    assert caught.value.field == "TrackingStatus.is_delivered"
    assert words[:20] in str(caught.value)


def test_returned_false_vouches_that_no_event_is_a_return() -> None:
    """returned=False skips the words: a delivery is accepted."""
    events = [event(2, "Devolvido ao remetente"), event(5, "Entregue")]
    status = status_from_events(events, is_delivered=True, returned=False)
    assert status.is_delivered is True


def test_a_return_not_marked_delivered_is_accepted() -> None:
    """Returned to sender and not delivered is what to send: no refusal."""
    status = status_from_events([event(5, "Devolvido ao remetente")], returned=True)
    assert descriptions(status) == ["Devolvido ao remetente"]
    assert status.is_delivered is False


def test_status_from_events_refuses_what_is_not_events() -> None:
    """A dict in the list is refused, naming its index."""
    with pytest.raises(ValidationError) as caught:
        status_from_events([event(1), {"city": "Recife"}])  # type: ignore[list-item]
    assert caught.value.field == "events[1]"


# -- the accumulator, SQLite and Redis -----------------------------------------------------------


def test_checkpoints_out_of_order_become_one_date_ordered_history(
    history: TrackingHistory,
) -> None:
    """Each add answers the whole history so far, in date order."""
    assert descriptions(history.add(ORDER, INVOICE, event(3))) == ["Evento 3"]
    assert descriptions(history.add(ORDER, INVOICE, event(1))) == ["Evento 1", "Evento 3"]
    status = history.add(ORDER, INVOICE, event(2))
    assert descriptions(status) == ["Evento 1", "Evento 2", "Evento 3"]
    assert history.get(ORDER, INVOICE) == status


def test_a_redelivered_checkpoint_changes_nothing(history: TrackingHistory) -> None:
    """The same checkpoint again answers the same history, byte for byte on the wire."""
    history.add(ORDER, INVOICE, event(1))
    first = history.add(ORDER, INVOICE, event(2))
    again = history.add(ORDER, INVOICE, event(2))
    assert again == first
    assert encode_status(again) == encode_status(first)


def test_a_snapshot_missing_events_never_shrinks_the_history(history: TrackingHistory) -> None:
    """A TrackingStatus with fewer events adds what it has and removes nothing."""
    history.add(ORDER, INVOICE, [event(1), event(2), event(3)])
    status = history.add(ORDER, INVOICE, TrackingStatus([event(2), event(4)]))
    assert descriptions(status) == ["Evento 1", "Evento 2", "Evento 3", "Evento 4"]


def test_replace_shrinks_the_history_when_asked(history: TrackingHistory) -> None:
    """replace sets exactly the events given (ordered, de-duplicated), delivery included."""
    history.add(ORDER, INVOICE, [event(1), event(2), event(3)], is_delivered=True,
                delivered_date="2026-11-03 10:00")  # fmt: skip
    status = history.replace(ORDER, INVOICE, TrackingStatus([event(3), event(1), event(1)]))
    assert descriptions(status) == ["Evento 1", "Evento 3"]
    assert status.is_delivered is False
    assert history.get(ORDER, INVOICE) == status


def test_delivered_stays_delivered_through_later_checkpoints(history: TrackingHistory) -> None:
    """A checkpoint without delivery, arriving late, keeps the delivery and its date; a
    delivery date given later replaces it."""
    history.add(ORDER, INVOICE, event(5, "Entregue"), is_delivered=True,
                delivered_date=dt.datetime(2026, 11, 5, 14, 30))  # fmt: skip
    late = history.add(ORDER, INVOICE, event(4, "Saiu para entrega"))
    assert late.is_delivered is True
    assert late.delivered_date == dt.datetime(2026, 11, 5, 14, 30)
    assert descriptions(late) == ["Saiu para entrega", "Entregue"]
    fixed = history.add(ORDER, INVOICE, [], delivered_date="2026-11-05 15:00")
    assert fixed.delivered_date == "2026-11-05 15:00"


def test_dates_come_back_as_the_types_given(history: TrackingHistory) -> None:
    """Dates, datetimes and strings read back as such, so the body is the one pushed first."""
    brt = dt.timezone(dt.timedelta(hours=-3))
    events = [
        TrackingEvent("Recife", "PE", "a", dt.date(2026, 11, 1)),
        TrackingEvent("Recife", "PE", "b", dt.datetime(2026, 11, 2, 9, 30, tzinfo=brt)),
        TrackingEvent("Recife", "PE", "c", "2026-11-03"),
    ]
    added = history.add(ORDER, INVOICE, events, is_delivered=True,
                        delivered_date=dt.datetime(2026, 11, 3, 18, 0, tzinfo=brt))  # fmt: skip
    read = history.get(ORDER, INVOICE)
    assert (
        read == added == TrackingStatus(events, True, dt.datetime(2026, 11, 3, 18, 0, tzinfo=brt))
    )


def test_returned_is_kept_and_refuses_a_later_delivery(history: TrackingHistory) -> None:
    """After returned=True, a delivered checkpoint is refused and nothing of it is stored."""
    history.add(ORDER, INVOICE, event(6, "Aguardando retirada"), returned=True)
    with pytest.raises(ValidationError) as caught:
        history.add(ORDER, INVOICE, event(7, "Entregue"), is_delivered=True,
                    delivered_date="2026-11-07 10:00")  # fmt: skip
    assert caught.value.field == "TrackingStatus.is_delivered"
    kept = history.get(ORDER, INVOICE)
    assert descriptions(kept) == ["Aguardando retirada"]
    assert kept is not None and kept.is_delivered is False


def test_a_delivery_after_a_return_event_is_refused(history: TrackingHistory) -> None:
    """A 'devolvido ao remetente' event in the history refuses a delivered checkpoint."""
    history.add(ORDER, INVOICE, event(6, "Objeto devolvido ao remetente"))
    with pytest.raises(ValidationError):
        history.add(ORDER, INVOICE, event(7, "Entregue"), is_delivered=True,
                    delivered_date="2026-11-07 10:00")  # fmt: skip
    assert history.get(ORDER, INVOICE) == TrackingStatus(
        [event(6, "Objeto devolvido ao remetente")]
    )


def test_histories_are_bound_to_account_and_target(where: str, make_client: ClientFactory) -> None:
    """The same store read through another account, environment or base URL knows nothing
    of an invoice; its own target reads it back."""
    accounts = Accounts.from_mapping({"other": {"app_key": "k", "app_token": "t", "base_url": URL}})
    hub = make_client(URL, accounts=accounts)
    with TrackingHistory(where, hub) as history:
        history.add(ORDER, INVOICE, event(1))
        assert history.get(ORDER, INVOICE, account_name="other") is None
        history.add(ORDER, INVOICE, event(2), account_name="other")
        assert descriptions(history.get(ORDER, INVOICE)) == ["Evento 1"]
        assert descriptions(history.get(ORDER, INVOICE, account_name="other")) == ["Evento 2"]
    for other_target in (
        make_client("http://127.0.0.1:10"),
        make_client(URL, "acme2"),
        AsyncTrackingClient("acme", "k", "t", environment="vtexcommercebeta"),
    ):
        with TrackingHistory(where, other_target) as elsewhere:
            assert elsewhere.get(ORDER, INVOICE) is None
    with TrackingHistory(where, make_client(URL)) as same:
        assert descriptions(same.get(ORDER, INVOICE)) == ["Evento 1"]


def test_forget_drops_the_history(history: TrackingHistory) -> None:
    """forget answers whether there was a history, and afterwards there is none."""
    history.add(ORDER, INVOICE, event(1))
    assert history.forget(ORDER, INVOICE) is True
    assert history.get(ORDER, INVOICE) is None
    assert history.forget(ORDER, INVOICE) is False


def test_concurrent_writers_lose_no_event(where: str, make_client: ClientFactory) -> None:
    """Six writers with connections of their own add 20 events each to one invoice at
    once: all 120 are in the history, in date order."""
    writers = [TrackingHistory(where, make_client(URL)) for _ in range(6)]
    start = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def write(n: int, history: TrackingHistory) -> None:
        try:
            start.wait()
            for k in range(20):
                when = dt.datetime(2026, 11, 1, 8) + dt.timedelta(minutes=k * 6 + n)
                history.add(ORDER, INVOICE, TrackingEvent("Recife", "PE", f"w{n} e{k}", when))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n, h)) for n, h in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    final = writers[0].get(ORDER, INVOICE)
    assert final is not None and len(final.events) == 120
    dates = [e.date for e in final.events]
    assert dates == sorted(dates)
    for writer in writers:
        writer.close()


@pytest.mark.anyio
async def test_async_history_merges_like_the_sync_one(
    where: str, make_client: ClientFactory
) -> None:
    """AsyncTrackingHistory adds, reads, replaces and forgets with the same rules."""
    async with AsyncTrackingHistory(where, make_client(URL)) as history:
        await history.add(ORDER, INVOICE, event(2))
        status = await history.add(ORDER, INVOICE, [event(1), event(2)])
        assert descriptions(status) == ["Evento 1", "Evento 2"]
        assert await history.get(ORDER, INVOICE) == status
        with pytest.raises(ValidationError):
            await history.add(ORDER, INVOICE, event(3), is_delivered=True, returned=True)
        replaced = await history.replace(ORDER, INVOICE, TrackingStatus([event(2)]))
        assert descriptions(replaced) == ["Evento 2"]
        assert await history.forget(ORDER, INVOICE) is True


def test_bad_arguments_are_refused_before_anything_is_stored(history: TrackingHistory) -> None:
    """A checkpoint that is no event, a bad invoice number or returned='yes' is refused."""
    with pytest.raises(ValidationError) as caught:
        history.add(ORDER, INVOICE, "Entregue")  # type: ignore[arg-type]
    assert caught.value.field == "checkpoint"
    with pytest.raises(ValidationError) as caught:
        history.add(ORDER, "NF 1 ", event(1))
    assert caught.value.field == "invoice_number"
    with pytest.raises(ValidationError):
        history.add(ORDER, INVOICE, event(1), returned="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        history.add(ORDER, INVOICE, event(1), account_name="nobody")
    assert history.get(ORDER, INVOICE) is None


# -- SQLite only -------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "histories.db"


def test_a_damaged_row_reads_as_empty_with_a_warning(
    db_path: pathlib.Path, client: AsyncTrackingClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A row that is not a history is taken as empty (one warning naming the invoice), and
    the next checkpoint overwrites it."""
    with TrackingHistory(db_path, client) as history:
        history.add(ORDER, INVOICE, event(1))
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("UPDATE histories SET doc = ?", (b'{"v": 1, "events": [["x"]]}',))
    with (
        caplog.at_level(logging.WARNING, logger="vtex_tracking"),
        TrackingHistory(db_path, client) as history,
    ):
        assert history.get(ORDER, INVOICE) is None
        assert descriptions(history.add(ORDER, INVOICE, event(2))) == ["Evento 2"]
        assert descriptions(history.get(ORDER, INVOICE)) == ["Evento 2"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the get, then the add that overwrote it
    assert INVOICE in warnings[0].getMessage()


def test_a_file_of_something_else_is_refused_naming_it(
    tmp_path: pathlib.Path, client: AsyncTrackingClient
) -> None:
    """A text file, or another SQLite file of this SDK, is a ConfigurationError naming it."""
    text = tmp_path / "notes.txt"
    text.write_text("not a database, " * 100)
    with pytest.raises(ConfigurationError, match=r"notes\.txt"):
        TrackingHistory(text, client)
    journal = tmp_path / "push.journal"
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('kind', 'journal'), ('format', '2')")
    with pytest.raises(ConfigurationError, match=r"push\.journal"):
        TrackingHistory(journal, client)


def test_a_history_older_than_max_age_is_forgotten(
    db_path: pathlib.Path, client: AsyncTrackingClient
) -> None:
    """A history unchanged for max_age reads as missing; the next checkpoint starts anew."""
    with TrackingHistory(db_path, client, max_age=3600) as history:
        history.add(ORDER, INVOICE, event(1))
        with contextlib.closing(sqlite3.connect(db_path)) as db, db:
            db.execute("UPDATE histories SET at = at - 7200")
        assert history.get(ORDER, INVOICE) is None
        assert descriptions(history.add(ORDER, INVOICE, event(2))) == ["Evento 2"]


def test_a_file_held_too_long_fails_with_history_unavailable(
    db_path: pathlib.Path, client: AsyncTrackingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the write lock past the wait, add raises
    HistoryUnavailableError naming the file; once it lets go, add works."""
    monkeypatch.setattr(_history_sqlite, "HISTORY_WAIT", 0.05)
    with TrackingHistory(db_path, client) as history:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(HistoryUnavailableError, match=r"histories\.db"):
            history.add(ORDER, INVOICE, event(1))
        other.execute("ROLLBACK")
        other.close()
        assert descriptions(history.add(ORDER, INVOICE, event(1))) == ["Evento 1"]


def test_the_file_holds_no_ids_in_clear(db_path: pathlib.Path, client: AsyncTrackingClient) -> None:
    """Keys are digests: the order id and invoice number appear nowhere in the file."""
    with TrackingHistory(db_path, client) as history:
        history.add(ORDER, INVOICE, event(1))
    raw = b"".join(p.read_bytes() for p in db_path.parent.iterdir())
    assert b"Evento 1" in raw
    assert ORDER.encode() not in raw and INVOICE.encode() not in raw


def test_sync_code_pushes_full_histories_and_skips_redeliveries(
    where: str, make_client: ClientFactory, tmp_path: pathlib.Path
) -> None:
    """With a TrackingClient (Django, Celery): each checkpoint's whole history is pushed,
    and a redelivered one, unchanged, sends nothing."""
    from vtex_tracking import TrackingUpdate
    from vtex_tracking.testing import FakeOMS

    unchanged = str(tmp_path / "unchanged.db")
    with FakeOMS() as oms:
        client = make_client.sync(oms)
        with TrackingHistory(where, client) as history:
            outcomes = []
            for checkpoint in (event(2), event(1), event(2)):
                status = history.add(ORDER, INVOICE, checkpoint)
                update = TrackingUpdate(ORDER, INVOICE, status)
                summary = client.push_all([update], skip_unchanged=unchanged)
                outcomes.append(dict(summary.by_outcome))
        assert outcomes == [{"200": 1}, {"200": 1}, {"unchanged": 1}]
        bodies = oms.accepted(ORDER, INVOICE)
        assert [[e["description"] for e in b["events"]] for b in bodies] == [
            ["Evento 2"],
            ["Evento 1", "Evento 2"],
        ]
