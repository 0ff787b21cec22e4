"""The counter's own SQL: the day's visitor salts and a site's total for its image."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db import insert_for
from app.models import DailyCountryCount, DailySalt
from app.sites.scope import SiteScope


def ensure_salt(session: Session, day: dt.date, candidate: bytes) -> bytes:
    """The salt of ``day``: ``candidate`` if this call created it, else the stored one."""
    session.execute(
        insert_for(session, DailySalt).values(day=day, salt=candidate).on_conflict_do_nothing()
    )
    return bytes(session.scalars(select(DailySalt.salt).where(DailySalt.day == day)).one())


def delete_salts_before(session: Session, day: dt.date) -> int:
    result = session.execute(delete(DailySalt).where(DailySalt.day < day))
    return int(result.rowcount)  # type: ignore[attr-defined]


def stored_salt_days(session: Session) -> list[dt.date]:
    return list(session.scalars(select(DailySalt.day).order_by(DailySalt.day)))


def total_visits(session: Session, scope: SiteScope) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(DailyCountryCount.visits), 0)).where(
            DailyCountryCount.site_id == scope.site_id
        )
    )
    return int(total or 0)
