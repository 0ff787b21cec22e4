"""The nightly runner: claim the night, list the sites, then run one job per site here
or queue them all.

Maps and retention are both this pattern. The night is claimed in a table of its own
per kind of work (one row per night), so it runs once however many processes try,
even across restarts. With a job queue, the claim and every site's job are written
in **one transaction**: the claim exists if and only if all site jobs are queued, so
a crash before the commit is simply retried; each job's queueing lock keeps a site
from being queued twice. Without one (``hitmap serve`` on SQLite), the same task
runs here for each site in turn, and one failing site does not stop the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.jobs import repository as repo
from app.jobs.port import Job, JobQueue, Outcome, Periodic, Task
from app.jobs.schedule import Schedule, nightly

if TYPE_CHECKING:
    # Annotations only: the runner gets a context, it never builds one.
    from sqlalchemy.orm import Session

    from app.context import AppContext
    from app.settings import Settings

log = logging.getLogger("hitmap.nightly")


@dataclass(frozen=True, slots=True)
class NightlyWork:
    what: str  # in logs: "maps", "retention"
    runs: repo.NightRun  # the claim table
    task: Task  # the per-site task
    sites: Callable[[Session, AppContext], list[int]]  # the sites to run it for
    job: Callable[[int, dt.date], Job]  # one site's job for the night


@dataclass(frozen=True, slots=True)
class NightReport:
    night: dt.date
    sites: int
    statuses: Mapping[str, int]  # jobs per status ("rendered", "discarded", …)
    failed: int

    def count(self, status: str) -> int:
        return self.statuses.get(status, 0)


def run_night(
    work: NightlyWork, ctx: AppContext, start: dt.datetime, queue: JobQueue | None
) -> NightReport | int | None:
    """The periodic work: the night (named by the UTC date of its start) in-process
    without a queue, else fanned out. None when the night was claimed before."""
    night = start.astimezone(dt.UTC).date()
    if queue is None:
        return run_in_process(ctx, work, night)
    return fan_out(ctx, work, night, queue)


def periodic(work: NightlyWork, *, name: str, periodic_id: str) -> Periodic:
    """``work`` declared as periodic work at ``HITMAP_NIGHTLY_AT``, on its task's queue."""

    def at_nightly_at(settings: Settings) -> Schedule:
        return nightly(settings.nightly_at)

    def run(ctx: AppContext, start: dt.datetime, queue: JobQueue | None) -> object:
        return run_night(work, ctx, start, queue)

    return Periodic(name, periodic_id, work.task.queue, at_nightly_at, run)


def fan_out(ctx: AppContext, work: NightlyWork, night: dt.date, queue: JobQueue) -> int | None:
    """Claim the night and queue one job per site, atomically; how many were queued."""
    with ctx.db.session() as session:
        if not repo.claim_night(session, work.runs, night, ctx.clock.now()):
            log.info("nightly %s for %s were already queued", work.what, night)
            return None
        site_ids = work.sites(session, ctx)
        queued = queue.defer(session, [work.job(i, night) for i in site_ids])
        repo.finish_night(session, work.runs, night, len(site_ids), ctx.clock.now())
    log.info("nightly %s for %s: %d sites, %d jobs queued", work.what, night, len(site_ids), queued)
    return queued


def run_in_process(
    ctx: AppContext,
    work: NightlyWork,
    night: dt.date,
    *,
    progress: Callable[[Outcome], None] | None = None,
) -> NightReport | None:
    """Claim the night, then run every site's job here, one by one."""
    with ctx.db.session() as session:
        if not repo.claim_night(session, work.runs, night, ctx.clock.now()):
            return None
        site_ids = work.sites(session, ctx)
    log.info("nightly %s for %s: %d sites", work.what, night, len(site_ids))
    statuses: Counter[str] = Counter()
    failed = 0
    for site_id in site_ids:
        job = work.job(site_id, night)
        try:
            result = work.task.run(ctx, **job.args)
        except Exception:
            log.exception(
                "nightly %s of site %s failed; the next night retries", work.what, site_id
            )
            failed += 1
            continue
        statuses[result.status] += 1
        if progress is not None:
            progress(result)
    with ctx.db.session() as session:
        repo.finish_night(session, work.runs, night, len(site_ids), ctx.clock.now())
    report = NightReport(night, len(site_ids), dict(statuses), failed)
    log.info(
        "nightly %s for %s: %d sites, %s, %d failed",
        work.what,
        night,
        report.sites,
        ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "no jobs",
        report.failed,
    )
    return report
