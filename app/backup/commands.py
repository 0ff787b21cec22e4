"""``hitmap backup PATH`` and ``hitmap restore PATH``; app/cli/__init__.py adds them to the group,
whose error handling turns BackupError and Conflict into a message and exit code 1."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.engine import make_url

from app.backup import postgres
from app.backup import sqlite as embedded
from app.clock import SystemClock
from app.context import AppContext
from app.db import make_engine
from app.jobs import service as jobs
from app.migrate import upgrade
from app.settings import Settings, load_settings

FILE = click.Path(dir_okay=False, path_type=Path)


def _context_settings() -> tuple[Settings, AppContext | None]:
    """The injected context's settings (tests), else the environment's."""
    root = click.get_current_context().find_root()
    if isinstance(root.obj, AppContext):
        return root.obj.settings, root.obj
    return load_settings(), None


def _is_sqlite(settings: Settings) -> bool:
    return make_url(settings.effective_database_url).get_backend_name() == "sqlite"


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@click.command("backup")
@click.argument("path", type=FILE)
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
def backup_command(path: Path, force: bool) -> None:
    """Write a consistent backup of this Hitmap to PATH; it may keep running.

    SQLite (the default): one gzipped tar file with an online copy of the database,
    the generated secret key and any spooled hits. It holds the secret key: keep
    it private (it is written with mode 0600).

    PostgreSQL: a pg_dump custom-format file of HITMAP_DATABASE_URL (pg_dump must be
    on PATH). Keep HITMAP_SECRET_KEY with it.

    Nothing is left at PATH when the backup fails.
    """
    settings, ctx = _context_settings()
    if _is_sqlite(settings):
        now = (ctx.clock if ctx else SystemClock()).now()
        report = embedded.backup(settings, path, force=force, now=now)
        counts = report.counts
        click.echo(
            f"backup written to {path}: schema {report.revision}, {counts['accounts']} "
            f"accounts, {counts['sites']} sites, {counts['visits']} visits, "
            f"{counts['heatmap_clicks']} clicks"
        )
        if report.secret_key_included:
            click.echo("it holds the secret key: keep it private")
        else:
            click.echo("the secret key comes from HITMAP_SECRET_KEY: keep it with the backup")
        if report.spool_segments:
            click.echo(f"{report.spool_segments} spooled hit segments included")
        return
    postgres.backup(settings.effective_database_url, path, force=force)
    click.echo(f"backup of {_safe(settings.effective_database_url)} written to {path}")
    click.echo("(pg_dump custom format; keep HITMAP_SECRET_KEY with it)")


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--force", is_flag=True, help="Replace a database that already holds accounts or sites."
)
def restore_command(path: Path, force: bool) -> None:
    """Restore the backup at PATH (from `hitmap backup`), then migrate the database.

    Stop `hitmap serve` (and `hitmap worker`) first. A database that holds any
    account or site is only replaced with --force.

    SQLite: the database, the secret key (unless HITMAP_SECRET_KEY is set) and
    spooled hits go to HITMAP_DATA_DIR. PostgreSQL: pg_restore (on PATH) loads the
    dump into HITMAP_DATABASE_URL in one transaction, as that URL's user; when it
    fails, nothing changed.
    """
    settings, _ = _context_settings()
    url = settings.effective_database_url
    if _is_sqlite(settings):
        report = embedded.restore(settings, path, force=force)
        _migrate(url)
        counts = report.counts
        click.echo(
            f"restored {path} into {_safe(url)}: {counts['accounts']} accounts, "
            f"{counts['sites']} sites, {counts['visits']} visits, "
            f"{counts['heatmap_clicks']} clicks"
        )
        for note in report.notes:
            click.echo(note)
        return
    engine = make_engine(url)
    try:
        postgres.restore(engine, path, force=force)
    finally:
        engine.dispose()
    _migrate(url)
    click.echo(f"restored {path} into {_safe(url)}")


def _migrate(url: str) -> None:
    """A backup may be older than this Hitmap: bring it to the current schema."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        jobs.install_schema(engine)
    finally:
        engine.dispose()
