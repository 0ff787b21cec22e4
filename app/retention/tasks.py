"""The retention jobs as plain functions of an :class:`AppContext`.

Declared as a task by name (``PURGE``) and as nightly work (``NIGHTLY``, through the
shared nightly runner of ``app.jobs.nightly``); whichever job engine ``workers/``
provides runs these. A job carries a site id and the night it
belongs to, so it is idempotent: the cutoff follows from the night, not from when
the job happens to run, and a second run finds nothing more to delete. It
discards itself (returns quietly, with a log line) when the site is gone.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.context import AppContext
from app.jobs import nightly
from app.jobs.nightly import NightlyWork
from app.jobs.port import Job, Task
from app.models import RetentionRun
from app.retention import repository as repo
from app.retention import service
from app.sites import authz
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.retention")

# Rows per delete statement, each in its own short transaction: ingest (which
# writes today's rows) never waits behind a long delete, on SQLite for the one
# write lock, on PostgreSQL for nothing it touches but the index pages.
BATCH = 5000
# A breath between batches, so SQLite's waiting hit writer gets the write lock.
PAUSE_SECONDS = 0.01
QUEUE = "retention"


@dataclass(frozen=True, slots=True)
class PurgeResult:
    site_id: int
    status: str  # "purged", "kept" (the site keeps everything) or "discarded"
    before: dt.date | None = None  # rows of days before this one were deleted
    visits: int = 0
    clicks: int = 0


def purge_site_job(
    ctx: AppContext,
    site_id: int,
    night: dt.date,
    *,
    batch: int = BATCH,
    pause: float = PAUSE_SECONDS,
) -> PurgeResult:
    """Delete the site's raw visits and clicks older than its retention on ``night``."""
    with ctx.db.session() as session:
        scope = authz.site_for_job(session, site_id)
        if scope is None:
            log.info("site %s no longer exists; retention job discarded", site_id)
            return PurgeResult(site_id, "discarded")
        choice = service.choice_of(session, scope)
    before = service.cutoff(night, service.effective_days(choice, ctx.settings.retention_days))
    if before is None:
        return PurgeResult(site_id, "kept")
    visits = _in_batches(ctx, scope, before, repo.delete_old_visits, batch, pause)
    clicks = _in_batches(ctx, scope, before, repo.delete_old_clicks, batch, pause)
    if visits or clicks:
        log.info(
            "site %s: deleted %d visits and %d clicks of days before %s",
            site_id,
            visits,
            clicks,
            before,
        )
    return PurgeResult(site_id, "purged", before, visits, clicks)


Delete = Callable[[Session, SiteScope, dt.date, int], int]


def _in_batches(
    ctx: AppContext, scope: SiteScope, before: dt.date, delete: Delete, batch: int, pause: float
) -> int:
    """Run ``delete`` one committed batch at a time until a batch finds nothing."""
    total = 0
    while True:
        with ctx.db.session() as session:
            deleted = delete(session, scope, before, batch)
        if deleted == 0:
            return total
        total += deleted
        if pause:
            time.sleep(pause)


# --- as jobs -----------------------------------------------------------------------


def purge_site_task(ctx: AppContext, site_id: int, night: str) -> PurgeResult:
    """The purge job by name; the night travels as an ISO date."""
    return purge_site_job(ctx, site_id, dt.date.fromisoformat(night))


PURGE = Task("hitmap.retention.purge_site", QUEUE, purge_site_task)


def purge_job(site_id: int, night: dt.date) -> Job:
    return Job(PURGE.name, {"site_id": site_id, "night": night.isoformat()}, f"retention:{site_id}")


def _sites_with_retention(session: Session, ctx: AppContext) -> list[int]:
    return repo.sites_with_retention(session, ctx.settings.retention_days)


NIGHT = NightlyWork("retention", RetentionRun, PURGE, _sites_with_retention, purge_job)
NIGHTLY = nightly.periodic(NIGHT, name="hitmap.retention.nightly", periodic_id="retention")
