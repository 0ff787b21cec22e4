"""The map aggregate kept at ingest, range queries over it, and stored renders that
are skipped while their input is unchanged."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.clock import utc_today
from app.days import DayRange
from app.maps import repository as repo
from app.maps import service, styles
from app.maps.repository import split_window
from app.maps.service import MAP, SPANS, THUMBNAIL_KEY, Span
from app.maps.styles import Style
from app.models import LocationCount, RenderedImage, Visit
from app.places import place_key
from app.sites import authz
from tests.factories import hit, make_account, make_site
from tests.maps.helpers import LONDON, NOWHERE, PARIS, SOMEWHERE_IN_US, SYDNEY, add_visits

D = dt.date


@pytest.mark.parametrize(
    ("first", "last", "months", "spans"),
    [
        (D(2026, 11, 21), D(2026, 11, 22), [], [(D(2026, 11, 21), D(2026, 11, 22))]),
        (D(2026, 10, 24), D(2026, 11, 22), [], [(D(2026, 10, 24), D(2026, 11, 22))]),
        (
            D(2025, 11, 23),
            D(2026, 11, 22),
            [D(2025, 12, 1)] + [D(2026, m, 1) for m in range(1, 11)],
            [(D(2025, 11, 23), D(2025, 11, 30)), (D(2026, 11, 1), D(2026, 11, 22))],
        ),
        # whole February inside a 30-day window; a window ending on a month's last day
        (D(2027, 2, 1), D(2027, 3, 2), [D(2027, 2, 1)], [(D(2027, 3, 1), D(2027, 3, 2))]),
        (D(2026, 1, 1), D(2026, 12, 31), [D(2026, m, 1) for m in range(1, 13)], []),
    ],
)
def test_windows_read_whole_months_from_month_rows(first, last, months, spans):
    assert split_window(first, last) == (months, spans)


def test_a_new_visit_is_counted_per_day_month_and_all_time(ctx, client):
    site = make_site(ctx, make_account(ctx))
    assert hit(client, site.public_key).status_code == 200
    assert hit(client, site.public_key).status_code == 200  # same visitor, same day
    hit(client, site.public_key, ua="Mozilla/5.0 (Macintosh) Safari/17.0")  # another visitor
    with ctx.db.session() as session:
        lat, lon, acc = session.execute(
            select(Visit.latitude, Visit.longitude, Visit.accuracy_km).where(
                Visit.site_id == site.site_id
            )
        ).first()
        rows = session.execute(
            select(LocationCount.grain, LocationCount.period, LocationCount.visits).where(
                LocationCount.site_id == site.site_id,
                LocationCount.place == place_key(lat, lon, acc),
            )
        ).all()
    today = utc_today(ctx.clock)
    assert sorted(rows) == [
        ("a", D(1970, 1, 1), 2),
        ("d", today, 2),
        ("m", today.replace(day=1), 2),
    ]


def _brute_force(ctx, scope, window: DayRange) -> Counter:
    """The same answer straight from the raw visits, for comparison."""
    with ctx.db.session() as session:
        stmt = (
            select(Visit.latitude, Visit.longitude, Visit.accuracy_km, func.count())
            .where(Visit.site_id == scope.site_id, Visit.latitude.is_not(None))
            .group_by(Visit.latitude, Visit.longitude, Visit.accuracy_km)
        )
        if window.first is not None:
            stmt = stmt.where(Visit.day >= window.first, Visit.day <= window.last)
        return Counter({(lat, lon, acc or None): n for lat, lon, acc, n in session.execute(stmt)})


def test_each_range_reads_exactly_its_visits(ctx):
    site = make_site(ctx, make_account(ctx))
    today = utc_today(ctx.clock)  # 2026-11-22
    plan = [
        (0, LONDON, 3),
        (0, NOWHERE, 2),  # not on any map
        (1, PARIS, 2),
        (2, SYDNEY, 1),
        (10, LONDON, 4),
        (22, SOMEWHERE_IN_US, 2),  # first of the month
        (40, PARIS, 5),
        (200, SYDNEY, 6),
        (364, LONDON, 1),  # first day of the 365-day window
        (365, LONDON, 7),  # just outside it
        (400, PARIS, 1),
    ]
    for days_ago, place, count in plan:
        add_visits(ctx, site, today - dt.timedelta(days=days_ago), place, count)

    with ctx.db.session() as session:
        for span in SPANS:
            win = service.window(span, today)
            got = Counter(
                {(lat, lon, acc): n for lat, lon, acc, n in repo.locations(session, site, win)}
            )
            assert got == _brute_force(ctx, site, win), span
        stats = repo.range_stats(session, site, {"24h": today - dt.timedelta(days=1), "all": None})
    assert stats["24h"] == repo.RangeStats(7, today - dt.timedelta(days=1), today)
    assert stats["all"].visits == sum(n for _, _, n in plan)
    assert stats["all"].first_day == today - dt.timedelta(days=400)


def _render(ctx, scope, **kwargs):
    with ctx.db.session() as session:
        return service.render_site(session, ctx.clock, scope, **kwargs)


ALL_KEYS = {THUMBNAIL_KEY} | {(MAP, s.value, "1x") for s in SPANS}  # 2x: on demand


def test_renders_are_stored_and_skipped_while_the_input_is_unchanged(ctx, clock):
    site = make_site(ctx, make_account(ctx))
    start = utc_today(clock)
    add_visits(ctx, site, start - dt.timedelta(days=10), PARIS, 3)

    first = _render(ctx, site)
    assert set(first.rendered) == ALL_KEYS and not first.skipped
    with ctx.db.session() as session:
        stored = {(m.kind, m.span, m.variant): m for m in repo.image_metas(session, site)}
        png = repo.image(session, site, MAP, "all", "1x").png
    assert set(stored) == ALL_KEYS
    assert png.startswith(b"\x89PNG") and stored[(MAP, "all", "1x")].width > 0
    assert stored[(MAP, "30d", "1x")].visits == 3 and stored[(MAP, "7d", "1x")].visits == 0

    clock.advance(days=1)  # windows move, but no visit enters or leaves any of them
    again = _render(ctx, site)
    assert not again.rendered and set(again.skipped) == ALL_KEYS
    with ctx.db.session() as session:
        meta = {(m.kind, m.span): m for m in repo.image_metas(session, site)}
    assert meta[(MAP, "all")].checked_at == clock.now()  # "updated": checked as current
    assert meta[(MAP, "all")].rendered_at < clock.now()

    add_visits(ctx, site, utc_today(clock), LONDON)  # today: in every range
    changed = _render(ctx, site)
    assert set(changed.rendered) == ALL_KEYS

    clock.advance(days=2)  # today's visit leaves the 24-hour window only
    later = _render(ctx, site)
    assert set(later.rendered) == {(MAP, "24h", "1x")}


def test_a_2x_map_is_drawn_on_demand_and_follows_its_1x(ctx, clock):
    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, utc_today(clock), LONDON)
    _render(ctx, site)
    with ctx.db.session() as session:
        assert repo.image(session, site, MAP, "7d", "2x") is None
        first = service.ensure_image(session, clock, site, MAP, Span.WEEK, "2x")
        one_x = repo.image(session, site, MAP, "7d", "1x")
        assert (first.width, first.height) == (2 * one_x.width, 2 * one_x.height)
        etag = first.etag
    clock.advance(minutes=5)
    with ctx.db.session() as session:  # unchanged: served as stored
        assert service.ensure_image(session, clock, site, MAP, Span.WEEK, "2x").etag == etag
    add_visits(ctx, site, utc_today(clock), PARIS)
    clock.advance(minutes=5)
    _render(ctx, site)  # the nightly job redraws the 1x ...
    with ctx.db.session() as session:  # ... and the next request for the 2x redraws it
        again = service.ensure_image(session, clock, site, MAP, Span.WEEK, "2x")
        assert again.etag != etag and again.rendered_at == clock.now()


def test_a_new_style_redraws_only_the_thumbnail(ctx):
    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, utc_today(ctx.clock), SYDNEY)
    _render(ctx, site)
    with ctx.db.session() as session:
        assert styles.save_style(session, ctx.clock, site, Style("large", "#0000ff", "dark"))
        before = repo.image(session, site, *THUMBNAIL_KEY).etag
    report = _render(ctx, site)
    assert report.rendered == [THUMBNAIL_KEY]
    with ctx.db.session() as session:
        thumb = repo.image(session, site, *THUMBNAIL_KEY)
        assert thumb.etag != before
        assert (thumb.width, thumb.height) == (320, 160)


def test_ranges_with_the_same_input_are_drawn_once(ctx, monkeypatch):
    from app.maps.renderer import render

    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, utc_today(ctx.clock), LONDON, 2)  # every range: the same visits
    calls = []
    real = render.render_world_map

    def counting(locations, *, scale=1, updated=None):
        calls.append(scale)
        return real(locations, scale=scale, updated=updated)

    monkeypatch.setattr(render, "render_world_map", counting)
    report = _render(ctx, site, thumbnail=False)
    assert len(report.rendered) == 5
    assert calls == [1]
    with ctx.db.session() as session:
        etags = {m.etag for m in repo.image_metas(session, site) if m.variant == "1x"}
    assert len(etags) == 1


def test_a_deleted_site_takes_its_images_along(ctx):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    add_visits(ctx, site, utc_today(ctx.clock), PARIS)
    _render(ctx, site, spans=[Span.ALL])
    with ctx.db.session() as session:
        from app.sites import service as sites

        sites.delete_site(session, authz.owned_site(session, owner.id, site.public_key))
    with ctx.db.session() as session:
        left = session.scalar(
            select(func.count())
            .select_from(RenderedImage)
            .where(RenderedImage.site_id == site.site_id)
        )
        places = session.scalar(
            select(func.count())
            .select_from(LocationCount)
            .where(LocationCount.site_id == site.site_id)
        )
    assert (left, places) == (0, 0)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_migration_backfills_the_aggregate_from_stored_visits(kind, tmp_path):
    from alembic import command
    from sqlalchemy import insert

    from app.db import make_engine
    from app.migrate import alembic_config, upgrade
    from app.models import Account, Site
    from tests.live import own_database

    with own_database(kind, tmp_path) as url:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(connection=conn), "0001")
            now = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
            with engine.begin() as conn:
                conn.execute(
                    insert(Account).values(
                        id=1, email="a@example.org", password_hash="x", created_at=now
                    )
                )
                conn.execute(
                    insert(Site).values(
                        id=1,
                        account_id=1,
                        public_key="K" * 22,
                        name="n",
                        domain="d.org",
                        is_public=True,
                        created_at=now,
                    )
                )
                visits = [
                    (D(2026, 10, 30), 51.5, -0.1, 10),
                    (D(2026, 11, 2), 51.5, -0.1, 10),
                    (D(2026, 11, 2), 48.9, 2.35, None),
                    (D(2026, 11, 2), None, None, None),  # no coordinates: not on maps
                ]
                conn.execute(
                    insert(Visit),
                    [
                        {
                            "site_id": 1,
                            "day": day,
                            "visitor_hash": bytes([i]) * 16,
                            "latitude": lat,
                            "longitude": lon,
                            "accuracy_km": acc,
                        }
                        for i, (day, lat, lon, acc) in enumerate(visits)
                    ],
                )
            upgrade(engine)
            with engine.connect() as conn:
                rows = conn.execute(
                    select(
                        LocationCount.grain,
                        LocationCount.period,
                        LocationCount.place,
                        LocationCount.visits,
                    ).order_by(*LocationCount.__table__.primary_key.columns)
                ).all()
        finally:
            engine.dispose()
    paris, london = place_key(48.9, 2.35, None), place_key(51.5, -0.1, 10)
    assert [tuple(r) for r in rows] == [
        ("a", D(1970, 1, 1), paris, 1),
        ("a", D(1970, 1, 1), london, 2),
        ("d", D(2026, 10, 30), london, 1),
        ("d", D(2026, 11, 2), paris, 1),
        ("d", D(2026, 11, 2), london, 1),
        ("m", D(2026, 10, 1), london, 1),
        ("m", D(2026, 11, 1), paris, 1),
        ("m", D(2026, 11, 1), london, 1),
    ]
