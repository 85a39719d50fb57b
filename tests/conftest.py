"""Every storage test runs on SQLite and on PostgreSQL, against the migrated schema.

* ``db``: a :class:`Database` bound to one connection inside a transaction that is rolled back
  after the test; every unit of work becomes a savepoint of it.
* ``fresh_database``: a factory of whole new migrated databases (PostgreSQL: ``CREATE DATABASE
  ... TEMPLATE``; SQLite: a copy of the migrated file) for tests that need real commits from many
  threads or processes.
* ``client``: the whole app (native API, dialects, pages) over ``db`` through Starlette's
  TestClient; ``api`` is the same client failing the test at any 5xx answer.
* ``tenant``: a tenant with a full-scope key; a module that needs more overrides it.
* ``clock``: the :class:`FakeClock` ``db`` reads, moved by the test.

What tests share that is not a fixture lives in ``tests/support/`` and ``tests/factories/``;
no test imports this module.

PostgreSQL is found at ``VOUCHERD_TEST_POSTGRES_URL`` (default: the local server CI runs, trust
auth). Without it the PostgreSQL half is skipped with a message — unless
``VOUCHERD_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tests.factories.tenants import Tenant, make_tenant
from tests.support.browser import require_chromium
from tests.support.clock import FakeClock
from tests.support.databases import BACKENDS, PG_URL, REQUIRE_PG, Template, pg_admin, pg_url_for
from tests.support.delivery import Provider, SmtpServer, running_provider, running_smtp
from tests.support.http import refuse_server_errors
from tests.support.routes import share_route_builds
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database, make_engine
from voucherd.db.migrate import upgrade

# The longest tests (by --durations), longest first, marked ``slow`` (``-m "not slow"`` leaves
# them out of a quick local run) and started before the rest: under xdist a worker left alone
# at the end with one of them would hold the whole run up. Prefixes of node ids; the order among
# the others is pytest's own.
LONGEST = (
    "tests/faults/test_chaos.py::test_redemptions_survive_database_crashes",
    "tests/worker/test_worker.py::TestCrash::",
    "tests/faults/test_orders_crash.py::TestSigkill::",
    "tests/webhooks/test_crash.py::TestCrash::",
    "tests/observability/test_observability.py::TestProcesses::",
    "tests/publications/test_concurrency.py::test_sixteen_threads_drain_a_pool_of_ten_thousand[",
    "tests/auth/test_isolation.py::TestScopes::test_the_scope_alone_is_enough[",
    "tests/guard/test_guessing.py::TestBruteForce::",
    "tests/console/test_browser.py::",
    "tests/imports/test_import.py::TestTenThousand::",
    "tests/api/test_docs_offline.py::test_swagger_ui_renders_the_operations_offline[",
    "tests/faults/test_canary.py::TestNativeApi::",
    "tests/faults/test_canary.py::TestDialects::",
    "tests/concurrency/test_concurrency.py::TestHotCard::",
)


share_route_builds()  # each route's handler built once per worker, not once per test's app


def _rank(item: pytest.Item) -> int:
    """The item's place in LONGEST, or len(LONGEST) for the rest."""
    return next(
        (n for n, prefix in enumerate(LONGEST) if item.nodeid.startswith(prefix)), len(LONGEST)
    )


def pytest_itemcollected(item: pytest.Item) -> None:
    if _rank(item) < len(LONGEST):
        item.add_marker(pytest.mark.slow)


@pytest.hookimpl(trylast=True)  # after pytest grouped the tests by their fixtures' params
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the rest keep pytest's order


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
        admin = pg_admin()
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
    engine = make_engine(pg_url_for(name))
    upgrade(engine)
    engine.dispose()
    made = Template(backend, name, tmp)
    yield made
    made.dropper.wait()  # the copies first: none may be left behind
    with pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(template: Template) -> Iterator[Engine]:
    url = template.copy()
    engine = make_engine(url)
    yield engine
    engine.dispose()
    template.drop(url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def suite_settings() -> Settings:
    """The suite's settings, validated (and the environment read) once per worker: building
    ``Settings`` costs milliseconds of pydantic-settings work, and nearly every test asks."""
    return Settings(
        database_url="sqlite:///unused.db",
        public_base_url="https://vouchers.example",
        key_cache_seconds=0,
        max_body_bytes=64 * 1024,
        # The local webhook receivers listen on http://127.0.0.1; SSRF tests turn these off.
        allow_http_webhooks=True,
        allow_loopback_webhooks=True,
    )


@pytest.fixture
def settings(suite_settings: Settings) -> Settings:
    """Each test's own copy of the suite's settings (deep: no test changes another's)."""
    return suite_settings.model_copy(deep=True)


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


@pytest.fixture
def tenant(db: Database) -> Tenant:
    """A tenant with a full-scope key. A module that needs more (a campaign, delivery settings)
    overrides this fixture and asks for this one by the same name."""
    return make_tenant(db)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium for the browser tests (the page, the offline docs)."""
    return require_chromium()
