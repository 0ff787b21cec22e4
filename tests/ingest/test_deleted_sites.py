"""A deleted site's key stops counting at once and never counts for another tenant.

SQLite used to give the newest deleted site's id to the next site created, while the
old key still counted from every process's cache for ~30 s: hits and beacons landed
in someone else's site (issue 11). Ids are never reused now, each write checks the
key it named against the row it writes, and every process drops deleted sites from
its cache through the change log.
"""

from __future__ import annotations

import concurrent.futures

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from app.capture.batches import Ack
from app.capture.repository import DropKey, NewVisit
from app.capture.spool import Spool
from app.capture.writer import HitWriter
from app.heatmaps import repository as heatmaps_repository
from app.models import Account, DroppedHits, HeatmapClick, Site, Visit
from app.sites import service as sites_service
from tests.conftest import START
from tests.factories import csrf_from, hit, login, make_account, make_site
from tests.heatmaps.beacons import batch, click, send
from tests.ingest.test_writer import LONDON

DAY = START.date()


def _count(ctx, model, site_id: int) -> int:
    with ctx.db.session() as session:
        return int(
            session.scalar(select(func.count()).select_from(model).where(model.site_id == site_id))
        )


def _delete_site(ctx, scope) -> None:
    """Deleted behind the web process's back (another process, the CLI, SQL)."""
    with ctx.db.session() as session:
        sites_service.delete_site(session, scope)


def _rekey(ctx, scope, key: str = "Z" * 22) -> None:
    """Make the scope's id name a site of another key, as SQLite's id reuse did."""
    with ctx.db.session() as session:
        session.execute(update(Site).where(Site.id == scope.site_id).values(public_key=key))


def test_ids_of_deleted_sites_and_accounts_are_never_given_again(ctx):
    owner = make_account(ctx)
    newest = make_site(ctx, owner, domain="newest.example.org")
    _delete_site(ctx, newest)
    assert make_site(ctx, owner, domain="next.example.org").site_id > newest.site_id

    leaving = make_account(ctx)
    with ctx.db.session() as session:
        session.delete(session.get(Account, leaving.id))
    assert make_account(ctx).id > leaving.id


def test_a_queued_hit_never_lands_under_a_site_whose_id_now_names_another(ctx, tmp_path):
    site = make_site(ctx, make_account(ctx))
    writer = HitWriter(ctx.db, Spool(tmp_path / "spool"), ctx.clock)
    _rekey(ctx, site)  # between the lookup and the write, the id came to name another site
    waiter: concurrent.futures.Future[Ack] = concurrent.futures.Future()
    writer.submit(NewVisit(site, DAY, b"\x01" * 16, LONDON), waiter)
    writer.count_drop(DropKey(site, DAY, "bot"))
    assert waiter.result() is Ack.GONE
    assert _count(ctx, Visit, site.site_id) == 0
    assert _count(ctx, DroppedHits, site.site_id) == 0
    assert writer.stats.lost_hits == 0


def test_a_beacon_never_lands_under_a_site_whose_id_now_names_another(ctx, client):
    site = make_site(ctx, make_account(ctx))
    assert send(client, site.public_key, batch(click())).status_code == 204  # cached now
    assert _count(ctx, HeatmapClick, site.site_id) == 1
    _rekey(ctx, site)
    refused = REGISTRY.get_sample_value("hitmap_beacon_batches_total", {"result": "unknown_site"})
    assert send(client, site.public_key, batch(click(), click())).status_code == 404
    assert _count(ctx, HeatmapClick, site.site_id) == 1
    after = REGISTRY.get_sample_value("hitmap_beacon_batches_total", {"result": "unknown_site"})
    assert after == (refused or 0) + 1
    assert ctx.ingest.sites.peek(site.public_key) == (False, None)  # forgotten at once


def test_a_cached_key_of_a_deleted_site_answers_404_and_counts_nothing(ctx, client):
    site = make_site(ctx, make_account(ctx))
    assert hit(client, site.public_key, ip="81.2.69.142").status_code == 200  # cached now
    _delete_site(ctx, site)
    # The write finds the site gone: nothing stored, and this process forgets the key.
    assert hit(client, site.public_key, ip="81.2.69.160").status_code == 404
    assert ctx.ingest.sites.peek(site.public_key) == (False, None)
    assert hit(client, site.public_key, ip="81.2.69.161").status_code == 404
    assert _count(ctx, Visit, site.site_id) == 0


def test_the_change_log_drops_deleted_sites_from_the_cache(ctx, client):
    owner = make_account(ctx)
    gone, kept = make_site(ctx, owner), make_site(ctx, owner, domain="kept.example.org")
    ctx.site_directory.changes.poll()  # their creation (first hostnames) is in the log too
    for scope in (gone, kept):
        assert hit(client, scope.public_key, referer=f"https://{scope.domain}/").status_code == 200
    _delete_site(ctx, gone)
    assert ctx.ingest.sites.peek(gone.public_key)[0]  # still cached: nobody told us
    assert ctx.site_directory.changes.poll() >= 1
    assert ctx.ingest.sites.peek(gone.public_key) == (False, None)
    assert ctx.ingest.sites.peek(kept.public_key)[0]
    assert ctx.site_directory.changes.poll() == 0  # each change is applied once


def test_a_new_hostname_reaches_the_cache_through_the_change_log(ctx, client):
    site = make_site(ctx, make_account(ctx))
    page = "https://docs.example.org/intro"
    assert hit(client, site.public_key, referer=page).status_code == 200
    assert _count(ctx, Visit, site.site_id) == 0  # docs.example.org is not listed yet
    ctx.site_directory.changes.poll()
    with ctx.db.session() as session:
        sites_service.add_hostname(session, site, "docs.example.org")
    ctx.site_directory.changes.poll()
    assert hit(client, site.public_key, referer=page, ip="81.2.69.143").status_code == 200
    assert _count(ctx, Visit, site.site_id) == 1


def test_deleting_an_account_forgets_its_sites_in_this_process_at_once(ctx, client):
    owner = make_account(ctx, "leaving@example.org")
    site = make_site(ctx, owner)
    ctx.site_directory.changes.poll()
    assert hit(client, site.public_key).status_code == 200
    login(client, "leaving@example.org")
    page = client.get("/account", headers={"accept": "text/html"})
    response = client.post(
        "/account/delete",
        data={"password": "correct horse battery staple", "csrf_token": csrf_from(page.text)},
        headers={"accept": "text/html"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert ctx.ingest.sites.peek(site.public_key) == (False, None)
    assert hit(client, site.public_key, ip="81.2.69.150").status_code == 404


def _discarded(kind: str) -> float:
    return REGISTRY.get_sample_value("hitmap_spooled_discarded_total", {"kind": kind}) or 0.0


def test_spooled_hits_and_beacons_of_a_deleted_site_are_discarded_and_counted(
    ctx, client, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    site = make_site(ctx, make_account(ctx))
    assert hit(client, site.public_key).status_code == 200
    hits_before, clicks_before = _discarded("hits"), _discarded("clicks")

    def broken(*args, **kwargs):
        raise OperationalError("INSERT …", {}, Exception("server closed the connection"))

    monkeypatch.setattr(heatmaps_repository, "insert_clicks", broken)
    assert send(client, site.public_key, batch(click())).status_code == 204  # spooled
    assert ctx.ingest.writer.database_down
    assert hit(client, site.public_key, ip="81.2.69.170").status_code == 200  # spooled
    monkeypatch.undo()
    _delete_site(ctx, site)
    assert ctx.ingest.writer.replay_once(now=True) == 2
    assert _discarded("hits") == hits_before + 1
    assert _discarded("clicks") == clicks_before + 1
    assert _count(ctx, Visit, site.site_id) == 0
    assert _count(ctx, HeatmapClick, site.site_id) == 0


def test_a_change_committed_after_a_later_one_is_still_seen(database_url, tmp_path):
    """PostgreSQL hands out seqs at insert and shows rows at commit: seq 1 may appear
    after seq 2 was read. (SQLite commits one writer at a time, in seq order.)"""
    from sqlalchemy import text

    from app.db import Database, make_engine
    from app.migrate import upgrade
    from app.sites.directory import SiteChanges
    from tests.live import own_database

    if not database_url.startswith("postgresql"):
        pytest.skip("only PostgreSQL commits seqs out of order")
    insert = text("INSERT INTO site_changes (public_key) VALUES (:k)")
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        forgotten: list[str] = []
        changes = SiteChanges(
            Database(engine), lambda keys: forgotten.extend(sorted(keys)), lambda: None
        )
        try:
            with engine.connect() as slow:
                slow.execute(insert, {"k": "slow"})  # seq 1, not committed yet
                with engine.begin() as fast:
                    fast.execute(insert, {"k": "fast"})  # seq 2
                assert changes.poll() == 1 and forgotten == ["fast"]
                slow.commit()
            assert changes.poll() == 1 and forgotten == ["fast", "slow"]
            assert changes.poll() == 0
        finally:
            engine.dispose()


def test_a_process_behind_the_pruned_log_reloads_every_site(ctx, monkeypatch):
    from app.sites import directory

    monkeypatch.setattr(directory, "KEPT_CHANGES", 2)
    owner = make_account(ctx)
    sites = [make_site(ctx, owner, domain=f"s{n}.example.org") for n in range(4)]
    ctx.site_directory.changes.poll()  # up to date: four changes (the first hostnames)
    for scope in sites[1:]:
        _delete_site(ctx, scope)
    with ctx.db.session() as session:
        from app.sites import repository as sites_repository

        assert sites_repository.prune_changes(session, keep=2) > 0
    reloaded: list[bool] = []
    monkeypatch.setattr(ctx.site_directory.changes, "_reload_all", lambda: reloaded.append(True))
    ctx.site_directory.changes._high -= 1  # as if it had missed the oldest pruned change
    ctx.site_directory.changes.poll()
    assert reloaded == [True]
    assert ctx.site_directory.changes.poll() == 0  # and carries on from the newest change
