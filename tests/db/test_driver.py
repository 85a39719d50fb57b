"""The hot statements on psycopg's cursor (``db/driver.py``) answer what SQLAlchemy answers: the
same names, the same values of the same types (aware UTC timestamps, JSON as Python objects),
and a lost connection comes out as SQLAlchemy's error, the connection invalidated.

On SQLite nothing runs on the driver: the lookup answers SQLAlchemy's own rows there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Row, bindparam, literal, select, text
from sqlalchemy.exc import DBAPIError

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from voucherd.db.base import JSONType, UTCDateTime
from voucherd.db.driver import DriverStatement
from voucherd.db.engine import Database, is_database_outage, make_engine
from voucherd.vouchers.lookup import _BY, Width, find_voucher_row


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=2)


def _voucher_with_everything(database: Database) -> str:
    tenant = make_tenant(database)
    campaign = make_campaign(
        database,
        tenant,
        type="DISCOUNT",
        discount={"type": "PERCENT", "percent_off": 15},
        validity_timeframe={"interval": "P1D", "duration": "PT2H"},
        validity_day_of_week=[1, 3, 5],
        timezone="Europe/Lisbon",
        start_date="2026-01-01T08:00:00+01:00",
        metadata={"region": "north", "tier": [1, 2]},
    )
    voucher = issue(
        database,
        tenant,
        campaign,
        start_date="2026-02-01T10:30:00-05:00",
        expiration_date="2027-02-01T00:00:00Z",
        metadata={"note": "é ✓", "n": 3},
        redemption_quantity=4,
        category="spring",
    )
    return f"{tenant.id} {voucher.voucher.code}"


@pytest.mark.parametrize("width", list(Width))
def test_the_lookup_answers_what_sqlalchemy_answers(database: Database, width: Width) -> None:
    tenant_id, code = _voucher_with_everything(database).split(" ")
    with database.single_read() as connection:
        found = find_voucher_row(connection, tenant_id, code, width=width)
        statement = _BY[width][0]
        expected = connection.execute(
            statement, {"tenant_id": tenant_id, "exact": code, "drawn": None}
        ).one()
    if not database.is_postgresql:
        assert isinstance(found, Row)  # nothing on the driver here
    assert tuple(found) == tuple(expected)
    assert found._fields == tuple(expected._fields)
    for got, want in zip(found, expected, strict=True):
        assert type(got) is type(want)
        if isinstance(want, datetime):
            assert got.tzinfo is UTC
            assert want.tzinfo is UTC
    assert found.start_date == datetime(2026, 2, 1, 15, 30, tzinfo=UTC)


def test_a_lost_connection_is_sqlalchemys_error_and_is_not_reused(database: Database) -> None:
    if not database.is_postgresql:
        pytest.skip("psycopg's cursor serves PostgreSQL only; SQLite never takes this path")
    select_pid = DriverStatement(text("SELECT pg_backend_pid() AS pid"))
    with database.single_read() as connection:
        pid = select_pid.rows(connection, {})[0].pid
        with database.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as lost:
            select_pid.first(connection, {})
        assert lost.value.connection_invalidated
        assert is_database_outage(lost.value)
    for _ in range(3):  # the pool hands out working connections again
        with database.single_read() as connection:
            assert select_pid.rows(connection, {})[0].pid != pid


def test_a_refused_statement_is_sqlalchemys_error(database: Database) -> None:
    if not database.is_postgresql:
        pytest.skip("psycopg's cursor serves PostgreSQL only; SQLite never takes this path")
    with database.single_write() as connection, pytest.raises(DBAPIError) as refused:
        DriverStatement(text("SELECT 1 / CAST(:zero AS int) AS x")).first(connection, {"zero": 0})
    assert "division by zero" in str(refused.value)
    assert not refused.value.connection_invalidated


def test_typed_and_fixed_parameters_are_sent_as_sqlalchemy_sends_them(database: Database) -> None:
    """A JSON parameter is serialised by its type (psycopg adapts no dict by itself), a value
    SQLAlchemy put in the statement (``literal``) is sent with it, an aware time goes as UTC."""
    if not database.is_postgresql:
        pytest.skip("psycopg's cursor serves PostgreSQL only; SQLite never takes this path")
    statement = select(
        bindparam("doc", type_=JSONType).label("doc"),
        literal(7).label("seven"),
        bindparam("at", type_=UTCDateTime()).label("at"),
    )
    lisbon = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Lisbon"))
    with database.single_read() as connection:
        row = DriverStatement(statement).first(connection, {"doc": {"a": [1, "é"]}, "at": lisbon})
    assert row.doc == {"a": [1, "é"]}
    assert row.seven == 7
    assert row.at == lisbon
    assert row.at.tzinfo is UTC


@pytest.fixture
def one_connection(database: Database) -> Iterator[Database]:
    """The database through a pool of one connection: every unit of work on the same one."""
    url = database.engine.url.render_as_string(hide_password=False)
    single = Database(make_engine(url, pool_size=1, overflow=0), settings=database.settings)
    yield single
    single.dispose()


def _prepared(database: Database) -> int:
    with database.single_read() as connection:
        count = connection.execute(text("SELECT count(*) FROM pg_prepared_statements"))
        return int(count.scalar_one())


def test_a_rollback_keeps_the_connections_prepared_statements(one_connection: Database) -> None:
    """psycopg's own rollback forgets every prepared statement (and sends DEALLOCATE ALL): each
    GET and each refused write then sent the hot statements back to being planned on every
    execution. voucherd's rollback keeps them, and still rolls back."""
    if not one_connection.is_postgresql:
        pytest.skip("prepared statements are psycopg's; SQLite has none to keep")
    tenant = make_tenant(one_connection)
    ping = DriverStatement(select(literal(1).label("one")))
    with one_connection.single_read() as connection:  # the driver prepares it at once
        ping.rows(connection, {})
    kept = _prepared(one_connection)
    assert kept >= 1
    with one_connection.unit_of_work(write=False) as session:  # a read: ends in ROLLBACK
        session.execute(text("SELECT 1"))
    with pytest.raises(LookupError):
        _refused_rename(one_connection, tenant.id)
    assert _prepared(one_connection) == kept
    with one_connection.single_read() as connection:  # psycopg still runs it by its name
        ping.rows(connection, {})
    assert _prepared(one_connection) == kept
    with one_connection.single_read() as connection:  # and the write was rolled back
        name = connection.execute(text("SELECT name FROM tenant WHERE id = :id"), {"id": tenant.id})
        assert name.scalar_one() != "renamed"


def test_a_connection_lost_before_its_rollback_is_not_reused(
    database: Database, one_connection: Database
) -> None:
    if not one_connection.is_postgresql:
        pytest.skip("voucherd's rollback replaces psycopg's on PostgreSQL only")
    select_pid = text("SELECT pg_backend_pid()")
    pids: list[int] = []
    with pytest.raises(DBAPIError) as lost:
        _read_whose_connection_is_lost(one_connection, database, pids)
    pid = pids[0]
    # The rollback met the lost connection, as psycopg's own rollback would: an outage (a
    # 503 to a client), and the pool hands out working connections again.
    assert lost.value.connection_invalidated
    assert is_database_outage(lost.value)
    for _ in range(3):
        with one_connection.unit_of_work(write=False) as session:
            assert session.execute(select_pid).scalar_one() != pid


def _refused_rename(database: Database, tenant_id: str) -> None:
    """A write unit of work that a refusal ends before its commit."""
    with database.unit_of_work() as session:
        session.execute(
            text("UPDATE tenant SET name = 'renamed' WHERE id = :id"), {"id": tenant_id}
        )
        raise LookupError("refused")


def _read_whose_connection_is_lost(database: Database, killer: Database, pids: list[int]) -> None:
    """A read unit of work whose backend ``killer`` terminates before it ends (and rolls back)."""
    with database.unit_of_work(write=False) as session:
        pids.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
        with killer.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
