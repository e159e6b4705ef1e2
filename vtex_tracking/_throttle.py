"""Pacing primitives: a token bucket whose rate can change under waiting senders, an adaptive
rate, and a first-come first-served budget. ``_pace`` composes them into an account's pace.

VTEX limits per account and does not say how much (``VTEX-FACTS.md``). So each account's pace
learns the limit: 429/503 answers lower the sending rate for all senders to just under the
rate the server was measured to accept, successes raise it again along a CUBIC curve (as
botocore's adaptive mode does), and a long ``Retry-After`` pauses every sender.

Waiters never reserve future slots: they queue in arrival order in the account's pace, whose
timer watches the clock for the head of the queue only; a rate change re-reads the rate once,
so a new rate takes effect at once and costs one check however many requests wait.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Callable

from . import _testing_mode

#: The lowest rate the adaptive throttle falls to, in requests per second.
MIN_RATE = 0.5
#: After measuring the server's rate, send at this fraction of it (botocore uses 0.7 from a
#: rougher estimate; a measured rate allows a gentler cut).
BETA = 0.95
#: CUBIC scaling constant (botocore uses 0.4): how fast the rate probes past the measured one.
SCALE = 0.4
#: The lowest rate a probe starts from, in requests per second.
PROBE_FLOOR = 2.0
#: While probing for the limit, the rate doubles every this many seconds (or every round
#: trip, when that is longer).
PROBE_DOUBLING = 0.35
#: The probe stops doubling after this many doublings (its rate then stays ~1e9 x its base).
PROBE_MAX_DOUBLINGS = 30.0
#: Entering a measurement from a probe, the rate drops to this fraction first.
PROBE_BACKOFF = 0.75
#: Seconds the rate is held while the server's rate is measured (at least two round trips).
MEASURE_TIME = 0.2
#: Seconds after a rate change during which throttles are taken as echoes of the old rate
#: (at least 1.2 round trips).
COOLDOWN = 0.05
#: Answers a measure lasts at least (at the held rate): at 2 requests per second, 0.2 s holds
#: no answer at all, and a measure of none took the account for one of 0.5 requests per second.
MEASURE_ANSWERS = 8
#: While measuring, the rate is held at most this much above the successes' rate so far: the
#: server stays saturated (its successes measure it) with few throttles.
MEASURE_OVER = 1.25
#: Answers CUBIC takes at least to come back to the measured rate, and as many to probe past
#: it by as much as it fell (``cubic_rate``).
QUIET_ANSWERS = 150
MAX_QUIET = 30.0
#: The longest K towards a rate guessed (the middle of where the start was refused and where
#: it measured no refusal), not measured: 30 s held a small store under its limit as long.
GUESS_QUIET = 5.0
#: A new account's first rate, in requests per second: the smallest limits VTEX accounts have
#: (``VTEX-FACTS.md``), so a small store's burst is not spent by the first wave.
START_RATE = 2.0
#: While starting, every success raises the rate so that it doubles every ``START_DOUBLING``
#: seconds while every request succeeds (slow start on answers: no answer, no climb), and every
#: ``START_DOUBLING_FAST`` seconds from ``START_FAST_FROM`` on, where small stores' limits are
#: passed. Small stores' bursts are small: the slower the climb near their limit, the smaller
#: the excess when their burst runs out and the first 429 tells the limit.
START_DOUBLING = 0.5
START_FAST_FROM = 256.0
START_DOUBLING_FAST = 0.25
# What each success adds to the rate while starting (``math.log(2) / doubling``, computed once).
_START_STEP = math.log(2) / START_DOUBLING
_START_STEP_FAST = math.log(2) / START_DOUBLING_FAST
#: The rate at which the start ends without a throttle: the account is taken as unlimited.
START_UNTIL = 4096.0
#: Entering a measure from the start, the rate drops to this fraction first: the first 429
#: comes when the server's burst ran out, about ``START_DOUBLING``'s worth past the limit.
START_BACKOFF = 0.6
#: A measure that drew at least this many throttles, a ``REFUSED_SHARE`` of its answers or
#: more, measured the server even when they all came in its first half: the server refused
#: us, and our own demand fell after (the refused requests wait out their ``Retry-After``).
REFUSED_THROTTLES = 3
REFUSED_SHARE = 0.1
#: Seconds of a measure that must have passed by its last throttle for the successes until
#: then to measure the server (``measured_rate``).
REFUSED_SPAN = 0.5
#: The most the successes until a measure's last throttle may add to its average.
REFUSED_AT_MOST = 1.25
#: Seconds without an answer (one process) or a call (shared) past which an account is idle:
#: CUBIC's and a probe's clocks stop while it is.
IDLE_GAP = 2.0


def measured_rate(
    successes: float, seconds: float, refused_successes: float, refused_seconds: float
) -> float:
    """The server's rate from a measure: its successes over its length, or, when higher, the
    successes up to its last throttle over that time (while the server refused us, its
    successes came at its rate; after, our own demand may have fallen: the refused requests
    wait out their ``Retry-After``, and a small store's backlog may be gone)."""
    rate = successes / seconds if seconds > 0 else 0.0
    if refused_seconds >= REFUSED_SPAN and refused_successes >= REFUSED_THROTTLES:
        # Bounded: early in a measure, answers to requests sent at the faster rate before it
        # still count, and a limit taken too high is kept for the next run.
        rate = max(rate, min(refused_successes / refused_seconds, rate * REFUSED_AT_MOST))
    return rate


def refused(successes: int | float, throttles: int | float) -> bool:
    """Whether a measure's answers say the server refused us (not a stray 429 or two)."""
    return throttles >= REFUSED_THROTTLES and throttles >= REFUSED_SHARE * (successes + throttles)


def cubic_rate(w_max: float, t: float, scale: float, quiet: bool = True) -> float:
    """CUBIC's rate ``t`` seconds after a measure of ``w_max``: from ``BETA * w_max`` back to
    ``w_max`` in ``K`` seconds, flat near it, then probing past it as slowly as it came back.

    ``K`` is CUBIC's own (``scale`` in requests per second cubed), but at least the time of
    ``QUIET_ANSWERS`` answers at ``w_max``: a small account's burst is small and refills only
    while the rate stays under the limit, so probing past it at CUBIC's pace drew a 429 every
    few requests (at 2 per second, a probe every 2 s); at most about one per
    ``QUIET_ANSWERS`` requests keeps throttles near one percent at any rate. Never longer
    than ``MAX_QUIET`` seconds: a measure taken too low (a few 429s of another cause while
    little got through) must not hold the account down for minutes.
    """
    k = cubic_k(w_max, scale, quiet)
    return float(w_max * (1 + (1 - BETA) * ((t - k) / k) ** 3))


def cubic_k(w_max: float, scale: float, quiet: bool = True) -> float:
    """CUBIC's ``K``: seconds from ``BETA * w_max`` back to ``w_max`` (see ``cubic_rate``);
    ``quiet=False``: for a ``w_max`` that was guessed, not measured, at most ``GUESS_QUIET``."""
    own = float((w_max * (1 - BETA) / scale) ** (1 / 3))
    longest = MAX_QUIET if quiet else GUESS_QUIET
    return max(own, min(QUIET_ANSWERS / w_max, longest))


def cubic_time_at(rate: float, w_max: float, scale: float, quiet: bool = True) -> float:
    """Seconds into CUBIC's curve of ``w_max`` at which it passes ``rate`` (below ``w_max``),
    negative for rates under ``BETA * w_max`` but never before ``-K`` (the curve is at
    ``w_max * (1 - 8 * (1 - BETA))`` there): to climb from ``rate`` towards ``w_max``, slowly
    near it."""
    k = cubic_k(w_max, scale, quiet)
    x = max(-8.0, min(0.0, (rate / w_max - 1) / (1 - BETA)))
    return float(k * (1 - (-x) ** (1 / 3)))


class Budget:
    """A first-come first-served counting semaphore on plain asyncio futures: the client's
    budget of requests in flight, and a push's read-ahead slots.

    anyio's ``Semaphore`` costs an exception, a coroutine, an event and a cancel scope per
    blocked ``acquire``; with a hundred senders waiting for 64 slots those objects, each
    alive for the whole wait, roughly doubled the garbage collector's time in a push over
    100 stores (about 1 s of 6.7 s; 0.5 s with plain futures).
    """

    def __init__(self, slots: int) -> None:
        self.value = slots
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits; never waits (the hot path, without
        the coroutine an ``await acquire()`` costs)."""
        if self.value > 0 and not self._waiters:
            self.value -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting in arrival order when none is free."""
        if self.value > 0 and not self._waiters:
            self.value -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, but cancelled before using it
            else:
                # A release() between our cancellation and now already dropped it.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.value += 1


class TokenBucket:
    """Paces requests to ``rate`` per second with a burst of ``capacity``.

    ``rate=None`` means unlimited. ``wait_time()`` says how long until a token; ``take()``
    spends one; ``pause_until(t)`` holds everything until monotonic time ``t``. The bucket
    never waits itself: its owner (``_pace.AccountPace``) queues the waiters, and
    ``on_change`` tells it when a new rate or pause may change how long they wait.
    """

    def __init__(
        self,
        rate: float | None,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        #: The current rate in requests per second, or None when unlimited. Read it; change
        #: it with ``set_rate`` only (a plain attribute, not a property: the pace and the
        #: push read it on every request).
        self.rate = rate
        self._capacity = capacity if capacity is not None else self._default_capacity(rate)
        self._tokens = self._capacity
        self._updated = clock()
        self._paused_until = 0.0
        #: Called after a rate change or a new pause.
        self.on_change: Callable[[], None] | None = None

    @staticmethod
    def _default_capacity(rate: float | None) -> float:
        # A small burst: enough to start promptly, too little to overrun a server limit.
        return 1.0 if rate is None else max(1.0, min(rate / 10, 10.0))

    def set_rate(self, rate: float | None) -> None:
        """Change the rate; it applies to requests already waiting."""
        # Called on every success while an account starts: ``_refill`` and
        # ``_default_capacity`` inlined, with the same arithmetic in the same order.
        now = self._clock()
        tokens = self._tokens
        old = self.rate
        if old is not None:
            # Each ``min``/``max`` below as a comparison that picks the same operand it would.
            tokens += (now - self._updated) * old
            capacity = self._capacity
            tokens = tokens if tokens < capacity else capacity
        self._updated = now
        self.rate = rate
        # ``_default_capacity`` by the rate's range: ``rate / 10`` rounds monotonically, so it
        # passes 10 (or 1) exactly when the rate passes 100 (or 10); a NaN gets 1.0 as there.
        if rate is None:
            capacity = 1.0
        elif rate > 100.0:
            capacity = 10.0
        elif rate > 10.0:
            capacity = rate / 10
        else:
            capacity = 1.0
        self._capacity = capacity
        self._tokens = capacity if capacity < tokens else tokens
        if self.on_change is not None:
            self.on_change()

    def pause_remaining(self) -> float:
        """Seconds left of a ``Retry-After`` pause (0: none)."""
        return max(0.0, self._paused_until - self._clock())

    @property
    def paused(self) -> bool:
        """Whether a ``Retry-After`` pause holds every request right now."""
        return self._clock() < self._paused_until

    def pause_until(self, deadline: float) -> None:
        """Hold every request until monotonic time ``deadline`` (a ``Retry-After``)."""
        if deadline > self._paused_until:
            self._paused_until = deadline
            self._tokens = min(self._tokens, 1.0)
            if self.on_change is not None:
                self.on_change()

    def _refill(self) -> None:
        now = self._clock()
        if self.rate is not None:
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self) -> float:
        """Seconds until a token may be available (0: take one now with ``take``)."""
        if _testing_mode.enabled:
            return 0.0
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        rate = self.rate
        if rate is None:
            return 0.0
        # ``_refill`` inlined (the hot path of every paced request).
        tokens = self._tokens + (now - self._updated) * rate
        capacity = self._capacity
        tokens = tokens if tokens < capacity else capacity
        self._tokens = tokens
        self._updated = now
        if tokens >= 1.0:
            return 0.0
        return (1.0 - tokens) / rate

    def take(self) -> None:
        """Spend one token (call after ``wait_time()`` returned 0)."""
        if self.rate is not None:
            self._tokens -= 1.0

    def try_take(self) -> bool:
        """Spend a token if one is available now: ``wait_time() == 0`` then ``take()`` in one
        call, without computing how long a wait would be (the pace's hot path)."""
        if _testing_mode.enabled:
            self.take()
            return True
        now = self._clock()
        if now < self._paused_until:
            return False
        rate = self.rate
        if rate is None:
            return True  # ``take`` spends nothing without a rate
        # As ``wait_time``: refill, then a token if there is one (a rate is always > 0, so a
        # bucket short of one token would have said a wait > 0).
        tokens = self._tokens + (now - self._updated) * rate
        capacity = self._capacity
        tokens = tokens if tokens < capacity else capacity
        self._updated = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


class AdaptiveRate:
    """Learns the account's rate limit from 429/503 answers and paces the bucket below it.

    States, in the order a push usually meets them:

    * ``start`` (a new account, after ``start()``): from ``START_RATE``, each success raises
      the rate (doubling every ``START_DOUBLING`` seconds of successes) until the first
      throttle, which measures, or ``START_UNTIL``, past which the account is ``unlimited``.
    * ``unlimited``: no throttle seen; only the concurrency bounds the pace.
    * ``probe``: after the first throttle, restart from the success rate seen so far and
      double every ``PROBE_DOUBLING`` seconds until the server pushes back again.
    * ``measure``: the server pushes back, so it is saturated and its bucket empty; hold the
      rate (after a probe, ``PROBE_BACKOFF`` of it) for ``MEASURE_TIME`` and count successes:
      that is the server's rate. If no further throttle arrives meanwhile, the server was not
      saturated at the held rate: a probe goes on probing, and CUBIC backs off from the rate
      that drew the throttle.
    * ``cubic``: send at ``BETA`` times the measured rate and grow along CUBIC's curve
      ``SCALE * (t - K)**3 + w_max``: back to ``w_max`` in ``K`` seconds, flat near it, probing
      slowly beyond. The next throttle measures again.

    Throttles that arrive within ``COOLDOWN`` of a change answer requests sent before it and
    are not counted again.

    Far from VTEX, an answer describes the rate of one round trip ago: ``rtt`` (seconds,
    measured by the pace) stretches the echo window, the measurement and the probe's doubling
    time to a few round trips, so a 250 ms account is judged on its own answers.
    """

    def __init__(
        self,
        bucket: TokenBucket,
        *,
        ceiling: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rtt: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._bucket = bucket
        self._ceiling = ceiling
        self._clock = clock
        self._rtt = rtt
        self._state = "unlimited"
        self._started = clock()
        self._since = self._started
        self._successes_total = 0
        self._measure_successes = 0
        self._measure_throttles = 0
        self._measured_from = "probe"
        self._entry_rate = 0.0
        self._base = 0.0
        self._w_max = 0.0
        self._ignore_until = 0.0
        self._last_throttle = -1e9
        self._last_counted = -1e9
        # The measure's successes when its last throttle came.
        self._successes_at_last_counted = 0
        # CUBIC's K: the quiet one after a measure, CUBIC's own after a guess.
        self._quiet = True
        self._last_success = self._started
        self.throttles = 0

    @property
    def state(self) -> str:
        """``start``, ``unlimited``, ``probe``, ``measure`` or ``cubic``."""
        return self._state

    def start(self, rate: float | None = None) -> None:
        """Begin a new account at ``rate`` (default ``START_RATE``) and climb on its
        successes (see ``start`` in the class docstring)."""
        self._enter("start", self._clock())
        self._set(START_RATE if rate is None else rate)

    def resume(self, limit: float) -> None:
        """Begin at a limit learned before (remembered from an earlier run): just below it,
        probing past it slowly along CUBIC's curve, as after a measure."""
        self._w_max = max(MIN_RATE, limit)
        self._enter("cubic", self._clock())
        self._set(self._w_max * BETA)

    @property
    def limit(self) -> float | None:
        """The account's limit as last measured, or resumed from (None: not measured)."""
        return self._w_max or None

    def _set(self, rate: float) -> None:
        # ``max(MIN_RATE, rate)`` and ``min(rate, ceiling)`` as the comparisons they make.
        rate = rate if rate > MIN_RATE else MIN_RATE
        ceiling = self._ceiling
        if ceiling is not None and ceiling < rate:
            rate = ceiling
        self._bucket.set_rate(rate)

    def restart_from(self, rate: float, *, starting: bool = False) -> None:
        """Go on from ``rate`` (this process' share of a pace it no longer shares): CUBIC
        from there, back to a little above it, then probing slowly, as after a measure; or,
        ``starting`` (the shared slow start was still climbing: no limit measured yet), the
        slow start on from there."""
        if starting:
            self.start(rate)
            return
        now = self._clock()
        self._w_max = max(MIN_RATE, rate) / BETA
        self._enter("cubic", now)
        self._set(rate)

    def on_throttle(self) -> None:
        """A 429 or 503 answer."""
        self.throttles += 1
        now = self._clock()
        self._last_throttle = now
        if now < self._ignore_until:
            return
        if self._state == "unlimited":
            # Little is known yet: restart from what got through, floored at one second so
            # the opening burst the server allowed does not pass for its rate.
            elapsed = max(now - self._started, 1.0)
            self._base = max(PROBE_FLOOR, self._successes_total / elapsed)
            self._enter("probe", now)
            self._set(self._base)
        elif self._state in ("start", "probe", "cubic"):
            self._measured_from = self._state
            self._entry_rate = self._bucket.rate or PROBE_FLOOR
            self._enter("measure", now)
            self._measure_successes = 0
            self._measure_throttles = 0
            if self._measured_from == "probe":
                # A probe overshoots by up to one doubling step: measure from a little lower,
                # still above the limit in most cases, with fewer 429s while measuring.
                self._set(self._entry_rate * PROBE_BACKOFF)
            elif self._measured_from == "start":
                # Not under START_RATE: no account is slower, and a few early 429s of
                # another cause must not hold a fast account at a crawl while it measures.
                self._set(max(self._entry_rate * START_BACKOFF, START_RATE))
        else:
            self._measure_throttles += 1
            self._last_counted = now
            self._successes_at_last_counted = self._measure_successes
            if self._measure_done(now - self._since):
                self._finish_measure(now)

    def on_success(self) -> None:
        """A 2xx answer."""
        self._successes_total += 1
        state = self._state
        if state == "unlimited":
            return
        now = self._clock()
        if state == "start":
            # Every success of a new account comes here: the idle gap applies to cubic and
            # probe only, and the start's rate does not depend on the time.
            self._last_success = now
            bucket = self._bucket
            rate = bucket.rate or START_RATE
            rate += _START_STEP if rate < START_FAST_FROM else _START_STEP_FAST
            ceiling = self._ceiling
            if rate >= START_UNTIL and ceiling is None:
                self._state = "unlimited"
                bucket.set_rate(None)
                return
            # ``_set`` inlined, without its floor: a positive rate plus a step is above
            # ``MIN_RATE`` (asserted below the class).
            if ceiling is not None and ceiling < rate:
                rate = ceiling
            bucket.set_rate(rate)
            return
        idle = now - self._last_success
        self._last_success = now
        if idle > IDLE_GAP and (state == "cubic" or state == "probe"):
            # Nothing was answered for a while (between two pushes): the curve goes on from
            # where it was, not from where the idle time would put it (far past the limit).
            self._since += idle - IDLE_GAP
        t = now - self._since
        if state == "probe":
            doublings = t / max(PROBE_DOUBLING, self._rtt())
            # Capped: 2.0 ** 1024 overflows a float (about six minutes of probing without a
            # throttle), and 2 ** PROBE_MAX_DOUBLINGS times any rate passes every real limit.
            if doublings > PROBE_MAX_DOUBLINGS:
                doublings = PROBE_MAX_DOUBLINGS
            self._set(self._base * 2**doublings)
        elif state == "measure":
            self._measure_successes += 1
            if self._measure_done(t):
                self._finish_measure(now)
            elif t >= self._measure_floor() and now - self._last_throttle < self._measure_floor():
                # The server's bucket is empty: its successes come at its rate. Hold just
                # above what they say, not at the rate that ran past the limit, so the
                # measure itself draws few throttles.
                measured = self._measure_successes / t
                held = self._bucket.rate
                if held is not None and held > measured * MEASURE_OVER:
                    self._set(measured * MEASURE_OVER)
        else:
            self._set(cubic_rate(self._w_max, t, SCALE, self._quiet))

    def _finish_measure(self, now: float) -> None:
        if not refused(self._measure_successes, self._measure_throttles) and (
            self._last_counted < self._since + (now - self._since) / 2
        ):
            # A few throttles, none in the second half of the measure: what got through
            # measures only our own pace, not the server's (a few 429s of another cause at its
            # start, while little got through, measured a fast account at a crawl). After the
            # start, climb back towards where the throttle came, slowly near it (doubling
            # again from here passed the limit by as much as before, every two seconds);
            # after a probe, keep probing from here; in cubic, we were just past the limit,
            # so back off from where the throttle came, as CUBIC does.
            if self._measured_from == "start":
                # Below the limit, which lies under where the throttle came (the slow start
                # doubled past it): CUBIC up from here, slowly near the middle of the two
                # (geometric: the limit is as likely near either end).
                held = self._bucket.rate or self._entry_rate
                self._w_max = math.sqrt(held * self._entry_rate)
                self._enter("cubic", now)
                # A guess, not a measure: K at most GUESS_QUIET (the quiet one, up to 30 s
                # at a small store's rate, held it under its limit for as long).
                self._quiet = False
                self._since = now - cubic_time_at(held, self._w_max, SCALE, quiet=False)
            elif self._measured_from == "probe":
                self._base = self._bucket.rate or PROBE_FLOOR
                self._enter("probe", now)
            else:
                self._w_max = self._entry_rate
                self._enter("cubic", now)
                self._set(self._w_max * BETA)
            return
        measured = measured_rate(
            self._measure_successes,
            now - self._since,
            self._successes_at_last_counted,
            self._last_counted - self._since,
        )
        # The server refused us: its rate is under what we offered (the rate held).
        offered = self._bucket.rate
        if offered is not None:
            measured = min(measured, offered)
        self._w_max = max(MIN_RATE, measured)
        self._enter("cubic", now)
        self._set(self._w_max * BETA)

    def _measure_floor(self) -> float:
        return max(MEASURE_TIME, 2 * self._rtt())

    def _measure_done(self, t: float) -> bool:
        # At least two round trips, and enough answers to count (a small account gives one
        # every half second), but never longer than those answers take at the lowest rate.
        if t < self._measure_floor():
            return False
        return self._measure_successes >= MEASURE_ANSWERS or t >= MEASURE_ANSWERS / MIN_RATE

    def _enter(self, state: str, now: float) -> None:
        self._state = state
        self._since = now
        self._quiet = True
        # Answers to requests sent before the change are still arriving for one round trip.
        self._ignore_until = now + max(COOLDOWN, 1.2 * self._rtt())


# ``on_success`` skips ``_set``'s floor while starting: one step alone passes it.
assert min(_START_STEP, _START_STEP_FAST) > MIN_RATE
