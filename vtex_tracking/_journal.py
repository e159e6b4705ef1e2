"""What VTEX confirmed, remembered on disk so a push can send less: the resume journal of one
push (``Journal``) and the last body confirmed per invoice (``UnchangedState``).

Both are small SQLite files from the standard library, in WAL mode with ``synchronous=NORMAL``:
a process killed at any point (kill -9, an OOM kill) leaves every committed row intact, and a
commit is a write to the WAL file, not an fsync, so it costs microseconds. (A power cut may
lose the last commits; those updates are then sent again, which is harmless: an identical PUT
changes nothing at VTEX.) Rows are committed in batches, at most ``FLUSH_DELAY`` seconds or
``FLUSH_ROWS`` rows after their answers arrived (a commit per row would cost more than the
rest of the push's work per update), so a crash forgets at most the last few milliseconds of
confirmations: those updates are sent again, like the requests in flight at the crash.

Rows hold 64-bit digests only: of (account, order, invoice), and of the JSON body VTEX
confirmed. No credentials, no bodies, no ids in clear text.

* The journal has one row per confirmed update, keyed by its input position (0-based,
  counting the updates handed to ``push``): appended in order, so commits stay cheap, about
  20 bytes an update (35 once a resumed run has indexed it by invoice). When the same input
  is pushed again, an update is reported as ``already_done`` and not sent when it, or a later
  update of its invoice (sending the older one again would roll VTEX back), was confirmed.
  Position and body digest must agree; an update whose body differs from the one confirmed
  at its position means the input changed, and it is sent. An ``input_id`` (the CLI uses each
  file's path, size and modification time) lets a changed input be refused before anything
  is sent.
* The unchanged state has one row per invoice: an update whose body is the one VTEX last
  confirmed for its invoice (within ``max_age``) is reported as ``unchanged`` and not sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from typing import Any

import attrs

from ._errors import ConfigurationError
from ._telemetry import logger

__all__ = ["Journal", "JournalMismatchError", "UnchangedState"]

#: Format of the files; a file of another format is refused rather than misread.
FORMAT = "1"
#: Seconds a confirmation may wait for its commit, and the most rows one commit waits for.
FLUSH_DELAY = 0.002
FLUSH_ROWS = 256
#: Seconds a commit waits for another process' commit to the same file, and the seconds after
#: which it tries again (the loop is blocked while it waits: keep that short and rare).
BUSY_TIMEOUT = 0.01
RETRY_DELAY = 0.1
#: Default bound of the unchanged state: invoices remembered (the oldest go first).
DEFAULT_MAX_ENTRIES = 1_000_000
#: Default seconds a confirmed body is trusted to still be VTEX's (30 days).
DEFAULT_MAX_AGE = 30 * 24 * 3600.0


class JournalMismatchError(ConfigurationError):
    """The journal was written for another input: resuming from it could skip updates that
    were never sent. Delete the file (or use another path) to start over."""


def _path_for(field: str) -> Any:
    """A converter of ``field``: a non-empty path (str or ``os.PathLike``) as a str."""

    def convert(value: Any) -> str:
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise ConfigurationError(f"{field}: expected a file path, got {value!r}")
        return os.fspath(value)

    return convert


def _state_path(value: Any) -> str:
    """``UnchangedState.path``: a file path or a Redis URL."""
    return str(_path_for("skip_unchanged")(value))


def _file_path(value: Any) -> str:
    """``Journal.path``: a file path (never a URL)."""
    path = _path_for("journal")(value)
    if "://" in path:
        raise ConfigurationError(
            f"journal: expected a file path, got a URL ({path.split('://', 1)[0]}://...): a"
            " journal belongs to one push; a fleet shares skip_unchanged in Redis instead"
        )
    return str(path)


def _positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{attribute.name}: expected a number > 0, got {value!r}")


@attrs.frozen
class Journal:
    """Where a push records what VTEX confirmed, so that after a crash the same push sends
    only the rest (``push(..., journal=Journal(path))``; CLI ``--journal FILE``).

    ``input_id`` names the input (any string): a journal written for another ``input_id`` is
    refused with ``JournalMismatchError``. The file grows by about 20 bytes per update; it is
    never deleted for you: delete it to start over.
    """

    path: str = attrs.field(converter=_file_path)
    input_id: str | None = None


def _shown(where: str) -> str:
    """A path or URL for reprs: a Redis URL's password is left out."""
    scheme, sep, rest = where.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return repr(where)


@attrs.frozen
class UnchangedState:
    """Where pushes remember the body VTEX last confirmed per invoice, so that an update equal
    to it is not sent again (``push(..., skip_unchanged=UnchangedState(path))``; CLI
    ``--skip-unchanged FILE``). ``path`` is a SQLite file, or a Redis URL (``redis://...``,
    extra ``redis``) that a fleet of pushers shares, under ``prefix``. Bounded: invoices are
    trusted for ``max_age`` seconds, and a file keeps at most ``max_entries`` (Redis: bound it
    with ``maxmemory``). ``force=True`` sends everything and still remembers what was
    confirmed (CLI ``--force``).
    """

    path: str = attrs.field(converter=_state_path, repr=_shown)
    max_entries: int = attrs.field(default=DEFAULT_MAX_ENTRIES, validator=_positive)
    max_age: float = attrs.field(default=DEFAULT_MAX_AGE, validator=_positive)
    force: bool = False
    prefix: str = "vtex-tracking:unchanged"


def invoice_digest(account: str, order_id: str, invoice_number: str) -> int:
    """A signed 64-bit key for one invoice of one account (SQLite's INTEGER)."""
    key = f"{account}\x00{order_id}\x00{invoice_number}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big", signed=True)


def body_digest(body: bytes) -> int:
    """A signed 64-bit digest of a request body."""
    return int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "big", signed=True)


class _File:
    """One SQLite file of one ``KIND``: its table (``SCHEMA``), and rows added in batches,
    one transaction at most ``FLUSH_DELAY`` seconds or ``FLUSH_ROWS`` rows after the first
    (``INSERT``)."""

    KIND = ""
    SCHEMA = ""
    INSERT = ""

    def __init__(self, path: str) -> None:
        try:
            # Opening may wait for another process' commit as long as SQLite's default; later
            # commits wait briefly only (the event loop is blocked meanwhile): see flush().
            self._db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)")
            stored = self.meta("format")
            kind = self.meta("kind")
        except sqlite3.Error as exc:
            raise ConfigurationError(f"{path}: cannot be used as a SQLite file ({exc})") from exc
        if (stored is not None and stored != FORMAT) or kind not in (None, self.KIND):
            self._db.close()
            raise ConfigurationError(f"{path}: not a {self.KIND} file of this version")
        if kind is None:
            self.set_meta("format", FORMAT)
            self.set_meta("kind", self.KIND)
        self._db.execute(self.SCHEMA)
        self.path = path
        self._rows: list[tuple[int, int, int]] = []
        self._flush_soon: asyncio.TimerHandle | None = None
        # Another process held the file at the last commit: wait for the timer, not per row.
        self._postponed = False

    def _short_waits(self) -> None:
        """Opened: from now on a commit waits ``BUSY_TIMEOUT`` for another writer at most."""
        self._db.execute(f"PRAGMA busy_timeout = {round(BUSY_TIMEOUT * 1000)}")

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _add(self, row: tuple[int, int, int]) -> None:
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
        if not rows:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(self.INSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:  # locked by another process: later
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
        try:
            # The last rows must land: wait for another writer as long as SQLite's default.
            self._db.execute("PRAGMA busy_timeout = 5000")
            self.flush()
            if self._rows:
                raise sqlite3.OperationalError(f"{self.path}: could not write the last rows")
        finally:
            if self._flush_soon is not None:
                self._flush_soon.cancel()
                self._flush_soon = None
            self._db.close()


class JournalFile(_File):
    """An open ``Journal``: one row per confirmed update, appended in input order (so a commit
    writes a page or two, not one page per row as keying by invoice would), with an index by
    invoice made when a run resumes (about 0.5 s per million rows)."""

    KIND = "journal"
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS confirmed(position INTEGER PRIMARY KEY,"
        " invoice INTEGER NOT NULL, body INTEGER NOT NULL)"
    )
    INSERT = "INSERT OR REPLACE INTO confirmed VALUES (?, ?, ?)"

    def __init__(self, journal: Journal) -> None:
        super().__init__(journal.path)
        stored = self.meta("input")
        if journal.input_id is not None:
            if stored is not None and stored != journal.input_id:
                self._db.close()
                raise JournalMismatchError(
                    f"{journal.path} is the journal of another input ({stored}), not of"
                    f" {journal.input_id}: delete it, or give another path, to start over"
                )
            self.set_meta("input", journal.input_id)
        row = self._db.execute("SELECT max(position), count(*) FROM confirmed").fetchone()
        #: Positions after this one were not confirmed by an earlier run: no lookup needed.
        self._last = -1 if row[0] is None else int(row[0])
        #: Updates confirmed by earlier runs.
        self.known = int(row[1])
        if self.known:
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS confirmed_by_invoice ON confirmed(invoice, position)"
            )
        self.mismatches = 0
        self._short_waits()

    def done(self, position: int, invoice: int, body: int) -> bool:
        """Whether the update at ``position`` was confirmed by an earlier run of this input,
        or a later update of its invoice was."""
        if position > self._last:
            return False
        row = self._db.execute(
            "SELECT position, body FROM confirmed WHERE invoice = ? ORDER BY position DESC LIMIT 1",
            (invoice,),
        ).fetchone()
        if row is None or row[0] < position:
            return False
        if row[0] == position and row[1] != body:
            if not self.mismatches:
                logger.warning(
                    "journal %s: the update at position %d is not the one confirmed there;"
                    " the input changed since the journal was written, so it is sent",
                    self.path,
                    position,
                )
            self.mismatches += 1
            return False
        return True

    def confirmed(self, position: int, invoice: int, body: int) -> None:
        """VTEX confirmed the update at ``position``."""
        self._add((position, invoice, body))


class UnchangedFile(_File):
    """An open ``UnchangedState``: per invoice, the body digest VTEX last confirmed and when
    (Unix seconds)."""

    KIND = "unchanged-state"
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS last_body(invoice INTEGER PRIMARY KEY,"
        " body INTEGER NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID"
    )
    INSERT = "INSERT OR REPLACE INTO last_body VALUES (?, ?, ?)"

    def __init__(self, state: UnchangedState) -> None:
        super().__init__(state.path)
        self._state = state
        self._trusted_after = int(time.time() - state.max_age)
        self._db.execute("DELETE FROM last_body WHERE at < ?", (self._trusted_after,))
        # Confirmations not committed yet, for lookups meanwhile.
        self._latest: dict[int, int] = {}
        self._short_waits()

    async def unchanged(self, invoice: int, body: int) -> bool:
        """Whether ``body`` is what VTEX last confirmed for the invoice (and recently)."""
        if self._state.force:
            return False
        latest = self._latest.get(invoice)
        if latest is not None:
            return latest == body
        row = self._db.execute(
            "SELECT body, at FROM last_body WHERE invoice = ?", (invoice,)
        ).fetchone()
        return row is not None and row[0] == body and row[1] >= self._trusted_after

    def confirmed(self, invoice: int, body: int) -> None:
        """VTEX confirmed ``body`` for the invoice now."""
        self._latest[invoice] = body
        self._add((invoice, body, int(time.time())))

    def _committed(self) -> None:
        self._latest.clear()

    def close(self) -> None:
        try:
            self.flush()
            # Bounded: drop the invoices confirmed longest ago beyond max_entries.
            (count,) = self._db.execute("SELECT count(*) FROM last_body").fetchone()
            excess = int(count) - self._state.max_entries
            if excess > 0:
                self._db.execute(
                    "DELETE FROM last_body WHERE invoice IN"
                    " (SELECT invoice FROM last_body ORDER BY at LIMIT ?)",
                    (excess,),
                )
        finally:
            super().close()

    async def aclose(self) -> None:
        """``close()``, for the push engine (which also closes Redis states)."""
        self.close()
