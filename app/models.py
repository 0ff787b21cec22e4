"""Tables. Every tenant table carries ``site_id`` first in its key so that the
schema can later be distributed (or partitioned) by site."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both databases (SQLite drops the zone on the way in)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    __tablename__ = "accounts"
    # SQLite would otherwise hand the newest deleted id to the next row (migration 0007).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class LoginSession(Base):
    __tablename__ = "login_sessions"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        Id, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        Id, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LoginThrottle(Base):
    """Failed logins per keyed hash of an account email or a client IP (never the raw IP)."""

    __tablename__ = "login_throttle"

    bucket: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer)


class Site(Base):
    __tablename__ = "sites"
    # A deleted site's id is never given to another: caches, queued hits, spooled
    # records and jobs name sites by id (migration 0007).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        Id, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    public_key: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    domain: Mapped[str] = mapped_column(String(253))
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Days of raw visits and clicks the nightly retention keeps (app/retention):
    # NULL follows HITMAP_RETENTION_DAYS, 0 keeps them forever.
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)


class SiteChange(Base):
    """The site directory's change log: one row per deleted site or changed hostname,
    written by triggers (migration 0007), so that every web process drops its cached
    entry for that key within a second (``app.sites.directory``), whatever deleted
    the site (the owner, account deletion, an operator's SQL)."""

    __tablename__ = "site_changes"
    # Pollers read rows after the last seq they saw: a seq must never be reused.
    __table_args__ = {"sqlite_autoincrement": True}

    seq: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    public_key: Mapped[str] = mapped_column(String(32))


class SiteHostname(Base):
    __tablename__ = "site_hostnames"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    hostname: Mapped[str] = mapped_column(String(253), primary_key=True)
    # The owner's pages on this hostname are served over plain http (the overlay link
    # uses it); https unless the owner says so.
    plain_http: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class DailySalt(Base):
    """One random salt per UTC day; deleted 48 h after its day began."""

    __tablename__ = "daily_salts"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))


class AppliedSpoolRecord(Base):
    """Ids of spooled batches already written: replay after a crash applies each once.

    Live writes of click batches and drop counts claim their id too, so that the spooled
    copy of a commit whose outcome was unknown is skipped. Rows older than 30 days are
    deleted by the hourly housekeeping.
    """

    __tablename__ = "applied_spool_records"

    record_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class Visit(Base):
    """One unique visitor per site per UTC day. No IP, no user agent: only a keyed hash."""

    __tablename__ = "visits"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    visitor_hash: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    country_code: Mapped[str | None] = mapped_column(String(2), nullable=True)
    region: Mapped[str | None] = mapped_column(String(100), nullable=True)
    city: Mapped[str | None] = mapped_column(String(100), nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_km: Mapped[int | None] = mapped_column(Integer, nullable=True)


class DailyCountryCount(Base):
    """Unique visits per site, day and country ('' = unknown location).

    Kept in step with ``visits`` by the ingest transaction so that dashboards
    never scan the raw visits.
    """

    __tablename__ = "daily_country_counts"

    # No foreign key (migration 0006): see ``delete_site_aggregates``.
    site_id: Mapped[int] = mapped_column(Id, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2), primary_key=True)
    visits: Mapped[int] = mapped_column(BigInteger)


class DroppedHits(Base):
    """Hits answered with the image but not counted, per site, day and reason."""

    __tablename__ = "dropped_hits"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    hits: Mapped[int] = mapped_column(BigInteger)


Index("ix_visits_site_city", Visit.site_id, Visit.country_code, Visit.city)

__all__ = [
    "Account",
    "ApiToken",
    "Base",
    "DailyCountryCount",
    "DailySalt",
    "DroppedHits",
    "LoginSession",
    "LoginThrottle",
    "Site",
    "SiteChange",
    "SiteHostname",
    "Visit",
]


# --- Maps (issue 3): location aggregates, rendered images, styles, nightly runs ---------


class LocationCount(Base):
    """Unique visits per site and located place, at three grains, kept in step with
    ``visits`` by the ingest transaction (one upsert of three rows per new visit):

    * ``grain='d'``: per UTC day (``period`` = the day),
    * ``grain='m'``: per month (``period`` = the month's first day),
    * ``grain='a'``: all time (``period`` = 1970-01-01).

    ``place`` packs latitude, longitude and accuracy into one integer
    (``app.places``). A map of any range then sums at most a few hundred
    thousand narrow rows instead of reading every visit; visits without coordinates
    are on no map and have no row here.
    """

    __tablename__ = "location_counts"

    # No foreign key (migration 0006): see ``delete_site_aggregates``.
    site_id: Mapped[int] = mapped_column(Id, primary_key=True)
    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    period: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    place: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    visits: Mapped[int] = mapped_column(BigInteger)


class RenderedImage(Base):
    """A rendered PNG (counter thumbnail or range map), served by every web process.

    ``fingerprint`` digests the render's input (visits in the range, style, renderer
    version): a job whose input has the same fingerprint skips the render.
    """

    __tablename__ = "rendered_images"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    span: Mapped[str] = mapped_column(String(8), primary_key=True)
    variant: Mapped[str] = mapped_column(String(8), primary_key=True)
    png: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # 304s skip the bytes
    etag: Mapped[str] = mapped_column(String(40))
    fingerprint: Mapped[str] = mapped_column(String(40))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    visits: Mapped[int] = mapped_column(BigInteger)
    rendered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class MapStyle(Base):
    """The owner's counter thumbnail style; no row means the defaults."""

    __tablename__ = "map_styles"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    size: Mapped[str] = mapped_column(String(8))
    dot_color: Mapped[str] = mapped_column(String(7))
    background: Mapped[str] = mapped_column(String(12))
    show_count: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class MapNightlyRun(Base):
    """One row per night whose map rendering was started: the once-per-night claim."""

    __tablename__ = "map_nightly_runs"

    night: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sites: Mapped[int] = mapped_column(Integer, default=0)


__all__ += ["LocationCount", "MapNightlyRun", "MapStyle", "RenderedImage"]


# --- Heatmaps (issue 4): click beacons, pages, options, overlay tokens, renders ---------


class HeatmapClick(Base):
    """One click sent by the widget: where on which page, at which width.

    No IP address, no user agent, nothing the visitor typed: page coordinates,
    sizes, and a CSS selector of the clicked element with the click's offset
    inside its box (fractions 0–1), which lets the live overlay place the click
    on that element at any window width. A surrogate ``id`` is the key (SQLite
    only auto-increments a lone INTEGER key); every index starts with ``site_id``.
    """

    __tablename__ = "heatmap_clicks"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(Id, ForeignKey("sites.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    path: Mapped[str] = mapped_column(String(512))
    bucket: Mapped[str] = mapped_column(String(16))
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    doc_width: Mapped[int] = mapped_column(Integer)
    doc_height: Mapped[int] = mapped_column(Integer)
    viewport_width: Mapped[int] = mapped_column(Integer)
    dpr: Mapped[float] = mapped_column(Float)
    selector: Mapped[str | None] = mapped_column(String(256), nullable=True)
    offset_x: Mapped[float | None] = mapped_column(Float, nullable=True)
    offset_y: Mapped[float | None] = mapped_column(Float, nullable=True)


Index(
    "ix_heatmap_clicks_site_page",
    HeatmapClick.site_id,
    HeatmapClick.path,
    HeatmapClick.bucket,
    HeatmapClick.day,
)
Index("ix_heatmap_clicks_site_day", HeatmapClick.site_id, HeatmapClick.day, HeatmapClick.path)


class HeatmapPage(Base):
    """A page that sent clicks, with the origin it was last seen on (for the overlay link)."""

    __tablename__ = "heatmap_pages"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    origin: Mapped[str] = mapped_column(String(300))
    last_seen: Mapped[dt.date] = mapped_column(Date)


class HeatmapOptions(Base):
    """The owner's click-recording options; no row means the defaults (both off)."""

    __tablename__ = "heatmap_options"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    keep_query: Mapped[bool] = mapped_column(Boolean, default=False)
    honour_dnt: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class HeatmapOverlayToken(Base):
    """A token that lets the live overlay read one site's clicks; only its hash is stored.

    ``kind`` is ``bookmarklet`` (one per site, until revoked) or ``link`` (made by
    the heatmap page's "open with overlay" button, expires after minutes).
    """

    __tablename__ = "heatmap_overlay_tokens"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


Index("ix_heatmap_overlay_tokens_hash", HeatmapOverlayToken.token_hash, unique=True)


class HeatmapRender(Base):
    """A rendered heatmap PNG of one page, width bucket and date range.

    ``clicks`` and ``last_click_id`` fingerprint the input: a render whose range
    still has the same count and newest click is current.
    """

    __tablename__ = "heatmap_renders"

    site_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(16), primary_key=True)
    first_day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    last_day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    clicks: Mapped[int] = mapped_column(BigInteger)
    last_click_id: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    radius: Mapped[float] = mapped_column(Float)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    rendered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


__all__ += [
    "HeatmapClick",
    "HeatmapOptions",
    "HeatmapOverlayToken",
    "HeatmapPage",
    "HeatmapRender",
]


# --- Retention (issue 6): the nightly deletion of old raw visits and clicks -------------


class RetentionRun(Base):
    """One row per night whose retention run was started: the once-per-night claim.

    ``sites`` is how many sites had a retention to apply that night.
    """

    __tablename__ = "retention_runs"

    night: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sites: Mapped[int] = mapped_column(Integer, default=0)


__all__ += ["RetentionRun"]
