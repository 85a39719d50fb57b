"""The migrations and the models describe the same schema, on both databases."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from voucherd.composition import metadata  # every feature's tables
from voucherd.db.engine import Database
from voucherd.db.migrate import alembic_config, is_current, schema_state


class TestMigrations:
    def test_models_match_migrated_schema(self, engine: Engine) -> None:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
        assert differences == []

    def test_database_is_current(self, engine: Engine) -> None:
        assert is_current(engine)

    def test_downgrade_to_nothing_and_back(self, fresh_database: Callable[..., Database]) -> None:
        db = fresh_database(pool_size=2)
        config = alembic_config(db.engine)
        command.downgrade(config, "base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        assert not is_current(db.engine)
        command.upgrade(config, "head")
        assert "voucher" in inspect(db.engine).get_table_names()
        assert is_current(db.engine)


class TestSchemaState:
    """Readiness during a rolling upgrade: a database a newer release has migrated is "ahead",
    and old processes stay ready; one this code must still migrate is "behind"."""

    def test_behind_current_and_ahead(self, fresh_database: Callable[..., Database]) -> None:
        db = fresh_database(pool_size=2)
        assert schema_state(db.engine) == "current"
        with db.engine.begin() as conn:
            (current,) = conn.execute(text("SELECT version_num FROM alembic_version")).one()
            conn.execute(text("UPDATE alembic_version SET version_num = 'from_a_newer_release'"))
        assert schema_state(db.engine) == "ahead"
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})
        command.downgrade(alembic_config(db.engine), "-1")
        assert schema_state(db.engine) == "behind"
