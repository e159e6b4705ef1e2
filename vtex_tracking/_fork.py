"""Work to redo in a child process after ``os.fork()``, where processes fork at all.

Windows has no ``fork`` (and no ``os.register_at_fork``): there a child process starts from
scratch and inherits no threads, locks or event loops, so there is nothing to redo.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["at_fork_in_child"]


def at_fork_in_child(func: Callable[[], object]) -> None:
    """Call ``func`` in the child after every ``os.fork()``; nothing where forking does not
    exist (Windows)."""
    register = getattr(os, "register_at_fork", None)
    if register is not None:
        register(after_in_child=func)
