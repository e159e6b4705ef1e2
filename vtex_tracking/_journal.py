"""The SQLite memories of a push (``_remember.PushMemory``): the resume journal
(``JournalFile``) and the last body confirmed per invoice (``UnchangedFile``).

Both are small SQLite files from the standard library, in WAL mode with ``synchronous=NORMAL``:
a process killed at any point (kill -9, an OOM kill) leaves every committed row intact, and a
commit is a write to the WAL file, not an fsync, so it costs microseconds. (A power cut may
lose the last commits; those updates are then sent again, which is harmless: an identical PUT
changes nothing at VTEX.) Rows are committed in batches, at most ``FLUSH_DELAY`` seconds or
``FLUSH_ROWS`` rows after their answers arrived (a commit per row would cost more than the
rest of the push's work per update), so a crash forgets at most the last few milliseconds of
confirmations: those updates are sent again, like the requests in flight at the crash.

Rows hold 64-bit digests only (``_remember``): of (target, account, order, invoice), and of
the JSON body VTEX confirmed. No credentials, no bodies, no ids in clear text.

Failures stay contained. A file that cannot be opened or read when the push starts (not
SQLite, damaged, of another version) is a ``ConfigurationError`` naming it and how to start
over, before anything is sent. A file held by another process postpones commits (short
waits, retried). Any other failure later (a full disk, a file size limit, damage found
mid-push) warns once and turns the memory off: nothing more is skipped or written, the push
finishes with its summary, and the cost is only resending those updates next time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from ._errors import ConfigurationError
from ._log import logger
from ._remember import Entry, Journal, JournalMismatchError, UnchangedState, without_password

__all__ = ["Journal", "JournalFile", "JournalMismatchError", "UnchangedFile", "UnchangedState"]

#: Format of each kind of file; a file of another format is refused rather than misread.
#: (Journal 1 keyed rows by input position, which a shifted input made mean something else.)
FORMATS = {"journal": "2", "unchanged-state": "1"}
#: Seconds a confirmation may wait for its commit, and the most rows one commit waits for.
FLUSH_DELAY = 0.002
FLUSH_ROWS = 256
#: Seconds a commit waits for another process' commit to the same file, and the seconds after
#: which it tries again (the loop is blocked while it waits: keep that short and rare).
BUSY_TIMEOUT = 0.01
RETRY_DELAY = 0.1
#: SQLite's primary result codes for "another connection holds the file".
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def _is_locked(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means "held by another writer, try later" (not full, not damaged)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class _File:
    """One SQLite file of one ``KIND``: its table (``SCHEMA``), and rows added in batches,
    one transaction at most ``FLUSH_DELAY`` seconds or ``FLUSH_ROWS`` rows after the first
    (``INSERT``). ``broken`` turns True at the first failure that is not "locked"."""

    KIND = ""
    SCHEMA = ""
    INSERT = ""
    #: What the file is called in messages ("journal", "skip_unchanged state").
    NAME = ""

    def __init__(self, path: str) -> None:
        # As messages show it: a URL-looking name (REDIS://:pw@...) keeps its secret.
        self.path = without_password(path)
        self._rows: list[tuple[int, ...]] = []
        self._flush_soon: asyncio.TimerHandle | None = None
        # Another process held the file at the last commit: wait for the timer, not per row.
        self._postponed = False
        self.broken = False
        db: sqlite3.Connection | None = None
        try:
            # Opening may wait for another process' commit as long as SQLite's default; later
            # commits wait briefly only (the event loop is blocked meanwhile): see flush().
            # Any thread: it is used from the event loop only, which TrackingClient's callers
            # take turns to run (one thread at a time, not always the same one).
            db = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
            self._db = db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)")
            stored, kind = self.meta("format"), self.meta("kind")
            if kind not in (None, self.KIND) or (
                stored is not None and stored != FORMATS[self.KIND]
            ):
                raise ConfigurationError(
                    f"{self.path}: not a {self.NAME} file of this version of vtex-tracking:"
                    f" delete it (or give another path) to start over"
                )
            if kind is None:
                self.set_meta("format", FORMATS[self.KIND])
                self.set_meta("kind", self.KIND)
            db.execute(self.SCHEMA)
            # Damage in the pages a lookup reads would show mid-push: find it now instead.
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            self._opened()
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise ConfigurationError(
                f"{self.path}: the {self.NAME} file cannot be read ({exc}): delete it (or give"
                " another path) to start over"
            ) from None
        except BaseException:
            if db is not None:
                db.close()
            raise
        # From now on a commit waits ``BUSY_TIMEOUT`` for another writer at most.
        db.execute(f"PRAGMA busy_timeout = {round(BUSY_TIMEOUT * 1000)}")

    def _opened(self) -> None:
        """The file is open and checked (a subclass reads what it needs)."""

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _failed(self, exc: BaseException) -> None:
        """Stop using the file after a failure that waiting will not cure."""
        if self.broken:
            return
        self.broken = True
        lost = len(self._rows)
        self._rows.clear()
        logger.warning(
            "%s %s: %s; it is no longer used in this push (updates are sent as if it were"
            " empty, and %d confirmations not yet written are lost: those updates will be"
            " sent again next time)",
            self.NAME,
            self.path,
            exc,
            lost,
        )

    def _lookup(self, sql: str, args: tuple[int, ...]) -> tuple[int, ...] | None:
        """One row, or None; a read that fails turns the file off (never fails the push)."""
        if self.broken:
            return None
        try:
            row: tuple[int, ...] | None = self._db.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            if _is_locked(exc):
                return None  # not known now: the update is sent
            self._failed(exc)
            return None
        return row

    def _add(self, row: tuple[int, ...]) -> None:
        if self.broken:
            return
        rows = self._rows
        rows.append(row)
        if len(rows) >= FLUSH_ROWS and not self._postponed:
            self.flush()
        elif self._flush_soon is None:
            self._schedule(FLUSH_DELAY)

    def _schedule(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # outside a loop: close() flushes
        if self._flush_soon is None:
            self._flush_soon = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Commit the rows added so far (later, if another process holds the file)."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        rows = self._rows
        if not rows or self.broken:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(self.INSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if not _is_locked(exc):
                self._failed(exc)  # full, damaged, size limit: waiting will not help
                return
            logger.debug("%s: commit postponed (%s)", self.path, exc)
            self._postponed = True
            self._schedule(RETRY_DELAY)
            return
        self._postponed = False
        self._committed()
        rows.clear()

    def _committed(self) -> None:
        """The rows are in the file (a subclass drops its copies of them)."""

    def close(self) -> None:
        """Write the last rows (waiting for another writer as long as SQLite's default) and
        close; rows that cannot be written are reported, never raised."""
        try:
            if not self.broken:
                try:
                    self._db.execute("PRAGMA busy_timeout = 5000")
                except sqlite3.Error as exc:
                    self._failed(exc)
                self.flush()
                if self._rows:
                    self._failed(sqlite3.OperationalError("the file stayed locked"))
        finally:
            if self._flush_soon is not None:
                self._flush_soon.cancel()
                self._flush_soon = None
            self._db.close()

    async def aclose(self) -> None:
        """``close()``, as ``PushMemory`` asks."""
        self.close()


class JournalFile(_File):
    """An open ``Journal``: one row per confirmed update, (invoice, body), appended in the
    order answers arrived (so a commit writes a page or two, not a page per row), indexed
    when a run resumes (about 0.8 s per million rows).

    ``skip`` says ``"already_done"`` only when a row holds exactly the update's invoice and
    body, and no update of its invoice was sent in this push before it (it would have
    changed what VTEX holds). Input positions play no part: an input shifted, reordered or
    read from a pipe is checked update by update, never trusted by position.
    """

    KIND = "journal"
    NAME = "journal"
    SCHEMA = "CREATE TABLE IF NOT EXISTS confirmed(invoice INTEGER NOT NULL, body INTEGER NOT NULL)"
    INSERT = "INSERT INTO confirmed VALUES (?, ?)"

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        #: Updates confirmed by earlier runs (0: nothing to look up).
        self.known = 0
        #: Updates whose invoice had another body confirmed by an earlier run.
        self.changed = 0
        # Invoices of this push sent while the journal holds rows for them: from then on
        # their rows say nothing about what VTEX holds.
        self._resent: set[int] = set()
        super().__init__(journal.path)

    def _opened(self) -> None:
        journal = self._journal
        stored = self.meta("input")
        if journal.input_id is not None:
            if stored is not None and stored != journal.input_id:
                raise JournalMismatchError(
                    f"{journal.path} is the journal of another input ({stored}), not of"
                    f" {journal.input_id}: delete it, or give another path, to start over"
                )
            self.set_meta("input", journal.input_id)
        (self.known,) = self._db.execute("SELECT count(*) FROM confirmed").fetchone()
        if self.known:
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS confirmed_by_invoice ON confirmed(invoice, body)"
            )

    async def skip(self, entry: Entry, *, busy: bool) -> str | None:
        """``"already_done"`` when an earlier run had VTEX confirm exactly this update."""
        if not self.known or self.broken:
            return None
        invoice = entry.invoice
        if busy or invoice in self._resent:
            return None
        # One indexed lookup: 1 when this body was confirmed for the invoice, 0 when only
        # others were, NULL when the invoice has no row.
        row = self._lookup(
            "SELECT max(body = ?) FROM confirmed WHERE invoice = ?", (entry.body, invoice)
        )
        verdict = None if row is None else row[0]
        if verdict == 1:
            return "already_done"
        if verdict == 0:
            # Its invoice had another body confirmed: this one is sent, and later updates of
            # the invoice can no longer be vouched for by the journal's rows.
            self._resent.add(invoice)
            if not self.changed:
                logger.warning(
                    "journal %s: an update differs from the body an earlier run had VTEX"
                    " confirm for its invoice (it failed then, or the input changed): it is"
                    " sent, and so are its invoice's later updates, so VTEX ends with the"
                    " newest",
                    self.path,
                )
            self.changed += 1
        return None

    def settled(self, entry: Entry, *, confirmed: bool, sent: bool) -> None:
        """A confirmed update is written down (one skipped as unchanged too: VTEX has it;
        one the journal itself skipped has its row already)."""
        if confirmed and entry.skipped != "already_done":
            self._add((entry.invoice, entry.body))


class UnchangedFile(_File):
    """An open ``UnchangedState``: per invoice, the body digest VTEX last confirmed and when
    (Unix seconds)."""

    KIND = "unchanged-state"
    NAME = "skip_unchanged state"
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS last_body(invoice INTEGER PRIMARY KEY,"
        " body INTEGER NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID"
    )
    INSERT = "INSERT OR REPLACE INTO last_body VALUES (?, ?, ?)"

    def __init__(self, state: UnchangedState) -> None:
        self._state = state
        self._trusted_after = int(time.time() - state.max_age)
        # Confirmations not committed yet, for lookups meanwhile.
        self._latest: dict[int, int] = {}
        super().__init__(state.path)

    def _opened(self) -> None:
        self._db.execute("DELETE FROM last_body WHERE at < ?", (self._trusted_after,))

    async def skip(self, entry: Entry, *, busy: bool) -> str | None:
        """``"unchanged"`` when the body is what VTEX last confirmed for the invoice (within
        ``max_age``), judged against VTEX, not against an update still on its way."""
        if self._state.force or busy:
            return None
        latest = self._latest.get(entry.invoice)
        if latest is not None:
            return "unchanged" if latest == entry.body else None
        row = self._lookup("SELECT body, at FROM last_body WHERE invoice = ?", (entry.invoice,))
        if row is not None and row[0] == entry.body and row[1] >= self._trusted_after:
            return "unchanged"
        return None

    def settled(self, entry: Entry, *, confirmed: bool, sent: bool) -> None:
        """VTEX confirmed the body now: remembered (a skip needs no new row)."""
        if confirmed and sent and not self.broken:
            self._latest[entry.invoice] = entry.body
            self._add((entry.invoice, entry.body, int(time.time())))

    def _committed(self) -> None:
        self._latest.clear()

    def close(self) -> None:
        try:
            if not self.broken:
                self.flush()
                # Bounded: drop the invoices confirmed longest ago beyond max_entries.
                try:
                    (count,) = self._db.execute("SELECT count(*) FROM last_body").fetchone()
                    excess = int(count) - self._state.max_entries
                    if excess > 0:
                        self._db.execute(
                            "DELETE FROM last_body WHERE invoice IN"
                            " (SELECT invoice FROM last_body ORDER BY at LIMIT ?)",
                            (excess,),
                        )
                except sqlite3.Error as exc:
                    self._failed(exc)
        finally:
            super().close()
