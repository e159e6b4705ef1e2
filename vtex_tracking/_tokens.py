"""Where an account's tokens come from: one interface, two sources.

``AccountPace`` decides who goes next (its queue, its window, auth stops); a ``TokenSource``
decides when: ``wait_time`` until the next token, ``take`` one, and ``learn`` from each
answer. ``LocalTokens`` is this process' own token bucket and adaptive rate;
``_shared.SharedTokens`` leases tokens from Redis, shared with other processes, and uses a
``LocalTokens`` of its own while Redis does not answer. The pace never asks which it has.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from ._answer import Answer
from ._constants import INITIAL_WINDOW
from ._throttle import AdaptiveRate, TokenBucket

__all__ = ["LocalTokens", "TokenSource"]

_CONFIRMED, _THROTTLED = Answer.CONFIRMED, Answer.THROTTLED


class TokenSource(Protocol):
    """The tokens of one account's pace (see the module docstring)."""

    #: Called when a token may come sooner than a waiter was told (a new rate, an answer).
    on_change: Callable[[], None] | None
    #: How many requests the account's window lets out before its first answer.
    first_window: int

    @property
    def local(self) -> LocalTokens:
        """This process' own tokens: the source itself, or a shared source's fallback."""

    @property
    def rate(self) -> float | None:
        """Requests per second the account may take now (None: no limit known)."""

    @property
    def state(self) -> str | None:
        """``"shared"``/``"local"`` for a shared source (whether Redis answers), else None."""

    @property
    def auth_until(self) -> float:
        """Until when (monotonic) another process' auth stop holds the account (0: none)."""

    @property
    def limit(self) -> float | None:
        """The account's limit as measured here (None: not measured), worth remembering."""

    def wait_time(self, demand: int) -> float:
        """Seconds until the next token (0: take it now); ``demand``: requests waiting."""

    def take(self) -> None:
        """Spend the next token (after ``wait_time`` said 0)."""

    def learn(
        self, answer: Answer, retry_after: float | None, pause: float, rtt: float, sent_at: float
    ) -> None:
        """An answer to a request sent at ``sent_at`` (monotonic): ``pause`` seconds of a long
        ``Retry-After`` that hold every request (0: none), the round trip's moving average."""

    def forget(self) -> None:
        """After a fork or with a dead loop: drop what belongs to the old one."""


class LocalTokens:
    """This process' own tokens: a bucket at the adaptive rate, learned from its answers.

    A new account (adaptive, no ``rate_limit``) starts slowly (``AdaptiveRate.start``); one
    whose limit was learned before (``learned``) starts just below it. With ``rate_limit``
    the bucket starts there, the rate the application said the account takes.
    """

    first_window = INITIAL_WINDOW

    def __init__(
        self,
        rate_limit: float | None,
        *,
        adaptive: bool,
        learned: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.bucket = TokenBucket(rate_limit, clock=clock)
        #: The round trip's moving average (seconds), as the pace measures it.
        self.rtt = 0.0
        self.adaptive = (
            AdaptiveRate(self.bucket, ceiling=rate_limit, clock=clock, rtt=self._rtt)
            if adaptive
            else None
        )
        if self.adaptive is not None and rate_limit is None:
            if learned:
                self.adaptive.resume(learned)
            else:
                self.adaptive.start()

    def _rtt(self) -> float:
        return self.rtt

    @property
    def on_change(self) -> Callable[[], None] | None:
        return self.bucket.on_change

    @on_change.setter
    def on_change(self, callback: Callable[[], None] | None) -> None:
        self.bucket.on_change = callback

    @property
    def local(self) -> LocalTokens:
        return self

    @property
    def rate(self) -> float | None:
        return self.bucket.rate

    @property
    def state(self) -> str | None:
        return None

    @property
    def auth_until(self) -> float:
        return 0.0

    @property
    def limit(self) -> float | None:
        return self.adaptive.limit if self.adaptive is not None else None

    @property
    def paused(self) -> bool:
        """Whether a long ``Retry-After`` holds every request right now."""
        return self.bucket.paused

    def wait_time(self, demand: int = 1) -> float:
        return self.bucket.wait_time()

    def take(self) -> None:
        self.bucket.take()

    def learn(
        self, answer: Answer, retry_after: float | None, pause: float, rtt: float, sent_at: float
    ) -> None:
        if answer is _CONFIRMED:
            self.confirmed(rtt)
            return
        self.rtt = rtt
        if answer is _THROTTLED:
            if pause > 0:
                self.bucket.pause_until(self._clock() + pause)
            if self.adaptive is not None:
                self.adaptive.on_throttle()

    def confirmed(self, rtt: float) -> None:
        """``learn`` of a 2xx answer (``AccountPace.release`` inlines it: keep the two alike)."""
        self.rtt = rtt
        adaptive = self.adaptive
        if adaptive is not None:
            adaptive.on_success()

    def restart_from(self, share: float, *, starting: bool = False) -> None:
        """Go on alone at ``share`` requests per second (a shared pace whose Redis went away:
        every process falls back at once, each to its share, not to the whole rate);
        ``starting``: the shared slow start was still climbing, so climb on from there."""
        if self.adaptive is not None:
            self.adaptive.restart_from(share, starting=starting)
        else:
            ceiling = self.bucket.rate
            self.bucket.set_rate(share if ceiling is None else min(share, ceiling))

    def forget(self) -> None:
        return None
