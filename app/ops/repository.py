"""The readiness probe's SQL: is the database there, and at which schema revision."""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.orm import Session


def ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


def schema_revisions(session: Session) -> frozenset[str]:
    """Alembic's revisions of this database; empty when it was never migrated.

    Read directly: Alembic's MigrationContext would log a line at every probe."""
    if not inspect(session.connection()).has_table("alembic_version"):
        return frozenset()
    return frozenset(session.scalars(text("SELECT version_num FROM alembic_version")))
