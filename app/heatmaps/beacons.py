"""Recording a batch of clicks: run the beacon pipeline, then store the whole batch or nothing.

Nothing here knows HTTP. The site and its hostnames come from the site
directory the counter reads too (``app.sites.directory``, a few seconds, misses too), so
the sites pages' invalidation covers beacons as well; the owner's recording options are
cached here the same way.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, fields
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.capture import repository as capture_repository
from app.capture.cache import RefreshingCache
from app.capture.outage import TRANSIENT
from app.capture.repository import DropKey
from app.capture.writer import HitWriter
from app.clock import Clock
from app.db import Database
from app.heatmaps import repository, validation
from app.heatmaps.budgets import BeaconLimits, ClickBudgets, within_budgets
from app.heatmaps.schemas import Click, RecordingOptions
from app.heatmaps.validation import Beacon, Reason, SiteEntry, Verdict
from app.ingest.pipeline import IPNetwork
from app.ops import metrics
from app.settings import WidthBucket
from app.sites.directory import SITE_CACHE_SECONDS
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.heatmaps")

ACCEPTED = Verdict(Reason.ACCEPTED, "recorded")
UNAVAILABLE = Verdict(Reason.UNAVAILABLE, "not recorded: try again later")


@dataclass(frozen=True, slots=True)
class BeaconRequest:
    key: str
    body: bytes
    body_too_large: bool
    origin: str | None
    referer: str | None
    dnt: str | None
    gpc: str | None
    peer_ip: str | None = None
    forwarded_for: str | None = None


class SiteSource(Protocol):
    """What the beacon needs of the site directory's cache (``SiteDirectory.cache``)."""

    def get(self, key: str) -> tuple[SiteScope, frozenset[str]] | None: ...

    def invalidate(self, key: str) -> None: ...


class _SiteLookup:
    """Scope and hostnames from the site directory; recording options cached here.

    Both serve their last value while the database is unreachable, so beacons of
    known sites keep being accepted (and spooled) through an outage.
    """

    def __init__(self, db: Database, sites: SiteSource) -> None:
        self._db = db
        self._sites = sites
        self._scopes: dict[int, SiteScope] = {}
        self._options: RefreshingCache[int, RecordingOptions] = RefreshingCache(
            self._load_options,
            SITE_CACHE_SECONDS,
            name="recording options",
            errors=(SQLAlchemyError,),
        )

    def __call__(self, key: str) -> SiteEntry | None:
        found = self._sites.get(key)
        if found is None:
            return None
        scope, hostnames = found
        self._scopes[scope.site_id] = scope
        return SiteEntry(scope, hostnames, self._options.get(scope.site_id))

    def _load_options(self, site_id: int) -> RecordingOptions:
        with self._db.session() as session:
            return repository.options(session, self._scopes[site_id])

    def preload(self, scopes: list[SiteScope], options: dict[int, RecordingOptions]) -> None:
        for scope in scopes:
            self._scopes[scope.site_id] = scope
            self._options.put(scope.site_id, options[scope.site_id])

    def forget(self, site_id: int) -> None:
        self._options.invalidate(site_id)


class BeaconService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        sites: SiteSource,
        buckets: tuple[WidthBucket, ...],
        writer: HitWriter,
        limits: BeaconLimits,
        trusted_proxies: tuple[IPNetwork, ...],
    ) -> None:
        self.db = db
        self.clock = clock
        # While the database is unreachable, batches wait in the counter's spool.
        self.writer = writer
        writer.outage.register(SPOOL_KIND, _apply_spooled)
        self._sites = sites
        self.lookup = _SiteLookup(db, sites)
        self.budgets = ClickBudgets(limits, trusted_proxies)
        self.steps = validation.build_pipeline(self.lookup, buckets, within_budgets(self.budgets))
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
            peer_ip=request.peer_ip,
            forwarded_for=request.forwarded_for,
        )
        try:
            verdict = validation.run(self.steps, beacon)
            if verdict is not None:
                if verdict.shed is not None:
                    self._count_shed(beacon, verdict.shed)
                else:
                    metrics.beacon_refused(verdict.reason)
                return verdict
            if self.writer.database_down:
                self._spool(beacon)
            elif not self._store_or_spool(beacon):
                # Deleted since it was looked up: nothing stored, and its key forgotten.
                self._sites.invalidate(beacon.key)
                metrics.beacon_refused(validation.UNKNOWN_SITE.reason)
                return validation.UNKNOWN_SITE
        except (SQLAlchemyError, OSError):
            # Logged without the batch: it is the visitor's data.
            log.exception(
                "a batch of clicks could be neither written nor spooled",
                extra={"event": "clicks_lost"},
            )
            self.lost_batches += 1
            metrics.beacon_refused(UNAVAILABLE.reason)
            return UNAVAILABLE
        self.accepted_clicks += len(beacon.clicks)
        metrics.beacon_accepted(len(beacon.clicks))
        return ACCEPTED

    def _count_shed(self, beacon: Beacon, reason: str) -> None:
        # With the counter's drops: written with the hit writer's next batch (or spooled).
        assert beacon.site is not None
        clicks = len(beacon.clicks)
        self.writer.count_drop(DropKey(beacon.site.scope, beacon.day, reason), clicks)
        metrics.beacon_shed(reason, clicks)

    def _store_or_spool(self, beacon: Beacon) -> bool:
        """Stored or spooled; False when the site turned out to be gone."""
        # The write claims the id its spooled copy would carry: if the commit's outcome
        # is unknown (the connection broke during COMMIT), replay cannot add it twice.
        record_id = uuid.uuid4().hex
        try:
            return self._store(beacon, record_id)
        except TRANSIENT:
            log.warning(
                "database unavailable; spooling a batch of clicks",
                extra={"event": "database_unavailable", "clicks": len(beacon.clicks)},
            )
            self.writer.outage.mark_down()
            self._spool(beacon, record_id)
            return True

    def _spool(self, beacon: Beacon, record_id: str | None = None) -> None:
        assert beacon.site is not None and beacon.path is not None and beacon.page_origin
        site_id = beacon.site.scope.site_id
        row = [
            site_id,
            beacon.day.isoformat(),
            beacon.path,
            beacon.page_origin,
            [[getattr(c, f) for f in CLICK_FIELDS] for c in beacon.clicks],
        ]
        self.writer.outage.spool_records(SPOOL_KIND, [beacon.site.scope], [row], record_id)

    def _store(self, beacon: Beacon, record_id: str) -> bool:
        assert beacon.site is not None and beacon.path is not None and beacon.page_origin
        scope, day = beacon.site.scope, beacon.day
        page_key = (scope.site_id, beacon.path)
        page_note = (beacon.page_origin, day)
        with self.db.session() as session:
            if not capture_repository.sites_still_keyed(session, [scope]):
                return False  # deleted since it was looked up: the batch lands nowhere
            capture_repository.claim_spool_record(session, record_id, self.clock.now())
            repository.insert_clicks(session, scope, day, beacon.path, beacon.clicks)
            if self._pages.get(page_key) != page_note:
                repository.note_page(session, scope, beacon.path, beacon.page_origin, day)
        if len(self._pages) > 100_000:
            self._pages.clear()
        self._pages[page_key] = page_note
        return True

    def warm_up(self, scopes: list[SiteScope]) -> None:
        """Every site's recording options, so that an outage finds none unknown."""
        with self.db.session() as session:
            options = repository.options_for(session, scopes)
        self.lookup.preload(scopes, options)

    def forget_site(self, site_id: int) -> None:
        """The owner changed the recording options: read them again on the next batch."""
        self.lookup.forget(site_id)


SPOOL_KIND = "clicks"
CLICK_FIELDS = tuple(f.name for f in fields(Click))


def _apply_spooled(session: Session, scopes: dict[int, SiteScope], rows: list[Any]) -> None:
    """Replay click batches spooled during an outage (a deleted site's are dropped)."""
    for site_id, day, path, origin, clicks in rows:
        scope = scopes.get(site_id)
        if scope is None:
            continue
        when = dt.date.fromisoformat(day)
        batch = [Click(**dict(zip(CLICK_FIELDS, values, strict=True))) for values in clicks]
        repository.insert_clicks(session, scope, when, path, batch)
        repository.note_page(session, scope, path, origin, when)
