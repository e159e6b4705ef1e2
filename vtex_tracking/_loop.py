"""Which event loop the SDK starts where the loop is its own: uvloop when installed.

The SDK owns a loop in two places: the ``vtex-tracking`` command, and the sync client
(``TrackingClient``, and so the Celery tasks). Only the command runs on uvloop. The sync
client stays on asyncio's loop: it survives ``fork`` (Celery's prefork pool forks it) by
closing only the child's own descriptors of the inherited loop, a handling written and tested
for asyncio's loop, not for libuv's. In the command, uvloop (``pip install
"vtex-tracking[uvloop]"``, Linux and macOS) is used when it is installed: installing the extra
is the opt-in, and ``VTEX_TRACKING_UVLOOP=0`` (or the command's ``--no-uvloop``) is the way
back, for a debugger or a library that wants asyncio's own loop. ``VTEX_TRACKING_UVLOOP=1``
demands it: a missing uvloop is then an error instead of a quiet fallback. An application's
own loop is never changed: async applications choose theirs (``uvloop.run(main())``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._errors import ConfigurationError
from ._log import logger

__all__ = ["ENV_VAR", "loop_factory", "run"]

T = TypeVar("T")

#: The environment variable: 0 (or false, no, off) never, 1 (true, yes, on) always, unset or
#: ``auto`` when installed.
ENV_VAR = "VTEX_TRACKING_UVLOOP"
_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"1", "true", "yes", "on"})
_INSTALL = 'pip install "vtex-tracking[uvloop]" (Linux and macOS only)'

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(use_uvloop: bool | None = None) -> LoopFactory | None:
    """uvloop's ``new_event_loop`` when it is to be used, else None (asyncio's own loop).

    ``use_uvloop``: False never (``--no-uvloop``), True always, None as ``VTEX_TRACKING_UVLOOP``
    says (by default: when installed). Raises ``ConfigurationError`` when uvloop is demanded
    and cannot be imported, or the variable holds something else.
    """
    if use_uvloop is None:
        wanted = os.environ.get(ENV_VAR, "").strip().lower()
        if wanted in _OFF:
            return None
        if wanted not in _ON and wanted not in ("", "auto"):
            raise ConfigurationError(
                f"{ENV_VAR}={wanted!r}: use 0 (asyncio's loop), 1 (uvloop) or leave it unset"
                " (uvloop when installed)"
            )
        demanded = wanted in _ON
    elif not use_uvloop:
        return None
    else:
        demanded = True
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        if demanded:
            where = " on Windows" if sys.platform == "win32" else ""
            raise ConfigurationError(
                f"uvloop was asked for but is not installed{where}: {_INSTALL}"
            ) from exc
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory(use_uvloop)`` chooses: for entry
    points that own their loop (the command line)."""
    try:
        factory = loop_factory(use_uvloop)
    except BaseException:
        main.close()  # never started: no "never awaited" warning on top of the error
        raise
    logger.debug("event loop: %s", "uvloop" if factory is not None else "asyncio")
    if factory is None:
        return asyncio.run(main)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    return _run_310(main, factory)  # pragma: no cover - Python 3.10 only


def _run_310(main: Coroutine[Any, Any, T], factory: LoopFactory) -> T:  # pragma: no cover
    """``asyncio.Runner`` of Python 3.11, for 3.10: ``asyncio.run`` with a given loop."""
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
