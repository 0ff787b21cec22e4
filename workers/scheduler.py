"""The embedded engine: ``hitmap serve`` on SQLite runs the nightly work in-process.

Same task functions, same schedule (``HITMAP_NIGHTLY_AT``, UTC) as the Procrastinate
workers on PostgreSQL; the clock is the context's, so tests drive the schedule.
A night runs the retention first (old raw rows go before the heatmaps are drawn),
then the maps. Each is claimed on its own (``retention_runs``, ``map_nightly_runs``):
one run of each per night, even across restarts or a second server process on the
same database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from starlette.concurrency import run_in_threadpool

from app.context import AppContext
from app.maps import tasks
from app.retention import tasks as retention

log = logging.getLogger("hitmap.scheduler")

TICK_SECONDS = 60.0


class NightlyScheduler:
    """Checks once per tick whether a night is due and, if so, runs it here."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.last_night: dt.date | None = None  # spares the database between nights

    def tick(self) -> tasks.NightReport | None:
        night = tasks.due_night(self.ctx.clock.now(), self.ctx.settings.nightly_at)
        if night is None or night == self.last_night:
            return None
        try:
            retention.run_night_in_process(self.ctx, night)
        except Exception:
            # The maps still run; the next night deletes what this one left.
            log.exception("retention for %s failed", night)
        report = tasks.run_night_in_process(self.ctx, night)
        self.last_night = night
        if report is not None:
            log.info(
                "nightly maps for %s: %d sites, %d rendered, %d unchanged, %d failed",
                night,
                report.sites,
                report.rendered,
                report.unchanged,
                report.failed,
            )
        return report


def runs_in_process(ctx: AppContext) -> bool:
    """SQLite: yes. PostgreSQL: `hitmap worker` processes run the nightly work."""
    return ctx.db.dialect == "sqlite"


async def run_forever(ctx: AppContext, interval: float | None = None) -> None:
    interval = TICK_SECONDS if interval is None else interval
    if not runs_in_process(ctx):
        log.info("nightly maps run on `hitmap worker` processes (PostgreSQL job queue)")
        return
    scheduler = NightlyScheduler(ctx)
    while True:
        # First tick after one interval: start-up stays quick, and the night is
        # claimed in the database, so a restart does not run it twice.
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(scheduler.tick)
        except Exception:
            log.exception("nightly maps failed; will retry at the next tick")
