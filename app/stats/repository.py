"""All SQL behind dashboards, the public map page, the API and `hitmap stats`.

Counts come from the small ``daily_country_counts`` and ``dropped_hits``
tables; only the city list reads ``visits`` (through its site index).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.days import DayRange
from app.models import DailyCountryCount, DroppedHits, Visit
from app.sites.scope import SiteScope


def _between(column, days: DayRange):
    start, end = days.first, days.last
    clauses = []
    if start is not None:
        clauses.append(column >= start)
    if end is not None:
        clauses.append(column <= end)
    return clauses


def unique_visits(session: Session, scope: SiteScope, days: DayRange) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(DailyCountryCount.visits), 0)).where(
            DailyCountryCount.site_id == scope.site_id, *_between(DailyCountryCount.day, days)
        )
    )
    return int(total or 0)


def visits_per_day(session: Session, scope: SiteScope, days: DayRange) -> list[tuple[dt.date, int]]:
    rows = session.execute(
        select(DailyCountryCount.day, func.sum(DailyCountryCount.visits))
        .where(DailyCountryCount.site_id == scope.site_id, *_between(DailyCountryCount.day, days))
        .group_by(DailyCountryCount.day)
        .order_by(DailyCountryCount.day)
    )
    return [(day, int(n)) for day, n in rows]


def visits_per_country(
    session: Session, scope: SiteScope, days: DayRange, limit: int | None = None
) -> list[tuple[str, int]]:
    total = func.sum(DailyCountryCount.visits).label("total")
    stmt = (
        select(DailyCountryCount.country_code, total)
        .where(DailyCountryCount.site_id == scope.site_id, *_between(DailyCountryCount.day, days))
        .group_by(DailyCountryCount.country_code)
        .order_by(total.desc(), DailyCountryCount.country_code)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(code, int(n)) for code, n in session.execute(stmt)]


def dropped_per_reason(session: Session, scope: SiteScope, days: DayRange) -> list[tuple[str, int]]:
    total = func.sum(DroppedHits.hits).label("total")
    rows = session.execute(
        select(DroppedHits.reason, total)
        .where(DroppedHits.site_id == scope.site_id, *_between(DroppedHits.day, days))
        .group_by(DroppedHits.reason)
        .order_by(total.desc(), DroppedHits.reason)
    )
    return [(reason, int(n)) for reason, n in rows]


def visits_per_city(
    session: Session, scope: SiteScope, days: DayRange, limit: int
) -> list[tuple[str, str, int]]:
    count = func.count().label("total")
    rows = session.execute(
        select(Visit.country_code, Visit.city, count)
        .where(Visit.site_id == scope.site_id, Visit.city.is_not(None), *_between(Visit.day, days))
        .group_by(Visit.country_code, Visit.city)
        .order_by(count.desc(), Visit.city)
        .limit(limit)
    )
    return [(code or "", city or "", int(n)) for code, city, n in rows]
