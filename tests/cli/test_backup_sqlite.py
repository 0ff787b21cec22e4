"""`hitmap backup` and `hitmap restore` on the embedded SQLite default.

These need a database file that other connections see (the SQLite backup API reads
it), so each test has a data dir of its own rather than the rolled-back test
transaction.
"""

from __future__ import annotations

import io
import json
import sqlite3
import stat
import tarfile
import threading
from contextlib import closing

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from fastapi.testclient import TestClient

from app import cli
from app.clock import FixedClock
from app.context import build_context
from app.main import create_app
from app.migrate import alembic_config, upgrade
from app.settings import Settings
from tests.api.helpers import bearer, token_for
from tests.conftest import START, TEST_GEOIP
from tests.factories import make_account, make_site
from tests.maps.helpers import PARIS, add_visits
from tests.retention.helpers import add_day, days_ago

BASE_URL = "http://hitmap.test"
COUNTED = ("accounts", "sites", "visits", "heatmap_clicks", "daily_country_counts")


def _settings(data_dir) -> Settings:
    return Settings(data_dir=data_dir, geoip_path=TEST_GEOIP, base_url=BASE_URL)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """The environment of a self-hoster's shell: only what the test sets."""
    for name in ("HITMAP_DATABASE_URL", "HITMAP_SECRET_KEY", "HITMAP_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HITMAP_GEOIP_PATH", str(TEST_GEOIP))
    monkeypatch.setenv("HITMAP_BASE_URL", BASE_URL)
    return monkeypatch


@pytest.fixture
def source(env, tmp_path):
    """A running instance's context on its own SQLite file, with a generated secret key."""
    settings = _settings(tmp_path / "data")
    settings.ensure_data_dir()
    ctx = build_context(settings, clock=FixedClock(START))
    upgrade(ctx.db.engine)
    yield ctx
    ctx.db.engine.dispose()


@pytest.fixture
def site(source):
    account = make_account(source, "owner@example.org")
    scope = make_site(source, account)
    for n in (40, 3, 0):
        add_day(source, scope, days_ago(n), visits=4)
    return account, scope


def _run(*args: str, obj=None):
    return CliRunner().invoke(cli.main, list(args), obj=obj)


def _counts(path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        sql = {t: f"SELECT count(*) FROM {t}" for t in COUNTED}  # noqa: S608 - fixed names
        return {t: conn.execute(q).fetchone()[0] for t, q in sql.items()}


def _unpack(archive, into) -> dict:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return json.loads((into / "hitmap-backup.json").read_text())


def test_backup_while_hits_are_written_is_a_consistent_copy(source, site, tmp_path):
    _, scope = site
    stop = threading.Event()
    written = []

    def keep_counting() -> None:
        day = START.date()
        while not stop.is_set():
            add_visits(source, scope, day, PARIS, 25)
            written.append(25)

    writer = threading.Thread(target=keep_counting)
    writer.start()
    try:
        while len(written) < 3:  # the writer is well under way
            stop.wait(0.01)
        result = _run("backup", str(tmp_path / "b.tar.gz"), obj=source)
    finally:
        stop.set()
        writer.join()

    assert result.exit_code == 0, result.output
    archive = tmp_path / "b.tar.gz"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # it holds the secret key
    manifest = _unpack(archive, tmp_path / "out")
    copy = tmp_path / "out" / "hitmap.sqlite3"
    with closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        visits = conn.execute("SELECT count(*) FROM visits").fetchone()[0]
        counted = conn.execute("SELECT sum(visits) FROM daily_country_counts").fetchone()[0]
    # One snapshot: every visit in the copy is counted in its aggregates, no more.
    assert visits == counted and 12 + 75 <= visits <= 12 + 25 * len(written)
    assert manifest["counts"]["visits"] == visits and manifest["database"] == "sqlite"
    key = (tmp_path / "out" / "secret_key").read_text()
    assert key == (source.settings.data_dir / "secret_key").read_text()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"backup written to {archive}: schema {head}, 1 accounts, 1 sites" in result.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_restore_into_a_fresh_data_dir_serves_the_same_stats(env, source, site, tmp_path):
    account, scope = site
    token = token_for(source, account)
    stats_url = f"/api/v1/sites/{scope.public_key}/stats?from=2026-10-01&to=2026-11-22"
    with TestClient(create_app(source), base_url=BASE_URL) as client:
        before = client.get(stats_url, headers=bearer(token))
    assert before.status_code == 200 and before.json()["all_time"] == 12
    archive = tmp_path / "backup.tar.gz"
    assert _run("backup", str(archive), obj=source).exit_code == 0

    fresh = tmp_path / "fresh"
    env.setenv("HITMAP_DATA_DIR", str(fresh))
    restored = _run("restore", str(archive))

    assert restored.exit_code == 0, restored.output
    assert "1 accounts, 1 sites, 12 visits, 12 clicks" in restored.stdout
    assert f"secret key restored to {fresh / 'secret_key'}" in restored.stdout
    assert _counts(fresh / "hitmap.sqlite3") == _counts(source.settings.data_dir / "hitmap.sqlite3")
    key = (source.settings.data_dir / "secret_key").read_text()
    assert (fresh / "secret_key").read_text() == key
    ctx = build_context(_settings(fresh), clock=FixedClock(START))
    try:
        with TestClient(create_app(ctx), base_url=BASE_URL) as client:
            after = client.get(stats_url, headers=bearer(token))  # the API token too
    finally:
        ctx.db.engine.dispose()
    assert after.status_code == 200 and after.json() == before.json()

    # Now the fresh database holds data: a second restore needs --force.
    again = _run("restore", str(archive))
    assert again.exit_code == 1
    assert "already holds 1 accounts and 1 sites" in again.stderr and "--force" in again.stderr
    forced = _run("restore", str(archive), "--force")
    assert forced.exit_code == 0, forced.output
    assert _counts(fresh / "hitmap.sqlite3")["visits"] == 12


def test_restore_migrates_an_empty_data_dir_and_keeps_spooled_hits(env, source, site, tmp_path):
    spool = source.settings.spool_dir
    spool.mkdir(exist_ok=True)
    (spool / "spool-00000000000000000001-42.log").write_bytes(b"segment bytes")
    (spool / "new-spool-00000000000000000002-42.log").write_bytes(b"still being created")
    archive = tmp_path / "backup.tar.gz"
    made = _run("backup", str(archive), obj=source)
    assert made.exit_code == 0 and "1 spooled hit segments included" in made.stdout

    fresh = tmp_path / "fresh"
    env.setenv("HITMAP_DATA_DIR", str(fresh))
    assert _run("migrate").exit_code == 0  # migrated, empty: no --force needed
    restored = _run("restore", str(archive))

    assert restored.exit_code == 0, restored.output
    assert [p.name for p in (fresh / "spool").iterdir()] == ["spool-00000000000000000001-42.log"]
    assert (fresh / "spool" / "spool-00000000000000000001-42.log").read_bytes() == b"segment bytes"


def test_backup_errors_leave_nothing_behind(source, site, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = _run("backup", str(not_a_folder / "b.tar.gz"), obj=source)
    assert result.exit_code == 1
    assert f"cannot write {not_a_folder / 'b.tar.gz'}: Not a directory" in result.stderr

    missing = _run("backup", str(tmp_path / "no" / "such" / "b.tar.gz"), obj=source)
    assert missing.exit_code == 1 and "No such file or directory" in missing.stderr

    existing = tmp_path / "old.tar.gz"
    existing.write_bytes(b"an older backup")
    refused = _run("backup", str(existing), obj=source)
    assert refused.exit_code == 1 and "exists already; add --force" in refused.stderr
    assert existing.read_bytes() == b"an older backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "file", "old.tar.gz"]


def test_a_failing_backup_removes_its_partial_file(source, site, tmp_path, monkeypatch):
    from app.backup import sqlite as embedded

    def broken_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embedded.tarfile, "open", broken_disk)
    result = _run("backup", str(tmp_path / "b.tar.gz"), obj=source)

    assert result.exit_code == 1
    assert "cannot write" in result.stderr and "No space left on device" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def _tar_with(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_restore_refuses_what_is_not_a_hitmap_backup(env, tmp_path):
    env.setenv("HITMAP_DATA_DIR", str(tmp_path / "fresh"))
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    evil = tmp_path / "evil.tar.gz"
    _tar_with(evil, {"hitmap-backup.json": b"{}", "hitmap.sqlite3": b"", "../outside": b"x"})
    dump = tmp_path / "pg.dump"
    dump.write_bytes(b"PGDMP\x01\x0e\x00")

    plain = _run("restore", str(text_file))
    traversal = _run("restore", str(evil))
    pg = _run("restore", str(dump))

    assert plain.exit_code == 1 and "is not a Hitmap backup" in plain.stderr
    assert traversal.exit_code == 1 and "holds '../outside'" in traversal.stderr
    assert pg.exit_code == 1 and "is a PostgreSQL dump" in pg.stderr
    assert not (tmp_path / "outside").exists()
    assert not (tmp_path / "fresh" / "hitmap.sqlite3").exists()


def test_restore_sets_aside_the_replaced_databases_spool_only_when_forced(
    env, source, site, tmp_path
):
    """Spooled hits name sites by id: replayed into the restored database they would
    land on whichever sites have those ids there."""
    archive = tmp_path / "backup.tar.gz"
    assert _run("backup", str(archive), obj=source).exit_code == 0
    target = tmp_path / "target"
    env.setenv("HITMAP_DATA_DIR", str(target))
    assert _run("migrate").exit_code == 0
    (target / "spool").mkdir()
    stranger = target / "spool" / "spool-00000000000000000007-99.log"
    stranger.write_bytes(b"hits of the database being replaced")

    refused = _run("restore", str(archive))

    assert refused.exit_code == 1
    assert "holds 1 segments of hits not yet written" in refused.stderr
    assert _counts(target / "hitmap.sqlite3")["accounts"] == 0  # nothing changed
    assert stranger.exists()

    forced = _run("restore", str(archive), "--force")

    assert forced.exit_code == 0, forced.output
    assert not stranger.exists() and list((target / "spool").iterdir()) == []
    (aside,) = target.glob("spool.replaced-*")
    assert (aside / stranger.name).read_bytes() == b"hits of the database being replaced"
    assert f"moved to {aside}" in forced.stdout
    assert _counts(target / "hitmap.sqlite3")["visits"] == 12
