"""Map jobs as plain functions, and the nightly schedule with an injected clock.

The in-process engine (``hitmap serve`` on SQLite) is driven here through
``PeriodicScheduler.tick``; it runs the same functions on PostgreSQL too, so both
databases are covered. Procrastinate's engine is in tests/workers/test_nightly_procrastinate.py.
"""

from __future__ import annotations

import datetime as dt

import pytest

from app.jobs import nightly
from app.jobs.schedule import NIGHTLY_MAX_DELAY as MAX_DELAY
from app.jobs.schedule import nightly as nightly_at
from app.maps import repository as repo
from app.maps.service import MAP, THUMBNAIL_KEY
from app.maps.tasks import NIGHT, NIGHTLY, render_site_job
from app.sites import authz
from app.sites import service as sites
from tests.factories import make_account, make_site
from tests.maps.helpers import LONDON, PARIS, SYDNEY, add_visits
from workers.scheduler import PeriodicScheduler

UTC = dt.UTC
AT = dt.time(3, 0)


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def test_the_schedule_is_a_utc_time_of_day():
    night = nightly_at(AT)
    assert night.previous(at(23, 2, 59)) == at(22, 3)
    assert night.previous(at(23, 3)) == at(23, 3)
    assert night.next(at(23, 3)) == at(24, 3)
    other_zone = dt.datetime(2026, 11, 23, 4, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert night.previous(other_zone) == at(22, 3)  # 02:30 UTC
    assert night.due(at(23, 2, 59)) is None  # yesterday's start is 24 h old
    assert night.due(at(23, 3, 0, 1)) == at(23, 3)
    assert night.due(at(23, 3) + MAX_DELAY) == at(23, 3)
    assert night.due(at(23, 3) + MAX_DELAY + dt.timedelta(seconds=1)) is None
    assert nightly_at(dt.time(3, 0)).cron() == "0 3 * * *"
    assert nightly_at(dt.time(23, 45)).cron() == "45 23 * * *"


def test_a_job_for_a_deleted_site_discards_itself(ctx, caplog):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    with ctx.db.session() as session:
        sites.delete_site(session, authz.owned_site(session, owner.id, site.public_key))
    caplog.set_level("INFO", logger="hitmap.maps.jobs")
    result = render_site_job(ctx, site.site_id)
    assert result.status == "discarded" and result.rendered == 0
    assert f"site {site.site_id} no longer exists" in caplog.text
    assert render_site_job(ctx, 10**9).status == "discarded"  # never existed


def test_a_job_is_idempotent(ctx):
    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, ctx.clock.now().date(), LONDON)
    first = render_site_job(ctx, site.site_id)
    assert (first.status, first.rendered) == ("rendered", 6)
    again = render_site_job(ctx, site.site_id)
    assert (again.status, again.rendered, again.skipped) == ("unchanged", 0, 6)


def _rendered_at(ctx, scope) -> dict:
    with ctx.db.session() as session:
        return {(m.kind, m.span): m.rendered_at for m in repo.image_metas(session, scope)}


@pytest.fixture
def three_sites(ctx, clock):
    """A and B have visits from ten days ago (in 30 days, 365 days and all time), C too."""
    clock.set(at(22, 12))
    account = make_account(ctx)
    a, b, c = (make_site(ctx, account, domain=f"{n}.example.org") for n in "abc")
    ten_days_ago = dt.date(2026, 11, 12)
    add_visits(ctx, a, ten_days_ago, LONDON, 2)
    add_visits(ctx, b, ten_days_ago, PARIS, 3)
    add_visits(ctx, c, ten_days_ago, SYDNEY)
    return account, a, b, c


def test_one_run_per_night_that_redraws_only_changed_sites(ctx, clock, three_sites):
    account, a, b, c = three_sites
    scheduler = PeriodicScheduler(ctx)
    assert ctx.settings.nightly_at == AT

    clock.set(at(23, 2, 59))
    assert NIGHTLY.name not in scheduler.tick()  # not yet

    clock.set(at(23, 3, 0, 30))
    first = scheduler.tick()[NIGHTLY.name]
    assert isinstance(first, nightly.NightReport) and first.night == dt.date(2026, 11, 23)
    assert (first.sites, first.count("rendered"), first.count("unchanged"), first.failed) == (
        3,
        3,
        0,
        0,
    )
    night_one = _rendered_at(ctx, a)
    assert set(night_one) == {THUMBNAIL_KEY[:2]} | {
        (MAP, s) for s in ("24h", "7d", "30d", "365d", "all")
    }

    clock.set(at(23, 3, 10))
    assert NIGHTLY.name not in scheduler.tick()  # the same night: nothing
    clock.set(at(23, 3, 20))
    # A restarted server: claimed already.
    assert PeriodicScheduler(ctx).tick()[NIGHTLY.name] is None
    with ctx.db.session() as session:
        run = repo.night_run(session, dt.date(2026, 11, 23))
        assert run is not None and run.sites == 3 and run.finished_at == at(23, 3, 0, 30)

    clock.set(at(23, 15))
    add_visits(ctx, a, dt.date(2026, 11, 23), PARIS)  # only A gets a visitor that day

    clock.set(at(24, 3, 0, 5))
    second = scheduler.tick()[NIGHTLY.name]
    assert isinstance(second, nightly.NightReport) and second.night == dt.date(2026, 11, 24)
    assert (second.count("rendered"), second.count("unchanged")) == (1, 2)
    assert all(when == at(24, 3, 0, 5) for when in _rendered_at(ctx, a).values())
    assert _rendered_at(ctx, b) == {k: at(23, 3, 0, 30) for k in night_one}  # untouched


def test_a_site_deleted_during_the_night_is_discarded(ctx, clock, three_sites):
    account, a, b, c = three_sites

    def delete_c_after_the_first_site(result):
        if result.site_id == a.site_id:
            with ctx.db.session() as session:
                sites.delete_site(session, authz.owned_site(session, account.id, c.public_key))

    clock.set(at(23, 3, 1))
    report = nightly.run_in_process(
        ctx, NIGHT, dt.date(2026, 11, 23), progress=delete_c_after_the_first_site
    )
    assert report is not None
    counts = (report.count("rendered"), report.count("discarded"), report.failed)
    assert (report.sites, *counts) == (3, 2, 1, 0)
    assert _rendered_at(ctx, c) == {}


def test_a_failing_site_does_not_stop_the_night(ctx, clock, three_sites, monkeypatch):
    account, a, b, c = three_sites
    from app.maps import service

    real = service.draw_site

    def broken_for_b(session, **kwargs):
        if kwargs["scope"].site_id == b.site_id:
            raise RuntimeError("renderer bug")
        return real(session, **kwargs)

    monkeypatch.setattr(service, "draw_site", broken_for_b)
    clock.set(at(23, 3, 1))
    report = nightly.run_in_process(ctx, NIGHT, dt.date(2026, 11, 23))
    assert report is not None and (report.count("rendered"), report.failed) == (2, 1)


def test_hitmap_render_shows_progress_and_skips_unchanged(ctx):
    from click.testing import CliRunner

    from app import cli

    account = make_account(ctx)
    first, second = (make_site(ctx, account, domain=f"{n}.example.org") for n in "ab")
    add_visits(ctx, first, ctx.clock.now().date(), LONDON)
    runner = CliRunner()

    one = runner.invoke(cli.main, ["render", "--site", first.public_key], obj=ctx)
    assert one.exit_code == 0, one.output
    assert "1 site: 1 redrawn (6 images), 0 unchanged, 0 gone, 0 failed" in one.output
    assert "Rendering" in one.stderr  # the progress bar

    every = runner.invoke(cli.main, ["render", "--all"], obj=ctx)
    assert "2 sites: 1 redrawn (6 images), 1 unchanged" in every.output

    week = runner.invoke(cli.main, ["render", "--all", "--range", "7d", "--force"], obj=ctx)
    assert "2 sites: 2 redrawn (2 images)" in week.output

    for args in ([], ["--site", first.public_key, "--all"]):
        refused = runner.invoke(cli.main, ["render", *args], obj=ctx)
        assert refused.exit_code == 2 and "give either --site KEY or --all" in refused.output
    unknown = runner.invoke(cli.main, ["render", "--site", "AAAAAAAAAAAAAAAAAAAAAA"], obj=ctx)
    assert unknown.exit_code == 1 and "no such site" in unknown.output


def test_hitmap_worker_needs_postgresql(ctx):
    from click.testing import CliRunner

    from app import cli

    if ctx.db.dialect != "sqlite":
        pytest.skip("the PostgreSQL worker runs in tests/workers/test_nightly_procrastinate.py")
    refused = CliRunner().invoke(cli.main, ["worker"], obj=ctx)
    assert refused.exit_code == 1 and "hitmap worker needs PostgreSQL" in refused.output


def test_on_sqlite_a_render_draws_without_holding_the_write_lock(settings, clock, tmp_path):
    """The counter's writer must not wait for a map being drawn: SQLite has one write
    lock for the whole database, and a render job used to hold it while drawing."""
    from app.context import build_context
    from app.db import Database, make_engine
    from app.maps import service
    from app.migrate import upgrade
    from tests.databases import try_sqlite_write_lock

    path = tmp_path / "own.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    own = build_context(settings, db=Database(engine), clock=clock)
    site = make_site(own, make_account(own))
    add_visits(own, site, clock.now().date(), LONDON)

    attempts: list[str] = []
    real = service.draw_site

    def draw_while_another_connection_writes(session, **kwargs):
        attempts.append(try_sqlite_write_lock(path))
        return real(session, **kwargs)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(service, "draw_site", draw_while_another_connection_writes)
            result = render_site_job(own, site.site_id)
        assert attempts == ["took the write lock"]
        assert result.status == "rendered" and result.rendered == 6
        with own.db.session() as session:
            scope = authz.site_for_job(session, site.site_id)
            assert scope is not None
            assert len(repo.image_metas(session, scope)) == 6
    finally:
        engine.dispose()


def test_a_render_job_reports_its_render_times_to_metrics(ctx):
    from prometheus_client import REGISTRY

    def rendered(kind: str, span: str) -> float:
        labels = {"kind": kind, "range": span}
        return REGISTRY.get_sample_value("hitmap_render_seconds_count", labels) or 0.0

    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, ctx.clock.now().date(), LONDON)
    before = {(k, s): rendered(k, s) for k, s in [("thumbnail", "all"), ("map", "24h")]}

    result = render_site_job(ctx, site.site_id)

    assert result.rendered == 6
    assert rendered("thumbnail", "all") == before[("thumbnail", "all")] + 1
    # Every range holds the one visit: they share one drawing, timed once.
    assert rendered("map", "24h") == before[("map", "24h")] + 1


def test_a_render_that_began_before_a_newer_one_never_overwrites_it(ctx, clock):
    """On SQLite two processes draw outside any lock: a nightly job that read the old
    style must not store its thumbnail over the one drawn after a style change."""
    from app.maps import service, styles

    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, clock.now().date(), LONDON)
    with ctx.db.session() as session:
        early = service.draw_site(session, clock, site)  # the old style, at the start
    clock.set(clock.now() + dt.timedelta(minutes=1))
    with ctx.db.session() as session:
        styles.save_style(
            session, clock, site, styles.parse_style("large", "#0000ff", "dark", "on")
        )
    assert render_site_job(ctx, site.site_id).rendered >= 1
    with ctx.db.session() as session:
        newer = {m.kind: m.etag for m in repo.image_metas(session, site)}

    with ctx.db.session() as session:
        service.store_drawn(session, site, early)  # the early job stores last

    with ctx.db.session() as session:
        kept = {m.kind: m.etag for m in repo.image_metas(session, site)}
    assert kept == newer
    early_thumbnail = next(i for i in early.images if i.kind == service.THUMBNAIL)
    assert kept[service.THUMBNAIL] != early_thumbnail.etag
