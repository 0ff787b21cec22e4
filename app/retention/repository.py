"""All SQL of the retention: the sites' choices, batched deletes, the nightly claim."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from app.models import HeatmapClick, RetentionRun, Site, Visit
from app.sites.scope import SiteScope


def retention_of(session: Session, scope: SiteScope) -> int | None:
    return session.scalar(select(Site.retention_days).where(Site.id == scope.site_id))


def set_retention(session: Session, scope: SiteScope, days: int | None) -> None:
    session.execute(update(Site).where(Site.id == scope.site_id).values(retention_days=days))


def sites_with_retention(session: Session, default_days: int) -> list[int]:
    """Ids of the sites whose raw rows expire: their own days > 0, or the default's."""
    own = Site.retention_days > 0
    condition = or_(own, Site.retention_days.is_(None)) if default_days > 0 else own
    return list(session.scalars(select(Site.id).where(condition).order_by(Site.id)))


# One bounded statement per batch, by physical row id: a TID scan on PostgreSQL (an
# IN (subquery) there may be planned as a hash join over the whole table) and rowid
# lookups on SQLite. Visits and clicks are never updated, so the ids stay put. The
# outer WHERE repeats site and day: a ctid is unique only within one physical table,
# so on a day-partitioned table (infra/SCALING.md) it alone could name another site's
# row; with the filter it is a TID scan with a filter, and routable by site_id.
_BATCH_SQL = {
    "postgresql": "DELETE FROM {table} WHERE site_id = :site AND day < :before "
    "AND ctid = ANY(ARRAY("
    "SELECT ctid FROM {table} WHERE site_id = :site AND day < :before LIMIT :limit))",
    "sqlite": "DELETE FROM {table} WHERE site_id = :site AND day < :before AND rowid IN ("
    "SELECT rowid FROM {table} WHERE site_id = :site AND day < :before LIMIT :limit)",
}


def _delete_batch(
    session: Session, table: str, scope: SiteScope, before: dt.date, limit: int
) -> int:
    sql = _BATCH_SQL[session.get_bind().dialect.name].format(table=table)
    result = session.execute(text(sql), {"site": scope.site_id, "before": before, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]


def delete_old_visits(session: Session, scope: SiteScope, before: dt.date, limit: int) -> int:
    """Delete at most ``limit`` of the site's visits of days before ``before``
    (found through the primary key, which starts with site and day)."""
    return _delete_batch(session, Visit.__tablename__, scope, before, limit)


def delete_old_clicks(session: Session, scope: SiteScope, before: dt.date, limit: int) -> int:
    """Delete at most ``limit`` of the site's clicks of days before ``before``
    (found through the index on site and day)."""
    return _delete_batch(session, HeatmapClick.__tablename__, scope, before, limit)


def night_run(session: Session, night: dt.date) -> RetentionRun | None:
    return session.get(RetentionRun, night)
