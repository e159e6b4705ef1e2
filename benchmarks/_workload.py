"""What every contender sends: the same paths, headers and body bytes.

No vtex_tracking import here: the baseline contenders load this module too, and their memory
and CPU figures must not include the SDK's imports.
"""

from __future__ import annotations

#: The receipt the local server answers with (VTEX's documented example), naming the order
#: of the request as VTEX does (the SDK refuses a receipt for another order as confirmation).
RECEIPT_PREFIX = b'{"date":"2017-03-29T18:04:31.0521233+00:00","orderId":"'
RECEIPT_SUFFIX = b'","receipt":"y"}'


def receipt(order: str) -> bytes:
    """The local server's receipt for a request about ``order``."""
    return RECEIPT_PREFIX + order.encode() + RECEIPT_SUFFIX

APP_KEY = "vtexappkey-fake-oms"
APP_TOKEN = "fake-oms-app-token"
USER_AGENT = "vtex-tracking-benchmark"

#: The headers the SDK sends (checked against it by the SDK contenders).
HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "User-Agent": USER_AGENT,
    "X-VTEX-API-AppKey": APP_KEY,
    "X-VTEX-API-AppToken": APP_TOKEN,
}

#: The events of every update, as the SDK's models take them...
EVENTS = (
    ("Rio de Janeiro", "RJ", "Coletado pela transportadora", "2026-11-02"),
    ("São Paulo", "SP", "Em trânsito para Curitiba", "2026-11-03"),
)
#: ...and the body bytes the SDK puts on the wire for them (the SDK contenders assert it).
BODY = (
    '{"events":['
    '{"city":"Rio de Janeiro","state":"RJ","description":"Coletado pela transportadora",'
    '"date":"2026-11-02"},'
    '{"city":"São Paulo","state":"SP","description":"Em trânsito para Curitiba",'
    '"date":"2026-11-03"}],'
    '"isDelivered":false,"deliveredDate":null}'
).encode()


def order_id(i: int) -> str:
    """The i-th distinct order id, VTEX-shaped."""
    return f"{1172452900000 + i}-01"


def invoice_number(i: int) -> str:
    """The i-th distinct invoice number."""
    return f"NF{i:09d}"


def path(i: int) -> str:
    """The tracking path of the i-th update (ids need no percent-encoding)."""
    return f"/api/oms/pvt/orders/{order_id(i)}/invoice/{invoice_number(i)}/tracking"


def store_name(k: int) -> str:
    """The k-th store of the many-store scenarios."""
    return f"store-{k:03d}"


def store_credentials(name: str) -> tuple[str, str]:
    """The app key and token of one benchmark store (fixed test values, not secrets)."""
    return f"vtexappkey-{name}-bench", f"token-{name}-bench"
