"""The unchanged state (``skip_unchanged=``) in Redis, so that a fleet of pushers (processes,
machines, Celery workers) shares what VTEX last confirmed per invoice.

One key per invoice, ``{prefix}:{invoice digest}``, holding the digest of the body VTEX last
confirmed, expiring ``max_age`` after that confirmation: numbers only, no ids, bodies or
credentials. ``max_entries`` is not enforced here (a Redis with ``maxmemory`` and the
``volatile-lru`` policy bounds it); about 100 bytes of Redis memory an invoice.

Redis must never fail an update: when it does not answer (a short timeout), every update is
treated as changed and sent, confirmations are not remembered, one warning says so, and Redis
is asked again after ``RETRY_AFTER`` seconds. A key holding something that is not a digest
(written by hand, by another program, damaged) is read as "changed", with one warning.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ._errors import ConfigurationError
from ._log import logger
from ._remember import Entry, UnchangedState, is_redis_url

__all__ = ["RedisUnchanged", "is_redis_url"]

#: Seconds a Redis call may take.
TIMEOUT = 0.25
#: Seconds before Redis is asked again after it did not answer.
RETRY_AFTER = 1.0
#: Seconds a confirmation waits to be written with others (one pipeline per batch).
FLUSH_DELAY = 0.01


class RedisUnchanged:
    """An open ``UnchangedState`` whose ``path`` is a Redis URL, for one push (one event loop)."""

    def __init__(self, state: UnchangedState) -> None:
        try:
            import redis.asyncio
        except ImportError:  # pragma: no cover - the extra is documented
            raise ConfigurationError(
                "skip_unchanged in Redis needs redis-py: pip install 'vtex-tracking[redis]'"
            ) from None
        self._state = state
        self._client: Any = redis.asyncio.Redis.from_url(
            state.path, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        self._ttl_ms = max(1, round(state.max_age * 1000))
        self._pending: dict[str, int] = {}
        self._writer: asyncio.Task[None] | None = None
        self._down_until = 0.0
        self._warned = False
        self._warned_garbage = False

    def _key(self, invoice: int) -> str:
        return f"{self._state.prefix}:{invoice & 0xFFFF_FFFF_FFFF_FFFF:016x}"

    def _failed(self, error: BaseException) -> None:
        self._down_until = time.monotonic() + RETRY_AFTER
        if not self._warned:
            self._warned = True
            logger.warning(
                "skip_unchanged: Redis did not answer (%s); updates are sent as if changed,"
                " and confirmations are not remembered, until it does",
                type(error).__name__,
            )

    async def skip(self, entry: Entry, *, busy: bool) -> str | None:
        """``"unchanged"`` when the body is what VTEX last confirmed for the invoice (within
        max_age), judged against VTEX, not against an update still on its way."""
        if self._state.force or busy or time.monotonic() < self._down_until:
            return None
        key = self._key(entry.invoice)
        pending = self._pending.get(key)
        if pending is not None:
            return "unchanged" if pending == entry.body else None
        try:
            stored = await self._client.get(key)
        except Exception as exc:  # down, slow, restarted: never fatal
            self._failed(exc)
            return None
        if stored is None:
            return None
        try:
            known = int(stored)
        except (TypeError, ValueError):
            self._garbage(key)
            return None
        return "unchanged" if known == entry.body else None

    def _garbage(self, key: str) -> None:
        if not self._warned_garbage:
            self._warned_garbage = True
            logger.warning(
                "skip_unchanged: Redis key %s does not hold a body digest; its update is sent"
                " as changed (and the key is overwritten once VTEX confirms it)",
                key,
            )

    def settled(self, entry: Entry, *, confirmed: bool, sent: bool) -> None:
        """VTEX confirmed the body now: written with the next batch (a skip needs no write)."""
        if not (confirmed and sent):
            return
        self._pending[self._key(entry.invoice)] = entry.body
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_soon())

    async def _write_soon(self) -> None:
        await asyncio.sleep(FLUSH_DELAY)
        await self._write()

    async def _write(self) -> None:
        if not self._pending:
            return
        if time.monotonic() < self._down_until:
            self._pending.clear()  # not remembered: at worst, sent again next time
            return
        rows, self._pending = self._pending, {}
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, body in rows.items():
                    pipe.set(key, body, px=self._ttl_ms)
                await pipe.execute()
        except Exception as exc:
            self._failed(exc)

    async def aclose(self) -> None:
        """Write what is pending, then close the connection."""
        try:
            writer = self._writer
            if writer is not None and not writer.done():
                await writer  # a batch may be on its way: let it land
            await self._write()
        finally:
            await self._client.aclose()
