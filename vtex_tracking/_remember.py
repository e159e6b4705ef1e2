"""What a push remembers so it can send less: the settings (``Journal``, ``UnchangedState``),
the one interface the push engine calls (``PushMemory``), and what ties a memory to the
target that confirmed it.

The engine asks a memory two things, and nothing else:

* at admission, in input order: may this update be skipped (``skip``), and why;
* at the update's final result: did VTEX confirm its body (``settled``).

Three memories implement it, each testable alone: the resume journal and the unchanged state
in SQLite (``_journal``), and the unchanged state in Redis (``_unchanged_redis``); ``Memories``
chains them. What they keep is bound to what it describes: an invoice's digest covers the
target (the base URL requests go to: environment and host, or ``base_url``), the account, the
order and the invoice, so a confirmation by staging, by ``vtexcommercebeta`` or by the embedded
fake never vouches for production.

A memory that cannot be read or written never fails a push: it warns once and from then on
says "not known" (the update is sent: at worst, once more than needed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from ._errors import ConfigurationError
from ._public import present_lazy

__all__ = [
    "Entry",
    "FailedInvoices",
    "Journal",
    "JournalMismatchError",
    "Memories",
    "PushMemory",
    "UnchangedState",
    "body_digest",
    "invoice_digest",
    "is_redis_url",
    "open_memory",
]

#: Default bound of the unchanged state: invoices remembered (the oldest go first).
DEFAULT_MAX_ENTRIES = 1_000_000
#: Default seconds a confirmed body is trusted to still be VTEX's (30 days).
DEFAULT_MAX_AGE = 30 * 24 * 3600.0


class JournalMismatchError(ConfigurationError):
    """The journal was written for another input: resuming from it could skip updates that
    were never sent. Delete the file (or use another path) to start over."""


def is_redis_url(where: str) -> bool:
    """Whether ``UnchangedState.path`` names a Redis server rather than a file (any case:
    ``REDIS://`` is a URL too, never a file name)."""
    return where[:10].lower().startswith(("redis://", "rediss://", "unix://"))


def without_password(where: str) -> str:
    """A path or URL for messages: a URL's user and password are left out."""
    scheme, sep, rest = where.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return where


def shown(where: str) -> str:
    """A path or URL for reprs (quoted), without a URL's password."""
    safe = without_password(where)
    return repr(where) if safe == where else safe


def _path_for(field: str) -> Any:
    """A converter of ``field``: a non-empty path (str or ``os.PathLike``) as a str."""

    def convert(value: Any) -> str:
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            shown_value = shown(value) if isinstance(value, str) else repr(value)
            raise ConfigurationError(f"{field}: expected a file path, got {shown_value}")
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

    An update is reported ``already_done`` (and not sent) only when VTEX confirmed exactly its
    body for its invoice, at the same target, in a run recorded in this file, and nothing of
    its invoice was sent since: whatever the input's order, whether it can be identified or
    not. ``input_id`` names the input (any string; the CLI uses each file's path, size and
    modification time): a journal written for another ``input_id`` is refused with
    ``JournalMismatchError`` before anything is sent. The file grows by about 25 bytes per
    confirmed update; it is never deleted for you: delete it to start over.
    """

    path: str = attrs.field(converter=_file_path)
    input_id: str | None = None


@attrs.frozen
class UnchangedState:
    """Where pushes remember the body VTEX last confirmed per invoice, so that an update equal
    to it is not sent again (``push(..., skip_unchanged=UnchangedState(path))``; CLI
    ``--skip-unchanged FILE``). ``path`` is a SQLite file, or a Redis URL (``redis://...``,
    extra ``redis``) that a fleet of pushers shares, under ``prefix``. Bounded: invoices are
    trusted for ``max_age`` seconds (what VTEX holds is not read back: a change made at VTEX
    by someone else within ``max_age`` is not seen), and a file keeps at most ``max_entries``
    (Redis: bound it with ``maxmemory``). ``force=True`` sends everything and still remembers
    what was confirmed (CLI ``--force``).
    """

    path: str = attrs.field(converter=_state_path, repr=shown)
    max_entries: int = attrs.field(default=DEFAULT_MAX_ENTRIES, validator=_positive)
    max_age: float = attrs.field(default=DEFAULT_MAX_AGE, validator=_positive)
    force: bool = False
    prefix: str = "vtex-tracking:unchanged"


def invoice_digest(
    target: str, account: str, order_id: str, invoice_number: str, *, part: str = ""
) -> int:
    """A signed 64-bit key for one invoice of one account at one target (SQLite's INTEGER).
    ``target`` is the base URL the account's requests go to; ``part`` names what of the
    invoice is remembered, other than its events (``"tracking_number"``: its PATCH)."""
    key = f"{target}\x00{account}\x00{order_id}\x00{invoice_number}"
    if part:  # the events' key stays as it was: state written before parts existed holds
        key += f"\x00{part}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big", signed=True)


def body_digest(body: bytes) -> int:
    """A signed 64-bit digest of a request body."""
    return int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "big", signed=True)


class Entry:
    """One update as a memory sees it: its input position, and the digests of its invoice
    (bound to the target) and of the body that is sent."""

    __slots__ = ("body", "index", "invoice", "skipped")

    def __init__(self, index: int, invoice: int, body: int) -> None:
        self.index = index
        self.invoice = invoice
        self.body = body
        #: Why it was not sent (a memory's ``skip`` answer), or None.
        self.skipped: str | None = None


class PushMemory(Protocol):
    """What the push engine asks a memory; the engine calls ``skip`` once per admitted
    update, in input order, and ``settled`` once per update that got a final answer."""

    async def skip(self, entry: Entry, *, busy: bool) -> str | None:
        """Why ``entry`` need not be sent (``"already_done"``, ``"unchanged"``), or None.
        ``busy``: an earlier update of its invoice is on its way in this push (so what VTEX
        holds is about to change)."""

    def settled(self, entry: Entry, *, confirmed: bool, sent: bool) -> None:
        """``entry`` has its final result: ``confirmed`` when VTEX holds its body now (a 2xx
        receipt for it, or skipped because VTEX had it); ``sent`` when a request went out."""

    async def aclose(self) -> None:
        """Write what is pending and let go of the file or connection."""


class Memories:
    """Several memories asked in turn: the first reason to skip wins; each hears every
    result. (The journal comes first: its answer needs no network.)"""

    def __init__(self, memories: Sequence[PushMemory]) -> None:
        self._memories = tuple(memories)

    async def skip(self, entry: Entry, *, busy: bool) -> str | None:
        for memory in self._memories:
            reason = await memory.skip(entry, busy=busy)
            if reason is not None:
                return reason
        return None

    def settled(self, entry: Entry, *, confirmed: bool, sent: bool) -> None:
        for memory in self._memories:
            memory.settled(entry, confirmed=confirmed, sent=sent)

    async def aclose(self) -> None:
        error: BaseException | None = None
        for memory in self._memories:
            try:
                await memory.aclose()
            except BaseException as exc:  # close every one, then report the first failure
                error = error or exc
        if error is not None:
            raise error


def open_memory(journal: Journal | None, unchanged: UnchangedState | None) -> PushMemory | None:
    """The memory a push with these options uses (None: it remembers nothing). Opening checks
    the files, so a journal of another input or a damaged file fails ``push()`` itself."""
    memories: list[PushMemory] = []
    try:
        if journal is not None:
            from ._journal import JournalFile  # SQLite only for pushes that ask for it

            memories.append(JournalFile(journal))
        if unchanged is not None:
            if is_redis_url(unchanged.path):
                from ._unchanged_redis import RedisUnchanged

                memories.append(RedisUnchanged(unchanged))
            else:
                from ._journal import UnchangedFile

                memories.append(UnchangedFile(unchanged))
    except BaseException:
        for memory in memories:
            close = getattr(memory, "close", None)
            if close is not None:
                close()
        raise
    if not memories:
        return None
    return memories[0] if len(memories) == 1 else Memories(memories)


class FailedInvoices:
    """What superseded what among a push's results: the failed updates of each invoice,
    until a later update of the invoice is confirmed (or VTEX already had it). From then on
    resending them would roll the invoice back to an older history: ``settle`` names them,
    and the confirmed result carries their indexes (``PushResult.supersedes``). Holds the
    failures only, so it stays as small as they are."""

    def __init__(self) -> None:
        #: Invoice -> the indexes of its failed updates (empty: a success settles nothing).
        self.by_invoice: dict[object, list[int]] = {}

    def settle(self, invoice: object, index: int, ok: bool) -> tuple[int, ...]:
        """Note a result of ``invoice``; when it is a success, the indexes it makes moot."""
        if ok:
            if not self.by_invoice:
                return ()
            return tuple(self.by_invoice.pop(invoice, ()))
        self.by_invoice.setdefault(invoice, []).append(index)
        return ()


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
