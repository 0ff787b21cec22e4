"""Migrations on a populated database keep every row (both databases)."""

from __future__ import annotations

import datetime as dt

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import insert, text

from app.db import make_engine
from app.migrate import alembic_config, upgrade
from app.models import Account, Site
from tests.live import own_database

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def test_0008_adds_the_hostname_scheme_as_https_and_keeps_every_hostname(database_url, tmp_path):
    before = ScriptDirectory.from_config(alembic_config()).get_revision("0008").down_revision
    assert isinstance(before, str)
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine, before)
            with engine.begin() as conn:
                conn.execute(
                    insert(Account).values(
                        id=1, email="a@example.org", password_hash="x", created_at=NOW
                    )
                )
                conn.execute(
                    insert(Site).values(
                        id=1,
                        account_id=1,
                        public_key="k" * 22,
                        name="Blog",
                        domain="blog.example.org",
                        is_public=True,
                        created_at=NOW,
                    )
                )
                for host in ("blog.example.org", "docs.example.org"):
                    conn.execute(
                        text("INSERT INTO site_hostnames (site_id, hostname) VALUES (1, :h)"),
                        {"h": host},
                    )
            upgrade(engine, "0008")
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT hostname, plain_http FROM site_hostnames ORDER BY hostname")
                ).all()
            assert [(h, bool(p)) for h, p in rows] == [
                ("blog.example.org", False),
                ("docs.example.org", False),
            ]
            with engine.begin() as conn:
                command.downgrade(alembic_config(connection=conn), before)
            with engine.connect() as conn:
                names = conn.execute(text("SELECT hostname FROM site_hostnames")).scalars().all()
                assert sorted(names) == ["blog.example.org", "docs.example.org"]
                assert conn.execute(text("SELECT count(*) FROM sites")).scalar() == 1
        finally:
            engine.dispose()
