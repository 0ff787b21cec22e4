"""The nightly retention on PostgreSQL, through Procrastinate (``hitmap worker``).

Built like the nightly maps (``workers/procrastinate_app.py``): a periodic task on
the same cron (``HITMAP_NIGHTLY_AT``, UTC) that Procrastinate defers once per
scheduled time however many workers run, with a queueing lock that keeps a second
one out of the queue. It claims the night in ``retention_runs`` and defers one
purge job per site that has a retention, **in the same transaction**: the claim
exists if and only if the site jobs are queued. A purge job carries the site id
and the night, deletes in committed batches, and discards itself when the site is
gone (``app.retention.tasks``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import procrastinate
from procrastinate.tasks import configure_task

from app.context import AppContext
from app.maps.tasks import cron_for
from app.retention import repository as repo
from app.retention import tasks
from workers.procrastinate_app import DEFERRER, defer_in_session, night_of

log = logging.getLogger("hitmap.worker")

RETENTION_QUEUE = "retention"
PURGE_TASK = "hitmap.retention.purge_site"
NIGHTLY_RETENTION_TASK = "hitmap.retention.nightly"


def register_retention(app: procrastinate.App, ctx: AppContext, *, schedule: bool) -> None:
    """Add the retention tasks (and, with ``schedule``, their nightly periodic defer)."""
    retry = procrastinate.RetryStrategy(max_attempts=3, wait=30)

    @app.task(name=PURGE_TASK, queue=RETENTION_QUEUE, retry=retry)
    def purge_site(site_id: int, night: str) -> str:
        return tasks.purge_site_job(ctx, site_id, dt.date.fromisoformat(night)).status

    @app.task(
        name=NIGHTLY_RETENTION_TASK,
        queue=RETENTION_QUEUE,
        queueing_lock=NIGHTLY_RETENTION_TASK,
        retry=retry,
    )
    def nightly_retention(timestamp: int) -> int | None:
        return fan_out_night(ctx, night_of(timestamp))

    if schedule:
        cron = cron_for(ctx.settings.nightly_at)
        app.periodic(cron=cron, periodic_id="retention")(nightly_retention)


def _purge_job(site_id: int, night: dt.date) -> Any:
    return configure_task(
        name=PURGE_TASK,
        job_manager=DEFERRER.job_manager,
        queue=RETENTION_QUEUE,
        queueing_lock=f"retention:{site_id}",
        task_kwargs={"site_id": site_id, "night": night.isoformat()},
    ).job


def fan_out_night(ctx: AppContext, night: dt.date) -> int | None:
    """Claim the night and queue one purge job per site with a retention, atomically.
    None when the night was claimed before."""
    with ctx.db.session() as session:
        if not repo.claim_night(session, night, ctx.clock.now()):
            log.info("retention for %s was already queued", night)
            return None
        site_ids = repo.sites_with_retention(session, ctx.settings.retention_days)
        queued = defer_in_session(session, [_purge_job(i, night) for i in site_ids])
        repo.finish_night(session, night, len(site_ids), ctx.clock.now())
    log.info("retention for %s: %d sites, %d jobs queued", night, len(site_ids), queued)
    return queued
