"""What the command line adds to the SDK's messages so that an operator knows what to do:
Python keywords told as the options that set them, and hints for VTEX answers whose cause
is usually the input (an order id or invoice number VTEX does not know)."""

from __future__ import annotations

#: Python keywords in the SDK's messages -> the command line's options that set them.
_OPTIONS = {"allow_insecure_http=True": "--allow-insecure-http"}


def in_cli_terms(message: str) -> str:
    """``message`` with each Python keyword it tells the user to pass named as its option."""
    for keyword, option in _OPTIONS.items():
        message = message.replace(f"pass {keyword}", f"pass {option}")
    return message
