"""``AccountSender``: one VTEX account as the client talks to it.

It holds what is the account's own: its transport (a session with its credentials over the
client's shared connection pool), its retry policy, and its pace (``_pace.AccountPace``).
Every request for the account passes through ``send``: single calls, pushes, and the sync
facade's threads alike, so they all share one pace. The retry loop lives here, once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Protocol
from urllib.parse import quote

from ._answer import Answer, classify
from ._checks import Checks
from ._config import RetryPolicy
from ._constants import OPEN_FILES_RETRY_DELAY, THROTTLES_NOT_COUNTED
from ._errors import (
    AuthCooldownError,
    PaceTimeoutError,
    TransportError,
    ValidationError,
    error_from_response,
    find_request_id,
    unexpected_body_error,
)
from ._log import logger
from ._models import TrackingNumberUpdate, TrackingReceipt, TrackingUpdate
from ._pace import AccountPace
from ._retry import retry_after_from_headers, retry_delay
from ._serde import decode_receipt, encode_invoice_tracking, encode_status
from ._telemetry import AccountCounters, current_tracer, start_attempt_span
from ._throttle import Budget
from ._transport import RawResponse, TooManyOpenFilesError, Transport

_TRACKING_PATH = "/api/oms/pvt/orders/{}/invoice/{}/tracking"
_INVOICE_PATH = "/api/oms/pvt/orders/{}/invoice/{}"
_ORDER_PATH = "/api/oms/pvt/orders/{}"

# Ids made only of these need no encoding (the common case: "1172452900000-01", "NF-4100").
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def _segment(value: str) -> str:
    # safe="" also encodes "/", so an invoice "NF/123" stays one segment ("NF%2F123").
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


def tracking_path(order_id: str, invoice_number: str) -> str:
    """The endpoint's path, each id percent-encoded as exactly one path segment."""
    return _TRACKING_PATH.format(_segment(order_id), _segment(invoice_number))


def order_path(order_id: str) -> str:
    """The order's path (VTEX's "Get order"), the id encoded as in ``tracking_path``."""
    return _ORDER_PATH.format(_segment(order_id))


class Subject(Protocol):
    """What a request is about, for errors, spans and logs."""

    @property
    def order_id(self) -> str: ...

    @property
    def invoice_number(self) -> str | None: ...


class OrderRef:
    """A read of a whole order: no invoice."""

    __slots__ = ("invoice_number", "order_id")

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.invoice_number: str | None = None


def _named(subject: Subject) -> str:
    if subject.invoice_number is None:
        return f"order {subject.order_id!r}"
    return f"order {subject.order_id!r}, invoice {subject.invoice_number!r}"


def invoice_path(order_id: str, invoice_number: str) -> str:
    """The invoice's path (the tracking number's PATCH), ids encoded as in ``tracking_path``."""
    return _INVOICE_PATH.format(_segment(order_id), _segment(invoice_number))


class AttemptObserver(Protocol):
    """Told about each attempt of a ``send`` and the waits between them (the push engine
    keeps its counters with it, and lends a backing-off sender's turn to another)."""

    def attempt_started(self) -> None:
        """A request is about to go out."""

    def attempt_finished(self, answer: Answer) -> None:
        """It ended with ``answer`` (``_answer.classify``)."""

    def backoff(self, waiting: bool) -> None:
        """The send starts (True) or ends (False) waiting before its next attempt."""


class SharedBudget:
    """The client's budget of requests in flight over all its accounts (its pool size), moved
    to a new event loop along with the pool when the old loop is closed."""

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self.budget = Budget(slots)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` from now on (slots held in a dead loop are never given back)."""
        if loop is not self._loop:
            self.reset()
            self._loop = loop

    def reset(self) -> None:
        """Start over with every slot free (after a fork or a closed loop)."""
        self.budget = Budget(self._slots)
        self._loop = None


class AccountSender:
    """Sends updates to one account: pace, retries, decoding. Made by the client, one per
    account it talks to, on first use."""

    def __init__(
        self,
        account: str,
        *,
        transport: Transport,
        pace: AccountPace,
        budget: SharedBudget,
        retry_policy: RetryPolicy,
        pace_timeout: float | None,
        checks: Checks,
        secrets: tuple[str, ...],
    ) -> None:
        self.account = account
        self.checks = checks
        self.transport = transport
        self.pace = pace
        self.retry_policy = retry_policy
        self.pace_timeout = pace_timeout
        self._budget = budget
        # Redacted from error responses, in case a proxy echoes the request headers back.
        self._secrets = secrets
        self._loop: asyncio.AbstractEventLoop | None = None
        #: What ``client.metrics()`` reports for this account.
        self.counters = AccountCounters()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The account's credentials, to redact from errors built outside the sender."""
        return tuple(self._secrets)

    def __repr__(self) -> str:
        return f"AccountSender({self.account!r}, credentials=<redacted>, pace={self.pace!r})"

    def bind(self) -> None:
        """Serve the running event loop (the pace and budget move with it)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.pace.bind(loop)
            self._budget.bind(loop)
            self._loop = loop

    def forget_requests(self) -> None:
        """After a fork: the parent's requests and pool are not ours."""
        self.transport.abandon()
        self.pace.forget_requests()
        self._loop = None

    async def send(
        self,
        update: TrackingUpdate | TrackingNumberUpdate,
        *,
        pace: AccountPace | None = None,
        admitted: bool = False,
        patient: bool = False,
        observer: AttemptObserver | None = None,
        checked: bool = False,
        body: bytes | None = None,
    ) -> TrackingReceipt:
        """Send ``update`` and return VTEX's receipt: wait for the pace, attempt, decide,
        repeat. A ``TrackingUpdate`` is the PUT of its events, a ``TrackingNumberUpdate`` the
        PATCH of its invoice's tracking number: one account, one pace, one retry policy.
        ``pace`` replaces the account's (a push that paces itself); ``admitted``: the
        caller already holds an admission for the first attempt; ``patient``: wait for the
        pace without ``pace_timeout`` (pushes); ``checked``: ``update`` already passed the
        account's ``checks`` and is sent as it is; ``body``: its JSON body, already encoded."""
        if asyncio.get_running_loop() is not self._loop:  # asked here: no call while bound
            self.bind()
        pace = pace if pace is not None else self.pace
        if not checked:
            try:
                if isinstance(update, TrackingNumberUpdate):
                    update = self.checks.check_tracking_number(update)
                else:
                    update = self.checks.check(update)
            except ValidationError:
                if admitted:
                    pace.release_unused()
                raise
        if isinstance(update, TrackingNumberUpdate):
            method = "PATCH"
            path = invoice_path(update.order_id, update.invoice_number)
            if body is None:
                body = encode_invoice_tracking(update.tracking)
        else:
            method = "PUT"
            path = tracking_path(update.order_id, update.invoice_number)
            if body is None:
                body = encode_status(update.status)
        raw, attempts = await self._exchange(
            update, method, path, body, pace, admitted, patient, observer
        )
        return self._receipt(raw, update, attempts)

    async def get_order(self, order_id: str) -> tuple[RawResponse, int]:
        """GET the order (VTEX's "Get order") through the account's pace and retries; the
        2xx answer and the attempts it took."""
        self.bind()
        subject = OrderRef(order_id)
        path = order_path(order_id)
        return await self._exchange(subject, "GET", path, b"", self.pace, False, False, None)

    async def _exchange(
        self,
        update: Subject,
        method: str,
        path: str,
        body: bytes,
        pace: AccountPace,
        admitted: bool,
        patient: bool,
        observer: AttemptObserver | None,
    ) -> tuple[RawResponse, int]:
        """The retry loop: wait for the pace, attempt, decide, repeat; the 2xx answer and
        the attempts it took, or the error."""
        policy = self.retry_policy
        transport = self.transport
        counters = self.counters
        attempts = 0
        # In a push, a 429 is the account's pace meeting its limit, not a fault of the update:
        # up to THROTTLES_NOT_COUNTED of them are retried without using up its attempts.
        # (Not with a policy of one attempt: ``RetryPolicy.disabled()`` means exactly one.)
        throttles_free = THROTTLES_NOT_COUNTED if patient and policy.max_attempts > 1 else 0
        not_counted = 0
        out_of_files_since: float | None = None
        while True:
            waited = 0.0
            if not admitted:
                waited = await self._wait_turn(pace, update, attempts, patient)
            admitted = False
            attempts += 1

            # One admitted request under the client-wide budget, inline (a coroutine of its
            # own cost a layer on every resumption); the pace (and ``observer``) learn its
            # outcome whatever happens, cancellation included, so no slot leaks.
            budget = self._budget.budget
            if not budget.try_acquire():
                await _take_budget(budget, pace)
            counters.requests += 1
            if attempts > 1:
                counters.retries += 1
            if observer is not None:
                observer.attempt_started()
            span = None
            tracer = current_tracer()
            if tracer is not None:  # asked first: an untraced attempt passes no attributes
                span = start_attempt_span(
                    tracer,
                    account=self.account,
                    host=transport.host,
                    order_id=update.order_id,
                    invoice_number=update.invoice_number,
                    attempt=attempts,
                    pace_wait=waited,
                    method=method,
                )
            raw: RawResponse | None = None
            retry_after: float | None = None
            error: TransportError | None = None
            started = time.perf_counter()
            try:
                raw = await transport.send(method, path, body)
            except TransportError as exc:
                error = exc
            else:
                if raw.status == 429 or raw.status == 503:
                    retry_after = retry_after_from_headers(raw.headers)
            finally:
                elapsed = time.perf_counter() - started
                status = raw.status if raw is not None else None
                answer = classify(status, retry_after)
                budget.release()
                pace.release(answer, retry_after, elapsed)
                counters.count(answer)
                if observer is not None:
                    observer.attempt_finished(answer)
                if span is not None:
                    span.end(raw, retry_after, error)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "%s %s -> %s (attempt %d, %.1f ms)",
                        method,
                        path,
                        status if status is not None else "no response",
                        attempts,
                        elapsed * 1000,
                    )

            if raw is None:
                assert error is not None  # no answer: the transport raised
                if isinstance(error, TooManyOpenFilesError):
                    # No file descriptor was free for the connection: the request never left
                    # the process. Back-pressure (files free up as answers come in), not a
                    # failed attempt, for as long as one attempt may take; then it counts.
                    now = time.monotonic()
                    if out_of_files_since is None:
                        out_of_files_since = now
                    if now - out_of_files_since < transport.timeout:
                        attempts -= 1
                        logger.debug(
                            "%s %s waits for a free file descriptor: %s", method, path, error
                        )
                        await _back_off(OPEN_FILES_RETRY_DELAY, observer)
                        continue
                delay = retry_delay(policy, attempts)
                if delay is None:
                    raise _with_context(error, update, attempts) from error.__cause__
                self._log_retry(method, path, str(error), attempts, delay)
                await _back_off(delay, observer)
                continue

            if 200 <= raw.status < 300:
                return raw, attempts
            if throttles_free and answer is Answer.THROTTLED:
                throttles_free -= 1
                not_counted += 1
            delay = retry_delay(
                policy, attempts - not_counted, status=raw.status, retry_after=retry_after
            )
            if delay is None:
                error_response = error_from_response(
                    raw.status,
                    raw.headers,
                    raw.body,
                    order_id=update.order_id,
                    invoice_number=update.invoice_number,
                    attempts=attempts,
                    retry_after=retry_after,
                    secrets=self._secrets,
                    reading=method == "GET",
                )
                if answer is Answer.REFUSED:
                    pace.auth_error = error_response
                raise error_response
            self._log_retry(method, path, f"HTTP {raw.status}", attempts, delay)
            await _back_off(delay, observer)

    async def _wait_turn(
        self,
        pace: AccountPace,
        update: Subject,
        attempts: int,
        patient: bool,
    ) -> float:
        """Wait for the pace to admit the next attempt; return the seconds it took."""
        if pace.try_admit():
            return 0.0  # the common case: no one waiting, a token and a place free
        timeout = None if patient else self.pace_timeout
        started = time.monotonic()
        try:
            admitted = await pace.acquire(timeout)
        except AuthCooldownError as exc:
            exc.attempts = attempts
            raise
        waited = time.monotonic() - started
        self.counters.pace_wait_s += waited
        if admitted:
            return waited
        sent = "not sent" if attempts == 0 else f"not retried after {attempts} attempt(s)"
        raise PaceTimeoutError(
            f"{sent}: waited {waited:.1f} s for a turn in account {self.account!r}'s pace"
            f" ({_named(update)}); throttled"
            " by the SDK to stay under the account's rate limit, not refused by VTEX"
            " (raise pace_timeout, or send less at once)",
            account=self.account,
            waited=waited,
            order_id=update.order_id,
            invoice_number=update.invoice_number,
            attempts=attempts,
        )

    def _receipt(
        self, raw: RawResponse, update: TrackingUpdate | TrackingNumberUpdate, attempts: int
    ) -> TrackingReceipt:
        if raw.truncated:
            raise unexpected_body_error(
                raw.status,
                raw.headers,
                raw.body,
                "the body is larger than any receipt (reading stopped at 1 MiB)",
                order_id=update.order_id,
                invoice_number=update.invoice_number,
                attempts=attempts,
                secrets=self._secrets,
            )
        return decode_receipt(
            raw.status,
            raw.headers,
            raw.body,
            request_id=find_request_id(raw.headers),
            order_id=update.order_id,
            invoice_number=update.invoice_number,
            attempts=attempts,
            secrets=self._secrets,
        )

    @staticmethod
    def _log_retry(method: str, path: str, reason: str, attempts: int, delay: float) -> None:
        # Expected (a 429 handled, a dropped connection retried): INFO, not WARNING, so an
        # application logging at WARNING sees only what needs a person.
        logger.info(
            "%s %s failed with %s on attempt %d; retrying in %.2f s",
            method,
            path,
            reason,
            attempts,
            delay,
        )


async def _take_budget(budget: Budget, pace: AccountPace) -> None:
    """Wait for a slot of the client-wide budget; an admission the wait is cancelled out of
    goes back to the pace unused."""
    try:
        await budget.acquire()
    except BaseException:
        pace.release_unused()
        raise


async def _back_off(delay: float, observer: AttemptObserver | None) -> None:
    if observer is None:
        await asyncio.sleep(delay)
        return
    observer.backoff(True)
    try:
        await asyncio.sleep(delay)
    finally:
        observer.backoff(False)


def _with_context(exc: TransportError, update: Subject, attempts: int) -> TransportError:
    plural = "s" if attempts != 1 else ""
    return type(exc)(
        f"{exc} ({_named(update)}, after {attempts} attempt{plural})",
        order_id=update.order_id,
        invoice_number=update.invoice_number,
        attempts=attempts,
    )
