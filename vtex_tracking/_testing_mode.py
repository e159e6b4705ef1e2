"""The no-wait switch for test suites: ``vtex_tracking.testing.set_testing``.

When it is on, the SDK waits for nothing it could skip: no backoff between attempts, no
``Retry-After``, no pause of an account, no token of its pace (stamina's ``set_testing``
idea, extended to the pace). Requests in flight still count against the window: that is
not a wait on the clock. One flag for the whole process, read without a lock on the hot path
(a bool read is atomic); changes are serialized so ``no_waits()`` blocks nest and restore.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["is_testing", "no_waits", "set_testing"]

_lock = threading.Lock()
#: Read directly by the retry loop and the token bucket; change it through set_testing.
enabled = False


def set_testing(on: bool) -> None:
    """Skip every wait the SDK would do (backoff, ``Retry-After``, account pauses, the
    pace's tokens) when ``on``; for test suites. Applies to every thread and client."""
    global enabled
    with _lock:
        enabled = bool(on)


def is_testing() -> bool:
    """Whether the SDK currently skips its waits."""
    return enabled


@contextlib.contextmanager
def no_waits(on: bool = True) -> Iterator[None]:
    """``with no_waits():`` turns the switch on for the block and restores what it was."""
    global enabled
    with _lock:
        before, enabled = enabled, bool(on)
    try:
        yield
    finally:
        with _lock:
            enabled = before
