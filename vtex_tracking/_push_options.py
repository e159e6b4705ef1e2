"""How one push runs (``PushOptions``): checked once, when the push is made, below the engine
that reads them; and the read-ahead a push chooses by default."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import ValidationError
from ._remember import Journal, UnchangedState
from ._reports import PushResult

#: Items read ahead of the senders, per unit of concurrency (capped: see ``_read_ahead``).
READ_AHEAD_PER_SENDER = 4
#: Places a reader that ran out of read-ahead waits for before reading on.
READ_REFILL = 32
#: The least read-ahead of a push that may span accounts (about 1 KB per buffered update).
MULTI_ACCOUNT_READ_AHEAD = 4096
#: The most read-ahead chosen by default (about 1 KB per buffered update).
MAX_DEFAULT_READ_AHEAD = 8192


def _positive_int(name: str) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(name, f"expected an integer >= 1, got {value!r}")

    return check


def _rate(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
    ):
        raise ValidationError("rate_limit", f"expected requests per second > 0, got {value!r}")


def _as_journal(value: Journal | str | os.PathLike[str] | None) -> Journal | None:
    """``journal=``: a ``Journal``, or a path for one."""
    if value is None or isinstance(value, Journal):
        return value
    return Journal(value)


def _as_unchanged(
    value: UnchangedState | str | os.PathLike[str] | None,
) -> UnchangedState | None:
    """``skip_unchanged=``: an ``UnchangedState``, or a path for one."""
    if value is None or isinstance(value, UnchangedState):
        return value
    return UnchangedState(value)


@attrs.frozen
class PushOptions:
    """How one push runs; checked once, when the push is made (see ``AsyncTrackingClient.push``
    for what each option means)."""

    concurrency: int = attrs.field(validator=_positive_int("concurrency"))
    rate_limit: float | None = attrs.field(default=None, validator=_rate)
    adaptive: bool | None = None
    read_ahead: int | None = attrs.field(default=None, validator=_positive_int("read_ahead"))
    on_result: Callable[[PushResult], None] | None = None
    journal: Journal | None = attrs.field(default=None, converter=_as_journal)
    skip_unchanged: UnchangedState | None = attrs.field(default=None, converter=_as_unchanged)
    merge_snapshots: bool = False


def read_ahead(options: PushOptions, spans_accounts: bool) -> int:
    if options.read_ahead:
        return options.read_ahead
    read_ahead = min(options.concurrency * READ_AHEAD_PER_SENDER, MAX_DEFAULT_READ_AHEAD)
    if spans_accounts:
        # Room for a slow account's backlog (half of it at most) while the others flow.
        read_ahead = max(read_ahead, MULTI_ACCOUNT_READ_AHEAD)
    return read_ahead
