"""For the express lane's tests (``db/express.py``): an answer's shape, to compare the lane's
turn with the thread way's, and a use case run while the lane is busy."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TypeVar

from voucherd.db.express import ExpressLane

T = TypeVar("T")

# Ids, codes, tokens, links and times differ between the two turns; nothing else may.
_VARYING = re.compile(r'"(code|public_token|url|page_url|redeem_url|qr_url)":"[^"]*"')
_IDS = re.compile(r"\b[a-z]{1,4}_[0-9a-z]{26}\b")
_CODES = re.compile(r'"[0-9A-Z]{13}"')
_TOKENS = re.compile(r"/[A-Za-z0-9_-]{20,}")
_TIMES = re.compile(r'"\d{4}-\d\d-\d\dT[^"]*"')


def answer_shape(text: str, way: str) -> str:
    """An answer's text with what differs between the turns (and the turn's own name, ``way``,
    in names and codes made for it) replaced by placeholders."""
    text = _VARYING.sub(r'"\1":"-"', text.replace(way, "WAY"))
    text = _TOKENS.sub("/TOKEN", _IDS.sub("ID", text))
    return _TIMES.sub('"T"', _CODES.sub('"CODE"', text))


async def while_busy(lane: ExpressLane, use_case: Callable[[], Awaitable[T]]) -> T:
    """``use_case`` run while every connection of ``lane`` is lent, for longer than a request
    waits its turn in the lane's line."""
    lane.wait_seconds = 0.05
    async with AsyncExitStack() as lent:
        for _ in range(lane.size):
            await lent.enter_async_context(lane.connection())
        return await use_case()
