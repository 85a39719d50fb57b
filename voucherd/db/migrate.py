"""Alembic, configured in code so the installed package migrates without an alembic.ini."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


SchemaState = Literal["current", "behind", "ahead"]


@cache
def _known_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(this code's heads, every revision this code knows), read once per process."""
    script = ScriptDirectory(str(MIGRATIONS))
    return frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions())


def schema_state(engine: Engine) -> SchemaState:
    """Where the database stands against this code's migrations.

    ``ahead`` means the database carries a revision this code does not know: a newer release
    has migrated it while this process still runs the old code (a rolling upgrade). Migrations
    are written to be additive, so an old process stays ready then; only ``behind`` (this code
    needs a migration not yet applied) is not ready. Read with plain SQL rather than Alembic's
    MigrationContext, which logs two INFO lines per call and /readyz is polled.
    """
    heads, known = _known_revisions()
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return "behind"
        applied = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if applied == heads:
        return "current"
    if applied - known:
        return "ahead"
    return "behind"


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration this code knows."""
    return schema_state(engine) == "current"
