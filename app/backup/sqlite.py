"""Backup and restore of the embedded SQLite database, with what a restore needs.

A backup is one gzipped tar file (mode 0600):

* ``hitmap.sqlite3``: a consistent copy made online with SQLite's backup API, in a
  single step: one read transaction, which in WAL mode never blocks the writers of
  a running ``hitmap serve``;
* ``secret_key``: the key generated into the data dir, when HITMAP_SECRET_KEY is not
  set. Everything stored survives without it (sessions and API tokens are plain
  SHA-256 hashes, visitor hashes use the daily salts in the database), but CSRF
  tokens of open forms, signed flash messages and the login throttle's keyed
  buckets would not match a new key;
* ``spool/``: hits spooled while the database was unreachable and not yet written.
  They are copied *before* the database: a segment replayed in between is then in
  both, and its id, claimed in ``applied_spool_records`` by the replay, keeps a
  restored server from applying it twice;
* ``hitmap-backup.json``: what the file is, the schema revision and row counts.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sqlite3
import tarfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from app import __version__
from app.backup.files import (
    BackupError,
    atomic_file,
    describe_os_error,
    is_pg_dump,
    work_dir,
    write_private,
)
from app.errors import Conflict
from app.settings import Settings

MANIFEST = "hitmap-backup.json"
DB_NAME = "hitmap.sqlite3"
KEY_NAME = "secret_key"
SPOOL_MEMBER = re.compile(r"spool/spool-[0-9]+-[0-9]+\.log")
FORMAT = 1
COUNTED = ("accounts", "sites", "visits", "heatmap_clicks")
_COUNT_SQL = {t: f"SELECT count(*) FROM {t}" for t in COUNTED}  # noqa: S608 - fixed names


@dataclass(frozen=True)
class BackupReport:
    path: Path
    revision: str
    counts: dict[str, int]
    secret_key_included: bool
    spool_segments: int


@dataclass
class RestoreReport:
    revision: str
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)


def database_path(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        raise BackupError(f"{parsed.render_as_string()} is not an SQLite database file")
    return Path(str(parsed.database))


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=15, isolation_level=None)


def _inspect(path: Path) -> tuple[str, dict[str, int]]:
    """(schema revision, row counts) of a database copy that passes SQLite's check."""
    with closing(_connect(path)) as conn:
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if check != "ok" or "alembic_version" not in tables:
                raise BackupError(f"the copied database is not a sound Hitmap database ({check})")
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
            counts = {t: conn.execute(_COUNT_SQL[t]).fetchone()[0] for t in COUNTED}
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"the copied database cannot be read: {exc}") from exc
    return str(revision), counts


def _copy_database(source: Path, target: Path) -> None:
    """Copy with SQLite's backup API: consistent, and safe with other connections open."""
    with closing(_connect(source)) as src, closing(_connect(target)) as dst:
        src.backup(dst)  # pages=-1: one step, one snapshot of the source


def _copy_spool(spool: Path, into: Path) -> list[Path]:
    into.mkdir()
    copied = []
    for segment in sorted(spool.glob("spool-*.log")) if spool.is_dir() else []:
        try:
            shutil.copyfile(segment, into / segment.name)
        except FileNotFoundError:
            continue  # replayed and deleted meanwhile: its hits are in the database
        copied.append(into / segment.name)
    return copied


def backup(settings: Settings, target: Path, *, force: bool, now: dt.datetime) -> BackupReport:
    source = database_path(settings.effective_database_url)
    if not source.is_file():
        raise BackupError(
            f"there is no database at {source}; set HITMAP_DATA_DIR (or HITMAP_DATABASE_URL) "
            "to the one to back up"
        )
    key_file = settings.data_dir / KEY_NAME
    with_key = settings.secret_key is None and key_file.is_file()
    with atomic_file(target, force=force) as partial, work_dir(partial.parent) as work:
        segments = _copy_spool(settings.spool_dir, work / "spool")
        copy = work / DB_NAME
        try:
            _copy_database(source, copy)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot copy the database {source}: {exc}") from exc
        with closing(_connect(copy)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        revision, counts = _inspect(copy)
        manifest = {
            "format": FORMAT,
            "database": "sqlite",
            "hitmap": __version__,
            "revision": revision,
            "created_at": now.isoformat(),
            "counts": counts,
            "secret_key": with_key,
            "spool_segments": len(segments),
        }
        try:
            with tarfile.open(partial, "w:gz", compresslevel=3) as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
                tar.add(copy, DB_NAME)
                if with_key:
                    tar.add(key_file, KEY_NAME)
                for segment in segments:
                    tar.add(segment, f"spool/{segment.name}")
        except OSError as exc:
            raise BackupError(f"cannot write {target}: {describe_os_error(exc)}") from exc
    return BackupReport(target, revision, counts, with_key, len(segments))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


# --- restore --------------------------------------------------------------------------


def read_manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    """The manifest of a Hitmap backup; refuses any other archive or unexpected entry."""
    members = tar.getmembers()
    for member in members:
        allowed = member.name in (MANIFEST, DB_NAME, KEY_NAME) or SPOOL_MEMBER.fullmatch(
            member.name
        )
        if not allowed or not member.isfile():
            raise BackupError(f"{source} holds {member.name!r}, which no Hitmap backup holds")
    names = {m.name for m in members}
    if MANIFEST not in names or DB_NAME not in names:
        raise BackupError(f"{source} is not a Hitmap backup (made by `hitmap backup`)")
    extracted = tar.extractfile(MANIFEST)
    try:
        manifest = json.loads(extracted.read() if extracted else b"")
    except ValueError as exc:
        raise BackupError(f"{source} has an unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is a backup format this Hitmap does not know")
    return manifest


def existing_data(path: Path) -> str | None:
    """What the database at ``path`` holds that a restore would replace; None if nothing.

    A freshly migrated database (tables, no account) counts as empty.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        with closing(_connect(path)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if not tables:
                return None
            if not {"accounts", "sites"} <= tables:
                return f"{len(tables)} tables that are not Hitmap's"
            accounts = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
            sites = conn.execute("SELECT count(*) FROM sites").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return f"data SQLite cannot read ({exc})"
    return f"{accounts} accounts and {sites} sites" if accounts or sites else None


def restore(settings: Settings, source: Path, *, force: bool) -> RestoreReport:
    """Replace the SQLite database (and the generated secret key) with a backup's.

    Run the migrations afterwards (the caller does): the backup may be older.
    """
    target = database_path(settings.effective_database_url)
    if is_pg_dump(source):
        raise BackupError(
            f"{source} is a PostgreSQL dump; restore it with HITMAP_DATABASE_URL set to the "
            "PostgreSQL database"
        )
    with _open_archive(source) as tar:
        manifest = read_manifest(tar, source)
        if manifest.get("database") != "sqlite":
            raise BackupError(f"{source} is not a backup of an SQLite Hitmap")
        held = existing_data(target)
        if held and not force:
            raise Conflict(
                f"the database {target} already holds {held}; a restore replaces everything "
                "in it. Add --force to replace it, or set HITMAP_DATA_DIR to an empty folder"
            )
        pending = _spooled_segments(settings.spool_dir)
        if pending and not force:
            raise Conflict(
                f"{settings.spool_dir} holds {len(pending)} segments of hits not yet written "
                "to the database a restore would replace (they name its sites by id): start "
                "`hitmap serve` once to write them, or add --force to set them aside"
            )
        settings.ensure_data_dir()
        target.parent.mkdir(parents=True, exist_ok=True)
        with work_dir(target.parent) as work:
            for member in tar.getmembers():
                _extract(tar, member, work)
            revision, counts = _inspect(work / DB_NAME)
            try:
                _copy_database(work / DB_NAME, target)
            except sqlite3.Error as exc:
                raise BackupError(
                    f"cannot write the database {target}: {exc}; is `hitmap serve` still "
                    "running on it? Stop it first"
                ) from exc
            report = RestoreReport(revision, counts)
            if pending:
                _set_aside(settings, pending, report)
            _restore_key(settings, work / KEY_NAME, report)
            _restore_spool(settings, work / "spool", report)
    return report


def _open_archive(source: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(source, "r:gz")
    except (tarfile.TarError, OSError) as exc:
        message = f"{source} is not a Hitmap backup (made by `hitmap backup`): {exc}"
        raise BackupError(message) from exc


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path) -> None:
    # The names were checked by read_manifest; files are written under names of our
    # own making, never by the archive's paths or permissions.
    path = into / member.name
    path.parent.mkdir(exist_ok=True)
    data = tar.extractfile(member)
    if data is None:
        raise BackupError(f"the backup's {member.name} cannot be read")
    with data, open(path, "wb") as out:
        shutil.copyfileobj(data, out)


def _restore_key(settings: Settings, key: Path, report: RestoreReport) -> None:
    if not key.is_file():
        report.notes.append(
            "the backup holds no secret key (it came from HITMAP_SECRET_KEY): set the same "
            "HITMAP_SECRET_KEY here, or open forms and login throttling start afresh"
        )
        return
    if settings.secret_key is not None:
        if settings.secret_key != key.read_text().strip():
            report.notes.append(
                "HITMAP_SECRET_KEY is set and differs from the backed-up key, which was not "
                "used: open forms and login throttling start afresh"
            )
        return
    write_private(settings.data_dir / KEY_NAME, key.read_bytes())
    report.notes.append(f"secret key restored to {settings.data_dir / KEY_NAME}")


def _spooled_segments(spool: Path) -> list[Path]:
    return sorted(spool.glob("spool-*.log")) if spool.is_dir() else []


def _set_aside(settings: Settings, segments: list[Path], report: RestoreReport) -> None:
    """Move the replaced database's spool out of the way: replayed into the restored
    database, its hits would land on whichever sites now have those ids."""
    aside = settings.data_dir / f"spool.replaced-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    aside.mkdir()
    for segment in segments:
        segment.rename(aside / segment.name)
    report.notes.append(
        f"{len(segments)} spooled hit segments of the replaced database moved to {aside}"
    )


def _restore_spool(settings: Settings, spool: Path, report: RestoreReport) -> None:
    segments = sorted(spool.glob("spool-*.log")) if spool.is_dir() else []
    if not segments:
        return
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    for segment in segments:
        if not (settings.spool_dir / segment.name).exists():
            shutil.copyfile(segment, settings.spool_dir / segment.name)
    report.notes.append(
        f"{len(segments)} spooled hit segments restored; `hitmap serve` writes them on start"
    )
