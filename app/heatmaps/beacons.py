"""Recording a batch of clicks: run the beacon pipeline, then store the whole batch or nothing.

Nothing here knows HTTP. The site and its hostnames come from the counter's
site cache (``IngestService.sites``, a few seconds, misses too), so the sites
pages' invalidation covers beacons as well; the owner's recording options are
cached here the same way.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from app.clock import Clock
from app.db import Database
from app.heatmaps import repository, validation
from app.heatmaps.schemas import RecordingOptions
from app.heatmaps.validation import Beacon, SiteEntry, Verdict
from app.ingest.service import SITE_CACHE_SECONDS
from app.settings import WidthBucket
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.heatmaps")

ACCEPTED = Verdict(204, "recorded")
UNAVAILABLE = Verdict(503, "not recorded: try again later")


@dataclass(frozen=True, slots=True)
class BeaconRequest:
    key: str
    body: bytes
    body_too_large: bool
    origin: str | None
    referer: str | None
    dnt: str | None
    gpc: str | None


class SiteSource(Protocol):
    """What the beacon needs of the counter's site cache (``IngestService.sites``)."""

    def get(self, key: str) -> tuple[SiteScope, frozenset[str]] | None: ...


class _SiteLookup:
    """Scope and hostnames from the counter's cache; recording options cached here."""

    def __init__(self, db: Database, sites: SiteSource) -> None:
        self._db = db
        self._sites = sites
        self._options: dict[int, tuple[float, RecordingOptions]] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str) -> SiteEntry | None:
        found = self._sites.get(key)
        if found is None:
            return None
        scope, hostnames = found
        return SiteEntry(scope, hostnames, self._recording_options(scope))

    def _recording_options(self, scope: SiteScope) -> RecordingOptions:
        now = time.monotonic()
        cached = self._options.get(scope.site_id)
        if cached is not None and now - cached[0] < SITE_CACHE_SECONDS:
            return cached[1]
        with self._db.session() as session:
            value = repository.options(session, scope)
        with self._lock:
            if len(self._options) > 100_000:
                self._options.clear()
            self._options[scope.site_id] = (now, value)
        return value

    def forget(self, site_id: int) -> None:
        self._options.pop(site_id, None)


class BeaconService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        sites: SiteSource,
        buckets: tuple[WidthBucket, ...],
    ) -> None:
        self.db = db
        self.clock = clock
        self.lookup = _SiteLookup(db, sites)
        self.steps = validation.build_pipeline(self.lookup, buckets)
        # (site id, path) → (origin, day) already written to heatmap_pages by this process.
        self._pages: dict[tuple[int, str], tuple[str, dt.date]] = {}
        self.accepted_clicks = 0
        self.lost_batches = 0

    def handle(self, request: BeaconRequest) -> Verdict:
        beacon = Beacon(
            key=request.key,
            body=request.body,
            body_too_large=request.body_too_large,
            origin=request.origin,
            referer=request.referer,
            privacy_signal=request.dnt == "1" or request.gpc == "1",
            received_at=self.clock.now(),
        )
        try:
            verdict = validation.run(self.steps, beacon)
            if verdict is not None:
                return verdict
            self._store(beacon)
        except SQLAlchemyError:
            # Logged without the batch: it is the visitor's data.
            log.exception("database unavailable; a batch of clicks was not recorded")
            self.lost_batches += 1
            return UNAVAILABLE
        self.accepted_clicks += len(beacon.clicks)
        return ACCEPTED

    def _store(self, beacon: Beacon) -> None:
        assert beacon.site is not None and beacon.path is not None and beacon.page_origin
        scope, day = beacon.site.scope, beacon.day
        page_key = (scope.site_id, beacon.path)
        page_note = (beacon.page_origin, day)
        with self.db.session() as session:
            repository.insert_clicks(session, scope, day, beacon.path, beacon.clicks)
            if self._pages.get(page_key) != page_note:
                repository.note_page(session, scope, beacon.path, beacon.page_origin, day)
        if len(self._pages) > 100_000:
            self._pages.clear()
        self._pages[page_key] = page_note

    def forget_site(self, site_id: int) -> None:
        """The owner changed the recording options: read them again on the next batch."""
        self.lookup.forget(site_id)
