"""An account's pace: how many of its requests may be in flight, and when the next may go.

Every request for an account passes through its ``AccountPace``, whoever sends it: single
calls wait in ``acquire``; pushes ask with ``try_admit`` and, when refused, queue a callback
with ``enqueue``; the sync facade's threads come through its event loop. One queue, first come
first served, so a burst of calls is smoothed instead of answered 429, and pushes and calls
share the account's limit instead of each believing it owns it.

A request is admitted when all of these hold:

* the account is not cooling down after repeated 401/403 (``AuthCooldownError`` otherwise);
* fewer than ``window`` of its requests are in flight. The window starts at
  ``INITIAL_WINDOW`` and grows by one per success (slow start) up to its ceiling: the
  account's ``max_concurrency`` and, once a rate is set, what that rate needs at the measured
  round trip (Little's law: rate x rtt, times ``WINDOW_HEADROOM``). So an account 250 ms away
  gets enough requests in flight to reach its limit, and a slow one no more than it can use;
* its token source (``_tokens.TokenSource``) has a token: this process' own bucket at the
  adaptive rate (a new account starts slowly and climbs on its successes; 429s lower it), or
  tokens leased from Redis with ``shared_pace``; a ``Retry-After`` of
  ``ACCOUNT_PAUSE_AFTER`` seconds or more holds every request of the account until it has
  passed. The pace never asks which source it has.

Nothing polls: the head of the queue is looked at again when a request ends (``release``),
when a newcomer arrives, or when the timer set for the next token fires.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Union

from ._answer import Answer
from ._constants import (
    ACCOUNT_PAUSE_AFTER,
    AUTH_FAILURES_TO_STOP,
    DEFAULT_AUTH_COOLDOWN,
    INITIAL_WINDOW,
    WINDOW_HEADROOM,
)
from ._errors import AuthCooldownError, ClientClosedError
from ._log import logger
from ._throttle import AdaptiveRate, TokenBucket
from ._tokens import LocalTokens, TokenSource

#: Weight of a new round-trip sample in the moving average.
RTT_GAIN = 0.1

_CONFIRMED, _THROTTLED, _REFUSED, _NO_ANSWER = (
    Answer.CONFIRMED,
    Answer.THROTTLED,
    Answer.REFUSED,
    Answer.NO_ANSWER,
)

#: Told the outcome of a queued admission: None (admitted) or why not (``AuthCooldownError``).
AdmitCallback = Callable[[BaseException | None], None]
_Waiter = Union["asyncio.Future[None]", AdmitCallback]


class AccountPace:
    """The pace of one account, shared by everything that sends to it in this process.

    Bound to one event loop at a time (its timers and waiters live there); ``bind`` moves it
    to a new loop once the old one is closed, keeping what it learned (rate, round trip).
    """

    def __init__(
        self,
        account: str,
        *,
        rate_limit: float | None,
        adaptive: bool,
        max_concurrency: int,
        max_retry_after: float,
        auth_cooldown: float = DEFAULT_AUTH_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
        tokens: TokenSource | None = None,
    ) -> None:
        self.account = account
        #: The rate the application set for the account (None: none), whatever was learned:
        #: the cap of a push that paces itself (``adaptive=False``).
        self.rate_limit = rate_limit
        #: Where the account's tokens come from: this process' own (``LocalTokens``, made
        #: from ``rate_limit`` and ``adaptive``) or a shared source (``shared_pace=``).
        if tokens is None:
            tokens = LocalTokens(rate_limit, adaptive=adaptive, clock=clock)
        self.tokens: TokenSource = tokens
        self.tokens.on_change = self._rate_changed
        # This process' own tokens, when they are all the account has (``LocalTokens`` itself,
        # not a shared source): the hot paths then ask its bucket directly. Safe because
        # ``LocalTokens`` only forwards to it: its ``wait_time`` ignores the demand, its
        # ``auth_until`` is always 0 (no other process to adopt an auth stop from), and its
        # ``learn`` of a success needs no send time (``LocalTokens.confirmed``).
        self._local = tokens if type(tokens) is LocalTokens else None
        self._bucket = self._local.bucket if self._local is not None else None
        self.max_window = max_concurrency
        # Without adaptive pacing the caller paces itself: no slow start either.
        first = self.tokens.first_window
        self.window = min(first, max_concurrency) if adaptive else max_concurrency
        self.in_flight = 0
        #: Moving average of answered requests' round trips, in seconds (0: none yet).
        self.rtt = 0.0
        self._clock = clock
        self._max_retry_after = max_retry_after
        self._auth_cooldown = auth_cooldown
        self._auth_failures = 0
        self._auth_until = 0.0
        #: The last 401/403 error, quoted by ``AuthCooldownError`` (set by the sender).
        self.auth_error: BaseException | None = None
        self._waiters: collections.deque[_Waiter] = collections.deque()
        #: Requests ready to go that wait elsewhere (a push's lane holds one place in the
        #: queue for all of its ready updates): a shared pace leases as many tokens as
        #: requests wait, no more (see ``demand``).
        self.backlogs: set[Callable[[], int]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatching = False

    def __repr__(self) -> str:
        rate = self.bucket.rate
        shown = "unlimited" if rate is None else f"{rate:.1f}/s"
        return (
            f"AccountPace({self.account!r}, rate={shown},"
            f" window={self.window}, in_flight={self.in_flight}, rtt={self.rtt * 1000:.0f} ms)"
        )

    @property
    def bucket(self) -> TokenBucket:
        """This process' own token bucket (a shared pace's fallback)."""
        return self.tokens.local.bucket

    @property
    def adaptive(self) -> AdaptiveRate | None:
        """This process' own adaptive rate (None: ``adaptive=False``)."""
        return self.tokens.local.adaptive

    @property
    def rate(self) -> float | None:
        """Requests per second the account may take now (None: no limit known)."""
        bucket = self._bucket
        return bucket.rate if bucket is not None else self.tokens.rate

    @property
    def shared_state(self) -> str | None:
        """``"shared"`` while the pace is Redis', ``"local"`` while Redis does not answer,
        None without a shared pace."""
        return self.tokens.state

    @property
    def limit(self) -> float | None:
        """The account's limit as measured in this process (None: not measured)."""
        return self.tokens.limit

    def _adopt_auth_stop(self) -> None:
        # Another process saw the credentials refused again and again: stop here too.
        until = self.tokens.auth_until
        if until > self._auth_until:
            self._auth_until = until
            self._auth_failures = max(self._auth_failures, AUTH_FAILURES_TO_STOP)

    def _rate_changed(self) -> None:
        if self._waiters:
            self._dispatch()  # a faster rate may let the head go sooner than its timer

    # -- the event loop ------------------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve requests from ``loop``. Moving from a closed loop (``asyncio.run`` per job)
        forgets the requests that died with it; moving from a live one is refused."""
        if loop is self._loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            raise ClientClosedError(
                "this client is in use by another, still running event loop; create one"
                " client per event loop"
            )
        self.forget_requests()
        self._loop = loop

    def forget_requests(self) -> None:
        """Drop the waiters and in-flight count of a dead loop or a parent process (after a
        fork); what was learned about the account stays."""
        self.tokens.forget()
        self._waiters.clear()
        self._timer = None
        self.in_flight = 0
        self._loop = None

    # -- admission -------------------------------------------------------------------------------

    def auth_cooldown_error(self) -> AuthCooldownError | None:
        """The error to fail with while the account cools down after refused credentials."""
        if not self._auth_until:
            return None
        remaining = self._auth_until - self._clock()
        if remaining <= 0:
            return None  # cooled down: the next request may try (the window lets one out)
        cause = self.auth_error
        return AuthCooldownError(
            f"not sent: VTEX refused the credentials of account {self.account!r}"
            f" {self._auth_failures} times in a row"
            + (f" (last: {cause})" if cause is not None else "")
            + f"; its calls fail fast for {remaining:.1f} s more, then try again",
            account=self.account,
            retry_in=remaining,
            cause=cause,
        )

    def demand(self) -> int:
        """Requests waiting for this account's turn: queued here, and those a push's lanes
        hold ready (at least one: the one asking)."""
        waiting = len(self._waiters)
        for backlog in self.backlogs:
            waiting += backlog()
        return max(1, waiting)

    def try_admit(self) -> bool:
        """Admit one request now if nobody is queued and the pace allows it; never waits."""
        if self._waiters or self.in_flight >= self.window:
            return False
        bucket = self._bucket
        if bucket is not None:
            # Own tokens (see ``__init__``): no auth stop to adopt, no demand to count.
            if self._auth_until and self.auth_cooldown_error() is not None:
                return False
            if not bucket.try_take():
                return False
        else:
            self._adopt_auth_stop()
            if self._auth_until and self.auth_cooldown_error() is not None:
                return False
            tokens = self.tokens
            if tokens.wait_time(self.demand()) > 0:
                return False
            tokens.take()
        self.in_flight += 1
        return True

    async def acquire(self, timeout: float | None) -> bool:
        """Wait for this request's turn; False when ``timeout`` seconds passed first (nothing
        was taken). Raises ``AuthCooldownError`` while the account cools down."""
        if self.try_admit():
            return True
        loop = self._loop
        assert loop is not None, "bind() the pace to the running loop first"
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._dispatch()
        expiry = (
            loop.call_later(timeout, _expire, waiter)
            if timeout is not None and not waiter.done()
            else None
        )
        try:
            await waiter
        except _TimedOut:
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release_unused()  # admitted, but the caller went away
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
        return True

    def enqueue(self, callback: AdmitCallback) -> None:
        """Queue ``callback``: called with None once a request is admitted for it (counted in
        flight; ``release`` it), or with the ``AuthCooldownError`` that refuses it."""
        self._waiters.append(callback)
        self._dispatch()

    def cancel(self, callback: AdmitCallback) -> None:
        """Withdraw a queued ``callback`` (a push that stops)."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(callback)

    def _dispatch(self) -> None:
        """Admit queued requests while the pace allows; set a timer for the next token."""
        if self._dispatching:
            return  # a callback of ours queued more: the loop below will see it
        self._dispatching = True
        try:
            bucket = self._bucket
            if bucket is None:
                self._adopt_auth_stop()  # own tokens have none to adopt (see ``__init__``)
            tokens = self.tokens
            waiters = self._waiters
            while waiters:
                head = waiters[0]
                if isinstance(head, asyncio.Future) and head.done():
                    waiters.popleft()  # timed out or cancelled while queued
                    continue
                if self._auth_until:
                    error = self.auth_cooldown_error()
                    if error is not None:
                        waiters.popleft()
                        _resolve(head, error)
                        continue
                if self.in_flight >= self.window:
                    return  # the next release looks again
                wait = (
                    bucket.wait_time() if bucket is not None else tokens.wait_time(self.demand())
                )
                if wait > 0:
                    self._wake_in(wait)
                    return
                waiters.popleft()
                tokens.take()
                self.in_flight += 1
                _resolve(head, None)
        finally:
            self._dispatching = False

    def _wake_in(self, seconds: float) -> None:
        loop = self._loop
        if loop is None:
            return
        when = loop.time() + seconds
        if self._timer is not None:
            if self._timer_at <= when:
                return  # an earlier wake-up is set; it will set the next one
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer)
        self._timer_at = when

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    # -- learning --------------------------------------------------------------------------------

    def release(self, answer: Answer, retry_after: float | None, elapsed: float) -> None:
        """An admitted request ended with ``answer`` (``_answer.classify``), the server's
        requested wait and its round trip in seconds. Learns from it, then lets the next
        one in."""
        self.in_flight -= 1
        if answer is _CONFIRMED:
            # ``_learn`` of a success, the common answer, inlined in the same order: the round
            # trip, the tokens (no pause: that takes a throttle), the auth count, the window.
            rtt = self.rtt
            rtt = elapsed if not rtt else rtt + RTT_GAIN * (elapsed - rtt)
            self.rtt = rtt
            local = self._local
            if local is not None:
                # ``LocalTokens.confirmed`` inlined.
                local.rtt = rtt
                adaptive = local.adaptive
                if adaptive is not None:
                    adaptive.on_success()
                rate = local.bucket.rate
            else:
                self.tokens.learn(_CONFIRMED, retry_after, 0.0, rtt, self._clock() - elapsed)
                rate = self.tokens.rate
            if self._auth_failures:
                self._auth_failures = 0
                self._auth_until = 0.0
            # The window's ceiling: ``max_concurrency``, and once a rate is set, what that
            # rate needs at the measured round trip (see the module docstring); one step
            # towards it.
            ceiling = self.max_window
            if rate is not None and rtt:
                needed = int(rate * rtt * WINDOW_HEADROOM) + INITIAL_WINDOW
                if needed < ceiling:
                    ceiling = needed
            window = self.window
            if window < ceiling:
                self.window = window + 1
            elif window > ceiling:
                self.window = window - 1
        elif answer is not _NO_ANSWER:
            self._learn(answer, retry_after, elapsed)
        if self._waiters:
            self._dispatch()

    def release_unused(self) -> None:
        """An admitted request was never sent (its caller stopped)."""
        self.in_flight -= 1
        if self._waiters:
            self._dispatch()

    def _learn(self, answer: Answer, retry_after: float | None, elapsed: float) -> None:
        # Every answer but a success (``release``) and none at all.
        self.rtt = elapsed if not self.rtt else self.rtt + RTT_GAIN * (elapsed - self.rtt)
        # A long wait means the account is well over its limit: every request of it waits,
        # not only the one that got the answer.
        pause = 0.0
        if (
            answer is _THROTTLED
            and retry_after is not None
            and retry_after >= ACCOUNT_PAUSE_AFTER
        ):
            pause = min(retry_after, self._max_retry_after)
            if not self.bucket.paused:
                logger.warning(
                    "account %r: VTEX answered with Retry-After %.0f s; pausing all of"
                    " its requests for %.0f s (others may be sharing its rate limit)",
                    self.account,
                    retry_after,
                    pause,
                )
        self.tokens.learn(answer, retry_after, pause, self.rtt, self._clock() - elapsed)
        if answer is _REFUSED:
            # Likely a revoked key: let fewer requests out until something succeeds, and
            # after a few in a row fail fast for a while instead of knocking on VTEX.
            self.window = max(1, self.window - 1)
            self._auth_failures += 1
            if self._auth_failures >= AUTH_FAILURES_TO_STOP:
                if not self.auth_stopped:
                    logger.warning(
                        "account %r: VTEX refused its credentials %d times in a row;"
                        " its calls fail fast for %.0f s (check the app key and its roles)",
                        self.account,
                        self._auth_failures,
                        self._auth_cooldown,
                    )
                self._auth_until = self._clock() + self._auth_cooldown

    @property
    def auth_stopped(self) -> bool:
        """Whether the account is cooling down after refused credentials right now."""
        return bool(self._auth_until) and self._auth_until > self._clock()


class _TimedOut(Exception):
    """Set on a waiter whose ``acquire`` timeout passed."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_TimedOut())


def _resolve(waiter: _Waiter, error: BaseException | None) -> None:
    if isinstance(waiter, asyncio.Future):
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
    else:
        waiter(error)
