"""The JSON formatter's direct line (observability/logs.py) is the line structlog writes."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from typing import Any

import pytest
import structlog

from voucherd.observability import context
from voucherd.observability.logs import _dumps, formatter


def _record(
    name: str, levelno: int, msg: str, args: tuple[Any, ...], /, **extra: Any
) -> logging.LogRecord:
    return logging.getLogger(name).makeRecord(
        name, levelno, "f.py", 1, msg, args, None, extra=extra
    )


RECORDS = [
    _record(
        "voucherd.access",
        logging.INFO,
        "%s %s %d",
        ("POST", "/api/v1/vouchers", 201),
        method="POST",
        route="/api/v1/vouchers",
        status=201,
        duration_ms=1.5,
        tenant_id=None,
    ),
    _record("uvicorn.error", logging.WARNING, "a %s", ("é",), color_message="coloured"),
    _record("x", logging.ERROR, "100%", (), request_id="given", level="own", thing=object),
    _record("x", 5, "custom level", ()),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
@pytest.mark.parametrize("in_request", [True, False])
def test_a_plain_line_is_structlogs_line(record: logging.LogRecord, in_request: bool) -> None:
    direct = formatter("json")
    through_structlog = structlog.stdlib.ProcessorFormatter.format
    token = context.enter(context.RequestContext("req-12345678")) if in_request else None
    try:
        ours = json.loads(direct.format(logging.makeLogRecord(record.__dict__)))
        theirs = json.loads(through_structlog(direct, logging.makeLogRecord(record.__dict__)))  # type: ignore[arg-type]
    finally:
        if token is not None:
            context.leave(token)

    assert ours.pop("time")[:16] == theirs.pop("time")[:16]
    assert list(ours.items()) == list(theirs.items())


@dataclasses.dataclass
class _Shown:
    amount: int


@pytest.mark.parametrize(
    "value",
    [
        {"route": "/api/v1/redemptions", "status": 201, "duration_ms": 3.125, "tenant_id": None},
        {"é": "ü ✓", 1: "a key that is not a string", "nested": {"list": [1, 2.5, True]}},
        {"at": datetime.datetime(2026, 12, 7, 18, 0, tzinfo=datetime.UTC), "as": _Shown(5)},
        {"past 64 bits": 2**70, "a type": object},
    ],
    ids=["access line", "keys and unicode", "time and dataclass", "what orjson refuses"],
)
def test_a_line_holds_what_the_standard_encoder_would_write(value: dict[Any, Any]) -> None:
    """Lines are encoded by orjson (faster); their content is what json.dumps(default=str)
    made of them before."""
    assert json.loads(_dumps(value)) == json.loads(
        json.dumps(value, default=str, ensure_ascii=False)
    )
