"""The write path's SQL (visits, drop counts, spool claims): Core statements only, no ORM
objects per hit, each in a sync form (a SQLAlchemy session) and, where PostgreSQL's
event-loop writer needs it, an async one (a psycopg connection)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Executable, Table, TextClause, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db import insert_for
from app.ingest.geoip import Location
from app.models import (
    AppliedSpoolRecord,
    DailyCountryCount,
    DroppedHits,
    LocationCount,
    Site,
    Visit,
)
from app.places import ALL_TIME_PERIOD, place_key
from app.sites.scope import SiteScope

VisitKey = tuple[int, dt.date, bytes]  # (site id, day, visitor hash): one visit


@dataclass(frozen=True, slots=True)
class NewVisit:
    """A visit the pipeline accepted, waiting in a batch to be inserted."""

    scope: SiteScope
    day: dt.date
    visitor_hash: bytes
    location: Location

    @property
    def key(self) -> VisitKey:
        return (self.scope.site_id, self.day, self.visitor_hash)


class Inserted(set[VisitKey]):
    """The keys of the visits a batch inserted; ``gone``: the ids of sites it named that
    were deleted meanwhile (their visits land nowhere, neither counted nor lost)."""

    gone: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class DropKey:
    scope: SiteScope
    day: dt.date
    reason: str


def sites_still_keyed(session: Session, scopes: Iterable[SiteScope]) -> set[int]:
    """The ids among ``scopes`` that still name the site of the same key.

    A write checks this in its own transaction (SQLite: under the database's one write
    lock), so rows never land under a site other than the one whose key the hit
    named, even if the site was deleted and its id given to another meanwhile."""
    keys = {s.site_id: s.public_key for s in scopes}
    if not keys:
        return set()
    rows = session.execute(select(Site.id, Site.public_key).where(Site.id.in_(sorted(keys))))
    return {site_id for site_id, key in rows if keys[site_id] == key}


def insert_visits(session: Session, visits: Sequence[NewVisit]) -> Inserted:
    """Insert a batch, ignoring visits already stored; count the new ones in the aggregates.

    Returns the keys of the visits this call inserted. The aggregates are derived from
    what the insert returned, so a batch retried after a failure never counts twice.
    """
    # First occurrence wins; key order, so that concurrent writers never deadlock.
    unique = sorted({v.key: v for v in reversed(visits)}.values(), key=lambda v: v.key)
    if not unique:
        return Inserted()
    if session.get_bind().dialect.name == "postgresql":
        return _insert_visits_postgresql(session, unique)
    live = sites_still_keyed(session, [v.scope for v in unique])
    gone = frozenset(v.scope.site_id for v in unique if v.scope.site_id not in live)
    unique = [v for v in unique if v.scope.site_id in live]
    rows = [
        {
            "site_id": v.scope.site_id,
            "day": v.day,
            "visitor_hash": v.visitor_hash,
            "country_code": v.location.country_code,
            "region": v.location.region,
            "city": v.location.city,
            "latitude": v.location.latitude,
            "longitude": v.location.longitude,
            "accuracy_km": v.location.accuracy_km,
        }
        for v in unique
    ]
    returned = _bulk_insert(session, _VISITS, rows, returning=("site_id", "day", "visitor_hash"))
    inserted = Inserted((r[0], r[1], bytes(r[2])) for r in returned)
    inserted.gone = gone
    if not inserted:
        return inserted
    countries: Counter[tuple[int, dt.date, str]] = Counter()
    places: Counter[tuple[int, str, dt.date, int]] = Counter()
    for v in unique:
        if v.key not in inserted:
            continue
        countries[(v.scope.site_id, v.day, v.location.country_code or "")] += 1
        place = _place(v.location)
        if place is not None:
            for grain, period in _periods(v.day):
                places[(v.scope.site_id, grain, period, place)] += 1
    # Sorted, so that concurrent writers lock rows in the same order (no deadlock).
    _bulk_insert(
        session,
        _COUNTRIES,
        [
            {"site_id": site_id, "day": day, "country_code": cc, "visits": n}
            for (site_id, day, cc), n in sorted(countries.items())
        ],
        add="visits",
    )
    _bulk_insert(
        session,
        _PLACES,
        [
            {"site_id": site_id, "grain": g, "period": period, "place": place, "visits": n}
            for (site_id, g, period, place), n in sorted(places.items())
        ],
        add="visits",
    )
    return inserted


# PostgreSQL: the batch as one array per column (binary, %b), and the visits with both
# aggregates in one statement: the aggregates count only what the INSERT returned.
# Each visit names its site's key with its id and is inserted only where the two still
# belong together: a hit queued for a site deleted meanwhile lands nowhere.
_VISITS_BATCH_SQL = """
WITH input AS (
    SELECT * FROM unnest(%b::bigint[], %b::date[], %b::bytea[], %b::varchar[], %b::varchar[],
                         %b::varchar[], %b::float8[], %b::float8[], %b::int4[], %b::int8[])
        AS t(site_id, day, visitor_hash, country_code, region, city, latitude, longitude,
             accuracy_km, place)
), named AS (
    SELECT * FROM unnest(%b::bigint[], %b::varchar[]) AS n(site_id, site_key)
), live AS (
    SELECT named.site_id FROM named
    JOIN sites ON sites.id = named.site_id AND sites.public_key = named.site_key
), ins AS (
    INSERT INTO visits (site_id, day, visitor_hash, country_code, region, city,
                        latitude, longitude, accuracy_km)
    SELECT site_id, day, visitor_hash, country_code, region, city, latitude, longitude, accuracy_km
    FROM input WHERE site_id IN (SELECT site_id FROM live)
    ON CONFLICT DO NOTHING
    RETURNING site_id, day, visitor_hash
), new AS (
    SELECT input.* FROM input JOIN ins USING (site_id, day, visitor_hash)
), countries AS (
    INSERT INTO daily_country_counts (site_id, day, country_code, visits)
    SELECT site_id, day, coalesce(country_code, ''), count(*) FROM new
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (site_id, day, country_code)
    DO UPDATE SET visits = daily_country_counts.visits + excluded.visits
), places AS (
    INSERT INTO location_counts (site_id, grain, period, place, visits)
    SELECT site_id, g.grain, g.period, place, count(*)
    FROM new CROSS JOIN LATERAL (
        VALUES ('d', day), ('m', date_trunc('month', day)::date), ('a', %b::date)
    ) AS g(grain, period)
    WHERE place IS NOT NULL
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (site_id, grain, period, place)
    DO UPDATE SET visits = location_counts.visits + excluded.visits
)
SELECT site_id, day, visitor_hash FROM ins
UNION ALL
SELECT site_id, NULL, NULL FROM named WHERE site_id NOT IN (SELECT site_id FROM live)
"""


def _visit_columns(unique: list[NewVisit]) -> tuple[Any, ...]:
    """The batch as the PostgreSQL statement's parameters: one list per column, then
    each site the batch names once, with its key."""
    columns: list[list[Any]] = [[] for _ in range(10)]
    keys: dict[int, str] = {}
    for v in unique:
        scope = v.scope
        keys[scope.site_id] = scope.public_key
        row = (scope.site_id, v.day, v.visitor_hash, *v.location.as_row(), _place(v.location))
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return (*columns, list(keys), list(keys.values()), ALL_TIME_PERIOD)


def _insert_visits_postgresql(session: Session, unique: list[NewVisit]) -> Inserted:
    """The hot path's batch in one round trip (the generic path takes three)."""
    # Straight to the driver (its %b binary placeholders); errors still come wrapped.
    result = session.connection().exec_driver_sql(_VISITS_BATCH_SQL, _visit_columns(unique))
    return _inserted(result)


def _inserted(rows: Iterable[Any]) -> Inserted:
    """The batch statement's answer: inserted visits, then sites gone (day NULL)."""
    inserted = Inserted()
    gone: set[int] = set()
    for site_id, day, visitor_hash in rows:
        if day is None:
            gone.add(site_id)
        else:
            inserted.add((site_id, day, bytes(visitor_hash)))
    inserted.gone = frozenset(gone)
    return inserted


# --- PostgreSQL on the event loop: the serving process's writer (psycopg async) ---------

_DROPS_BATCH_SQL = """
INSERT INTO dropped_hits (site_id, day, reason, hits)
SELECT t.site_id, t.day, t.reason, t.hits
FROM unnest(%b::bigint[], %b::varchar[], %b::date[], %b::varchar[], %b::bigint[])
    AS t(site_id, site_key, day, reason, hits)
JOIN sites ON sites.id = t.site_id AND sites.public_key = t.site_key
ORDER BY 1, 2, 3
ON CONFLICT (site_id, day, reason) DO UPDATE SET hits = dropped_hits.hits + excluded.hits
"""


async def insert_visits_async(conn: AsyncConnection[Any], visits: Sequence[NewVisit]) -> Inserted:
    """:func:`insert_visits` for PostgreSQL through an async psycopg connection."""
    unique = sorted({v.key: v for v in reversed(visits)}.values(), key=lambda v: v.key)
    if not unique:
        return Inserted()
    cursor = await conn.execute(_VISITS_BATCH_SQL, _visit_columns(unique))
    return _inserted(await cursor.fetchall())


async def claim_spool_record_async(
    conn: AsyncConnection[Any], record_id: str, now: dt.datetime
) -> None:
    """Claim a batch's id with its live write, so its spooled copy (if the commit's
    outcome is unknown) is not applied a second time."""
    await conn.execute(
        "INSERT INTO applied_spool_records (record_id, applied_at) VALUES (%s, %s)",
        (record_id, now),
    )


async def add_drops_async(conn: AsyncConnection[Any], drops: Mapping[DropKey, int]) -> None:
    totals, site_keys = _drop_totals(drops)
    if totals:
        keys = sorted(totals)
        await conn.execute(
            _DROPS_BATCH_SQL,
            (
                [k[0] for k in keys],
                [site_keys[k[0]] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [totals[k] for k in keys],
            ),
        )


def _drop_totals(
    drops: Mapping[DropKey, int],
) -> tuple[Counter[tuple[int, dt.date, str]], dict[int, str]]:
    """Drop counts added up per (site id, day, reason), and each site's key."""
    totals: Counter[tuple[int, dt.date, str]] = Counter()
    site_keys: dict[int, str] = {}
    for key, hits in drops.items():
        totals[(key.scope.site_id, key.day, key.reason)] += hits
        site_keys[key.scope.site_id] = key.scope.public_key
    return totals, site_keys


_VISITS: Table = Visit.__table__  # type: ignore[assignment]
_COUNTRIES: Table = DailyCountryCount.__table__  # type: ignore[assignment]
_PLACES: Table = LocationCount.__table__  # type: ignore[assignment]
_DROPS: Table = DroppedHits.__table__  # type: ignore[assignment]


def _bulk_insert(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    add: str | None = None,
    returning: tuple[str, ...] = (),
) -> list[tuple[Any, ...]]:
    """Insert many rows in one statement. On a primary-key conflict: ignore the row, or
    with ``add`` add its value to the stored one (the rows' keys must be distinct)."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        stmt: Executable = _unnest_statement(table, add, returning)
        params: Any = {c: [r[c] for r in rows] for c in rows[0]}
    else:
        insert = sqlite.insert(table)
        if add is None:
            insert = insert.on_conflict_do_nothing()
        else:
            insert = insert.on_conflict_do_update(
                index_elements=[c.name for c in table.primary_key],
                set_={add: table.c[add] + insert.excluded[add]},
            )
        stmt = insert.returning(*(table.c[c] for c in returning)) if returning else insert
        params = rows
    result = session.execute(stmt, params)
    return [tuple(row) for row in result] if returning else []


@lru_cache(maxsize=16)
def _unnest_statement(table: Table, add: str | None, returning: tuple[str, ...]) -> TextClause:
    """PostgreSQL: the whole batch as one array per column, a single round trip.

    Built only from the table's own column names and types, never from input."""
    dialect = postgresql.dialect()
    columns = list(table.c)
    names = ", ".join(c.name for c in columns)
    arrays = ", ".join(f"CAST(:{c.name} AS {c.type.compile(dialect)}[])" for c in columns)
    keys = ", ".join(c.name for c in table.primary_key)
    if add is None:
        conflict = "DO NOTHING"
    else:
        conflict = f"DO UPDATE SET {add} = {table.name}.{add} + excluded.{add}"
    tail = f" RETURNING {', '.join(returning)}" if returning else ""
    sql = (
        f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays}) "  # noqa: S608
        f"ON CONFLICT ({keys}) {conflict}{tail}"
    )
    return text(sql)


def _periods(day: dt.date) -> tuple[tuple[str, dt.date], ...]:
    """The map aggregate's grains: the day, its month and all time."""
    return (("d", day), ("m", day.replace(day=1)), ("a", ALL_TIME_PERIOD))


def _place(location: Location) -> int | None:
    if location.latitude is None or location.longitude is None:
        return None
    try:
        return place_key(location.latitude, location.longitude, location.accuracy_km)
    except ValueError:  # a broken GeoIP record: the visit counts, but on no map
        return None


def add_drops(session: Session, drops: Mapping[DropKey, int]) -> None:
    """Add many dropped-hit counts at once (reasons the pipeline or the load shedder gave)."""
    if not drops:
        return
    live = sites_still_keyed(session, [key.scope for key in drops])
    totals, _ = _drop_totals({k: n for k, n in drops.items() if k.scope.site_id in live})
    rows = [
        {"site_id": site_id, "day": day, "reason": reason, "hits": n}
        for (site_id, day, reason), n in sorted(totals.items())
    ]
    _bulk_insert(session, _DROPS, rows, add="hits")


def claim_spool_record(session: Session, record_id: str, now: dt.datetime) -> bool:
    """Mark a spooled record applied in this transaction; False if it already was."""
    stmt = (
        insert_for(session, AppliedSpoolRecord)
        .values(record_id=record_id, applied_at=now)
        .on_conflict_do_nothing()
        .returning(AppliedSpoolRecord.record_id)
    )
    return session.execute(stmt).first() is not None


def forget_spool_records_before(session: Session, when: dt.datetime) -> int:
    result = session.execute(delete(AppliedSpoolRecord).where(AppliedSpoolRecord.applied_at < when))
    return int(result.rowcount)  # type: ignore[attr-defined]
