"""What the command line adds to the SDK's messages so that an operator knows what to do:
Python keywords told as the options that set them, and hints for VTEX answers whose cause
is usually the input (an order id or invoice number VTEX does not know)."""

from __future__ import annotations

from vtex_tracking import APIError

#: Python keywords in the SDK's messages -> the command line's options that set them.
_OPTIONS = {"allow_insecure_http=True": "--allow-insecure-http"}


def in_cli_terms(message: str) -> str:
    """``message`` with each Python keyword it tells the user to pass named as its option."""
    for keyword, option in _OPTIONS.items():
        message = message.replace(f"pass {keyword}", f"pass {option}")
    return message


#: VTEX's message of a 404 (lowercased) -> what the operator can do about it.
_NOT_FOUND = {
    "order not found": (
        "Hint: orderId must be the id the receiving store knows the order by. In a marketplace"
        " (fulfillment) flow the seller's order has an id of its own: send the marketplace's"
        " order id to the marketplace's account, or the seller's own id to the seller's"
        " account; check the line's accountName (or --account) too."
    ),
    "invoice not found": (
        "Hint: the order has no invoice with this number at VTEX yet: the invoice must be sent"
        " to VTEX first (by the ERP), and invoiceNumber must match it exactly (leading zeros,"
        " no spaces)."
    ),
}


def hint_for(error: BaseException | None) -> tuple[str, str] | None:
    """For a VTEX answer whose usual cause is the input: what it was (``404 Order Not
    Found``) and the hint to add to the line's error; None for any other error."""
    if not isinstance(error, APIError) or error.status_code != 404 or not error.message:
        return None
    hint = _NOT_FOUND.get(error.message.strip().lower())
    if hint is None:
        return None
    return f"{error.status_code} {error.message.strip()}", hint
