"""Storage: one schema for SQLite and PostgreSQL, one set of Alembic migrations."""

from voucherd.db.base import Base, metadata
from voucherd.db.engine import Database, make_engine

__all__ = ["Base", "Database", "make_engine", "metadata"]
