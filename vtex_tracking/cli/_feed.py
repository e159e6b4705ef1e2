"""A reader thread between the input files and the push: records are parsed ahead, in a small
queue, so the event loop never waits on a read.

Why a thread: stdin (or a named pipe) can block for as long as its producer likes, and that
must not freeze in-flight requests or the handling of Ctrl-C. After a stop, the main thread
drains the rest of the input from the same queue into the failures file, waking up often
enough to notice a second Ctrl-C. Nothing is lost between the two phases: a record leaves the
queue only when a consumer takes it, atomically, in the consumer's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

from .._input._readers import Record

#: Records parsed ahead of the push engine (which keeps its own bounded read-ahead).
FEED_AHEAD = 64
#: Seconds between checks of "should I stop?" in the reader thread.
_POLL_S = 0.1


class _End:
    """Queued after the last record; carries the error that ended reading, if any."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Feed:
    """Records from ``records``, read in a daemon thread once ``start()`` is called.

    Take them with ``get()`` (blocking, with a timeout) from sync code or ``aget()`` from the
    event loop after ``attach()``. Both return None at the end of the input. ``last`` is the
    source (``file:line``) of the last record taken.
    """

    def __init__(self, records: Iterator[Record]) -> None:
        self._records = records
        self._queue: queue.Queue[Record | _End] = queue.Queue(FEED_AHEAD)
        self._closed = threading.Event()
        self._ended = False
        self._wake: Callable[[], None] | None = None
        self._ready: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="vtex-tracking-reader", daemon=True)
        self.last: str | None = None

    def start(self) -> None:
        """Start reading (idempotent)."""
        if not self._thread.is_alive() and not self._closed.is_set() and not self._ended:
            self._thread.start()

    def close(self) -> None:
        """Stop reading; the thread ends at its next record (or stays blocked on stdin, as a
        daemon, until the process exits)."""
        self._closed.set()

    # -- the reader thread ------------------------------------------------------------------

    def _run(self) -> None:
        end = _End()
        try:
            for record in self._records:
                if not self._put(record):
                    return
        except BaseException as exc:  # handed over, and raised in the consumer's thread
            end = _End(exc)
        finally:
            close = getattr(self._records, "close", None)
            if close is not None:
                close()  # closes the files of a half-read generator
        self._put(end)

    def _put(self, item: Record | _End) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            wake = self._wake
            if wake is not None:
                wake()
            return True
        return False

    # -- consumers --------------------------------------------------------------------------

    def get(self, timeout: float) -> Record | None:
        """The next record, or None at the end; ``queue.Empty`` after ``timeout`` seconds."""
        if self._ended:
            return None
        return self._take(self._queue.get(timeout=timeout))

    def get_nowait(self) -> Record | None:
        """The next record if one is ready (else ``queue.Empty``), or None at the end."""
        if self._ended:
            return None
        return self._take(self._queue.get_nowait())

    def _take(self, item: Record | _End) -> Record | None:
        if isinstance(item, _End):
            self._ended = True
            if item.error is not None:
                raise item.error
            return None
        self.last = item.source
        return item

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let ``aget()`` wait in ``loop`` (call from inside it)."""
        ready = self._ready = asyncio.Event()

        def wake() -> None:
            # RuntimeError: the loop closed meanwhile, and nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ready.set)

        self._wake = wake

    def detach(self) -> None:
        """The event loop is going away: stop waking it."""
        self._wake = None

    async def aget(self) -> Record | None:
        """The next record, waiting without blocking the event loop; None at the end."""
        assert self._ready is not None, "attach() first"
        while True:
            # Clear before looking: a record queued after the look sets the event again.
            self._ready.clear()
            try:
                return self.get_nowait()
            except queue.Empty:
                await self._ready.wait()
