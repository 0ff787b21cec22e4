"""Backup and restore of a PostgreSQL Hitmap with the PostgreSQL client tools.

``hitmap backup`` runs ``pg_dump --format=custom`` against HITMAP_DATABASE_URL
(the job queue included); a password in the URL goes to the tools in PGPASSWORD,
never on a command line that ``ps`` shows. ``hitmap restore`` runs ``pg_restore``
into the configured database in one transaction, as the configured user (owners
and grants of the dump are not replayed): when it fails, nothing changed. Into a
database that has tables, the schema is emptied and refilled in that transaction
(through psql), so a dump of an older Hitmap meets no table of a newer one.

The dump holds the database only. The secret key is configuration: with several
web hosts it is HITMAP_SECRET_KEY, the same on each; keep it with the backup.
Hits a web host spooled during an outage stay in its own data dir and are written
by that host when the database answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
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
    if has_tables:
        # pg_restore --clean drops only what the dump holds: tables a newer Hitmap
        # added would stay, and the migration after the restore would fail on them.
        # So the schema is emptied and refilled in one transaction.
        with engine.connect() as conn:
            schema = str(conn.scalar(text("SELECT current_schema()")))
        _replace_schema(pg_restore, _tool("psql"), conninfo, env, schema, source)
        return
    args = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error"]
    args += ["--single-transaction", "--no-password", f"--dbname={conninfo}"]
    _run([*args, str(source)], env, "pg_restore")


def _replace_schema(
    pg_restore: str, psql: str, conninfo: str, env: dict[str, str], schema: str, source: Path
) -> None:
    """Drop everything in ``schema`` and restore the dump into it, in one transaction.

    pg_restore writes the dump as SQL into psql; COMMIT is sent only after pg_restore
    has succeeded, so a failure of either leaves the database as it was."""
    quoted = '"' + schema.replace('"', '""') + '"'
    restore_args = [pg_restore, "--no-owner", "--no-privileges", "--file=-", str(source)]
    psql_args = [psql, "--no-psqlrc", "--quiet", "--no-password", "-v", "ON_ERROR_STOP=1"]
    psql_args += [f"--dbname={conninfo}"]
    with tempfile.TemporaryFile() as restore_err, tempfile.TemporaryFile() as psql_err:
        # Paths from shutil.which, arguments ours: no shell.
        try:
            dump = subprocess.Popen(  # noqa: S603
                restore_args, stdout=subprocess.PIPE, stderr=restore_err, env=env
            )
        except OSError as exc:
            raise BackupError(f"cannot run {pg_restore}: {describe_os_error(exc)}") from exc
        try:
            apply = subprocess.Popen(  # noqa: S603
                psql_args,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=psql_err,
                env=env,
            )
        except OSError as exc:
            dump.kill()
            dump.wait()
            raise BackupError(f"cannot run {psql}: {describe_os_error(exc)}") from exc
        assert apply.stdin is not None and dump.stdout is not None
        try:
            apply.stdin.write(f"BEGIN;\nDROP SCHEMA {quoted} CASCADE;\n".encode())
            apply.stdin.write(f"CREATE SCHEMA {quoted};\n".encode())
            shutil.copyfileobj(dump.stdout, apply.stdin)
            if dump.wait() == 0:
                apply.stdin.write(b"COMMIT;\n")
        except BrokenPipeError:
            pass  # psql stopped at an error; its message says which
        finally:
            dump.stdout.close()
            with contextlib.suppress(BrokenPipeError):
                apply.stdin.close()
        applied = apply.wait()
        dumped = dump.wait()
        for code, name, err in ((dumped, "pg_restore", restore_err), (applied, "psql", psql_err)):
            if code != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                detail = "\n".join(lines[-STDERR_LINES:]) or f"exit status {code}"
                raise BackupError(f"{name} failed:\n{detail}\n(nothing was changed)")
