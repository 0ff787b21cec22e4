"""Counting a counter hit: look up the site, run the pipeline, record, pick the image.

Nothing here knows HTTP. The database is never allowed to break the answer: a
failed write is logged (without visitor data) and counted in ``lost_hits``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from enum import Enum

from sqlalchemy.exc import SQLAlchemyError

from app.clock import Clock
from app.db import Database
from app.errors import NotFound
from app.ingest import pipeline, repository
from app.ingest.counter_image import NEUTRAL_PNG, render_total
from app.ingest.geoip import GeoLocator
from app.ingest.pipeline import DropReason, Hit, IPNetwork
from app.ingest.salts import SaltKeeper
from app.maps.service import ThumbnailCache
from app.sites import authz
from app.sites.keys import is_wellformed_key
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.ingest")

SITE_CACHE_SECONDS = 10.0
TOTAL_CACHE_SECONDS = 30.0


class Outcome(Enum):
    COUNTED = "counted"
    REPEAT = "repeat"
    DROPPED = "dropped"
    UNKNOWN_SITE = "unknown_site"
    NOT_RECORDED = "not_recorded"


@dataclass(frozen=True, slots=True)
class HitRequest:
    key: str
    peer_ip: str | None
    forwarded_for: str | None
    user_agent: str
    referer: str | None
    purpose: str | None


@dataclass(frozen=True, slots=True)
class HitResult:
    outcome: Outcome
    image: bytes
    reason: DropReason | None = None


class _SiteCache:
    """Key → (scope, hostnames) for a few seconds, misses included, to spare the database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._entries: dict[str, tuple[float, tuple[SiteScope, frozenset[str]] | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[SiteScope, frozenset[str]] | None:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < SITE_CACHE_SECONDS:
            return entry[1]
        with self._db.session() as session:
            try:
                value: tuple[SiteScope, frozenset[str]] | None = authz.ingest_site(session, key)
            except NotFound:
                value = None
        with self._lock:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[key] = (now, value)
        return value

    def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)


class IngestService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        geo: GeoLocator,
        trusted_proxies: tuple[IPNetwork, ...],
    ) -> None:
        self.db = db
        self.clock = clock
        self.salts = SaltKeeper(db)
        self.steps = pipeline.build_pipeline(trusted_proxies, self.salts, geo)
        self.sites = _SiteCache(db)
        self.thumbnails = ThumbnailCache(db)  # the nightly map thumbnails (app.maps)
        self._totals: dict[int, tuple[float, int]] = {}
        self.lost_hits = 0

    def handle(self, request: HitRequest) -> HitResult:
        if not is_wellformed_key(request.key):
            return HitResult(Outcome.UNKNOWN_SITE, NEUTRAL_PNG)
        try:
            found = self.sites.get(request.key)
        except SQLAlchemyError:
            log.exception("site lookup failed; hit not recorded")
            self.lost_hits += 1
            return HitResult(Outcome.NOT_RECORDED, NEUTRAL_PNG)
        if found is None:
            return HitResult(Outcome.UNKNOWN_SITE, NEUTRAL_PNG)
        scope, hostnames = found
        hit = Hit(
            scope=scope,
            hostnames=hostnames,
            received_at=self.clock.now(),
            peer_ip=request.peer_ip,
            forwarded_for=request.forwarded_for,
            user_agent=request.user_agent,
            referer=request.referer,
            purpose=request.purpose,
        )
        try:
            reason = pipeline.run(self.steps, hit)
            outcome = self._record(hit, reason)
        except SQLAlchemyError:
            # Logged without the hit's contents: no IP or user agent may reach the logs.
            log.exception("database unavailable; hit for site %s not recorded", scope.site_id)
            self.lost_hits += 1
            return HitResult(Outcome.NOT_RECORDED, self._image(scope))
        return HitResult(outcome, self._image(scope), reason)

    def _record(self, hit: Hit, reason: DropReason | None) -> Outcome:
        with self.db.session() as session:
            if reason is not None:
                repository.count_drop(session, hit.scope, hit.day, reason.value)
                return Outcome.DROPPED
            assert hit.visitor_hash is not None
            new = repository.insert_visit(
                session, hit.scope, hit.day, hit.visitor_hash, hit.location
            )
        if new:
            self._bump_total(hit.scope.site_id)
        return Outcome.COUNTED if new else Outcome.REPEAT

    def _bump_total(self, site_id: int) -> None:
        cached = self._totals.get(site_id)
        if cached is not None:
            self._totals[site_id] = (cached[0], cached[1] + 1)

    def total(self, scope: SiteScope) -> int | None:
        now = time.monotonic()
        cached = self._totals.get(scope.site_id)
        if cached is not None and now - cached[0] < TOTAL_CACHE_SECONDS:
            return cached[1]
        try:
            with self.db.session() as session:
                total = repository.total_visits(session, scope)
        except SQLAlchemyError:
            return cached[1] if cached else None
        self._totals[scope.site_id] = (now, total)
        return total

    def _image(self, scope: SiteScope) -> bytes:
        try:
            thumbnail = self.thumbnails.get(scope.site_id)
        except SQLAlchemyError:
            thumbnail = None
        if thumbnail is not None:
            return thumbnail
        total = self.total(scope)  # no thumbnail rendered yet: the plain total
        return NEUTRAL_PNG if total is None else render_total(total)

    def rotate_salts(self) -> int:
        return self.salts.rotate(self.clock.now().astimezone(dt.UTC).date())
