"""/healthz and /readyz through HTTP, on both databases, including every failing check."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time

from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from app.context import build_context
from app.db import Database, make_engine
from app.main import create_app
from app.migrate import alembic_config, upgrade
from app.models import Visit
from app.ops import service
from tests.live import own_database
from tests.ops.helpers import unreachable

SCRIPT = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPT.get_current_head()


def _client(ctx) -> TestClient:
    return TestClient(create_app(ctx), base_url="http://hitmap.test", client=("127.0.0.1", 5000))


def test_healthz_answers_without_asking_the_database(settings, clock, database_url, tmp_path):
    ctx = build_context(settings, db=unreachable(database_url, tmp_path), clock=clock)
    with _client(ctx) as client:
        response = client.get("/healthz")
        head = client.head("/healthz")
    assert response.status_code == 200 and head.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers  # no session, no CSRF cookie


def test_readyz_is_200_when_every_check_passes(ctx, client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["failed"] == []
    assert body["checks"]["migrations"] == {"ok": True, "detail": f"at {HEAD}"}
    assert body["checks"]["database"]["ok"] and body["checks"]["geoip"]["ok"]
    assert "set-cookie" not in response.headers


def test_probes_and_scrapes_are_not_visits(ctx, client):
    for path in ("/healthz", "/readyz", "/metrics", "/healthz"):
        assert client.get(path, headers={"referer": "https://blog.example.org/"}).status_code == 200
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Visit)) == 0
    assert client.post("/readyz").status_code == 405


def test_readyz_is_503_when_the_database_is_unreachable(settings, clock, database_url, tmp_path):
    ctx = build_context(settings, db=unreachable(database_url, tmp_path), clock=clock)
    with _client(ctx) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["failed"] == ["database", "migrations"]
    assert "HITMAP_DATABASE_URL" in body["checks"]["database"]["detail"]
    assert body["checks"]["geoip"]["ok"]
    # Which database, or why the driver failed, is for the logs of the operator, not the probe.
    assert "127.0.0.1:1" not in response.text and "missing/dir" not in response.text


def test_readyz_follows_the_schema_revision(settings, clock, database_url, tmp_path):
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        try:
            ctx = build_context(settings, db=Database(engine), clock=clock)
            with _client(ctx) as client:
                empty = client.get("/readyz")
                assert empty.status_code == 503
                assert empty.json()["failed"] == ["migrations"]
                assert "not migrated; run `hitmap migrate`" in empty.text

                previous = SCRIPT.get_revision(HEAD).down_revision
                upgrade(engine, previous)
                old = client.get("/readyz").json()
                assert old["failed"] == ["migrations"]
                assert old["checks"]["migrations"]["detail"] == (
                    f"the database is at {previous}, this Hitmap needs {HEAD}; run `hitmap migrate`"
                )

                upgrade(engine)
                assert client.get("/readyz").status_code == 200

                with engine.begin() as conn:
                    conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
                newer = client.get("/readyz")
                assert newer.status_code == 503
                assert "does not know" in newer.json()["checks"]["migrations"]["detail"]
        finally:
            engine.dispose()


def test_readyz_is_503_when_the_geoip_database_is_not_loaded(ctx, client):
    ctx.geo.close()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["geoip"]
    assert "HITMAP_GEOIP_PATH" in response.json()["checks"]["geoip"]["detail"]


def test_readyz_answers_in_time_when_the_database_hangs(
    settings, clock, database_url, tmp_path, monkeypatch
):
    """SQLite: another connection holds an exclusive lock. PostgreSQL: a server that
    accepts the connection and never says a word."""
    monkeypatch.setattr(service, "READY_TIMEOUT_SECONDS", 0.5)
    checks_started = []
    real_checks = service.ReadinessService.database_checks

    def counted_checks(self):
        checks_started.append(time.monotonic())
        return real_checks(self)

    monkeypatch.setattr(service.ReadinessService, "database_checks", counted_checks)
    with _hanging_database(database_url, tmp_path) as (db, release):
        ctx = build_context(settings, db=db, clock=clock)
        with _client(ctx) as client:
            for _ in range(2):  # the second waits on the first's check, not a new one
                started = time.monotonic()
                response = client.get("/readyz")
                assert time.monotonic() - started < 1.5
                assert response.status_code == 503
                assert response.json()["checks"]["database"]["detail"].startswith(
                    "no answer within 0.5 s"
                )
            assert len(checks_started) == 1  # no thread piles up behind a hung database
            release()
            _wait_for(lambda: client.get("/readyz").status_code == 200, database_url)


def _wait_for(ready, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        return  # the silent server is gone; there is no database to become ready
    deadline = time.monotonic() + 10
    while not ready():
        assert time.monotonic() < deadline, "readiness did not come back"
        time.sleep(0.1)


@contextlib.contextmanager
def _hanging_database(database_url: str, tmp_path):
    """A Database that does not answer, and the function that lets it go."""
    if database_url.startswith("sqlite"):
        path = tmp_path / "locked.sqlite3"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        # Readiness only reads (a snapshot, which a writer does not block): an
        # exclusive-mode lock, which blocks readers too, until its connection closes.
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("PRAGMA locking_mode=EXCLUSIVE")
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield Database(engine), lock.close
        finally:
            lock.close()
            engine.dispose()
        return
    silent = socket.create_server(("127.0.0.1", 0))  # listens, never accepts, never speaks
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/x")
    try:
        yield Database(engine), silent.close
    finally:
        silent.close()
        engine.dispose()


def test_readyz_on_sqlite_does_not_wait_for_the_write_lock(settings, clock, tmp_path):
    """A long write (a big site's deletion, a restore) holds SQLite's one write lock:
    readiness reads from a snapshot and stays 200."""
    path = tmp_path / "busy.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        ctx = build_context(settings, db=Database(engine), clock=clock)
        with _client(ctx) as client:
            started = time.monotonic()
            response = client.get("/readyz")
        assert response.status_code == 200, response.json()
        assert time.monotonic() - started < 1.0
    finally:
        writer.close()
        engine.dispose()
