"""Identifiers and secrets.

Object ids are time-ordered (a ULID-like layout: 10 characters of milliseconds, then 80 random
bits, increasing within a process) so that ``ORDER BY id`` is creation order and a cursor is just the last id seen. Prefixes
follow Voucherify's (``camp_``, ``v_``, ``r_``...), so that dialect shows our ids unchanged.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # ASCII-ordered, so ids sort as text
# Every two-character Crockford string, in value order: a tail's last 20 bits are two of these,
# so a million consecutive tails cost a list comprehension, not a million encodings.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_TAIL_BITS = 80

# The last (millisecond, tail) this process handed out. Ids made in the same millisecond would
# otherwise sort at random, and "newest first" pages would shuffle rows created back to back.
_last_lock = threading.Lock()
_last_ms = 0
_last_tail = 0


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _ids(head: str, start: int, count: int) -> list[str]:
    """``head`` plus the 16-character tails ``start`` .. ``start + count - 1``, in order."""
    ids: list[str] = []
    n, end = start, start + count
    while n < end:
        block = n >> 20
        upto = min(end, (block + 1) << 20)
        high = head + _encode(block, 12)
        ids.extend(
            [
                high + _PAIRS[low >> 10] + _PAIRS[low & 1023]
                for low in range(n & 0xFFFFF, ((upto - 1) & 0xFFFFF) + 1)
            ]
        )
        n = upto
    return ids


def new_id(prefix: str) -> str:
    return new_ids(prefix, 1)[0]


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids, each greater than every id this process made before (monotonic, as ULID's
    spec allows): a new millisecond starts at a random 79-bit tail, and a call in the same
    millisecond starts a random step above the last tail. Ids from different processes in one
    millisecond still interleave at random; they stay unique, which is all a cursor needs."""
    global _last_ms, _last_tail
    with _last_lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            start = secrets.randbits(_TAIL_BITS - 1)
        else:  # the same millisecond, or the clock stepped back: stay after what we gave
            ms = _last_ms
            start = _last_tail + 1 + secrets.randbits(32)
        if start + count >= 1 << _TAIL_BITS:  # a millisecond's tails used up: borrow the next
            ms += 1
            start = secrets.randbits(_TAIL_BITS - 1)
        _last_ms, _last_tail = ms, start + count - 1
    return _ids(f"{prefix}_{_encode(ms, 10)}", start, count)


def new_public_tokens(count: int) -> list[str]:
    """120-bit tokens for voucher pages: the token is the only secret guarding the page."""
    raw = base64.urlsafe_b64encode(os.urandom(15 * count)).decode("ascii")
    return [raw[i : i + 20] for i in range(0, 20 * count, 20)]


def new_secret() -> str:
    return secrets.token_urlsafe(32)
