"""Each account's pace shared by every process and machine through Redis (``shared_pace=``).

VTEX limits an account, not a process. With several processes (web workers, Celery children,
replicas) each learning the account's limit on its own, their sum overshoots it. Here the
account's token schedule, learned rate, ``Retry-After`` pause and auth stop live in one Redis
hash per account, changed by one Lua script (``_shared_script.lua``) per call, atomically and
on Redis' clock.

A process leases tokens: one call reserves the tokens of about a second at the account's
rate (GCRA with reservations: each token has the moment it may be used), and reports what the
process saw since its last call (successes, throttles, a long ``Retry-After``, refused
credentials). So a small account costs one Redis call a second, not one per request, and no
one polls. Refusals carry the account's auth generation (how many times a success ended
refusals or a stop) the process last heard of: the script counts only those of the current
one, so a report that comes late, after the key was restored and used, cannot stop the
account again; refusals seen while Redis did not answer are never reported.

A new account starts as the SDK's own pace does (``_throttle.AdaptiveRate``): at the smallest
limits VTEX accounts have, climbing on successes, every process together. Once measured, the
account's limit is also kept in a key of its own, bound to the URL its requests go to, for
30 days: the next run (tomorrow's) starts just below it instead of from the slow start.

When Redis is down (a connection refused, or no answer within a generous timeout), sending
goes on with the process's own pace (``LocalTokens``, which keeps learning all along), with
one warning; every second one call checks whether Redis is back, and the process rejoins.
Redis never fails an update. An answer read late because the process is busy is not an
outage: the requests wait for it, so a lagging process slows down instead of sending alone.

Nor does what Redis holds stall a process: a wait taken from an answer (a pause, an auth
stop, a lease's tokens, when to ask again) is bounded by the process's own limits
(``max_retry_after``, ``auth_cooldown``, the lease horizon), a process that waits asks again
every ``REFRESH_INTERVAL``, and the script treats stored times it could never have set (a
stray write, Redis' clock stepped back) and non-numbers as garbage.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import math
import os
import secrets
import time
import weakref
from collections.abc import Callable
from typing import Any

from . import _testing_mode, _throttle
from ._answer import Answer
from ._config import SharedPace
from ._constants import (
    DEFAULT_MAX_RETRY_AFTER,
    INITIAL_WINDOW_SHARED,
    LIMIT_FRESH,
    LIMIT_HALF_LIFE,
)
from ._errors import ConfigurationError
from ._log import logger
from ._tokens import LocalTokens

__all__ = ["SharedConnection", "SharedPace", "SharedTokens"]

#: Seconds between checks whether an unreachable Redis is back.
RECONNECT_INTERVAL = 1.0
#: Seconds between syncs while no rate is known (unlimited: no tokens to lease).
SYNC_INTERVAL = 0.1
#: Seconds after which what Redis last said is too old to send on: an idle process waits one
#: round trip for the account's news (a pause, an auth stop another process met).
STALE_AFTER = 1.0
#: Seconds of the account's requests one lease covers, shared by the processes that send to
#: it (at least one token): a process alone on a small account leases a second of its
#: requests, one Redis call per second, not one per request; eight processes lease an eighth
#: each, so their tokens interleave finely and a change of rate reaches all of them soon. A
#: lease never holds more tokens than requests wait: a token the process cannot use expires,
#: and the account's schedule loses its moment.
LEASE_SECONDS = 1.0
#: Most tokens one lease reserves.
MAX_LEASE = 32
#: The most leased tokens are moved at once (log of the factor, either way): the rate
#: changes far less between two calls of a process; a garbled answer (or a Redis restarted
#: empty) must not hold tokens for minutes or release them all at once.
MAX_STRETCH_LOG = math.log(4)
#: Answers CUBIC takes at least to come back to a shared measured rate (the process' own
#: pace: ``_throttle.QUIET_ANSWERS``). Each probe past the limit draws a few 429s before
#: every process hears of it (the server's burst hides the first excess), so a fleet
#: probes half as often as one process does.
SHARED_QUIET_ANSWERS = 300
#: Seconds the shared rate is held to measure the account's (``_throttle.MEASURE_TIME``
#: is 0.2 s): processes hear of a change one lease later, and only throttles of requests sent
#: after that count, so a shorter hold would often see none and judge the account unsaturated.
SHARED_MEASURE_TIME = 1.5
#: CUBIC's scale for the shared rate (``_throttle.SCALE`` is 0.4): the rate takes longer to
#: come back to where the account last throttled and grows more slowly past it, so each cycle
#: lasts longer and the server's burst runs out at a smaller excess; fewer 429s for the same
#: mean rate (the concave part costs the same share of the rate at any scale).
SHARED_SCALE = 0.1
#: Seconds of this process' recent successes that measure its share of the account, the rate
#: it goes on at when Redis stops answering (not the whole account's rate: every process
#: falls back at once).
SHARE_WINDOW = 2.0
#: Most success times kept for that measure (about 2 s at 2,000 requests per second).
MAX_SHARE_SAMPLES = 4096
#: Seconds (or one token's interval, if longer) after which a reserved token not used is
#: dropped: its moment has passed, and tokens used late go out as a burst (at 1 s, a window
#: that held them back let a second of them out at once, twice the account's rate).
TOKEN_EXPIRY = 0.25
#: Seconds ``wait_time`` reports while a lease is on its way (its answer wakes the pace).
PENDING = 1.0
#: Seconds a waiting process goes at most without asking Redis again. What Redis said (a
#: pause, an auth stop, when tokens will be near) may have ended early or been garbage: the
#: key deleted, another process' success, a stray write, a step of Redis' clock. Believed
#: whole, such a wait would hold the process long after; asking again costs one round trip
#: every few seconds, and only while it waits.
REFRESH_INTERVAL = 2.0
#: Seconds ahead the script may place a lease's first token (or two tokens' time at a slow
#: rate): it promises nothing further, since the rate may rise meanwhile.
LEASE_HORIZON = 1.0

def _script() -> str:
    """The Lua script, read when a connection registers it: ``importlib.resources`` (and the
    zipfile machinery it loads) stays out of ``import vtex_tracking``."""
    import importlib.resources

    return importlib.resources.files("vtex_tracking").joinpath("_shared_script.lua").read_text()


class SharedConnection:
    """A client's link to the shared pace: one Redis client and script per event loop and
    process, made again after a fork or when the loop changes (redis-py's asyncio clients
    belong to one loop), and whether Redis answers (the warning is given once per outage)."""

    def __init__(self, config: SharedPace) -> None:
        self.config = config
        self._client: Any = None
        self._script: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._guard: asyncio.Task[None] | None = None
        #: Whether Redis answered the last call; the warning is given once per outage.
        self.healthy = True

    def script(self) -> Any:
        """The registered script for the running loop (NOSCRIPT after a restart is handled
        by redis-py's script object, which loads it again)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._pid != os.getpid():
            client = self._client = self._new_client()
            self._script = client.register_script(_script())
            self._loop = loop
            self._pid = os.getpid()
            # Close it as its loop shuts down (asyncio.run cancels what is left, then waits),
            # as the HTTP pool does: a client reused across asyncio.run leaves no socket.
            guard = loop.create_task(_close_with_loop(weakref.ref(self), client))
            guard._log_destroy_pending = False  # type: ignore[attr-defined]
            self._guard = guard
        return self._script

    def _new_client(self) -> Any:
        config = self.config
        if config.client_factory is not None:
            return config.client_factory()
        try:
            import redis.asyncio
        except ImportError:  # pragma: no cover - the extra is documented
            raise ConfigurationError(
                "shared_pace needs redis-py: pip install 'vtex-tracking[redis]'"
            ) from None
        assert config.url is not None  # checked at construction: a URL or a factory
        return redis.asyncio.Redis.from_url(
            config.url,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            retry_on_timeout=False,
        )

    def forget(self) -> None:
        """After a fork or with a dead loop: the old client is not ours to close."""
        self._guard = None
        self._client = None
        self._script = None
        self._loop = None

    async def aclose(self) -> None:
        """Close the client if it belongs to the running loop."""
        client, self._client = self._client, None
        self._script = None
        guard, self._guard = self._guard, None
        if client is not None and self._loop is asyncio.get_running_loop():
            if guard is not None and not guard.done():
                guard.cancel()
            await client.aclose()

    def key(self, account: str) -> str:
        """The Redis key of ``account`` (its name and environment): VTEX limits accounts."""
        return f"{self.config.prefix}:{account}"

    def limit_key(self, account: str, target: str) -> str:
        """The key of ``account``'s measured limit when its requests go to ``target`` (a base
        URL): a limit measured at a fake server or a proxy never paces the real account."""
        digest = hashlib.sha256(target.encode()).hexdigest()[:16]
        return f"{self.config.prefix}:{account}:limit:{digest}"

    def went_down(self, error: BaseException) -> None:
        """A call failed: pace on our own, and say so once."""
        if self.healthy:
            self.healthy = False
            logger.warning(
                "shared pace: Redis at %s did not answer (%s); each process paces its"
                " accounts on its own until it is back",
                self.config.where,
                type(error).__name__,
            )

    def came_back(self) -> None:
        """A call succeeded after an outage: rejoin, and say so."""
        if not self.healthy:
            self.healthy = True
            logger.warning(
                "shared pace: Redis at %s answers again; accounts are paced together again",
                self.config.where,
            )


async def _close_with_loop(owner: weakref.ref[SharedConnection], client: Any) -> None:
    """Wait until the event loop shuts down, then close ``client`` in it."""
    try:
        await asyncio.get_running_loop().create_future()  # never set: wait to be cancelled
    except asyncio.CancelledError:
        connection = owner()
        if connection is not None and connection._client is client:
            connection._client = None
            connection._script = None
        await client.aclose()
        raise


class SharedTokens:
    """One account's tokens from the shared pace, in one process (a ``TokenSource``): the
    tokens it leased, what it saw since its last call, and the account's pause and auth stop
    as Redis last said; while Redis does not answer, this process' own ``local`` tokens.

    ``AccountPace`` asks ``wait_time()`` and calls ``take()`` and ``learn()``; a lease's
    answer calls ``on_change`` so the pace looks at its queue again.
    """

    first_window = INITIAL_WINDOW_SHARED

    def __init__(
        self,
        connection: SharedConnection,
        key: str,
        local: LocalTokens,
        limit_key: str,
        *,
        max_pause: float = DEFAULT_MAX_RETRY_AFTER,
        ceiling: float | None,
        adaptive: bool,
        auth_to_stop: int,
        auth_cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self.key = key
        self._limit_key = limit_key
        #: This process' own tokens: they keep learning from its answers all along, and pace
        #: it while Redis does not answer.
        self._local = local
        self._ceiling = ceiling or 0
        self._adaptive = adaptive
        self._auth_to_stop = auth_to_stop
        self._auth_cooldown = auth_cooldown
        self._clock = clock
        #: Times (monotonic) at which each leased token may be used, oldest first.
        self._tokens: list[float] = []
        #: The account's rate as Redis last said (None: none known yet).
        self.shared_rate: float | None = None
        self.paused_until = 0.0
        self.shared_auth_until = 0.0
        #: The longest pause this process takes from Redis: its ``max_retry_after``, as
        #: ``auth_cooldown`` bounds an auth stop.
        self._max_pause = max_pause
        # What this process saw since its last call.
        self._ok = 0
        self._ok_since = clock()
        #: Send times of the throttled requests not reported yet.
        self._throttled: list[float] = []
        self._pause = 0.0
        self._auth_failures = 0
        self.rtt = 0.0
        self._call: asyncio.Task[None] | None = None
        # The learned rate's last change of state, and when this process heard of it: a
        # throttle of a request sent before then answers the old rate and is not reported
        # (reports travel with the next call, later than the answers they describe). While
        # Redis does not answer, infinity: no throttle is reported until the rejoin.
        self._generation = 0
        self._generation_at = -1e9
        # Auth stops this process has heard of, and how many it knew at its latest success
        # (a success from before a stop must not end it).
        self._auth_stops = 0
        self._auth_stops_at_success = 0
        # The account's auth generation as Redis last said (None: not heard, or Redis does
        # not answer), and since when refusals count: refusals go to Redis tagged with it, and
        # the script drops those of an older generation (a success ended them meanwhile).
        # Refusals of requests sent while Redis did not answer, or before this process heard
        # of the latest generation, stay this process' own (its pace stops on them locally).
        self._auth_generation: int | None = None
        self._auth_since = -1e9
        # Hold requests until Redis answers: before the first answer (the account may have a
        # rate, a pause or a stop already), and after a throttle while no rate is known.
        self._hold = True
        self._last_call = -1e9
        self._retry_at = 0.0
        self._next_ask = 0.0
        self._answered_at = -1e9
        self._on_change: Callable[[], None] | None = None
        self._successes: collections.deque[float] = collections.deque(maxlen=MAX_SHARE_SAMPLES)
        #: This process in Redis' count of the account's processes (random, not a pid:
        #: pids repeat across hosts), and that count as last heard.
        self._id = secrets.token_hex(8)
        self._fell_back = False
        self._processes = 1
        #: Tokens the last lease granted: the next is asked for when half of them are left.
        self._last_granted = MAX_LEASE
        #: The script's log of every stretch of the account's schedule, as last heard.
        self._stretch_log: float | None = None
        #: Whether the account's slow start was still climbing, as last heard: its rate is no
        #: measured limit, so a fall back (and a Redis that lost the account) climbs on from it.
        self._starting = False

    @property
    def active(self) -> bool:
        """Whether Redis answers: False means the pace uses its own bucket meanwhile."""
        return self._connection.healthy

    # -- the token source ----------------------------------------------------------------------

    @property
    def on_change(self) -> Callable[[], None] | None:
        return self._on_change

    @on_change.setter
    def on_change(self, callback: Callable[[], None] | None) -> None:
        self._on_change = callback
        self._local.on_change = callback

    @property
    def local(self) -> LocalTokens:
        return self._local

    @property
    def rate(self) -> float | None:
        return self.shared_rate if self.active else self._local.rate

    @property
    def state(self) -> str | None:
        return "shared" if self.active else "local"

    @property
    def auth_until(self) -> float:
        return self.shared_auth_until if self.active else 0.0

    @property
    def limit(self) -> float | None:
        return self._local.limit

    def wait_time(self, demand: int = 1) -> float:
        """Seconds until this process may send the account's next request (0: now)."""
        local = self._local
        if not self.active:
            self.check_back()  # at most once a second: is Redis back?
            return local.wait_time()
        if _testing_mode.enabled:
            return 0.0
        wait = self._shared_wait(demand)
        if self.shared_rate is None:
            # No shared rate yet: this process' own pace reacts to its first 429 at once,
            # a Redis round trip before the shared one can.
            return max(wait, local.wait_time())
        return max(wait, local.bucket.pause_remaining())

    def take(self) -> None:
        """Use the next token (after ``wait_time()`` said 0)."""
        if not self.active:
            self._local.take()
            return
        if self.shared_rate is None:
            self._local.take()
        elif self._tokens:
            self._tokens.pop(0)

    def learn(
        self, answer: Answer, retry_after: float | None, pause: float, rtt: float, sent_at: float
    ) -> None:
        """Learn here (for when Redis does not answer) and report to Redis."""
        self._local.learn(answer, retry_after, pause, rtt, sent_at)
        self._record(answer, pause, rtt, sent_at)

    def _shared_wait(self, demand: int) -> float:
        """Seconds until Redis' tokens let this process send (0: now)."""
        now = self._clock()
        if self.shared_auth_until > now:
            return 0.0  # the pace fails fast on its own auth stop; nothing to wait for
        if self.paused_until > now:
            return self._refreshed(now, self.paused_until - now)
        if self.shared_rate is None:
            if self._hold or now - self._answered_at >= STALE_AFTER:
                self._start_call(0)
                return PENDING
            if now - self._last_call >= SYNC_INTERVAL:
                self._start_call(0)
            return 0.0
        tokens = self._tokens
        # Reserved but not used in time (the window was full, the loop lagged): its moment
        # has gone. Used late, such tokens would go out together, a burst the account's
        # schedule never allowed.
        expired = now - max(TOKEN_EXPIRY, 1 / self.shared_rate)
        while tokens and tokens[0] < expired:
            tokens.pop(0)
        share = self.shared_rate * LEASE_SECONDS / self._processes
        want = max(1, min(MAX_LEASE, demand, round(share)))
        if tokens:
            # The script may lease fewer than wanted (while the rate is learned): half of
            # what it last gave is "running out".
            if len(tokens) * 2 <= min(want, self._last_granted) and now >= self._next_ask:
                self._start_call(want)  # the next lease is on its way before these run out
            return self._refreshed(now, tokens[0] - now)
        if now < self._next_ask:
            return self._refreshed(now, self._next_ask - now)  # Redis said when tokens are near
        self._start_call(want)
        return PENDING

    def _refreshed(self, now: float, wait: float) -> float:
        """``wait``, but no later than ``REFRESH_INTERVAL`` after Redis last answered; past
        that, ask Redis again (what it said may no longer hold) and wait for its answer."""
        if wait <= 0:
            return 0.0
        due = self._answered_at + REFRESH_INTERVAL
        if now < due:
            return min(wait, due - now)
        self._start_call(0)
        return min(wait, PENDING)

    def check_back(self) -> None:
        """While Redis does not answer: go on at this process' share (once per outage; the
        outage may have been found by another account's call), and ask again once
        ``RECONNECT_INTERVAL`` has passed."""
        self._fall_back()
        self._start_call(0)

    def _record(self, answer: Answer, pause: float, rtt: float, sent_at: float) -> None:
        """An answer to a request sent at ``sent_at`` (monotonic): count it for the next
        call; throttles and refusals go out at once."""
        self.rtt = rtt
        if answer is Answer.CONFIRMED:
            self._ok += 1
            self._auth_stops_at_success = self._auth_stops
            self._successes.append(self._clock())
            return
        if answer is Answer.THROTTLED:
            if pause > 0:
                self._pause = max(self._pause, pause)
            if sent_at >= self._generation_at:
                self._throttled.append(sent_at)
            elif not pause:
                return  # an echo of the rate before the last change
            if self.shared_rate is None:
                self._hold = True
        elif answer is Answer.REFUSED:
            if not self._connection.healthy:
                self._forget_auth_generation()
            elif sent_at >= self._auth_since:
                self._auth_failures += 1
        else:
            return
        self._start_call(0)

    # -- Redis ---------------------------------------------------------------------------------

    def _start_call(self, want: int) -> None:
        if self._call is not None:
            return  # one call at a time; its answer makes the pace ask again
        now = self._clock()
        if not self._connection.healthy and now < self._retry_at:
            return
        self._last_call = now
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._call = loop.create_task(self._lease(want))

    async def _lease(self, want: int) -> None:
        # Throttles of requests sent before we heard of the last change are its echoes.
        throttled = sum(1 for sent in self._throttled if sent >= self._generation_at)
        reported = (self._ok, throttled, self._pause, self._auth_failures)
        now = self._clock()
        # The seconds those successes came in: a measure counts only its share of them.
        ok_span = now - self._ok_since
        self._ok_since = now
        self._ok = self._auth_failures = 0
        self._throttled = []
        self._pause = 0.0
        connection = self._connection
        try:
            script = connection.script()
            answer = await asyncio.wait_for(
                script(
                    keys=[self.key, self._limit_key],
                    args=[
                        want,
                        reported[0],
                        reported[1],
                        reported[2],
                        reported[3],
                        self.rtt,
                        connection.config.key_ttl_ms,
                        self._auth_to_stop,
                        self._auth_cooldown,
                        self._ceiling,
                        1 if self._adaptive else 0,
                        _throttle.MIN_RATE,
                        _throttle.BETA,
                        SHARED_SCALE,
                        _throttle.PROBE_FLOOR,
                        _throttle.PROBE_DOUBLING,
                        _throttle.PROBE_BACKOFF,
                        SHARED_MEASURE_TIME,
                        _throttle.COOLDOWN,
                        self._generation,
                        self._auth_stops_at_success,
                        _throttle.START_RATE,
                        _throttle.START_DOUBLING,
                        self._id,
                        # If Redis lost the account, it goes on from the rate we knew.
                        self.shared_rate or 0,
                        self._max_pause,
                        LEASE_HORIZON,
                        -1 if self._auth_generation is None else self._auth_generation,
                        _throttle.START_FAST_FROM,
                        _throttle.START_DOUBLING_FAST,
                        _throttle.START_UNTIL,
                        _throttle.START_BACKOFF,
                        _throttle.MEASURE_ANSWERS,
                        _throttle.MEASURE_OVER,
                        SHARED_QUIET_ANSWERS,
                        connection.config.limit_ttl_ms,
                        LIMIT_HALF_LIFE,
                        LIMIT_FRESH,
                        _throttle.MAX_QUIET,
                        _throttle.REFUSED_THROTTLES,
                        _throttle.REFUSED_SHARE,
                        min(ok_span, STALE_AFTER * 10),
                        _throttle.REFUSED_SPAN,
                        _throttle.GUESS_QUIET,
                        _throttle.REFUSED_AT_MOST,
                        _throttle.IDLE_GAP,
                        1 if self._starting else 0,
                        RECONNECT_INTERVAL,
                    ],
                ),
                timeout=connection.config.timeout * 2,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis down, slow, restarted, misconfigured: never fatal
            connection.went_down(exc)
            self._forget_auth_generation()
            # Throttles of requests sent from now until Redis answers again answer this
            # process' own pace (which learns from them), not the account's shared rate:
            # reported at the rejoin, they measured a fresh account's start at a crawl.
            self._generation_at = math.inf
            self._fall_back()
            connection.forget()
            self._tokens.clear()
            self._hold = False  # the pace uses its own bucket meanwhile
            self._retry_at = self._clock() + RECONNECT_INTERVAL
            self._call = None
            self._changed()
            return
        self._call = None
        connection.came_back()
        self._apply(answer)
        if self._throttled or self._auth_failures or self._pause:
            self._start_call(0)  # what arrived meanwhile must not wait for the next lease

    def _apply(self, answer: list[Any]) -> None:
        (
            granted,
            first_ms,
            interval_us,
            rate_milli,
            paused_ms,
            auth_ms,
            generation,
            stops,
            peers,
            auth_generation,
            stretch_micro,
            starting,
        ) = (int(v) for v in answer)
        self._auth_stops = stops
        self._fell_back = False
        self._processes = max(1, peers)
        now = self._clock()
        self._answered_at = now
        if auth_generation != self._auth_generation:
            if self._auth_generation is not None or self._auth_since == math.inf:
                self._auth_since = now  # a success ended the refusals, or we rejoin
            self._auth_generation = auth_generation
            self._auth_failures = 0  # counted in an older generation: the script drops them
        rate = rate_milli / 1000 if rate_milli >= 0 else None
        if generation != self._generation or self._generation_at == math.inf:
            self._generation = generation
            self._generation_at = now  # a change, or we rejoin
        stretch_log = stretch_micro / 1_000_000
        if self._tokens and self._stretch_log is not None and stretch_log != self._stretch_log:
            # The account's rate changed since our last call. Move our leased tokens as the
            # script moved its schedule (a debt in tokens, not in seconds), so the tokens of
            # every process still interleave at the new rate: after a fall, tokens leased at
            # the higher rate would go out into a server that just said no (dropping them
            # left the account idle for the lease they covered; stretching them by our own
            # last rate left them closer than the schedule: a burst); after a rise, the
            # schedule hands out the moments they hold.
            moved = max(-MAX_STRETCH_LOG, min(stretch_log - self._stretch_log, MAX_STRETCH_LOG))
            stretch = math.exp(moved)
            self._tokens = [now + max(0.0, at - now) * stretch for at in self._tokens]
        self._stretch_log = stretch_log
        self._hold = False
        self.shared_rate = rate
        self._starting = starting == 1
        # Every wait taken from the answer is bounded by this process' own limits: the script
        # clamps what it stores, but a stray write may still be there, or another process may
        # allow longer waits than this one.
        pause = min(max(0, paused_ms) / 1000, self._max_pause)
        auth = min(max(0, auth_ms) / 1000, self._auth_cooldown)
        self.paused_until = now + pause if pause > 0 else 0.0
        self.shared_auth_until = now + auth if auth > 0 else 0.0
        if granted:
            self._last_granted = granted
        if granted and self.shared_rate is not None:
            # The slowest rate this process' settings allow spaces tokens furthest apart.
            slowest = _throttle.MIN_RATE
            if self._ceiling:
                slowest = min(slowest, self._ceiling)
            interval = min(max(0, interval_us) / 1_000_000, 1 / slowest)
            first = now + min(first_ms / 1000, max(LEASE_HORIZON, 2 * interval))
            self._tokens.extend(max(now, first + i * interval) for i in range(granted))
            self._tokens.sort()  # leases may interleave (one asked before the last ran out)
        elif self.shared_rate is not None and not pause and not auth:
            self._next_ask = now + min(max(0, first_ms) / 1000, REFRESH_INTERVAL)
        self._changed()

    def _forget_auth_generation(self) -> None:
        """Redis does not answer: refusals seen from now until it answers again (and those
        of requests sent meanwhile) are this process' own, never reported late."""
        self._auth_generation = None
        self._auth_since = math.inf
        self._auth_failures = 0

    def _fall_back(self) -> None:
        """Hand the pace this process' recent share of the account's rate (once per outage)."""
        if self._fell_back or self.shared_rate is None:
            return
        self._fell_back = True
        now = self._clock()
        recent = sum(1 for at in self._successes if at >= now - SHARE_WINDOW) / SHARE_WINDOW
        share = recent
        if self.shared_rate is not None:
            # What it was getting, or an equal part of the rate if it was getting less (an
            # idle process must not be left with nearly nothing); never the whole rate.
            share = min(max(recent, self.shared_rate / self._processes), self.shared_rate)
        share = max(share, _throttle.MIN_RATE)
        self._local.restart_from(share, starting=self._starting)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def forget(self) -> None:
        """After a fork or with a dead loop: drop the call in flight and the leased tokens."""
        self._call = None
        self._tokens.clear()
