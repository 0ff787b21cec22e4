"""The embedded engine: ``hitmap serve`` on SQLite runs the periodic work in-process.

The same declarations (``workers/catalog.py``) and task functions as the Procrastinate
workers on PostgreSQL, on each one's schedule; the clock is the context's, so tests
drive the schedule. Work due at once runs in the catalog's order (the retention
before the maps). Nightly work claims its night in the database (``app.jobs.nightly``):
one run per night, even across restarts or a second server process on the same
database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool

from app.context import AppContext
from app.jobs.port import Periodic
from workers.catalog import PERIODIC

log = logging.getLogger("hitmap.scheduler")

TICK_SECONDS = 60.0


class PeriodicScheduler:
    """Checks once per tick which periodic work is due and runs it here."""

    def __init__(self, ctx: AppContext, work: Iterable[Periodic] = PERIODIC) -> None:
        self.ctx = ctx
        self.work = tuple(work)
        self.last: dict[str, dt.datetime] = {}  # spares the database between starts

    def tick(self) -> dict[str, object]:
        """Run whatever is due; each run's report by the work's name."""
        now = self.ctx.clock.now()
        reports: dict[str, object] = {}
        for work in self.work:
            start = work.schedule(self.ctx.settings).due(now)
            if start is None or self.last.get(work.name) == start:
                continue
            try:
                reports[work.name] = work.run(self.ctx, start, None)
            except Exception:
                # The others still run; this one is tried again at the next tick.
                log.exception("%s for %s failed; will retry", work.name, start)
                continue
            self.last[work.name] = start
        return reports


def runs_in_process(ctx: AppContext) -> bool:
    """SQLite: yes. PostgreSQL: `hitmap worker` processes run the periodic work."""
    return ctx.db.dialect == "sqlite"


async def run_forever(ctx: AppContext, interval: float | None = None) -> None:
    interval = TICK_SECONDS if interval is None else interval
    if not runs_in_process(ctx):
        log.info("periodic work runs on `hitmap worker` processes (PostgreSQL job queue)")
        return
    scheduler = PeriodicScheduler(ctx)
    while True:
        # First tick after one interval: start-up stays quick, and nightly work is
        # claimed in the database, so a restart does not run it twice.
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(scheduler.tick)
        except Exception:
            log.exception("periodic work failed; will retry at the next tick")
