"""One attempt's time limit, kept for all of a transport's attempts by one timer.

aiohttp's own ``ClientTimeout(total=...)`` arms a loop timer, a timeout handle and a timer
context for every request: about 8 % of a pooled request's CPU on loopback (measured with
valgrind: 42 k of 505 k instructions). Every attempt of a transport has the same limit, so one
periodic sweep over the attempts in flight does the same work for all of them: an attempt
costs a set insert and a removal, and one timer ticks (only while something is in flight)
every ``timeout / 10`` seconds, at most once a second. An attempt is cancelled between its
limit and one tick past it.

Expiry cancels the attempt's task, as aiohttp's timer does; ``Deadlines.expired`` tells that
cancellation, and only that one, from any other, so the transport raises a timeout for it and
lets a cancellation from anyone else (the application, a task group) propagate.
"""

from __future__ import annotations

import asyncio
import sys

#: The sweep runs every ``timeout * SWEEP_FRACTION`` seconds, within these bounds.
SWEEP_FRACTION = 0.1
SWEEP_MIN = 0.01
SWEEP_MAX = 1.0
#: Python >= 3.11 counts a task's pending cancellations (``cancelling``/``uncancel``).
_COUNTS_CANCELS = sys.version_info >= (3, 11)


class _Watch:
    """One attempt in flight: its task, when it must end, whether the sweep cancelled it."""

    __slots__ = ("cancelling", "deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float, cancelling: int) -> None:
        self.task = task
        self.deadline = deadline
        self.expired = False
        # Cancellations already requested when the attempt began: ours is the one above them.
        # (Python 3.10 has no count: there a cancellation during an expired attempt is
        # taken for the timeout's, as aiohttp's own timer does.)
        self.cancelling = cancelling


class Deadlines:
    """The time limit of every attempt made in one event loop by one transport."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        #: The event loop whose attempts these are.
        self.loop = self._loop = loop
        self._timeout = timeout
        self._sweep_every = min(SWEEP_MAX, max(SWEEP_MIN, timeout * SWEEP_FRACTION))
        self._in_flight: set[_Watch] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> _Watch | None:
        """Begin an attempt in the current task; ``end`` it in a ``finally``."""
        task = asyncio.current_task()
        if task is None:  # not in a task: nothing to cancel, so no limit (never in practice)
            return None
        cancelling = task.cancelling() if _COUNTS_CANCELS else 0  # type: ignore[attr-defined]
        watch = _Watch(task, self._loop.time() + self._timeout, cancelling)
        self._in_flight.add(watch)
        if self._timer is None:
            self._timer = self._loop.call_later(self._sweep_every, self._sweep)
        return watch

    @staticmethod
    def expired(watch: _Watch | None) -> bool:
        """Whether the ``CancelledError`` that ended ``watch``'s attempt is the sweep's (and
        only the sweep's: then the caller raises a timeout in its place)."""
        if watch is None or not watch.expired:
            return False
        # Another cancellation requested meanwhile (the application's, a task group's) wins.
        if sys.version_info >= (3, 11):
            return watch.task.uncancel() <= watch.cancelling
        return True

    def end(self, watch: _Watch | None) -> None:
        """The attempt is over, however it ended."""
        if watch is not None:
            self._in_flight.discard(watch)

    def _sweep(self) -> None:
        """Cancel the attempts past their limit; tick again while any is in flight."""
        self._timer = None
        if not self._in_flight:
            return
        now = self._loop.time()
        for watch in self._in_flight:
            if not watch.expired and watch.deadline <= now:
                watch.expired = True
                watch.task.cancel()
        self._timer = self._loop.call_later(self._sweep_every, self._sweep)

    def close(self) -> None:
        """Stop ticking (the transport's pool is closed or abandoned)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._in_flight.clear()
