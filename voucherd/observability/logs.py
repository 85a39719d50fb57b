"""Structured logs: one JSON object a line (or readable text) for every logger in the process.

voucherd's modules log through the standard library (``logging.getLogger("voucherd.…")``) and so
do uvicorn, SQLAlchemy and httpx. structlog is used only as the *formatter* of the root handler
(its ``ProcessorFormatter``): it turns any standard record, with its ``extra`` fields, into JSON or
coloured text, and adds the id of the request being served. Writing our own JSON formatter would
be shorter today, but structlog already gets the hard parts right (exception rendering, extra
fields, a console renderer for development) and keeps every module on the plain logging API.

Deliberate choices about what reaches a log:

* Tracebacks are plain text (``format_exc_info``, ``plain_traceback``), never structlog's
  ``dict_tracebacks`` or rich's pretty tracebacks: both print each frame's local variables, which
  hold codes, secrets and customers' data.
* httpx and httpcore are held at WARNING: at INFO they log every request's full URL, and provider
  URLs (a tenant's webhook, Twilio's account path) carry credentials and identifiers.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from voucherd.observability.context import current

LogFormat = Literal["json", "console"]
_QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING}


def _request_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    context = current()
    if context is not None:
        event.setdefault("request_id", context.request_id)
    return event


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    return event


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of every line this process writes, JSON or console."""
    pre_chain: list[Processor] = [
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        _request_id,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        # Which of `serve --workers N`'s processes wrote the line.
        structlog.processors.CallsiteParameterAdder(
            [structlog.processors.CallsiteParameter.PROCESS]
        ),
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        tail: list[Processor] = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            renderer,
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        tail = [renderer]
    lines = _JsonLines if fmt == "json" else structlog.stdlib.ProcessorFormatter
    return lines(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )


# The attributes every record has; the others are its ``extra`` fields (as structlog's ExtraAdder).
_RECORD_KEYS = logging.LogRecord("name", 0, "pathname", 0, "msg", (), None).__dict__.keys()
# structlog's add_log_level names two levels differently from the standard library's methods.
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}


class _JsonLines(structlog.stdlib.ProcessorFormatter):
    """The JSON formatter, with the line of a plain record (every access line) built directly.

    structlog copies each record, runs eight processors and a renderer: 30-100 µs a line, a
    few percent of an issue request. For a record without a traceback or stack, this builds
    the very same object (same keys, same order, same values) in one pass; any other record
    goes through structlog as before. tests/observability/test_log_lines.py compares the two.
    """

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.stack_info or hasattr(record, "_logger"):
            return super().format(record)
        # The pre-chain of formatter(), in its order: the logger, the level, the extra
        # fields, minus uvicorn's coloured copy, the request id, the time, the process.
        event: dict[str, Any] = {"event": record.getMessage()}
        event["logger"] = record.name
        level = record.levelname.lower()
        event["level"] = _LEVEL_NAMES.get(level, level)
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS:
                event[key] = value
        event.pop("color_message", None)
        context = current()
        if context is not None:
            event.setdefault("request_id", context.request_id)
        now = datetime.datetime.now(tz=datetime.UTC)
        event["time"] = now.isoformat().replace("+00:00", "Z")
        event["process"] = record.process
        # EventRenamer("message"), then the renderer.
        event["message"] = event.pop("event")
        return _dumps(event)


# What json.dumps(event, default=str, ensure_ascii=False) would write, by orjson: the access
# line's encoding cost 40,000 of the 1.9 million instructions of a redemption's API process with
# the standard library's encoder (callgrind, 2026-12-07). A time, a dataclass or a non-string key
# is still written as the standard encoder writes it (str(), keys as strings); what orjson
# refuses (an integer past 64 bits) goes to the standard encoder.
_ORJSON = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


def _dumps(event: Any, **_: Any) -> str:
    try:
        return orjson.dumps(event, default=str, option=_ORJSON).decode()
    except orjson.JSONEncodeError:
        return _ENCODER.encode(event)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so configuring again replaces it instead of adding a second one."""


def configure_logging(
    fmt: LogFormat = "json", level: str = "INFO", *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every logger's records through one handler on ``stream`` (stderr) in ``fmt``."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    # The logging HOWTO's "Optimization": no line says where in the code it was logged from,
    # nor the thread's or the multiprocessing process's name, so records skip looking them up
    # (the caller's frame, the thread, multiprocessing's current process): 2 of an access
    # line's 11 µs.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, logging.getLevelName(level)))
    return handler
