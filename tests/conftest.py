"""Every storage test runs on SQLite and on PostgreSQL, against the migrated schema.

* ``db``: a :class:`Database` bound to one connection inside a transaction that is rolled back
  after the test; every unit of work becomes a savepoint of it.
* ``fresh_database``: a factory of whole new migrated databases (PostgreSQL: ``CREATE DATABASE
  ... TEMPLATE``; SQLite: a copy of the migrated file) for tests that need real commits from many
  threads or processes.
* ``client``: the native API over ``db`` through Starlette's TestClient.

PostgreSQL is found at ``VOUCHERD_TEST_POSTGRES_URL`` (default: the local server CI runs, trust
auth). Without it the PostgreSQL half is skipped with a message — unless
``VOUCHERD_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tests.delivery_helpers import Provider, SmtpServer, running_provider, running_smtp
from tests.factories import refuse_server_errors
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database, make_engine
from voucherd.db.migrate import upgrade

PG_URL = os.environ.get(
    "VOUCHERD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("VOUCHERD_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin() -> psycopg.Connection:
    url = make_url(PG_URL)
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname=url.database or "postgres",
        autocommit=True,
        connect_timeout=3,
    )


def _pg_url_for(database: str) -> str:
    return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


@dataclass
class Template:
    """A migrated database nobody connects to, to copy whole new databases from."""

    backend: str
    location: str  # PostgreSQL database name, or SQLite file path
    tmp: Path

    def copy(self) -> str:
        name = f"voucherd_t_{secrets.token_hex(6)}"
        if self.backend == "sqlite":
            path = self.tmp / f"{name}.db"
            shutil.copy(self.location, path)
            return f"sqlite:///{path}"
        with _pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.location}"')
        return _pg_url_for(name)

    def drop(self, url: str) -> None:
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(make_url(url).database + suffix).unlink(missing_ok=True)  # type: ignore[operator]
            return
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    tmp = tmp_path_factory.mktemp(backend)
    if backend == "sqlite":
        path = tmp / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        yield Template(backend, str(path), tmp)
        return
    try:
        admin = _pg_admin()
    except psycopg.OperationalError as exc:
        message = (
            f"PostgreSQL is not reachable at {make_url(PG_URL).render_as_string()} ({exc}). "
            "Start it or set VOUCHERD_TEST_POSTGRES_URL; PostgreSQL tests are skipped."
        )
        if REQUIRE_PG:
            pytest.fail(message + " VOUCHERD_REQUIRE_POSTGRES=1 forbids skipping them.")
        pytest.skip(message)
    name = f"voucherd_tpl_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(_pg_url_for(name))
    upgrade(engine)
    engine.dispose()
    yield Template(backend, name, tmp)
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(template: Template) -> Iterator[Engine]:
    url = template.copy()
    engine = make_engine(url)
    yield engine
    engine.dispose()
    template.drop(url)


class FakeClock:
    """Time that moves only when a test says so. Starts on a Monday at noon UTC."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 6, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)

    def set(self, moment: datetime) -> None:
        self.current = moment


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        database_url="sqlite:///unused.db",
        public_base_url="https://vouchers.example",
        key_cache_seconds=0,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def db(engine: Engine, settings: Settings, clock: FakeClock) -> Iterator[Database]:
    connection = engine.connect()
    transaction = connection.begin()
    yield Database(engine, settings=settings, bind=connection, clock=clock)
    transaction.rollback()
    connection.close()


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, db=db)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient) -> TestClient:
    """The client, failing any test at the request that got a 5xx: never an acceptable answer."""
    return refuse_server_errors(client)


@pytest.fixture
def fresh_database(template: Template, settings: Settings) -> Iterator[Callable[..., Database]]:
    """Whole new migrated databases whose units of work really commit."""
    made: list[tuple[str, Database]] = []

    def make(*, pool_size: int = 40, clock: Callable[[], datetime] | None = None) -> Database:
        url = template.copy()
        db = Database(
            make_engine(url, pool_size=pool_size),
            settings=settings.model_copy(update={"database_url": url}),
            **({"clock": clock} if clock else {}),
        )
        made.append((url, db))
        return db

    yield make
    for url, db in made:
        db.dispose()
        template.drop(url)


@pytest.fixture
def provider() -> Iterator[Provider]:
    """A local HTTP server answering as Twilio, Meta's WhatsApp API and a webhook receiver."""
    with running_provider() as running:
        yield running


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    """A local SMTP server requiring STARTTLS (a throwaway CA) and AUTH."""
    with running_smtp(tmp_path) as server:
        yield server
