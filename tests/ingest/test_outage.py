"""The counter never answers 500 because of the database."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.context import build_context
from app.db import Database, make_engine
from app.ingest.counter_image import render_total
from app.main import create_app
from tests.factories import hit, make_account, make_site


def _unreachable(database_url: str, tmp_path) -> Database:
    if database_url.startswith("sqlite"):
        return Database(make_engine(f"sqlite:///{tmp_path}/missing/dir/hitmap.sqlite3"))
    return Database(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/hitmap"))


def test_counter_answers_an_image_when_the_database_is_unreachable(
    settings, clock, database_url, tmp_path, caplog
):
    ctx = build_context(settings, db=_unreachable(database_url, tmp_path), clock=clock)
    with TestClient(create_app(ctx), client=("127.0.0.1", 5000)) as client:
        response = hit(client, "AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")
    assert ctx.ingest.lost_hits == 1
    assert "not recorded" in caplog.text
    assert "81.2.69.142" not in caplog.text


def test_write_failure_spools_the_hit_and_replays_it_once(ctx, client, monkeypatch, caplog):
    site = make_site(ctx, make_account(ctx))
    assert hit(client, site.public_key).status_code == 200  # warms the site and image caches

    from sqlalchemy.exc import OperationalError

    from app.capture import repository

    real = repository.insert_visits

    def broken(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(repository, "insert_visits", broken)
    response = hit(client, site.public_key, ip="89.160.20.112")
    assert response.status_code == 200
    assert response.content == render_total(1)  # the cached image, not a broken one
    writer = ctx.ingest.writer
    assert writer.stats.spooled_hits == 1 and ctx.ingest.lost_hits == 0
    assert "89.160.20.112" not in caplog.text
    assert writer.replay_once() == 0  # backing off: the database failed a moment ago

    monkeypatch.setattr(repository, "insert_visits", real)
    assert writer.replay_once(now=True) == 1
    assert writer.replay_once(now=True) == 0  # nothing twice
    assert _visit_count(ctx, site) == 2
    raw = b"".join(p.read_bytes() for p in ctx.settings.spool_dir.glob("*"))
    assert b"89.160.20.112" not in raw


def _visit_count(ctx, scope) -> int:
    from sqlalchemy import func, select

    from app.models import Visit

    with ctx.db.session() as session:
        return session.scalar(
            select(func.count()).select_from(Visit).where(Visit.site_id == scope.site_id)
        )


def test_spooled_hits_never_count_for_another_site_that_got_the_same_id(ctx, client, monkeypatch):
    """SQLite gives a deleted site's id (when it was the newest) to the next site
    created; a record spooled for the first must not count for the second. The id is
    handed over here by changing the site's key, which works on both databases."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from app.capture import repository

    first = make_site(ctx, make_account(ctx))
    other = make_site(ctx, make_account(ctx), domain="other.example.org")
    assert hit(client, first.public_key).status_code == 200
    assert hit(client, other.public_key, referer="https://other.example.org/").status_code == 200
    real = repository.insert_visits

    def broken(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(repository, "insert_visits", broken)
    hit(client, first.public_key, ip="89.160.20.112")
    hit(client, other.public_key, ip="89.160.20.112", referer="https://other.example.org/")
    writer = ctx.ingest.writer
    assert writer.stats.spooled_hits == 2
    monkeypatch.setattr(repository, "insert_visits", real)
    with ctx.db.session() as session:  # the id now names a site of someone else
        session.execute(
            text("UPDATE sites SET public_key = :k WHERE id = :id"),
            {"k": "Zz" * 11, "id": first.site_id},
        )

    assert writer.replay_once(now=True) >= 1

    assert _visit_count(ctx, first) == 1  # only the hit before the outage
    assert _visit_count(ctx, other) == 2  # its spooled hit was replayed
