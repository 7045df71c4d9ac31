"""ULIDs: 128-bit identifiers that sort by creation time (48-bit milliseconds, 80 random bits).

Within one millisecond, identifiers made by this process keep increasing (the
random part is incremented), so sorting a process's event ids restores the
order it made them in.
"""

from __future__ import annotations

import os
import threading
import time

# Crockford's base32: no I, L, O or U, so ids survive being read aloud or retyped.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_millis = -1
_last_random = 0


def new_ulid() -> str:
    """A new 26-character ULID string."""
    global _last_millis, _last_random
    millis = time.time_ns() // 1_000_000
    with _lock:
        if millis <= _last_millis:
            millis = _last_millis
            _last_random = (_last_random + 1) & ((1 << _RANDOM_BITS) - 1)
        else:
            _last_millis = millis
            _last_random = int.from_bytes(os.urandom(10), "big")
        value = (millis << _RANDOM_BITS) | _last_random
    return encode_ulid(value)


# Two characters per 10 bits: 13 lookups make the 26 characters, twice as fast
# as 26 (every published event gets an id on its association's thread).
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def encode_ulid(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])
