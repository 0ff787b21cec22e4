"""Programmatic Alembic: `hitmap migrate`, `hitmap serve` and the tests share it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

import migrations

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction.

    On SQLite, foreign keys are off while it runs: a migration that rebuilds a table
    drops the old one, and with foreign keys on that DROP deletes the rows of every
    child table through ON DELETE CASCADE. SQLite ignores the pragma inside a
    transaction, so it is set before; ``PRAGMA foreign_key_check`` then stands in
    for the checks, and any violation rolls the whole migration back.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(conn, on=False)
        try:
            with conn.begin():
                orphans = _orphans(conn) if sqlite else Counter()
                command.upgrade(alembic_config(connection=conn), revision)
                if sqlite:
                    _check_no_new_orphans(conn, orphans)
        finally:
            if sqlite:
                _sqlite_foreign_keys(conn, on=True)


def _sqlite_foreign_keys(conn: Connection, *, on: bool) -> None:
    # On the driver's connection: through SQLAlchemy, the statement would begin a
    # transaction first (the engine's "begin" hook), inside which SQLite ignores it.
    conn.connection.driver_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")  # type: ignore[union-attr]


def _orphans(conn: Connection) -> Counter[tuple[str, str]]:
    """Rows whose parent is missing, per (table, parent table)."""
    return Counter((row[0], row[2]) for row in conn.exec_driver_sql("PRAGMA foreign_key_check"))


def _check_no_new_orphans(conn: Connection, before: Counter[tuple[str, str]]) -> None:
    # Rows orphaned before the migration (a database once written with foreign keys
    # off) are no reason to refuse it; rows it orphaned are.
    new = _orphans(conn) - before
    if new:
        tables = ", ".join(sorted({table for table, _ in new}))
        raise RuntimeError(
            f"the migration would leave {sum(new.values())} rows without their parent in "
            f"{tables}; nothing was changed"
        )


def is_current(engine: Engine) -> bool:
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads
