"""Cursor pagination over time-ordered ids: newest first, the cursor is the last id shown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# What a cursor is: an object id (ids.py: a lower-case prefix, "_", 26 Crockford characters).
CURSOR_PATTERN = r"^[a-z]{1,10}_[0-9a-z]{26}$"
CURSOR = re.compile(CURSOR_PATTERN)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_of(rows: list[T], limit: int, cursor_of: str | None) -> Page[T]:
    """``rows`` were fetched with ``limit + 1`` so that one extra row tells a next page exists."""
    if len(rows) > limit:
        return Page(rows[:limit], cursor_of)
    return Page(rows, None)
