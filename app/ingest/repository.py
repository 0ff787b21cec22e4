"""All SQL of the ingest path: Core statements only, no ORM objects per hit."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db import insert_for
from app.ingest.geoip import Location
from app.maps.places import ALL_TIME_PERIOD, place_key
from app.models import DailyCountryCount, DailySalt, DroppedHits, LocationCount, Visit
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


def insert_visit(
    session: Session, scope: SiteScope, day: dt.date, visitor_hash: bytes, location: Location
) -> bool:
    """Insert the day's visit unless it exists; True when it was new (and so counted)."""
    stmt = (
        insert_for(session, Visit)
        .values(
            site_id=scope.site_id,
            day=day,
            visitor_hash=visitor_hash,
            country_code=location.country_code,
            region=location.region,
            city=location.city,
            latitude=location.latitude,
            longitude=location.longitude,
            accuracy_km=location.accuracy_km,
        )
        .on_conflict_do_nothing()
        .returning(Visit.site_id)
    )
    if session.execute(stmt).first() is None:
        return False
    count = insert_for(session, DailyCountryCount).values(
        site_id=scope.site_id, day=day, country_code=location.country_code or "", visits=1
    )
    session.execute(
        count.on_conflict_do_update(
            index_elements=["site_id", "day", "country_code"],
            set_={"visits": DailyCountryCount.visits + 1},
        )
    )
    if location.latitude is not None and location.longitude is not None:
        _count_location(session, scope, day, location)
    return True


def _count_location(session: Session, scope: SiteScope, day: dt.date, location: Location) -> None:
    """The map aggregate: one upsert of the visit's place per day, month and all time."""
    assert location.latitude is not None and location.longitude is not None
    try:
        place = place_key(location.latitude, location.longitude, location.accuracy_km)
    except ValueError:  # a broken GeoIP record: the visit counts, but on no map
        return
    rows = [
        {"site_id": scope.site_id, "grain": grain, "period": period, "place": place, "visits": 1}
        for grain, period in (("d", day), ("m", day.replace(day=1)), ("a", ALL_TIME_PERIOD))
    ]
    session.execute(
        insert_for(session, LocationCount)
        .values(rows)
        .on_conflict_do_update(
            index_elements=["site_id", "grain", "period", "place"],
            set_={"visits": LocationCount.visits + 1},
        )
    )


def count_drop(session: Session, scope: SiteScope, day: dt.date, reason: str) -> None:
    stmt = insert_for(session, DroppedHits).values(
        site_id=scope.site_id, day=day, reason=reason, hits=1
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["site_id", "day", "reason"], set_={"hits": DroppedHits.hits + 1}
        )
    )


def total_visits(session: Session, scope: SiteScope) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(DailyCountryCount.visits), 0)).where(
            DailyCountryCount.site_id == scope.site_id
        )
    )
    return int(total or 0)
