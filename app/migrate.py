"""Programmatic Alembic: `hitmap migrate`, `hitmap serve` and the tests share it."""

from __future__ import annotations

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
                command.upgrade(alembic_config(connection=conn), revision)
                if sqlite:
                    _check_foreign_keys(conn)
        finally:
            if sqlite:
                _sqlite_foreign_keys(conn, on=True)


def _sqlite_foreign_keys(conn: Connection, *, on: bool) -> None:
    # On the driver's connection: through SQLAlchemy, the statement would begin a
    # transaction first (the engine's "begin" hook), inside which SQLite ignores it.
    conn.connection.driver_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")  # type: ignore[union-attr]


def _check_foreign_keys(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({row[0] for row in broken})
        raise RuntimeError(
            f"migration left {len(broken)} rows without their parent in {', '.join(tables)}; "
            "nothing was changed"
        )


def is_current(engine: Engine) -> bool:
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads
