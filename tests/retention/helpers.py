"""Helpers for the retention tests: old rows through the real repositories, and
snapshots of what must survive them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from app.context import AppContext
from app.heatmaps import repository as heatmap_repo
from app.heatmaps.schemas import Click
from app.ingest import repository as ingest_repo
from app.models import DailyCountryCount, DroppedHits, HeatmapClick, LocationCount, Visit
from app.sites.scope import SiteScope
from tests.maps.helpers import LONDON, add_visits

NIGHT = dt.date(2026, 11, 23)


def days_ago(n: int) -> dt.date:
    return NIGHT - dt.timedelta(days=n)


def add_clicks(ctx: AppContext, scope: SiteScope, day: dt.date, count: int = 1) -> None:
    click = Click(640, 300, 1400, 3000, 1400, 1.0, "#buy", 0.25, 0.5, "desktop")
    with ctx.db.session() as session:
        heatmap_repo.insert_clicks(session, scope, day, "/pricing", [click] * count)


def add_day(ctx: AppContext, scope: SiteScope, day: dt.date, visits: int = 1) -> None:
    """``visits`` visitors (from London) and as many clicks on ``day``."""
    add_visits(ctx, scope, day, LONDON, visits)
    add_clicks(ctx, scope, day, visits)


def raw_days(ctx: AppContext, scope: SiteScope) -> tuple[dict[dt.date, int], dict[dt.date, int]]:
    """(visits per day, clicks per day) still stored for the site."""
    with ctx.db.session() as session:
        visits = session.execute(
            select(Visit.day, func.count())
            .where(Visit.site_id == scope.site_id)
            .group_by(Visit.day)
        )
        clicks = session.execute(
            select(HeatmapClick.day, func.count())
            .where(HeatmapClick.site_id == scope.site_id)
            .group_by(HeatmapClick.day)
        )
        return {d: int(n) for d, n in visits}, {d: int(n) for d, n in clicks}


def aggregates(ctx: AppContext, scope: SiteScope) -> dict[str, object]:
    """Every count derived from the raw rows, and the counter's total."""
    with ctx.db.session() as session:
        tables: dict[str, object] = {}
        for model in (DailyCountryCount, LocationCount, DroppedHits):
            rows = session.scalars(select(model).where(model.site_id == scope.site_id)).all()
            tables[model.__tablename__] = sorted(
                tuple(getattr(r, c.key) for c in model.__table__.columns) for r in rows
            )
        tables["total"] = ingest_repo.total_visits(session, scope)
    return tables
