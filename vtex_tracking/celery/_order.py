"""Per-invoice order across batches: an older snapshot of an invoice is never sent after a
newer one was confirmed or is being sent (``register_tasks(order_state=...)``).

Each PUT replaces the invoice's whole history, so the last one applied wins. Within a batch
the push keeps each invoice's order; across batches nothing did: two batches holding
snapshots X1 and X2 of one invoice may run on two workers in any order, or one may be
delivered again after the other ran.

* **Stamps.** ``enqueue`` stamps every item with an integer (``next_stamp``: microseconds of
  the wall clock when the item was read, strictly increasing in each producer process), sent
  beside the batch as the task's ``stamps`` list (the wire form is unchanged). A later stamp
  means a newer snapshot: within one producer by input order, across producers by their
  clocks (keep them synchronized, or give each invoice one producer).
* **Claims.** Before its push a batch makes one atomic call (``_order.lua``) over its
  invoices, each a Redis hash under ``ORDER_PREFIX`` keyed by a digest of (account, the
  account's base URL, order id, invoice number): no ids or credentials in clear. Per
  invoice the answer is *go* (the batch claims it until the push ends, with a lease on
  Redis' clock as long as the visibility timeout), *stale* (a newer stamp was confirmed or
  is claimed: the item is not sent and its result says ``superseded``) or *busy* (an older
  stamp is claimed by a batch in flight: the batch sends its other items, then asks again
  until that claim is released, at most ``BUSY_SHARE`` of the visibility timeout, then
  sends anyway and logs a warning). After the push one call records the highest stamp
  confirmed per invoice (never lowered) and releases the claims. Keys expire after the
  unchanged state's ``max_age`` (default 30 days).
* **Never an outage.** When Redis fails (a short timeout), the batch is sent as it would be
  without ordering, with one warning per outage; items without stamps (messages from older
  producers) are sent unchecked; a key or field holding garbage counts as absent. One
  Redis server, not a Redis Cluster (a batch's keys span slots: each call would fail).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._config import build_base_url
from .._fork import at_fork_in_child
from .._models import AnyUpdate
from .._remember import is_redis_url as _is_redis_url

logger = logging.getLogger("vtex_tracking.celery")

#: Where the invoices' order state lives in Redis: ``{ORDER_PREFIX}:{digest}``.
ORDER_PREFIX = "vtex-tracking:order"
#: Seconds an invoice's order state lives after its last use, when ``skip_unchanged`` gives
#: no ``max_age`` (30 days, as the unchanged state's default).
ORDER_TTL = 30 * 24 * 3600.0
#: Seconds a call to Redis may take, and the seconds it is left alone after one failed.
REDIS_TIMEOUT = 1.0
RETRY_AFTER = 5.0
#: The most a batch waits for an older snapshot's batch in flight on another worker: this
#: share of the visibility timeout (its own run must stay well within that timeout).
BUSY_SHARE = 0.25
#: Seconds between two questions while waiting (doubling from the first to the last).
FIRST_POLL = 0.05
MAX_POLL = 1.0
#: kombu's visibility timeout for Redis when ``broker_transport_options`` sets none.
KOMBU_VISIBILITY_TIMEOUT = 3600.0
#: Stamps stay below 2^53: exact as the doubles Lua computes with.
MAX_STAMP = 2**53 - 1

_SCRIPT = importlib.resources.files("vtex_tracking.celery").joinpath("_order.lua").read_text()
_GO, _STALE, _BUSY = 0, 1, 2

_stamp_lock = threading.Lock()
_last_stamp = 0


def next_stamp() -> int:
    """A stamp for the next item a producer reads: microseconds since the epoch, strictly
    greater than any stamp this process gave before."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(_last_stamp + 1, time.time_ns() // 1000)
        return _last_stamp


def _new_stamp_lock() -> None:
    global _stamp_lock
    _stamp_lock = threading.Lock()  # another thread may have held it at fork time


at_fork_in_child(_new_stamp_lock)


def valid_stamp(value: Any) -> int | None:
    """A stamp from a message, or None when it is not one (then the item is not checked)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_STAMP:
        return value
    return None


def is_redis_url(value: Any) -> bool:
    """Whether ``value`` is a URL redis-py connects to (the SDK's one test, any case)."""
    return isinstance(value, str) and _is_redis_url(value)


def order_state_url(order_state: Any, skip_unchanged: Any, broker_url: Any) -> str | None:
    """Where the order state lives: ``order_state`` when it is a URL; with None, the Redis of
    ``skip_unchanged`` (a URL or an ``UnchangedState``), else the broker when it is Redis;
    None when off (``order_state=False``) or when there is no Redis to use."""
    if order_state is False:
        return None
    if isinstance(order_state, str):
        return order_state
    unchanged = getattr(skip_unchanged, "path", skip_unchanged)
    if is_redis_url(unchanged):
        return str(unchanged)
    if isinstance(broker_url, str):
        first = broker_url.split(";", 1)[0].strip()  # kombu's failover list: the first
        if is_redis_url(first):
            return first
    return None


def open_order_state(
    order_state: Any,
    skip_unchanged: Any,
    conf: Any,  # the Celery app's settings
) -> InvoiceOrder | None:
    """This process's order state for ``register_tasks(order_state=...)``, or None when it
    is off (a warning says why, unless ``order_state=False``)."""
    url = order_state_url(order_state, skip_unchanged, conf.broker_url)
    if url is None:
        if order_state is not False:
            logger.warning(
                "per-invoice order across batches is not checked: neither the broker nor"
                " skip_unchanged is a Redis to keep it in; pass"
                " register_tasks(order_state='redis://...'), or order_state=False to"
                " silence this"
            )
        return None
    transport = conf.broker_transport_options or {}
    visibility = float(transport.get("visibility_timeout") or KOMBU_VISIBILITY_TIMEOUT)
    ttl = float(getattr(skip_unchanged, "max_age", None) or ORDER_TTL)
    try:
        return InvoiceOrder(url, visibility_timeout=visibility, ttl=ttl)
    except Exception as exc:  # no redis-py, a URL redis-py refuses: sent unordered
        logger.warning(
            "per-invoice order across batches is not checked: order_state unusable (%s)",
            type(exc).__name__,
        )
        return None


def target_of(client: Any, account_name: str | None) -> tuple[str, str] | None:
    """The account an update goes to and that account's base URL, as the client routes it;
    None when the client cannot send it (its push reports why)."""
    try:
        name = account_name or client.default_account
        config = client.config
        if name is None:
            return None
        if name == config.account_name:
            return name, str(config.url_prefix)
        account = (client.accounts or {}).get(name)
        if account is None:
            return None
        url = build_base_url(
            account.name,
            account.environment,
            account.base_url,
            allow_insecure_http=config.allow_insecure_http,
        )
        return name, url
    except Exception:  # a client of the user's factory that is not a TrackingClient
        return None


def invoice_key(account: str, base_url: str, order_id: str, invoice_number: str) -> str:
    """The Redis key of one invoice's order state (a digest: no ids in clear)."""
    raw = "\x00".join((account, base_url, order_id, invoice_number)).encode()
    return f"{ORDER_PREFIX}:{hashlib.blake2b(raw, digest_size=16).hexdigest()}"


def item_of(client: Any, update: AnyUpdate, stamp: int | None) -> tuple[str, int] | None:
    """An update's invoice key and stamp, or None when it is not checked."""
    if stamp is None:
        return None
    target = target_of(client, update.account_name)
    if target is None:
        return None
    return invoice_key(*target, update.order_id, update.invoice_number), stamp


class InvoiceOrder:
    """The order state of one worker process: one Redis client and script, and whether
    Redis answers (one warning per outage)."""

    def __init__(self, url: str, *, visibility_timeout: float, ttl: float) -> None:
        import redis  # the celery extra brings it (celery[redis])

        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        self._script: Any = self._client.register_script(_SCRIPT)
        self.lease_ms = max(1, round(visibility_timeout * 1000))
        self.ttl_ms = max(1, round(ttl * 1000))
        self.max_wait = visibility_timeout * BUSY_SHARE
        self._down_until = 0.0
        self._warned = False

    def close(self) -> None:
        """Close the connections to Redis."""
        self._client.close()

    def send_in_order(
        self,
        items: Sequence[tuple[str, int] | None],
        send: Callable[[list[int]], Mapping[int, bool]],
    ) -> set[int]:
        """Send the batch's items (by position, each its invoice key and stamp, or None when
        not checked) with ``send(positions) -> {position: confirmed}``, in as many waves as
        older snapshots in flight elsewhere require; return the positions not sent because
        a newer snapshot of their invoice was confirmed or is being sent."""
        unchecked = [p for p, item in enumerate(items) if item is None]
        groups: dict[str, list[int]] = {}
        for p, item in enumerate(items):
            if item is not None:
                groups.setdefault(item[0], []).append(p)

        def stamp(p: int) -> int:
            item = items[p]
            assert item is not None
            return item[1]

        superseded: set[int] = set()
        force, deadline, poll = False, None, FIRST_POLL
        while True:
            newest = {key: max(stamp(p) for p in ps) for key, ps in groups.items()}
            verdicts = self.claim(newest, force) if newest else {}
            if verdicts is None:  # Redis failed: send as without ordering
                send(sorted(unchecked + [p for ps in groups.values() for p in ps]))
                return superseded
            wave, waiting = list(unchecked), {}
            unchecked = []
            for key, (kind, value) in verdicts.items():
                if kind == _STALE:
                    superseded.update(groups[key])
                elif kind == _BUSY:
                    waiting[key] = groups[key]
                else:
                    for p in groups[key]:
                        if value is not None and stamp(p) < value:
                            superseded.add(p)  # older than what VTEX has or will have
                        else:
                            wave.append(p)
            confirmed = send(sorted(wave)) if wave else {}
            claimed = [key for key, (kind, _) in verdicts.items() if kind == _GO]
            if claimed:
                self.release(
                    {
                        key: (
                            newest[key],
                            max((stamp(p) for p in groups[key] if confirmed.get(p)), default=None),
                        )
                        for key in claimed
                    }
                )
            if not waiting:
                return superseded
            groups = waiting
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.max_wait
            if now >= deadline:
                logger.warning(
                    "%d invoice(s) of this batch still had an older snapshot in flight on"
                    " another worker after %.0f s: sending the newer one anyway (the older"
                    " may reach VTEX after it)",
                    len(waiting),
                    self.max_wait,
                )
                force = True
                continue
            time.sleep(min(poll, deadline - now))
            poll = min(2 * poll, MAX_POLL)

    def claim(
        self, newest: Mapping[str, int], force: bool = False
    ) -> dict[str, tuple[int, int | None]] | None:
        """Claim each invoice key for its stamp (the batch's newest of the invoice): per key
        ``(0, floor)`` go (items older than ``floor`` are superseded), ``(1, None)`` stale, or
        ``(2, ms)`` busy for at most ``ms`` more (``force``: taken over, answered as go).
        None when Redis failed."""
        keys = list(newest)
        args = ["claim", self.lease_ms, self.ttl_ms, int(force), *(newest[k] for k in keys)]
        reply = self._call(keys, args)
        if reply is None or len(reply) != 2 * len(keys):
            return None
        verdicts = {}
        for n, key in enumerate(keys):
            kind, value = int(reply[2 * n]), reply[2 * n + 1]
            verdicts[key] = (kind, int(value) if value else None)
        return verdicts

    def release(self, claims: Mapping[str, tuple[int, int | None]]) -> None:
        """Record per invoice key the highest stamp confirmed (None: none) and release the
        claim of the stamp claimed: ``{key: (claimed, confirmed)}``."""
        keys = list(claims)
        args: list[Any] = ["release", self.ttl_ms]
        for key in keys:
            claimed, confirmed = claims[key]
            args += [claimed, "" if confirmed is None else confirmed]
        reply = self._call(keys, args)
        overtaken = sum(1 for flag in reply or () if int(flag))
        if overtaken:
            logger.warning(
                "%d invoice(s) of this batch had a newer snapshot confirmed while this one"
                " was being sent (an older snapshot's wait ran out, or its claim lapsed):"
                " the older body may have reached VTEX last; send the newest again",
                overtaken,
            )

    def _call(self, keys: list[str], args: list[Any]) -> list[Any] | None:
        if time.monotonic() < self._down_until:
            return None
        try:
            reply = self._script(keys=keys, args=args)
        except Exception as exc:  # down, slow, restarted, refused: never fatal
            self._down_until = time.monotonic() + RETRY_AFTER
            if not self._warned:
                self._warned = True
                logger.warning(
                    "order_state: Redis did not answer (%s); batches are sent without the"
                    " per-invoice order check until it does",
                    type(exc).__name__,
                )
            return None
        self._warned = False
        return list(reply) if isinstance(reply, list) else None
