"""`hitmap backup` and `hitmap restore` on PostgreSQL: pg_dump and pg_restore.

Each test makes its own databases (dropped afterwards): the tools connect on their
own, so the rolled-back test transaction would hide the data from them.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from app import cli
from app.clock import FixedClock
from app.context import build_context
from app.db import Database, make_engine
from app.migrate import upgrade
from tests.conftest import START
from tests.databases import fresh_postgres
from tests.factories import make_account, make_site
from tests.retention.helpers import add_day, days_ago
from workers.procrastinate_app import apply_schema

TABLES = ("accounts", "sites", "visits", "heatmap_clicks", "daily_country_counts")


@pytest.fixture
def source(settings):
    """A PostgreSQL Hitmap with a site, visits and clicks, committed."""
    with fresh_postgres("hitmap_backup") as url:
        engine = make_engine(url)
        upgrade(engine)
        apply_schema(engine)
        settings.database_url = url
        ctx = build_context(settings, db=Database(engine), clock=FixedClock(START))
        scope = make_site(ctx, make_account(ctx))
        for n in (40, 1):
            add_day(ctx, scope, days_ago(n), visits=3)
        try:
            yield ctx
        finally:
            engine.dispose()


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            sql = {t: f"SELECT count(*) FROM {t}" for t in TABLES}  # noqa: S608 - fixed names
            return {t: conn.scalar(text(q)) for t, q in sql.items()}
    finally:
        engine.dispose()


def _run(*args: str, obj=None):
    return CliRunner().invoke(cli.main, list(args), obj=obj)


def test_backup_then_restore_into_a_scratch_database(source, tmp_path, monkeypatch):
    dump = tmp_path / "hitmap.dump"

    made = _run("backup", str(dump), obj=source)

    assert made.exit_code == 0, made.output
    assert dump.read_bytes()[:5] == b"PGDMP"
    expected = _counts(source.settings.effective_database_url)
    assert expected["visits"] == 6 and expected["heatmap_clicks"] == 6
    with fresh_postgres("hitmap_restore") as scratch:
        monkeypatch.setenv("HITMAP_DATABASE_URL", scratch)
        restored = _run("restore", str(dump))
        assert restored.exit_code == 0, restored.output
        assert _counts(scratch) == expected

        # The scratch database holds the data now: only --force replaces it.
        again = _run("restore", str(dump))
        assert again.exit_code == 1
        assert "already holds 1 accounts and 1 sites" in again.stderr
        forced = _run("restore", str(dump), "--force")
        assert forced.exit_code == 0, forced.output
        assert _counts(scratch) == expected
        migrated = _run("migrate")
        assert "already current" in migrated.stdout


def test_restore_into_a_migrated_empty_database_needs_no_force(source, tmp_path, monkeypatch):
    dump = tmp_path / "hitmap.dump"
    assert _run("backup", str(dump), obj=source).exit_code == 0
    with fresh_postgres("hitmap_restore") as scratch:
        monkeypatch.setenv("HITMAP_DATABASE_URL", scratch)
        assert _run("migrate").exit_code == 0
        restored = _run("restore", str(dump))
        assert restored.exit_code == 0, restored.output
        assert _counts(scratch) == _counts(source.settings.effective_database_url)


def test_missing_pg_dump_is_named_and_nothing_is_written(source, tmp_path, monkeypatch):
    empty, out = tmp_path / "bin", tmp_path / "out"
    empty.mkdir()
    out.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    result = _run("backup", str(out / "hitmap.dump"), obj=source)

    assert result.exit_code == 1
    assert "pg_dump was not found on PATH" in result.stderr
    assert os.listdir(out) == []


def test_a_failing_pg_dump_shows_its_message_and_leaves_no_file(source, tmp_path):
    url = source.settings.effective_database_url
    source.settings.database_url = url.rsplit("/", 1)[0] + "/no_such_db"
    out = tmp_path / "out"
    out.mkdir()

    result = _run("backup", str(out / "hitmap.dump"), obj=source)

    assert result.exit_code == 1
    assert "pg_dump failed:" in result.stderr
    assert 'database "no_such_db" does not exist' in result.stderr
    assert os.listdir(out) == []


def test_a_failing_pg_restore_changes_nothing(source, tmp_path, monkeypatch):
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"PGDMP" + b"\x00" * 64)
    with fresh_postgres("hitmap_restore") as scratch:
        monkeypatch.setenv("HITMAP_DATABASE_URL", scratch)
        assert _run("migrate").exit_code == 0
        result = _run("restore", str(broken))
        assert result.exit_code == 1 and "pg_restore failed:" in result.stderr
        assert _counts(scratch)["accounts"] == 0


def test_an_sqlite_backup_is_not_restored_into_postgresql(source, tmp_path, monkeypatch):
    archive = tmp_path / "backup.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really")
    monkeypatch.setenv("HITMAP_DATABASE_URL", source.settings.effective_database_url)
    result = _run("restore", str(archive))
    assert result.exit_code == 1
    assert "is not a pg_dump custom-format file" in result.stderr
    assert _counts(source.settings.effective_database_url)["visits"] == 6


def test_a_dump_of_an_older_schema_restores_into_a_migrated_database(tmp_path, monkeypatch):
    """pg_restore --clean would drop only what the dump holds: the newer tables would stay
    and the migration after the restore would fail on them."""
    from alembic import command

    from app.migrate import alembic_config

    dump = tmp_path / "old.dump"
    with fresh_postgres("hitmap_old") as old:
        engine = make_engine(old)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(connection=conn), "0004")
                conn.execute(
                    text(
                        "INSERT INTO accounts (email, password_hash, created_at) "
                        "VALUES ('old@example.org', 'x', now())"
                    )
                )
        finally:
            engine.dispose()
        monkeypatch.setenv("HITMAP_DATABASE_URL", old)
        assert _run("backup", str(dump)).exit_code == 0
    with fresh_postgres("hitmap_restore") as scratch:
        monkeypatch.setenv("HITMAP_DATABASE_URL", scratch)
        assert _run("migrate").exit_code == 0  # at head: retention_runs and more exist

        restored = _run("restore", str(dump))

        assert restored.exit_code == 0, restored.output
        assert "already current" in _run("migrate").stdout
        engine = make_engine(scratch)
        try:
            with engine.connect() as conn:
                assert conn.scalar(text("SELECT email FROM accounts")) == "old@example.org"
                assert conn.scalar(text("SELECT count(*) FROM retention_runs")) == 0
        finally:
            engine.dispose()
