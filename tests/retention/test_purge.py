"""The retention job: old raw rows go, everything else stays (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging

import pytest

from app.retention import repository as repo
from app.retention import service, tasks
from app.sites import authz
from app.sites import service as sites
from tests.factories import make_account, make_site
from tests.retention.helpers import NIGHT, add_day, aggregates, days_ago, raw_days


@pytest.fixture
def default_30(ctx):
    ctx.settings.retention_days = 30
    return ctx


def _set(ctx, scope, days):
    with ctx.db.session() as session:
        service.set_choice(session, scope, days)


def test_old_rows_go_recent_and_other_sites_stay_aggregates_unchanged(default_30):
    ctx = default_30
    account = make_account(ctx)
    site = make_site(ctx, account)
    other = make_site(ctx, make_account(ctx), domain="other.example.net")
    for n in (45, 31, 30, 1, 0):
        add_day(ctx, site, days_ago(n), visits=2)
        add_day(ctx, other, days_ago(n))
    before, others_before = aggregates(ctx, site), raw_days(ctx, other)

    result = tasks.purge_site_job(ctx, site.site_id, NIGHT, pause=0)

    assert (result.status, result.before) == ("purged", days_ago(30))
    assert (result.visits, result.clicks) == (4, 4)  # 45 and 31 days old, 2 each
    kept = {days_ago(n): 2 for n in (30, 1, 0)}
    assert raw_days(ctx, site) == (kept, kept)
    assert aggregates(ctx, site) == before  # the total and every map stay as they were
    assert aggregates(ctx, site)["total"] == 10
    assert raw_days(ctx, other) == others_before  # another site's night is its own job


def test_running_twice_deletes_nothing_more(default_30):
    ctx = default_30
    site = make_site(ctx, make_account(ctx))
    for n in (40, 10):
        add_day(ctx, site, days_ago(n))
    first = tasks.purge_site_job(ctx, site.site_id, NIGHT, pause=0)
    after_first = raw_days(ctx, site), aggregates(ctx, site)

    again = tasks.purge_site_job(ctx, site.site_id, NIGHT, pause=0)

    assert (first.visits, first.clicks) == (1, 1)
    assert (again.status, again.visits, again.clicks) == ("purged", 0, 0)
    assert (raw_days(ctx, site), aggregates(ctx, site)) == after_first


def test_the_site_choice_beats_the_instance_default(default_30):
    ctx = default_30
    account = make_account(ctx)
    short, forever, default = (make_site(ctx, account, domain=f"{n}.example.org") for n in "sfd")
    _set(ctx, short, 7)
    _set(ctx, forever, service.FOREVER)
    for scope in (short, forever, default):
        for n in (400, 20, 8, 7):
            add_day(ctx, scope, days_ago(n))

    results = {
        s.site_id: tasks.purge_site_job(ctx, s.site_id, NIGHT, pause=0)
        for s in (short, forever, default)
    }

    assert results[forever.site_id].status == "kept"
    assert raw_days(ctx, short)[0] == {days_ago(7): 1}
    assert raw_days(ctx, forever)[0] == {days_ago(n): 1 for n in (400, 20, 8, 7)}
    assert raw_days(ctx, default)[0] == {days_ago(n): 1 for n in (20, 8, 7)}
    with ctx.db.session() as session:
        # The nightly fan-out skips the site that keeps everything.
        assert repo.sites_with_retention(session, 30) == [short.site_id, default.site_id]
        assert repo.sites_with_retention(session, 0) == [short.site_id]


def test_keep_forever_by_default(ctx):
    site = make_site(ctx, make_account(ctx))
    add_day(ctx, site, days_ago(3000))
    assert ctx.settings.retention_days == 0
    assert tasks.purge_site_job(ctx, site.site_id, NIGHT).status == "kept"
    assert raw_days(ctx, site)[0] == {days_ago(3000): 1}


def test_a_deleted_sites_job_discards_itself(default_30, caplog):
    ctx = default_30
    account = make_account(ctx)
    site = make_site(ctx, account)
    add_day(ctx, site, days_ago(40))
    with ctx.db.session() as session:
        sites.delete_site(session, authz.owned_site(session, account.id, site.public_key))
    caplog.set_level(logging.INFO, logger="hitmap.retention")

    result = tasks.purge_site_job(ctx, site.site_id, NIGHT)

    assert result == tasks.PurgeResult(site.site_id, "discarded")
    assert f"site {site.site_id} no longer exists; retention job discarded" in caplog.text


def test_deletes_in_bounded_batches_each_committed(default_30, monkeypatch):
    ctx = default_30
    site = make_site(ctx, make_account(ctx))
    add_day(ctx, site, days_ago(50), visits=5)
    add_day(ctx, site, days_ago(5))
    sizes: list[tuple[str, int]] = []
    for name in ("delete_old_visits", "delete_old_clicks"):
        real = getattr(repo, name)

        def counted(session, scope, before, limit, real=real, name=name):
            deleted = real(session, scope, before, limit)
            sizes.append((name, deleted))
            return deleted

        monkeypatch.setattr(repo, name, counted)

    result = tasks.purge_site_job(ctx, site.site_id, NIGHT, batch=2, pause=0)

    assert (result.visits, result.clicks) == (5, 5)
    assert [n for _, n in sizes] == [2, 2, 1, 0, 2, 2, 1, 0]
    assert raw_days(ctx, site) == ({days_ago(5): 1}, {days_ago(5): 1})


def test_cutoff_rule():
    assert service.cutoff(NIGHT, 30) == days_ago(30)
    assert service.cutoff(NIGHT, 1) == days_ago(1)  # yesterday (the 24 h map) is kept
    assert service.cutoff(NIGHT, service.FOREVER) is None
