"""All SQL of the maps: location aggregates by range, stored images, styles, nightly claims.

Tenant data is read and written only through a :class:`SiteScope`. Jobs, which carry
a bare site id, get their scope from ``app.sites.authz.site_for_job`` like every other
caller gets theirs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Select, and_, case, func, or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from app import places
from app.days import DayRange
from app.db import insert_for
from app.models import (
    DailyCountryCount,
    LocationCount,
    MapNightlyRun,
    MapStyle,
    RenderedImage,
    Site,
)
from app.places import ALL_TIME_PERIOD
from app.sites.scope import SiteScope

LocationRow = tuple[float, float, int | None, int]


@dataclass(frozen=True, slots=True)
class RangeStats:
    """What a range's input is made of, from the daily country counts.

    Counts only grow and new visits only land on today, so within windows that end
    today two equal stats mean equal input: the fingerprint of a render.
    """

    visits: int
    first_day: dt.date | None
    last_day: dt.date | None


def _month_end(first: dt.date) -> dt.date:
    following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return following - dt.timedelta(days=1)


def split_window(
    first: dt.date, last: dt.date
) -> tuple[list[dt.date], list[tuple[dt.date, dt.date]]]:
    """Whole months inside [first, last] (read from month rows) and the day spans
    around them (read from day rows)."""
    start = first if first.day == 1 else _month_end(first) + dt.timedelta(days=1)
    months: list[dt.date] = []
    month = start
    while month <= last and _month_end(month) <= last:
        months.append(month)
        month = _month_end(month) + dt.timedelta(days=1)
    if not months:
        return [], [(first, last)]
    spans = []
    if first < months[0]:
        spans.append((first, months[0] - dt.timedelta(days=1)))
    after = _month_end(months[-1]) + dt.timedelta(days=1)
    if after <= last:
        spans.append((after, last))
    return months, spans


@dataclass(frozen=True, slots=True)
class Places:
    """A range's input: place keys (``app.places``) and their visits, as arrays."""

    keys: np.ndarray  # int64
    visits: np.ndarray  # int64

    def decoded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Latitudes, longitudes, accuracies (km, 0 unknown) and visits."""
        lat, lon, acc = places.decode(self.keys)
        return lat, lon, acc, self.visits


def place_counts_query(scope: SiteScope, window: DayRange) -> Select:
    """Visits per place in the window: one index range scan per part, summed by place."""
    lc = LocationCount
    if window.first is None:
        return select(lc.place, lc.visits).where(
            lc.site_id == scope.site_id, lc.grain == "a", lc.period == ALL_TIME_PERIOD
        )
    assert window.last is not None, "a map's window that has a first day ends on a day"
    months, spans = split_window(window.first, window.last)
    parts = [and_(lc.grain == "d", lc.period.between(a, b)) for a, b in spans]
    if months:
        parts.append(and_(lc.grain == "m", lc.period.between(months[0], months[-1])))
    return (
        select(lc.place, func.sum(lc.visits))
        .where(lc.site_id == scope.site_id, or_(*parts))
        .group_by(lc.place)
    )


def place_counts(session: Session, scope: SiteScope, window: DayRange) -> Places:
    # Core rows, no ORM objects; numpy is slow on Row objects, fast on tuples.
    rows = session.connection().execute(place_counts_query(scope, window)).all()
    if not rows:
        return Places(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    data = np.array(list(map(tuple, rows)), dtype=np.int64)
    return Places(data[:, 0], data[:, 1])


def locations(session: Session, scope: SiteScope, window: DayRange) -> list[LocationRow]:
    """(latitude, longitude, accuracy km or None, visits) per place in the window."""
    lat, lon, acc, visits = place_counts(session, scope, window).decoded()
    return [
        (la, lo, int(a) or None, v)
        for la, lo, a, v in zip(
            lat.tolist(), lon.tolist(), acc.tolist(), visits.tolist(), strict=True
        )
    ]


def range_stats(
    session: Session, scope: SiteScope, firsts: dict[str, dt.date | None]
) -> dict[str, RangeStats]:
    """One query for the stats of several windows that all end today (``None``: all time)."""
    dcc = DailyCountryCount
    columns = []
    for first in firsts.values():
        inside = dcc.day >= first if first is not None else dcc.day.is_not(None)
        columns += [
            func.coalesce(func.sum(case((inside, dcc.visits))), 0),
            func.min(case((inside, dcc.day))),
            func.max(case((inside, dcc.day))),
        ]
    row = session.execute(select(*columns).where(dcc.site_id == scope.site_id)).one()
    result = {}
    for i, name in enumerate(firsts):
        visits, first_day, last_day = row[3 * i : 3 * i + 3]
        result[name] = RangeStats(int(visits), _as_date(first_day), _as_date(last_day))
    return result


def _as_date(value: object) -> dt.date | None:
    # min()/max() over a CASE lose the column type on SQLite: ISO text comes back.
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


# --- stored images -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageMeta:
    kind: str
    span: str
    variant: str
    etag: str
    fingerprint: str
    width: int
    height: int
    visits: int
    rendered_at: dt.datetime
    checked_at: dt.datetime


_META_COLUMNS = (
    RenderedImage.kind,
    RenderedImage.span,
    RenderedImage.variant,
    RenderedImage.etag,
    RenderedImage.fingerprint,
    RenderedImage.width,
    RenderedImage.height,
    RenderedImage.visits,
    RenderedImage.rendered_at,
    RenderedImage.checked_at,
)


def image_metas(session: Session, scope: SiteScope) -> list[ImageMeta]:
    rows = session.execute(select(*_META_COLUMNS).where(RenderedImage.site_id == scope.site_id))
    return [ImageMeta(**row._asdict()) for row in rows]


def image(
    session: Session, scope: SiteScope, kind: str, span: str, variant: str
) -> RenderedImage | None:
    return session.get(RenderedImage, (scope.site_id, kind, span, variant))


def image_png(session: Session, site_id: int, kind: str, span: str, variant: str) -> bytes | None:
    """Only the bytes, for the counter's hot path (which has a scope already)."""
    value = session.scalar(
        select(RenderedImage.png).where(
            RenderedImage.site_id == site_id,
            RenderedImage.kind == kind,
            RenderedImage.span == span,
            RenderedImage.variant == variant,
        )
    )
    return bytes(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class NewImage:
    kind: str
    span: str
    variant: str
    png: bytes
    etag: str
    fingerprint: str
    width: int
    height: int
    visits: int


_IMAGE_KEY = ["site_id", "kind", "span", "variant"]
_IMAGE_VALUES = ["png", "etag", "fingerprint", "width", "height", "visits", "rendered_at"]


def store_images(
    session: Session, scope: SiteScope, images: Sequence[NewImage], now: dt.datetime
) -> None:
    """Insert or replace a site's images."""
    if not images:
        return
    rows = [
        {
            "site_id": scope.site_id,
            "kind": i.kind,
            "span": i.span,
            "variant": i.variant,
            "png": i.png,
            "etag": i.etag,
            "fingerprint": i.fingerprint,
            "width": i.width,
            "height": i.height,
            "visits": i.visits,
            "rendered_at": now,
            "checked_at": now,
        }
        for i in images
    ]
    # One compiled statement, executed for many rows (cached; psycopg pipelines them).
    # A render never replaces a newer one: on SQLite, jobs of two processes draw
    # outside any lock, and one that began before a style change must not store last.
    stmt = insert_for(session, RenderedImage)
    excluded = {name: stmt.excluded[name] for name in [*_IMAGE_VALUES, "checked_at"]}
    upsert = stmt.on_conflict_do_update(
        index_elements=_IMAGE_KEY,
        set_=excluded,
        where=RenderedImage.rendered_at <= stmt.excluded.rendered_at,
    )
    session.connection().execute(upsert, rows)


def mark_checked(
    session: Session, scope: SiteScope, keys: Sequence[tuple[str, str, str]], now: dt.datetime
) -> None:
    """The input of these images was checked unchanged at ``now``."""
    if not keys:
        return
    session.execute(
        update(RenderedImage)
        .where(
            RenderedImage.site_id == scope.site_id,
            tuple_(RenderedImage.kind, RenderedImage.span, RenderedImage.variant).in_(keys),
        )
        .values(checked_at=now)
    )


# --- styles --------------------------------------------------------------------------


def style(session: Session, scope: SiteScope) -> MapStyle | None:
    return session.get(MapStyle, scope.site_id)


def save_style(
    session: Session,
    scope: SiteScope,
    *,
    size: str,
    dot_color: str,
    background: str,
    show_count: bool,
    now: dt.datetime,
) -> None:
    values = {
        "size": size,
        "dot_color": dot_color,
        "background": background,
        "show_count": show_count,
        "updated_at": now,
    }
    stmt = insert_for(session, MapStyle).values(site_id=scope.site_id, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=["site_id"], set_=values))


# --- jobs ----------------------------------------------------------------------------


def relax_durability(session: Session) -> None:
    """PostgreSQL: this transaction's commit does not wait for its WAL flush.

    Only for render jobs: images are derived data, and a crash loses at most the
    last instant's renders, which the next job redraws (their fingerprints are gone
    with them). Saves a disk flush per site in the nightly run.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def all_site_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Site.id).order_by(Site.id)))


def night_run(session: Session, night: dt.date) -> MapNightlyRun | None:
    return session.get(MapNightlyRun, night)
