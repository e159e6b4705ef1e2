"""Tracking histories (``TrackingHistory``) in Redis, shared by every process and machine
pointed at it (webhook workers, Celery workers).

One key per invoice, ``{prefix}:{key}`` (``key``: a 128-bit digest of target, account, order
and invoice, in hex; no ids in clear), holding the history's stored form
(``_history_rules.encode``) and expiring ``max_age`` after its last change.

A change reads the key, merges in Python, and writes with a compare-and-set script (``SWAP``:
written only if the key still holds what was read; else the script answers what it holds
now and the merge runs again on that). Two workers adding checkpoints of one invoice at once
never lose each other's events, and the merge rule lives in one place (Python), not twice.
A key of another type (a list, a hash: written by another program) reads as a damaged
history and is overwritten by the next change.

Redis must answer within ``HISTORY_WAIT`` seconds; otherwise the call fails with
``HistoryUnavailableError`` (nothing merged). Calls block: ``AsyncTrackingHistory`` makes
them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ._constants import HISTORY_WAIT
from ._errors import ConfigurationError, HistoryUnavailableError
from ._remember import without_password

__all__ = ["RedisHistories"]

#: Compare-and-set: KEYS[1] := ARGV[2] (expiring in ARGV[3] ms) if it holds ARGV[1] ('' for
#: no key); answers {1, ''} when written, else {0, what it holds}. A key of another type
#: holds, for this purpose, NUL followed by its type's name.
SWAP = """
local kind = redis.call('TYPE', KEYS[1])['ok']
local current = ''
if kind == 'string' then
  current = redis.call('GET', KEYS[1])
elseif kind ~= 'none' then
  current = '\\0' .. kind
end
if current ~= ARGV[1] then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1, ''}
"""
#: Compare-and-set rounds before giving up (each lost round means another writer won one).
MAX_SWAPS = 100


class RedisHistories:
    """The histories under ``prefix`` in the Redis at ``url`` (thread-safe: redis-py's pool;
    a forked child opens its own connections)."""

    def __init__(self, url: str, prefix: str, max_age: float) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - the extra is documented
            raise ConfigurationError(
                "TrackingHistory in Redis needs redis-py: pip install 'vtex-tracking[redis]'"
            ) from None
        self.where = without_password(url)
        self._password = urlsplit(url).password
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        try:
            self._client: Any = redis.Redis.from_url(
                url, socket_timeout=HISTORY_WAIT, socket_connect_timeout=HISTORY_WAIT
            )
        except ValueError as exc:
            raise ConfigurationError(f"{self.where}: not a Redis URL ({exc})") from None
        self._swap = self._client.register_script(SWAP)
        self._prefix = prefix
        self._ttl_ms = max(1, round(max_age * 1000))

    def _name(self, key: bytes) -> str:
        return f"{self._prefix}:{key.hex()}"

    def _unavailable(self, exc: BaseException) -> HistoryUnavailableError:
        said = str(exc)
        if self._password:
            said = said.replace(self._password, "<redacted>")
        return HistoryUnavailableError(
            f"the tracking histories in Redis at {self.where} cannot be used now"
            f" ({type(exc).__name__}: {said}); nothing was merged"
        )

    def _get(self, name: str) -> bytes | None:
        try:
            value = self._client.get(name)
        except self._errors as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            return b"\0" + bytes(self._client.type(name))
        return None if value is None else bytes(value)

    def read(self, key: bytes) -> bytes | None:
        """The stored history of ``key``, or None."""
        try:
            return self._get(self._name(key))
        except self._errors as exc:
            raise self._unavailable(exc) from None

    def update(self, key: bytes, change: Callable[[bytes | None], bytes | None]) -> None:
        """Merge into ``key``'s history atomically: ``change`` gets what the key holds and
        returns the new stored form (None: nothing to write); it runs again whenever another
        writer changed the key in between, so it must not have side effects beyond its
        answer. What it raises propagates (nothing written)."""
        name = self._name(key)
        try:
            current = self._get(name)
            for _ in range(MAX_SWAPS):
                new = change(current)
                if new is None:
                    return
                written, held = self._swap(keys=[name], args=[current or b"", new, self._ttl_ms])
                if written:
                    return
                current = bytes(held) or None
        except self._errors as exc:
            raise self._unavailable(exc) from None
        raise HistoryUnavailableError(
            f"the tracking history of one invoice in Redis at {self.where} changed {MAX_SWAPS}"
            " times while it was being merged; nothing was merged"
        )

    def delete(self, key: bytes) -> bool:
        """Forget ``key``'s history; whether there was one."""
        try:
            return bool(self._client.delete(self._name(key)))
        except self._errors as exc:
            raise self._unavailable(exc) from None

    def close(self) -> None:
        """Close the connections."""
        self._client.close()
