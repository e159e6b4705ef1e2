"""``TrackingHistory`` and ``AsyncTrackingHistory``: each invoice's known tracking events,
kept between webhooks, so that a carrier's checkpoints (one event at a time) become the whole
history that VTEX's PUT replaces the invoice's with.

A carrier webhook (ShipStation, Easyship, AfterShip and the like) sends one checkpoint; the
PUT replaces every event: forwarding the checkpoint alone would erase the others. ``add``
merges a checkpoint into what is known (the rules: ``_history_rules``) and answers the full
``TrackingStatus`` to push; pushing it with ``skip_unchanged`` sends nothing for a
redelivered webhook, and sends again what VTEX never confirmed.

Each history is bound to its target, as the unchanged state is (``_remember``): its key is a
digest of the base URL the account's requests go to (account and environment, or
``base_url``), the account, the order and the invoice, so the same file or Redis used with a
staging client, another account or the fake server never mixes their events.

The stores (``_history_sqlite``, ``_history_redis``) make one blocking call per operation,
each an atomic read-merge-write; ``AsyncTrackingHistory`` makes them in a worker thread.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Protocol

import anyio.to_thread

from ._accounts import Accounts
from ._config import ClientConfig, build_base_url
from ._constants import DEFAULT_HISTORY_MAX_AGE
from ._errors import ConfigurationError, ValidationError
from ._history_rules import (
    CorruptHistoryError,
    Known,
    as_events,
    check_not_returned,
    decode,
    encode,
    merge,
)
from ._log import logger
from ._models import DeliveredDate, TrackingEvent, TrackingStatus, check_order_id
from ._public import present_lazy
from ._remember import is_redis_url, shown

__all__ = ["AsyncTrackingHistory", "TrackingHistory"]

#: What ``add`` takes: one event (a webhook's checkpoint), several, or a snapshot.
Checkpoint = TrackingEvent | Iterable[TrackingEvent] | TrackingStatus


class HistoryClient(Protocol):
    """What a history needs of a client (``TrackingClient`` or ``AsyncTrackingClient``):
    where each account's requests go, to bind the histories to it. Nothing is sent."""

    @property
    def config(self) -> ClientConfig: ...

    @property
    def accounts(self) -> Accounts | None: ...

    @property
    def default_account(self) -> str | None: ...


class HistoryStore(Protocol):
    """Where histories live: stored forms by key, each change atomic."""

    where: str

    def read(self, key: bytes) -> bytes | None: ...

    def update(self, key: bytes, change: Callable[[bytes | None], bytes | None]) -> None: ...

    def delete(self, key: bytes) -> bool: ...

    def close(self) -> None: ...


def _where(value: object) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        shown_value = shown(value) if isinstance(value, str) else repr(value)
        raise ConfigurationError(
            f"TrackingHistory: expected a file path or a Redis URL, got {shown_value}"
        )
    return str(os.fspath(value))


class TrackingHistory:
    """Each invoice's known tracking events, in a SQLite file or a Redis (``where``: a path,
    or ``redis://...`` with the extra ``redis``), bound to the targets of ``client``.

    ``add(order_id, invoice_number, checkpoint)`` merges a carrier's checkpoint into what is
    known and returns the whole ``TrackingStatus`` to push: duplicates dropped, ordered by
    date, never fewer events than before (``replace`` sets a history exactly, to shrink it),
    delivered once any checkpoint said so. Safe from many threads and processes at once:
    each change is one transaction (SQLite) or compare-and-set (Redis). A history unchanged
    for ``max_age`` seconds (default 120 days) is forgotten. A damaged entry is read as
    empty, with a warning. Blocking: ``AsyncTrackingHistory`` is the same for async code.
    """

    def __init__(
        self,
        where: str | os.PathLike[str],
        client: HistoryClient,
        *,
        max_age: float = DEFAULT_HISTORY_MAX_AGE,
        prefix: str = "vtex-tracking:history",
    ) -> None:
        path = _where(where)
        if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age <= 0:
            raise ConfigurationError(f"max_age: expected a number > 0, got {max_age!r}")
        for needed in ("config", "accounts", "default_account"):
            if not hasattr(client, needed):
                raise ConfigurationError(
                    f"client: expected a TrackingClient or AsyncTrackingClient, got"
                    f" {type(client).__name__}"
                )
        self._shown = shown(path)
        self._client = client
        self._targets: dict[str, str] = {}
        self._store: HistoryStore
        if is_redis_url(path):
            from ._history_redis import RedisHistories

            self._store = RedisHistories(path, prefix, float(max_age))
        else:
            from ._history_sqlite import SqliteHistories

            self._store = SqliteHistories(path, float(max_age))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._shown}, url={self._client.config.url_prefix!r})"

    # -- binding ---------------------------------------------------------------------------

    def _target(self, account_name: str | None) -> tuple[str, str]:
        """The account an invoice belongs to, and the base URL its requests go to."""
        client = self._client
        name = account_name if account_name is not None else client.default_account
        if name is None:
            raise ConfigurationError(
                "the call names no account_name, and the client has no default account"
            )
        target = self._targets.get(name)
        if target is None:
            config = client.config
            if name == config.account_name:
                target = config.url_prefix
            else:
                account = client.accounts.get(name) if client.accounts is not None else None
                if account is None:
                    raise ConfigurationError(f"no credentials for account {name!r}")
                target = build_base_url(
                    account.name,
                    account.environment,
                    account.base_url,
                    allow_insecure_http=config.allow_insecure_http,
                )
            self._targets[name] = target
        return name, target

    def _key(self, order_id: str, invoice_number: str, account_name: str | None) -> bytes:
        check_order_id(order_id, "order_id")
        check_order_id(invoice_number, "invoice_number")
        account, target = self._target(account_name)
        ids = f"{target}\x00{account}\x00{order_id}\x00{invoice_number}".encode()
        return hashlib.blake2b(ids, digest_size=16).digest()

    def _known(self, raw: bytes | None, order_id: str, invoice_number: str) -> tuple[Known, bool]:
        """The history stored as ``raw``, and whether it could be read (an empty one if not)."""
        if raw is None:
            return Known(), True
        try:
            return decode(raw), True
        except CorruptHistoryError as exc:
            logger.warning(
                "tracking history of order %s, invoice %s in %s cannot be read (%s): it is"
                " taken as empty, so the next push carries only the events known from now"
                " on (VTEX loses the older ones unless they are added again)",
                order_id,
                invoice_number,
                self._store.where,
                exc,
            )
            return Known(), False

    # -- the calls -------------------------------------------------------------------------

    def add(
        self,
        order_id: str,
        invoice_number: str,
        checkpoint: Checkpoint,
        *,
        is_delivered: bool = False,
        delivered_date: DeliveredDate = None,
        returned: bool | None = None,
        account_name: str | None = None,
    ) -> TrackingStatus:
        """Merge ``checkpoint`` (an event, events, or a ``TrackingStatus``) into the
        invoice's history and return the whole history to push.

        ``is_delivered``/``delivered_date`` (or the snapshot's) mark it delivered, and stay:
        a later checkpoint without them keeps them; a ``delivered_date`` given replaces the
        one known. ``returned=True`` marks the invoice returned to sender (kept too); a
        delivered history of a returned invoice is refused with ``ValidationError`` on
        ``TrackingStatus.is_delivered`` (by default an event saying "devolvido ao
        remetente" and the like counts; ``returned=False`` vouches none is a return), and
        then nothing is stored. ``HistoryUnavailableError``: the store did not answer."""
        new = as_events(checkpoint, "checkpoint")
        if isinstance(checkpoint, TrackingStatus):
            is_delivered = is_delivered or checkpoint.is_delivered
            if delivered_date is None:
                delivered_date = checkpoint.delivered_date
        TrackingStatus(new, is_delivered, delivered_date)  # the models' checks, before storing
        _check_returned_flag(returned)
        key = self._key(order_id, invoice_number, account_name)
        merged: list[Known] = []

        def change(raw: bytes | None) -> bytes | None:
            known, readable = self._known(raw, order_id, invoice_number)
            was_returned = known.returned or returned is True
            after = Known(
                merge(known.events, new),
                known.delivered or is_delivered,
                delivered_date if delivered_date is not None else known.delivered_date,
                was_returned,
            )
            check_not_returned(
                after.events,
                is_delivered=after.delivered,
                returned=True if was_returned else returned,
            )
            merged[:] = [after]
            return None if readable and after == known else encode(after)

        self._store.update(key, change)
        return merged[0].status()

    def get(
        self, order_id: str, invoice_number: str, *, account_name: str | None = None
    ) -> TrackingStatus | None:
        """The invoice's whole history as known, or None when nothing is known of it."""
        raw = self._store.read(self._key(order_id, invoice_number, account_name))
        known, _ = self._known(raw, order_id, invoice_number)
        return None if known == Known() else known.status()

    def replace(
        self,
        order_id: str,
        invoice_number: str,
        status: TrackingStatus,
        *,
        returned: bool | None = None,
        account_name: str | None = None,
    ) -> TrackingStatus:
        """Set the invoice's history to exactly ``status`` (de-duplicated, ordered by date):
        the one way to remove events or undo a delivery. Returns what is stored."""
        if not isinstance(status, TrackingStatus):
            raise ValidationError(
                "status", f"expected a TrackingStatus, got {type(status).__name__}"
            )
        _check_returned_flag(returned)
        events = merge((), status.events)
        check_not_returned(events, is_delivered=status.is_delivered, returned=returned)
        after = Known(events, status.is_delivered, status.delivered_date, returned is True)
        stored = encode(after)
        self._store.update(self._key(order_id, invoice_number, account_name), lambda _: stored)
        return after.status()

    def forget(
        self, order_id: str, invoice_number: str, *, account_name: str | None = None
    ) -> bool:
        """Drop the invoice's history (e.g. once delivered and pushed); whether it had one."""
        return self._store.delete(self._key(order_id, invoice_number, account_name))

    def close(self) -> None:
        """Close the file or the Redis connections."""
        self._store.close()

    def __enter__(self) -> TrackingHistory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_returned_flag(returned: object) -> None:
    if returned is not None and not isinstance(returned, bool):
        raise ValidationError("returned", f"expected True, False or None, got {returned!r}")


class AsyncTrackingHistory:
    """``TrackingHistory`` for async code: the same store and rules, each call made in a
    worker thread (anyio), so a SQLite lock wait or a Redis round trip never blocks the
    event loop (about 0.1 ms more per call)."""

    def __init__(
        self,
        where: str | os.PathLike[str],
        client: HistoryClient,
        *,
        max_age: float = DEFAULT_HISTORY_MAX_AGE,
        prefix: str = "vtex-tracking:history",
    ) -> None:
        self._history = TrackingHistory(where, client, max_age=max_age, prefix=prefix)

    def __repr__(self) -> str:
        return "Async" + repr(self._history)

    async def add(
        self,
        order_id: str,
        invoice_number: str,
        checkpoint: Checkpoint,
        *,
        is_delivered: bool = False,
        delivered_date: DeliveredDate = None,
        returned: bool | None = None,
        account_name: str | None = None,
    ) -> TrackingStatus:
        """Merge ``checkpoint`` into the invoice's history; the whole history to push
        (``TrackingHistory.add``)."""
        call = functools.partial(
            self._history.add,
            order_id,
            invoice_number,
            checkpoint,
            is_delivered=is_delivered,
            delivered_date=delivered_date,
            returned=returned,
            account_name=account_name,
        )
        return await anyio.to_thread.run_sync(call)

    async def get(
        self, order_id: str, invoice_number: str, *, account_name: str | None = None
    ) -> TrackingStatus | None:
        """The invoice's whole history as known, or None (``TrackingHistory.get``)."""
        call = functools.partial(
            self._history.get, order_id, invoice_number, account_name=account_name
        )
        return await anyio.to_thread.run_sync(call)

    async def replace(
        self,
        order_id: str,
        invoice_number: str,
        status: TrackingStatus,
        *,
        returned: bool | None = None,
        account_name: str | None = None,
    ) -> TrackingStatus:
        """Set the invoice's history to exactly ``status`` (``TrackingHistory.replace``)."""
        call = functools.partial(
            self._history.replace,
            order_id,
            invoice_number,
            status,
            returned=returned,
            account_name=account_name,
        )
        return await anyio.to_thread.run_sync(call)

    async def forget(
        self, order_id: str, invoice_number: str, *, account_name: str | None = None
    ) -> bool:
        """Drop the invoice's history; whether it had one (``TrackingHistory.forget``)."""
        call = functools.partial(
            self._history.forget, order_id, invoice_number, account_name=account_name
        )
        return await anyio.to_thread.run_sync(call)

    async def aclose(self) -> None:
        """Close the file or the Redis connections."""
        await anyio.to_thread.run_sync(self._history.close)

    async def __aenter__(self) -> AsyncTrackingHistory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
