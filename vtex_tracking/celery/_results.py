"""The result of one item (``ItemResult``) and the helpers that build it, shared by the worker
(``_tasks``), the producer (``_producer``) and ``collect`` (``_collector``)."""

from __future__ import annotations

from typing import Any, TypedDict, cast


class ItemResult(TypedDict):
    """The JSON result of one update, as the task returns it and ``collect`` gives it back.

    ``index``: position in the input of ``enqueue``; ``source``: ``file:line`` for
    ``enqueue_file``; ``ok``: VTEX confirmed it (or needs it no more: ``"unchanged"``,
    ``"superseded"``); ``status``: the last HTTP status (None when none); ``outcome``: a label
    (``"200"``, ``"429"``, ``"invalid"``, ``"TransportError"``, ``"unchanged"``...;
    ``"superseded"``: not sent, because a newer snapshot of its invoice, from another batch,
    was confirmed or is being sent; ok, since each snapshot holds the whole history and that
    newer one carries it, and if the newer one fails its own result says so);
    ``receipt``/``requestId``: VTEX's receipt id and request id; ``error``: why it failed
    (never a credential); ``field``: the input field at fault for ``invalid``; ``attempts``:
    requests made; ``redelivered``: its batch was delivered more than once, so it may have
    been sent twice (harmless, see the module's docstring); ``sent``: what VTEX confirmed for
    it, in order (``"tracking_number"``, ``"events"``: ``PushResult.sent``).
    """

    index: int
    source: str | None
    orderId: str | None
    invoiceNumber: str | None
    accountName: str | None
    ok: bool
    status: int | None
    outcome: str
    receipt: str | None
    requestId: str | None
    error: str | None
    field: str | None
    attempts: int
    redelivered: bool
    sent: list[str]


#: Every key of an ``ItemResult`` but ``index`` and ``source``, with its default.
_EMPTY: dict[str, Any] = {
    "orderId": None,
    "invoiceNumber": None,
    "accountName": None,
    "ok": False,
    "status": None,
    "outcome": "",
    "receipt": None,
    "requestId": None,
    "error": None,
    "field": None,
    "attempts": 0,
    "redelivered": False,
    "sent": [],
}


def _result(index: int, source: str | None, **fields: Any) -> ItemResult:
    # A fresh list per result: the default one is shared.
    empty = {**_EMPTY, "sent": []}
    return cast(ItemResult, {"index": index, "source": source, **empty, **fields})


def _field_of(message: str) -> str | None:
    """The field a ``field: problem`` message names (``events[2].city``), if it names one."""
    head, sep, _ = message.partition(": ")
    return head if sep and head and " " not in head else None
