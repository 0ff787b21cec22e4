"""Two `hitmap serve` processes on one database: a site deleted anywhere stops counting
in both within 2 s, and its old key never counts for the next tenant's site."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from sqlalchemy import func, select

from app.accounts import service as accounts_service
from app.context import build_context
from app.db import Database, make_engine
from app.migrate import upgrade
from app.models import Visit
from app.settings import Settings
from app.sites import service as sites_service
from tests.conftest import TEST_GEOIP, TEST_SECRET
from tests.factories import make_account, make_site
from tests.live import ServedProcess, free_port, own_database, serve_env

DEADLINE_SECONDS = 2.0


def _status(server: ServedProcess, key: str, n: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/c/{key}.png",
        headers={
            "User-Agent": f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{n}.0",
            "X-Forwarded-For": f"81.2.69.{n % 250 + 1}",
            "Referer": "https://blog.example.org/post/1",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (http only)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _seconds_until_404(servers: list[ServedProcess], key: str) -> float:
    """Each process is asked by the visitor it has already counted today: the answer
    comes from its memory without a write, so only its site cache can say 404."""
    start = time.monotonic()
    pending = set(range(len(servers)))
    while pending:
        assert time.monotonic() - start < 10, "a process still counts a deleted site"
        for i in list(pending):
            if _status(servers[i], key, i) == 404:
                pending.discard(i)
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.parametrize("delete", ["site", "account"])
def test_a_deleted_site_stops_counting_in_every_process(database_url, tmp_path, delete):
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        data = tmp_path / "data"
        settings = Settings(data_dir=data, secret_key=TEST_SECRET, geoip_path=TEST_GEOIP)
        ctx = build_context(settings, db=Database(engine))
        owner = make_account(ctx)
        old = make_site(ctx, owner)
        servers: list[ServedProcess] = []
        try:
            for i in range(2):
                port = free_port()
                log = tmp_path / f"serve-{i}.log"
                servers.append(ServedProcess(serve_env(url, data, port), port, log))
            for i, server in enumerate(servers):  # both processes have the site cached
                assert _status(server, old.public_key, i) == 200
            with ctx.db.session() as session:  # neither process is told
                if delete == "site":
                    sites_service.delete_site(session, old)
                else:
                    accounts_service.delete_account(
                        session, owner, password="correct horse battery staple"
                    )
            assert _seconds_until_404(servers, old.public_key) < DEADLINE_SECONDS
            new = make_site(ctx, make_account(ctx))
            assert new.site_id != old.site_id
            for i, server in enumerate(servers):
                assert _status(server, old.public_key, 200 + i) == 404
        finally:
            for server in servers:
                server.stop()
        with ctx.db.session() as session:
            stored = session.scalar(
                select(func.count()).select_from(Visit).where(Visit.site_id == new.site_id)
            )
        assert stored == 0
        for server in servers:
            assert "Traceback" not in server.log.read_text(errors="replace")
        engine.dispose()
