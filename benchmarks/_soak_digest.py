"""An order-independent digest of a set of invoice keys, so the soak's client and server can
compare what was confirmed with what was accepted without shipping every key across."""

from __future__ import annotations

import hashlib

_MASK = (1 << 64) - 1


class KeyDigest:
    """Count and sum (mod 2**64) of a 64-bit hash of each ``(order_id, invoice_number)``."""

    def __init__(self) -> None:
        self.count = 0
        self._sum = 0

    def add(self, order_id: str, invoice_number: str) -> None:
        key = f"{order_id}\x00{invoice_number}".encode()
        value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
        self._sum = (self._sum + value) & _MASK
        self.count += 1

    def hexdigest(self) -> str:
        return f"{self._sum:016x}"
