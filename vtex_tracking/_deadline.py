"""Each attempt's time limit, kept for all the attempts of an event loop by one timer.

aiohttp's own ``ClientTimeout(total=...)`` arms a loop timer, a timeout handle and a timer
context for every request: about 8 % of a pooled request's CPU on loopback (measured with
valgrind: 42 k of 505 k instructions). One periodic sweep over the attempts in flight does the
same work for all of them: an attempt costs a dict insert and a removal, and one timer per
event loop, however many accounts and clients, ticks only while something is in flight,
every tenth of the shortest timeout in flight (at most once a second). An attempt is
cancelled between its limit and one tick past it.

Expiry cancels the attempt's task, as aiohttp's timer does; ``Deadlines.expired`` tells that
cancellation, and only that one, from any other, so the transport raises a timeout for it and
lets a cancellation from anyone else (the application, a task group) propagate.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from typing import Any

#: The sweep runs every ``timeout * SWEEP_FRACTION`` seconds, within these bounds.
SWEEP_FRACTION = 0.1
SWEEP_MIN = 0.01
SWEEP_MAX = 1.0
#: Python >= 3.11 counts a task's pending cancellations (``cancelling``/``uncancel``).
_COUNTS_CANCELS = sys.version_info >= (3, 11)


#: A task's attempt in flight: when it must end, and the cancellations already requested when
#: it began (ours is the one above them; Python 3.10 has no count: there a cancellation
#: during an expired attempt is taken for the timeout's, as aiohttp's own timer does).
_Limit = tuple[float, int]
_Task = asyncio.Task[Any]


class Deadlines:
    """The time limits of the attempts in flight in one event loop (``for_loop``).

    An attempt is known by its task (a task awaits one attempt at a time): a tuple in a dict,
    not an object of its own, whose construction was a fifth of the deadline's per-request
    cost. The sweep cancels expired attempts in the order they began.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: The event loop whose attempts these are.
        self.loop = loop
        self._pid = os.getpid()
        self._in_flight: dict[_Task, _Limit] = {}
        # The attempts the sweep cancelled, by task: their ``cancelling`` when they began.
        self._expired: dict[_Task, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sweep_every = SWEEP_MAX

    def start(self, timeout: float) -> _Task | None:
        """Begin an attempt of at most ``timeout`` seconds in the current task; ``end`` it
        in a ``finally`` with what this returned."""
        loop = self.loop
        task = asyncio.current_task(loop)  # our loop is the running one: not asked again
        if task is None:  # not in a task: nothing to cancel, so no limit (never in practice)
            return None
        cancelling = task.cancelling() if _COUNTS_CANCELS else 0  # type: ignore[attr-defined]
        self._in_flight[task] = (loop.time() + timeout, cancelling)
        every = timeout * SWEEP_FRACTION
        if every < self._sweep_every:
            # A shorter limit than any before: tick often enough for it from now on.
            self._sweep_every = max(SWEEP_MIN, every)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._timer is None:
            self._timer = loop.call_later(self._sweep_every, self._sweep)
        return task

    def expired(self, task: _Task | None) -> bool:
        """Whether the ``CancelledError`` that ended ``task``'s attempt (``start``'s answer)
        is the sweep's (and only the sweep's: then the caller raises a timeout in its
        place)."""
        if task is None or task not in self._expired:
            return False
        # Another cancellation requested meanwhile (the application's, a task group's) wins.
        if sys.version_info >= (3, 11):
            return task.uncancel() <= self._expired[task]
        return True

    def end(self, task: _Task | None) -> None:
        """The attempt is over, however it ended (``task``: ``start``'s answer)."""
        if task is not None:
            self._in_flight.pop(task, None)
            if self._expired:
                self._expired.pop(task, None)

    def _sweep(self) -> None:
        """Cancel the attempts past their limit; tick again while any is in flight."""
        self._timer = None
        if not self._in_flight:
            self._sweep_every = SWEEP_MAX  # idle: the next attempts set the pace again
            return
        now = self.loop.time()
        expired = self._expired
        for task, (deadline, cancelling) in self._in_flight.items():
            if deadline <= now and task not in expired:
                expired[task] = cancelling
                task.cancel()
        self._timer = self.loop.call_later(self._sweep_every, self._sweep)


# One per event loop, dropped with it. Keyed by the loop and the process too: a forked child
# that goes on with an inherited loop object must not share its parent's attempts or timer.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


def for_loop(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The ``Deadlines`` of ``loop`` in this process (made on first use)."""
    deadlines = _by_loop.get(loop)
    if deadlines is None or deadlines._pid != os.getpid():
        deadlines = _by_loop[loop] = Deadlines(loop)
    return deadlines
