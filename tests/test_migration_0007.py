"""Migration 0007 rebuilds SQLite's `accounts` and `sites` with AUTOINCREMENT.

Dropping a parent table with foreign keys on deletes every child row through ON
DELETE CASCADE: on a populated database every table must keep every row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from app.context import build_context
from app.db import Database, make_engine
from app.migrate import alembic_config, upgrade
from tests.factories import hit, make_account, make_site
from tests.heatmaps.beacons import batch, click, send


def _row_counts(engine) -> dict[str, int]:
    # Table names come from sqlite_master itself.
    with engine.connect() as conn:
        tables = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).scalars()
        counts = {}
        for table in tables:
            count = f'SELECT count(*) FROM "{table}"'  # noqa: S608
            counts[table] = conn.exec_driver_sql(count).scalar_one()
        return counts


def _populate(settings, engine) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    ctx = build_context(settings, db=Database(engine))
    for n in range(3):
        owner = make_account(ctx)
        site = make_site(ctx, owner)
        with ctx.db.session() as session:
            from app.sites import service as sites_service

            sites_service.add_hostname(session, site, f"www{n}.example.org")
        with TestClient(
            create_app(ctx), base_url="http://hitmap.test", client=("127.0.0.1", 50000)
        ) as client:
            for i in range(5):
                assert hit(client, site.public_key, ip=f"81.2.69.{140 + i}").status_code == 200
            assert hit(client, site.public_key, ua="Googlebot/2.1").status_code == 200
            assert send(client, site.public_key, batch(click(), click())).status_code == 204


def _copy_rows(source: Path, engine) -> None:
    """Every row of ``source`` (at head) into the tables of ``engine``'s older schema."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute("ATTACH DATABASE ? AS newer", (str(source),))
        tables = [
            name
            for (name,) in raw.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
            )
        ]
        raw.execute("BEGIN")
        for table in tables:
            columns = ", ".join(row[1] for row in raw.execute(f'PRAGMA table_info("{table}")'))
            # Names from the schema itself.
            copy = f'INSERT INTO main."{table}" ({columns}) SELECT {columns} FROM newer."{table}"'  # noqa: S608, E501
            raw.execute(copy)
        raw.execute("COMMIT")
        raw.execute("DETACH DATABASE newer")
        raw.execute("PRAGMA foreign_keys=ON")


def test_rebuilding_sites_and_accounts_keeps_every_row_of_every_table(settings, tmp_path):
    newer = tmp_path / "populated.sqlite3"
    populated = make_engine(f"sqlite:///{newer}")
    upgrade(populated)
    _populate(settings, populated)
    populated.dispose()
    engine = make_engine(f"sqlite:///{tmp_path / 'hitmap.sqlite3'}")
    with engine.begin() as conn:  # a database of the release before: no AUTOINCREMENT
        command.upgrade(alembic_config(connection=conn), "0006")
    _copy_rows(newer, engine)
    before = _row_counts(engine)
    for table in (
        "accounts",
        "sites",
        "site_hostnames",
        "visits",
        "heatmap_clicks",
        "daily_country_counts",
        "location_counts",
        "dropped_hits",
        "heatmap_pages",
    ):
        assert before[table] > 0, f"{table} is empty: the test would prove nothing"

    upgrade(engine)

    after = _row_counts(engine)
    assert {t: n for t, n in after.items() if t in before} == before
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again
        for table in ("accounts", "sites"):
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}
            ).scalar_one()
            assert "AUTOINCREMENT" in sql
        newest = conn.exec_driver_sql("SELECT max(id) FROM sites").scalar_one()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM sites WHERE id = :id"), {"id": newest})
    ctx = build_context(settings, db=Database(engine))
    assert make_site(ctx, make_account(ctx)).site_id > newest
    engine.dispose()


def test_the_rebuild_refuses_to_run_with_foreign_keys_on(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hitmap.sqlite3'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "0006")
    with pytest.raises(RuntimeError, match="foreign keys off"), engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "0007")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
    engine.dispose()


def test_rows_orphaned_before_the_migration_do_not_block_it(tmp_path):
    """A database once written with foreign keys off may hold orphans already: only rows
    the migration itself would orphan make it refuse."""
    engine = make_engine(f"sqlite:///{tmp_path / 'hitmap.sqlite3'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "0006")
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute("INSERT INTO site_hostnames (site_id, hostname) VALUES (999, 'gone.org')")
        raw.execute("PRAGMA foreign_keys=ON")
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM site_hostnames")).scalar() == 1
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() != "0006"
    engine.dispose()
