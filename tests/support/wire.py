"""What PostgreSQL itself was sent and answered on a Database's pooled connections: libpq's
protocol trace, for tests about round trips and transactions. Statements run on psycopg's cursor
(``voucherd/db/driver.py``) pass under SQLAlchemy's events, so the wire is where every statement
is seen, whichever way it went."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psycopg import pq
from sqlalchemy import Connection, event

from voucherd.db.engine import Database


@contextmanager
def wire(database: Database, trace: Path) -> Iterator[list[str]]:
    """Yields a list filled on the way out, in order: ``query <text>`` for each simple query
    sent (``BEGIN``, ``COMMIT``), each statement's command tag as answered (``SELECT 1``), and
    ``ready I`` / ``ready T`` / ``ready E`` for each ``ReadyForQuery``: the transaction status
    after it (idle, in a transaction, in a failed one). PostgreSQL only."""
    fd = os.open(trace, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    flags = pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE

    def checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
        dbapi.pgconn.trace(fd)
        dbapi.pgconn.set_trace_flags(flags)

    def checkin(dbapi: Any, _record: Any) -> None:
        dbapi.pgconn.untrace()

    event.listen(database.engine, "checkout", checkout)
    event.listen(database.engine, "checkin", checkin)
    seen: list[str] = []
    try:
        yield seen
    finally:
        event.remove(database.engine, "checkout", checkout)
        event.remove(database.engine, "checkin", checkin)
        os.close(fd)
        seen.extend(_messages(trace.read_text()))


def _messages(trace: str) -> Iterator[str]:
    for line in trace.splitlines():
        fields = line.split("\t")
        if len(fields) < 4:  # the rest of a statement's text that holds a line break
            continue
        direction, _length, message, *rest = fields
        if direction == "F" and message == "Query":
            yield f"query {rest[0].strip()}"
        elif direction == "B" and message == "CommandComplete":
            yield rest[0].strip().strip('"')
        elif direction == "B" and message == "ReadyForQuery":
            yield f"ready {rest[0].strip()}"


def statements(seen: list[str]) -> list[str]:
    """The command tags and simple queries, without the ReadyForQuery statuses."""
    return [m for m in seen if not m.startswith("ready ")]


def statuses(seen: list[str]) -> set[str]:
    """The transaction statuses seen after each message (``I``, ``T``, ``E``)."""
    return {m.removeprefix("ready ") for m in seen if m.startswith("ready ")}


def transaction_open(connection: Connection) -> bool:
    """Whether the server (PostgreSQL, psycopg's word) or the library (SQLite) holds a
    transaction open on ``connection``."""
    dbapi: Any = connection.connection.dbapi_connection
    info = getattr(dbapi, "info", None)
    if info is not None:
        return bool(info.transaction_status != 0)  # 0: IDLE
    return bool(dbapi.in_transaction)


@contextmanager
def statements_seen(database: Database) -> Iterator[list[tuple[str, bool]]]:
    """Each statement SQLAlchemy's events see (``db/driver.py``'s included), as its first word,
    and whether a transaction was open right after it. psycopg sends its own ``BEGIN`` without
    an event; SQLite's is a statement of ours."""
    seen: list[tuple[str, bool]] = []

    def after(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append((statement.split(None, 1)[0].upper(), transaction_open(connection)))

    event.listen(database.engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(database.engine, "after_cursor_execute", after)
