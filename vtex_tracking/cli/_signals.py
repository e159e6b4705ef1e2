"""Ctrl-C (SIGINT) and SIGTERM during ``push``: stop sending, then stop reading, then quit.

1. The first signal stops sending (the push stream's ``stop()``: in-flight requests are
   cancelled) and the rest of the input is written to the failures file.
2. A second one stops reading the input: records not read by then are *not* in the failures
   file, and the summary says from which ``file:line`` on. (Reading the rest of a huge file, or
   of a stdin whose producer keeps going, could take as long as anyone likes.)
3. A third one quits at once, with status 130.

The handlers only count and wake the event loop: printing from a signal handler can collide
with a print the main thread was in the middle of.

On Windows the same handlers serve Ctrl-C and Ctrl-Break (SIGBREAK); SIGTERM cannot be sent
to a process there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

#: The signals that stop the command: Ctrl-C, SIGTERM, and Ctrl-Break where it exists (Windows).
SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)
)
EXIT_INTERRUPTED = 130


class Interrupts:
    """Counts SIGINT/SIGTERM while installed (``with Interrupts() as interrupts:``).

    ``on_first`` is called (in the handler) on the first signal: the push sets it to schedule
    its stop in the event loop. Outside the main thread nothing is installed (Python allows
    signal handlers only there), and the defaults apply.
    """

    def __init__(self) -> None:
        self.count = 0
        self.on_first: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_fd = -1

    @property
    def stop_sending(self) -> bool:
        """True after the first signal."""
        return self.count >= 1

    @property
    def stop_reading(self) -> bool:
        """True after the second signal."""
        return self.count >= 2

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            callback = self.on_first
            if callback is not None:
                callback()
        elif self.count >= 3:
            os.write(2, b"\nvtex-tracking: interrupted three times: quitting now.\n")
            os._exit(EXIT_INTERRUPTED)

    def wake_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make signals wake ``loop`` at once (call inside it, undo with ``unwake_loop``).

        Python runs signal handlers in the main thread, which may sit in the selector waiting
        for a socket (say, during a 60 s Retry-After pause) when another thread received the
        signal. asyncio's own ``add_signal_handler`` solves this with a wakeup fd; this does
        the same while keeping our handlers, which must outlive the loop. Windows' event loop
        has no ``add_reader`` and needs none: it set a wakeup fd of its own when it started.
        """
        if not self._previous:
            return
        receive, send = socket.socketpair()
        receive.setblocking(False)
        send.setblocking(False)
        try:
            loop.add_reader(receive.fileno(), _discard, receive)
        except NotImplementedError:  # the proactor loop (Windows) wakes itself
            receive.close()
            send.close()
            return
        self._wakeup = (receive, send)
        self._previous_fd = signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)

    def unwake_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Undo ``wake_loop``."""
        if self._wakeup is None:
            return
        receive, send = self._wakeup
        self._wakeup = None
        signal.set_wakeup_fd(self._previous_fd)
        loop.remove_reader(receive.fileno())
        receive.close()
        send.close()


def _discard(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # nothing to read after all
        sock.recv(4096)
