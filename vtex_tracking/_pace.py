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
* the token bucket has a token: a fixed ``rate_limit``, lowered by the adaptive rate on
  429/503 and raised again by successes; a ``Retry-After`` of ``ACCOUNT_PAUSE_AFTER`` seconds
  or more holds every request of the account until it has passed.

Nothing polls: the head of the queue is looked at again when a request ends (``release``),
when a newcomer arrives, or when the timer set for the next token fires.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from . import _testing_mode
from ._constants import (
    ACCOUNT_PAUSE_AFTER,
    AUTH_FAILURES_TO_STOP,
    DEFAULT_AUTH_COOLDOWN,
    INITIAL_WINDOW,
    INITIAL_WINDOW_SHARED,
    WINDOW_HEADROOM,
)
from ._errors import AuthCooldownError, ClientClosedError
from ._telemetry import logger

if TYPE_CHECKING:
    from ._shared import SharedAccount
from ._throttle import AdaptiveRate, TokenBucket

#: Weight of a new round-trip sample in the moving average.
RTT_GAIN = 0.1

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
        shared: SharedAccount | None = None,
    ) -> None:
        self.account = account
        self.bucket = TokenBucket(rate_limit, clock=clock)
        self.bucket.on_change = self._rate_changed
        self.adaptive = (
            AdaptiveRate(self.bucket, ceiling=rate_limit, clock=clock, rtt=self._current_rtt)
            if adaptive
            else None
        )
        self.max_window = max_concurrency
        # Without adaptive pacing the caller paces itself: no slow start either.
        # A shared account may have many processes starting at once: each starts with one
        # request in flight, so their first wave stays small against an unknown limit.
        first = INITIAL_WINDOW_SHARED if shared is not None else INITIAL_WINDOW
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
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatching = False
        #: The account's pace in Redis, shared with other processes (``shared_pace=``). While
        #: Redis answers, its tokens, pause and auth stop decide; the local bucket and
        #: adaptive rate keep learning from this process' answers, for when it does not.
        self.shared = shared
        if shared is not None:
            shared.on_change = self._rate_changed
            shared.on_fallback = self._fall_back
            shared.max_pause = max_retry_after  # no pause from Redis outlasts our own bound

    def __repr__(self) -> str:
        rate = self.bucket.rate
        shown = "unlimited" if rate is None else f"{rate:.1f}/s"
        return (
            f"AccountPace({self.account!r}, rate={shown},"
            f" window={self.window}, in_flight={self.in_flight}, rtt={self.rtt * 1000:.0f} ms)"
        )

    def _current_rtt(self) -> float:
        return self.rtt

    @property
    def rate(self) -> float | None:
        """Requests per second the account may take now (None: no limit known)."""
        shared = self.shared
        if shared is not None and shared.active:
            return shared.rate
        return self.bucket.rate

    @property
    def shared_state(self) -> str | None:
        """``"shared"`` while the pace is Redis', ``"local"`` while Redis does not answer,
        None without a shared pace."""
        if self.shared is None:
            return None
        return "shared" if self.shared.active else "local"

    def _token_wait(self) -> float:
        """Seconds until a token (shared, or this process' own while Redis is away)."""
        shared = self.shared
        if shared is None:
            return self.bucket.wait_time()
        if not shared.active:
            shared.check_back()  # at most once a second: is Redis back?
            return self.bucket.wait_time()
        if _testing_mode.enabled:
            return 0.0
        wait = shared.wait_time(len(self._waiters) or 1)
        if shared.rate is None:
            # No shared rate yet: this process' own pace reacts to its first 429 at once,
            # a Redis round trip before the shared one can.
            return max(wait, self.bucket.wait_time())
        return max(wait, self.bucket.pause_remaining())

    def _fall_back(self, share: float) -> None:
        # Redis stopped answering: go on at this process' share of the account's rate, not
        # at whatever the local pace learned meanwhile (every process falls back at once).
        if self.adaptive is not None:
            self.adaptive.restart_from(share)
        else:
            ceiling = self.bucket.rate
            self.bucket.set_rate(share if ceiling is None else min(share, ceiling))

    def _take_token(self) -> None:
        shared = self.shared
        if shared is not None and shared.active:
            shared.take()
            if shared.rate is None:
                self.bucket.take()
        else:
            self.bucket.take()

    def _adopt_shared_auth_stop(self) -> None:
        # Another process saw the credentials refused again and again: stop here too.
        shared = self.shared
        if shared is not None and shared.auth_until > self._auth_until and shared.active:
            self._auth_until = shared.auth_until
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
        if self.shared is not None:
            self.shared.forget()
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

    def try_admit(self) -> bool:
        """Admit one request now if nobody is queued and the pace allows it; never waits."""
        if self._waiters or self.in_flight >= self.window:
            return False
        if self.shared is not None:
            self._adopt_shared_auth_stop()
        if self._auth_until and self.auth_cooldown_error() is not None:
            return False
        if self._token_wait() > 0:
            return False
        self._take_token()
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
            if self.shared is not None:
                self._adopt_shared_auth_stop()
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
                wait = self._token_wait()
                if wait > 0:
                    self._wake_in(wait)
                    return
                waiters.popleft()
                self._take_token()
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

    def release(self, status: int | None, retry_after: float | None, elapsed: float) -> None:
        """An admitted request ended: HTTP ``status`` (None: no answer, or cancelled), the
        server's requested wait, and its round trip in seconds. Learns from it, then lets
        the next one in."""
        self.in_flight -= 1
        if status is not None:
            self._learn(status, retry_after, elapsed)
        if self._waiters:
            self._dispatch()

    def release_unused(self) -> None:
        """An admitted request was never sent (its caller stopped)."""
        self.in_flight -= 1
        if self._waiters:
            self._dispatch()

    def _learn(self, status: int, retry_after: float | None, elapsed: float) -> None:
        self.rtt = elapsed if not self.rtt else self.rtt + RTT_GAIN * (elapsed - self.rtt)
        if self.shared is not None:
            pause = (
                min(retry_after, self._max_retry_after)
                if retry_after is not None and retry_after >= ACCOUNT_PAUSE_AFTER
                else 0.0
            )
            self.shared.record(status, retry_after, pause, self.rtt, self._clock() - elapsed)
        if 200 <= status < 300:
            if self._auth_failures:
                self._auth_failures = 0
                self._auth_until = 0.0
            if self.adaptive is not None:
                self.adaptive.on_success()
            self._fit_window()
        # A 503 with Retry-After is VTEX's circuit breaker asking for less; a bare 503 is a
        # server error (retried), so random failures don't slow the account down.
        elif status == 429 or (status == 503 and retry_after is not None):
            if retry_after is not None and retry_after >= ACCOUNT_PAUSE_AFTER:
                # A long wait means the account is well over its limit: every request of it
                # waits, not only the one that got the answer.
                pause = min(retry_after, self._max_retry_after)
                if not self.bucket.paused:
                    logger.warning(
                        "account %r: VTEX answered %d with Retry-After %.0f s; pausing all of"
                        " its requests for %.0f s (others may be sharing its rate limit)",
                        self.account,
                        status,
                        retry_after,
                        pause,
                    )
                self.bucket.pause_until(self._clock() + pause)
            if self.adaptive is not None:
                self.adaptive.on_throttle()
        elif status == 401 or status == 403:
            # Likely a revoked key: let fewer requests out until something succeeds, and
            # after a few in a row fail fast for a while instead of knocking on VTEX.
            self.window = max(1, self.window - 1)
            self._auth_failures += 1
            if self._auth_failures >= AUTH_FAILURES_TO_STOP:
                if not self.auth_stopped:
                    logger.warning(
                        "account %r: VTEX refused its credentials %d times in a row (HTTP %d);"
                        " its calls fail fast for %.0f s (check the app key and its roles)",
                        self.account,
                        self._auth_failures,
                        status,
                        self._auth_cooldown,
                    )
                self._auth_until = self._clock() + self._auth_cooldown

    def _fit_window(self) -> None:
        ceiling = self.max_window
        rate = self.rate
        if rate is not None and self.rtt:
            ceiling = min(ceiling, int(rate * self.rtt * WINDOW_HEADROOM) + INITIAL_WINDOW)
        if self.window < ceiling:
            self.window += 1
        elif self.window > ceiling:
            self.window -= 1

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
