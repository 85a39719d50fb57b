"""The hottest statements, run straight on psycopg's cursor on PostgreSQL.

A validation reads one row and a redemption writes one statement; SQLAlchemy's execution path
around each (execution context, result metadata, row processors, events) cost as much CPU as
psycopg and the database together: 290 µs against 150 µs for the redemption's lookup, in one
thread on the same connection (2026-12-07). Here a Core or text statement is compiled once for
the connection's dialect and run on the DBAPI connection underneath the same SQLAlchemy
``Connection``, so it shares that connection's transaction (or its autocommit) and its pool.

SQLAlchemy's ``before_cursor_execute`` and ``after_cursor_execute`` events still fire around
each statement. Rows keep SQLAlchemy's shape where the callers read it: named tuples (attributes by label,
items by index), timestamps as aware UTC datetimes (``UTCDateTime``'s answer), JSON as Python
objects (psycopg's own ``jsonb`` loader, as SQLAlchemy's psycopg dialect uses it).
tests/db/test_driver.py compares the rows with SQLAlchemy's, column by column.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

import psycopg
from psycopg import AsyncCursor, Cursor
from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ClauseElement

# PostgreSQL's type oid for ``timestamp with time zone``, what UTCDateTime stores there.
_TIMESTAMPTZ = 1184


@lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]) -> Any:
    # Known only at run time; a name that cannot be an attribute (an unlabelled ``?column?``,
    # a second ``id``) is renamed ``_<index>``, its value still there by index.
    return namedtuple("Row", names, rename=True)


def _rows_of(cursor: Cursor[Any] | AsyncCursor[Any]) -> Callable[[Sequence[Any]], Any]:
    """psycopg's row factory: a named tuple per row, timestamps moved to UTC."""
    result = cursor.pgresult
    if result is None or not result.nfields:
        return tuple
    fields = range(result.nfields)
    make = _row_type(tuple((result.fname(i) or b"").decode() for i in fields))._make
    at_utc = tuple(i for i in fields if result.ftype(i) == _TIMESTAMPTZ)
    if not at_utc:
        return make

    def row(values: Sequence[Any]) -> Any:
        moved = list(values)
        for i in at_utc:
            moment: datetime | None = moved[i]
            if moment is not None:
                moved[i] = moment.astimezone(UTC)
        return make(moved)

    return row


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # The values SQLAlchemy put in the statement itself (``literal(1)``, ``values(x=1)``).
    fixed: Mapping[str, Any]
    # Bind parameters whose type converts the value first (JSON to psycopg's ``Jsonb``, an
    # aware datetime to UTC), by name: what ``Connection.execute`` would do to them.
    processors: Mapping[str, Callable[[Any], Any]]

    def parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        values = {**self.fixed, **given}
        for name, process in self.processors.items():
            if name in values:
                values[name] = process(values[name])
        return values


class DriverStatement:
    """A statement compiled once per dialect, executed on the driver's cursor."""

    __slots__ = ("_compiled", "_make_row", "_statement")

    def __init__(self, statement: Executable) -> None:
        self._statement = statement
        self._compiled: dict[str, _Compiled] = {}
        # The statement's rows always have the same columns: how to make one is worked out from
        # its first result (names, which are timestamps) and kept, not redone per execution.
        self._make_row: Callable[[Sequence[Any]], Any] | None = None

    def _row_factory(
        self, cursor: Cursor[Any] | AsyncCursor[Any]
    ) -> Callable[[Sequence[Any]], Any]:
        make = self._make_row
        if make is None:
            make = _rows_of(cursor)
            if cursor.pgresult is not None and cursor.pgresult.nfields:
                self._make_row = make
        return make

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            assert isinstance(self._statement, ClauseElement)
            statement = self._statement.compile(dialect=dialect)
            given = dict(statement.params)
            # SQLAlchemy's own table of them (no public name): a statement whose types convert
            # nothing has none, and tests/db/test_driver.py checks a JSON one end to end.
            processors = dict(getattr(statement, "_bind_processors", {}))
            compiled = _Compiled(str(statement), given, processors)
            self._compiled[dialect.name] = compiled
        return compiled

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row the statement returns (psycopg connections only: PostgreSQL).

        psycopg's errors come out as SQLAlchemy's, as from ``Connection.execute``: the API's
        handlers answer a lost database with a 503 (``db.engine.is_database_outage``), and a
        connection the server dropped is invalidated, not handed to the next request."""
        compiled = self._compile(connection.dialect)
        sql = compiled.sql
        params = compiled.parameters(params)
        driver = cast(psycopg.Connection[Any], connection.connection.dbapi_connection)
        dispatch = connection.dispatch
        try:
            with driver.cursor(row_factory=self._row_factory) as cursor:
                # SQLAlchemy's statement events still fire (for whoever listens: the tests).
                dispatch.before_cursor_execute(connection, cursor, sql, params, None, False)
                cursor.execute(sql, params, prepare=True)
                dispatch.after_cursor_execute(connection, cursor, sql, params, None, False)
                return cursor.fetchall()
        except psycopg.Error as error:
            dropped = connection.dialect.is_disconnect(cast(Any, error), cast(Any, driver), None)
            if dropped:
                connection.invalidate(error)
            raise DBAPIError.instance(
                sql,
                dict(params),
                error,
                psycopg.Error,
                connection_invalidated=dropped,
                dialect=connection.dialect,
            ) from error

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any | None:
        rows = self.rows(connection, params)
        return rows[0] if rows else None

    async def rows_on_loop(
        self, cursor: psycopg.AsyncCursor[Any], dialect: Dialect, params: Mapping[str, Any]
    ) -> list[Any]:
        """:meth:`rows` on an asyncio cursor of psycopg's (the one an express lane connection
        keeps, ``db/express.py``): the same statement, parameters, rows and errors (a
        DBAPIError whose ``connection_invalidated`` says the connection is lost and must not be
        used again). No SQLAlchemy connection is involved, so no SQLAlchemy event fires."""
        compiled = self._compile(dialect)
        sql = compiled.sql
        params = compiled.parameters(params)
        connection = cursor.connection
        try:
            # Tuples, made into rows here: setting a kept cursor's row factory would call it
            # on the previous statement's result.
            await cursor.execute(sql, params, prepare=True)
            rows = await cursor.fetchall()
            make = self._row_factory(cursor)
            return [make(row) for row in rows]
        except psycopg.Error as error:
            dropped = dialect.is_disconnect(cast(Any, error), cast(Any, connection), None)
            raise DBAPIError.instance(
                sql,
                dict(params),
                error,
                psycopg.Error,
                connection_invalidated=dropped or connection.closed,
                dialect=dialect,
            ) from error


# Each statement's DriverStatement, by the statement's identity. The statements handed to
# :func:`rows` are built once (module constants, cached shapes) and kept alive by the entry.
_ON_DRIVER: dict[int, DriverStatement] = {}


def _on_driver(statement: Executable) -> DriverStatement:
    on_driver = _ON_DRIVER.get(id(statement))
    if on_driver is None:
        on_driver = _ON_DRIVER[id(statement)] = DriverStatement(statement)
    return on_driver


async def rows_on_loop(
    cursor: psycopg.AsyncCursor[Any],
    dialect: Dialect,
    statement: Executable,
    params: Mapping[str, Any],
) -> list[Any]:
    """:func:`rows` of a statement on an asyncio cursor of psycopg's, on the event loop."""
    return await _on_driver(statement).rows_on_loop(cursor, dialect, params)


def rows(session: Session | Connection, statement: Executable, params: Mapping[str, Any]) -> Any:
    """Every row of a Core or text ``statement``: on psycopg's cursor when ``session`` is a
    plain connection on PostgreSQL (``Database.single_read``/``single_write``'s), otherwise on
    the session's or connection's own ``execute``. The one way the hot paths choose."""
    if isinstance(session, Connection):
        if session.dialect.name == "postgresql":
            return _on_driver(statement).rows(session, params)
        return session.execute(statement, params).all()
    return session.connection().execute(statement, params).all()
