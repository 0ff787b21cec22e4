"""Counting a counter hit: look up the site, run the pipeline, hand the visit to the writer.

Nothing here knows HTTP. The database is never allowed to break the answer:
lookups serve cached (even stale) values, the writer spools what the database
cannot take, and what is neither recorded nor spooled is logged without visitor
data and counted in ``lost_hits``.

``handle_async`` is the hot path (the ASGI counter endpoint): it never waits on
the database on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from app.capture import repository
from app.capture.batches import Ack
from app.capture.repository import DropKey, NewVisit
from app.capture.spool import Spool
from app.capture.writer import HitWriter
from app.clock import Clock
from app.db import Database
from app.ingest import pipeline
from app.ingest.budgets import Backlog, LoopLag, TokenBuckets
from app.ingest.geoip import GeoLocator
from app.ingest.images import NEUTRAL, CounterImage, CounterImages
from app.ingest.pipeline import DropReason, Hit, IPNetwork
from app.ingest.salts import SaltKeeper
from app.ops import metrics
from app.sites import repository as sites_repository
from app.sites.directory import KEPT_CHANGES, SiteDirectory
from app.sites.keys import is_wellformed_key
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.ingest")

# Normally the answer follows the commit within milliseconds. If the database stalls
# without failing, the image goes out after this long; the hit stays queued and is
# written (or spooled) when the database answers or fails.
ACK_TIMEOUT_SECONDS = 2.0
CLAIMS_KEPT = dt.timedelta(days=30)

T = TypeVar("T")


class Outcome(Enum):
    COUNTED = "counted"
    REPEAT = "repeat"
    SPOOLED = "spooled"  # durable on local disk, written when the database is back
    QUEUED = "queued"  # the database stalled: answered before the write (see ACK_TIMEOUT)
    DROPPED = "dropped"
    UNKNOWN_SITE = "unknown_site"
    NOT_RECORDED = "not_recorded"


ACK_OUTCOMES = {
    Ack.COUNTED: Outcome.COUNTED,
    Ack.REPEAT: Outcome.REPEAT,
    Ack.SPOOLED: Outcome.SPOOLED,
    Ack.LOST: Outcome.NOT_RECORDED,
    Ack.QUEUED: Outcome.QUEUED,
    Ack.GONE: Outcome.UNKNOWN_SITE,
}


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
    image: CounterImage
    reason: DropReason | None = None


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_pending_hits: int = 20_000
    ip_budget_per_second: float = 20.0
    ip_budget_burst: int = 200


class IngestService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        geo: GeoLocator,
        trusted_proxies: tuple[IPNetwork, ...],
        spool_dir: Path,
        directory: SiteDirectory,
        limits: IngestLimits | None = None,
    ) -> None:
        limits = limits or IngestLimits()
        self.db = db
        self.clock = clock
        self.salts = SaltKeeper(db)
        self.images = CounterImages(db)
        self.directory = directory
        self.sites = directory.cache  # the hot path's lookups, without a hop
        self.writer = HitWriter(
            db,
            Spool(spool_dir),
            clock,
            on_counted=self.images.counted,
            on_gone=directory.forget,  # a write found the site deleted: stop counting it
        )
        self.loop_lag = LoopLag()  # measured while `run()` runs on the serving event loop
        self.steps = pipeline.build_pipeline(
            trusted_proxies,
            self.salts,
            geo,
            TokenBuckets(limits.ip_budget_per_second, limits.ip_budget_burst),
            Backlog(limits.max_pending_hits),
            self.writer,
            self.loop_lag,
        )
        self._lost = 0

    @property
    def lost_hits(self) -> int:
        return self._lost + self.writer.stats.lost_hits

    def warm_up(self) -> list[SiteScope]:
        """Load every site and today's salt (a worker process calls it before serving)."""
        scopes = self.directory.warm_up()
        today = self.clock.now().astimezone(dt.UTC).date()
        self.salts.salt_for(today)
        self.salts.prefetch(today + dt.timedelta(days=1))
        return scopes

    # --- the hot path ----------------------------------------------------------------

    async def handle_async(self, request: HitRequest) -> HitResult:
        if not is_wellformed_key(request.key):
            return HitResult(Outcome.UNKNOWN_SITE, NEUTRAL)
        known, found = self.sites.peek(request.key)
        if not known:
            try:
                found = await _off_loop(self.sites.get, request.key)
            except SQLAlchemyError:
                return self._lost_hit("site lookup failed", NEUTRAL)
        if found is None:
            return HitResult(Outcome.UNKNOWN_SITE, NEUTRAL)
        hit = self._hit(request, found)
        outcome, reason = await self._count(hit)
        if outcome is Outcome.UNKNOWN_SITE:
            return HitResult(outcome, NEUTRAL)
        # The image is picked after the write: a site's first visitor already sees 1.
        image = self.images.peek(hit.scope)
        if image is None:
            try:
                image = await _off_loop(self.images.get, hit.scope)
            except SQLAlchemyError:
                image = NEUTRAL
        return HitResult(outcome, image, reason)

    async def look_async(self, key: str) -> HitResult:
        """What a GET of the counter would answer, counting nothing (``HEAD``)."""
        if not is_wellformed_key(key):
            return HitResult(Outcome.UNKNOWN_SITE, NEUTRAL)
        known, found = self.sites.peek(key)
        try:
            if not known:
                found = await _off_loop(self.sites.get, key)
            if found is None:
                return HitResult(Outcome.UNKNOWN_SITE, NEUTRAL)
            image = self.images.peek(found[0])
            if image is None:
                image = await _off_loop(self.images.get, found[0])
        except SQLAlchemyError:
            return HitResult(Outcome.NOT_RECORDED, NEUTRAL)
        return HitResult(Outcome.NOT_RECORDED, image)

    async def _count(self, hit: Hit) -> tuple[Outcome, DropReason | None]:
        if not self.salts.has(hit.day):
            try:
                await _off_loop(self.salts.salt_for, hit.day)
            except SQLAlchemyError:
                return self._lost_hit("no visitor salt", NEUTRAL).outcome, None
        reason = pipeline.run(self.steps, hit)
        if reason is not None:
            self._drop(hit, reason)
            return Outcome.DROPPED, reason
        visit = self._visit(hit)
        if visit.key in self.writer.known:
            return Outcome.REPEAT, None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Ack] = loop.create_future()
        timer = loop.call_later(ACK_TIMEOUT_SECONDS, _give_up, waiter)
        self.writer.submit(visit, waiter)
        try:
            ack = await waiter
        finally:
            timer.cancel()
        return ACK_OUTCOMES[ack], None

    # --- shared ----------------------------------------------------------------------

    def _hit(self, request: HitRequest, found: tuple[SiteScope, frozenset[str]]) -> Hit:
        scope, hostnames = found
        return Hit(
            scope=scope,
            hostnames=hostnames,
            received_at=self.clock.now(),
            peer_ip=request.peer_ip,
            forwarded_for=request.forwarded_for,
            user_agent=request.user_agent,
            referer=request.referer,
            purpose=request.purpose,
        )

    @staticmethod
    def _visit(hit: Hit) -> NewVisit:
        assert hit.visitor_hash is not None
        return NewVisit(hit.scope, hit.day, hit.visitor_hash, hit.location)

    def _drop(self, hit: Hit, reason: DropReason) -> None:
        self.writer.count_drop(DropKey(hit.scope, hit.day, reason.value))

    def _lost_hit(self, why: str, image: CounterImage) -> HitResult:
        # Logged without the hit's contents: no IP or user agent may reach the logs.
        log.error(
            "database unavailable (%s); hit not recorded",
            why,
            extra={"event": "hits_lost", "hits": 1},
        )
        self._lost += 1
        metrics.HITS_LOST.inc()
        return HitResult(Outcome.NOT_RECORDED, image)

    def forget_old_claims(self) -> int:
        """Ids of applied spool records are kept for a month: far longer than any spool
        waits for its database, so no segment can be replayed after its id is gone."""
        with self.db.session() as session:
            return repository.forget_spool_records_before(session, self.clock.now() - CLAIMS_KEPT)

    def prune_site_changes(self) -> int:
        with self.db.session() as session:
            return sites_repository.prune_changes(session, KEPT_CHANGES)

    def rotate_salts(self) -> int:
        return self.salts.rotate(self.clock.now().astimezone(dt.UTC).date())


async def _off_loop(func: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def _give_up(waiter: asyncio.Future[Ack]) -> None:
    if not waiter.done():
        waiter.set_result(Ack.QUEUED)
