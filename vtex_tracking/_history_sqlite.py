"""Tracking histories (``TrackingHistory``) in a SQLite file of the standard library.

One row per invoice: a 128-bit key (a digest of target, account, order and invoice: no ids
in clear), the history in its stored form (``_history_rules.encode``: the events' text, no
credentials) and when it last changed. WAL mode, ``synchronous=NORMAL``: a process killed at
any point keeps every committed change.

A change is one ``BEGIN IMMEDIATE`` transaction (read, merge, write), so two writers of one
invoice, threads or processes, never lose each other's events: the second waits for the
first (at most ``HISTORY_WAIT`` seconds, then ``HistoryUnavailableError``). Calls block: the
async ``AsyncTrackingHistory`` makes them in a worker thread, never on the event loop.

A file that is not a history file (another program's, damaged beyond opening, another
version) is refused when it is opened (``ConfigurationError`` naming it); a failure later (a
full disk, damage found in a page) fails that call with ``HistoryUnavailableError``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable

from ._constants import HISTORY_WAIT
from ._errors import ConfigurationError, HistoryUnavailableError
from ._remember import without_password

__all__ = ["SqliteHistories"]

KIND = "tracking-history"
FORMAT = "1"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS histories(key BLOB PRIMARY KEY, doc BLOB NOT NULL,"
    " at REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS histories_by_age ON histories(at)",
)


class SqliteHistories:
    """The histories of one SQLite file; thread-safe (one connection, one lock), and a child
    process after ``fork`` opens its own connection."""

    def __init__(self, path: str, max_age: float) -> None:
        self.where = without_password(path)
        self._path = path
        self._max_age = max_age
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(
                self._path, isolation_level=None, timeout=HISTORY_WAIT, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)")
            found = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if found.get("kind", KIND) != KIND or found.get("format", FORMAT) != FORMAT:
                raise ConfigurationError(
                    f"{self.where}: not a tracking-history file of this version of"
                    " vtex-tracking: give another path (or delete it to start over)"
                )
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('kind', ?), ('format', ?)", (KIND, FORMAT)
            )
            for statement in _SCHEMA:
                db.execute(statement)
            # Busy with another writer: stale rows are skipped when read anyway.
            with contextlib.suppress(sqlite3.OperationalError):
                db.execute("DELETE FROM histories WHERE at < ?", (self._oldest(),))
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise ConfigurationError(
                f"{self.where}: the tracking-history file cannot be read ({exc}): give another"
                " path (or delete it to start over)"
            ) from None
        except BaseException:
            if db is not None:
                db.close()
            raise
        return db

    def _oldest(self) -> float:
        """Histories changed before this (Unix seconds) are stale: treated as missing."""
        return time.time() - self._max_age

    def _connection(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            # A forked child: the parent's connection (and lock) are the parent's; using or
            # closing them here could corrupt the file.
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._db = self._open()
        return self._db

    def _unavailable(self, exc: sqlite3.Error) -> HistoryUnavailableError:
        return HistoryUnavailableError(
            f"the tracking histories in {self.where} cannot be used now ({exc}); nothing was merged"
        )

    def _current(self, db: sqlite3.Connection, key: bytes) -> bytes | None:
        row = db.execute("SELECT doc, at FROM histories WHERE key = ?", (key,)).fetchone()
        if row is None or row[1] < self._oldest():
            return None
        doc = row[0]
        return bytes(doc) if isinstance(doc, (bytes, memoryview)) else str(doc).encode()

    def read(self, key: bytes) -> bytes | None:
        """The stored history of ``key``, or None (none, or stale)."""
        db = self._connection()
        try:
            with self._lock:
                return self._current(db, key)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None

    def update(self, key: bytes, change: Callable[[bytes | None], bytes | None]) -> None:
        """Read, ``change`` and write ``key``'s history in one transaction (``change``
        returns the new stored form, or None to keep the row as it is; what it raises
        aborts the transaction and propagates)."""
        db = self._connection()
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from None
            try:
                new = change(self._current(db, key))
                if new is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO histories VALUES (?, ?, ?)", (key, new, time.time())
                    )
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._unavailable(exc) from None
                raise

    def delete(self, key: bytes) -> bool:
        """Forget ``key``'s history; whether there was one."""
        db = self._connection()
        try:
            with self._lock:
                return db.execute("DELETE FROM histories WHERE key = ?", (key,)).rowcount > 0
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None

    def close(self) -> None:
        """Close the connection (this process' own)."""
        if os.getpid() == self._pid:
            with self._lock:
                self._db.close()
