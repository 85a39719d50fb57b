"""Identifiers and secrets.

Object ids are time-ordered (a ULID-like layout: 10 characters of milliseconds, then 80 random
bits) so that ``ORDER BY id`` is creation order and a cursor is just the last id seen. Prefixes
follow Voucherify's (``camp_``, ``v_``, ``r_``...), so that dialect shows our ids unchanged.
"""

from __future__ import annotations

import base64
import os
import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # ASCII-ordered, so ids sort as text


def _time_part(ms: int) -> str:
    chars = []
    for _ in range(10):
        chars.append(_CROCKFORD[ms & 31])
        ms >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    return new_ids(prefix, 1)[0]


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids sharing one timestamp; the random tails keep them unique and unguessable."""
    head = f"{prefix}_{_time_part(time.time_ns() // 1_000_000)}"
    tails = base64.b32encode(os.urandom(10 * count)).decode("ascii").lower()
    return [head + tails[i : i + 16] for i in range(0, 16 * count, 16)]


def new_public_tokens(count: int) -> list[str]:
    """120-bit tokens for voucher pages: the token is the only secret guarding the page."""
    raw = base64.urlsafe_b64encode(os.urandom(15 * count)).decode("ascii")
    return [raw[i : i + 20] for i in range(0, 20 * count, 20)]


def new_secret() -> str:
    return secrets.token_urlsafe(32)
