"""Utterance ids: ULIDs (26 characters, Crockford base32), unique and sortable by time.

The first 48 bits are the Unix time in milliseconds and the last 80 bits are random, so ids from
different daemon runs never collide in the event log and sort in the order they were made. Within
one process ids are strictly increasing even when the clock stands still or steps back (the
random part is incremented instead), as the ULID specification's monotonic mode prescribes.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["UlidGenerator"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class UlidGenerator:
    """Thread-safe source of strictly increasing ULIDs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self) -> str:
        """The next id."""
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1  # headroom to increment
            elif self._last_random < _RANDOM_MAX:
                self._last_random += 1
            else:  # 2**79 ids in one millisecond: borrow the next millisecond
                self._last_ms += 1
                self._last_random = 0
            return _encode((self._last_ms << _RANDOM_BITS) | self._last_random)
