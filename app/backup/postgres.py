"""Backup and restore of a PostgreSQL Hitmap with the PostgreSQL client tools.

``hitmap backup`` runs ``pg_dump --format=custom`` against HITMAP_DATABASE_URL
(the job queue included); a password in the URL goes to the tools in PGPASSWORD,
never on a command line that ``ps`` shows. ``hitmap restore`` runs ``pg_restore``
into the configured database in one transaction, as the configured user (owners
and grants of the dump are not replayed): when it fails, nothing changed.

The dump holds the database only. The secret key is configuration: with several
web hosts it is HITMAP_SECRET_KEY, the same on each; keep it with the backup.
Hits a web host spooled during an outage stay in its own data dir and are written
by that host when the database answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from app.backup.files import BackupError, atomic_file, describe_os_error, is_pg_dump
from app.errors import Conflict

STDERR_LINES = 20  # of a failing tool's messages, the last ones are shown


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """(connection string without the password, environment with PGPASSWORD if any)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise BackupError("pg_dump and pg_restore need a PostgreSQL HITMAP_DATABASE_URL")
    params: dict[str, str | int | None] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "dbname": parsed.database,
        **{k: v for k, v in parsed.query.items() if isinstance(v, str)},
    }
    conninfo = make_conninfo("", **{k: v for k, v in params.items() if v is not None})
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return conninfo, env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} was not found on PATH; install the PostgreSQL client tools of your "
            "server's major version (e.g. `apt install postgresql-client-15`) or add their "
            "folder to PATH"
        )
    return path


def _run(args: list[str], env: dict[str, str], name: str) -> None:
    try:
        # The tool's path comes from shutil.which, the arguments are ours: no shell.
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    except OSError as exc:
        raise BackupError(f"cannot run {args[0]}: {describe_os_error(exc)}") from exc
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()[-STDERR_LINES:]
        detail = "\n".join(lines) or f"exit status {done.returncode}"
        raise BackupError(f"{name} failed:\n{detail}")


def backup(url: str, target: Path, *, force: bool) -> None:
    pg_dump = _tool("pg_dump")
    conninfo, env = libpq(url)
    with atomic_file(target, force=force) as partial:
        _run(
            [pg_dump, "--format=custom", "--no-password", f"--file={partial}", conninfo],
            env,
            "pg_dump",
        )


def existing_data(engine: Engine) -> tuple[str | None, bool]:
    """(what a restore would replace or None, whether the schema has any tables)."""
    with engine.connect() as conn:
        found = conn.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        )
        tables = set(found)
        if not tables:
            return None, False
        if not {"accounts", "sites"} <= tables:
            return f"{len(tables)} tables that are not Hitmap's", True
        accounts = conn.scalar(text("SELECT count(*) FROM accounts"))
        sites = conn.scalar(text("SELECT count(*) FROM sites"))
    held = f"{accounts} accounts and {sites} sites" if accounts or sites else None
    return held, True


def restore(engine: Engine, source: Path, *, force: bool) -> None:
    """Restore a pg_dump file into the configured database; the caller migrates after."""
    if not is_pg_dump(source):
        raise BackupError(
            f"{source} is not a pg_dump custom-format file (what `hitmap backup` makes on "
            "PostgreSQL); an SQLite Hitmap backup is restored without HITMAP_DATABASE_URL"
        )
    pg_restore = _tool("pg_restore")
    url = engine.url.render_as_string(hide_password=False)
    held, has_tables = existing_data(engine)
    if held and not force:
        database = engine.url.render_as_string(hide_password=True)
        raise Conflict(
            f"the database {database} already holds {held}; a restore replaces everything "
            "in it. Add --force to replace it, or restore into an empty database"
        )
    conninfo, env = libpq(url)
    args = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error"]
    args += ["--single-transaction", "--no-password", f"--dbname={conninfo}"]
    if has_tables:
        args += ["--clean", "--if-exists"]  # drop what the dump is about to create
    _run([*args, str(source)], env, "pg_restore")
