"""The package's one logger, with a ``NullHandler``: nothing is printed unless the
application configures logging (the logging HOWTO's advice for libraries). Every module logs
through it; it sits below everything so that any module may import it."""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("vtex_tracking")
logger.addHandler(logging.NullHandler())
