"""The retention jobs as plain functions of an :class:`AppContext`.

Both job engines call these: Procrastinate workers on PostgreSQL
(``workers/retention_queue.py``) and the in-process scheduler of ``hitmap serve``
on SQLite (``workers/scheduler.py``). A job carries a site id and the night it
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


# --- the nightly run ------------------------------------------------------------------


def claim_night(ctx: AppContext, night: dt.date) -> list[int] | None:
    """The ids of the sites with a retention if this caller starts the night's run;
    None when it was started before (by this or another process)."""
    with ctx.db.session() as session:
        if not repo.claim_night(session, night, ctx.clock.now()):
            return None
        return repo.sites_with_retention(session, ctx.settings.retention_days)


def finish_night(ctx: AppContext, night: dt.date, sites: int) -> None:
    with ctx.db.session() as session:
        repo.finish_night(session, night, sites, ctx.clock.now())


@dataclass(frozen=True, slots=True)
class NightReport:
    night: dt.date
    sites: int
    visits: int
    clicks: int
    discarded: int
    failed: int


def run_night_in_process(ctx: AppContext, night: dt.date) -> NightReport | None:
    """The embedded engine: claim the night, then purge every site here, one by one.
    None when the night was already claimed."""
    site_ids = claim_night(ctx, night)
    if site_ids is None:
        return None
    visits = clicks = discarded = failed = 0
    for site_id in site_ids:
        try:
            result = purge_site_job(ctx, site_id, night)
        except Exception:
            log.exception("retention of site %s failed; the next night retries", site_id)
            failed += 1
            continue
        visits += result.visits
        clicks += result.clicks
        discarded += result.status == "discarded"
    finish_night(ctx, night, len(site_ids))
    report = NightReport(night, len(site_ids), visits, clicks, discarded, failed)
    log.info(
        "retention for %s: %d sites, %d visits and %d clicks deleted, %d failed",
        night,
        report.sites,
        report.visits,
        report.clicks,
        report.failed,
    )
    return report
