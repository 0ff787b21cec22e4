"""Procrastinate on a database of the test's own: the context, each worker's periodic
deferrer asked what is due at the test clock's "now", and two real workers sharing the
queues until every job of one queue has finished.

Workers use their own connections, so these tests cannot run in the rolled-back test
transaction (as the live-server tests cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from procrastinate.periodic import PeriodicDeferrer
from sqlalchemy import text

from app.clock import FixedClock
from app.context import AppContext, build_context
from app.db import Database, make_engine
from app.migrate import upgrade
from app.settings import Settings
from tests.live import own_database
from workers import procrastinate_app as engine_app

NOON = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)


@contextlib.contextmanager
def queue_context(settings: Settings, tmp_path: Path) -> Iterator[AppContext]:
    """A context on a fresh PostgreSQL database with the job queue installed."""
    with own_database("postgresql", tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine_app.apply_schema(engine)
        engine_app.install()  # as the entry points do: app.jobs defers through it
        settings.database_url = url
        ctx = build_context(settings, db=Database(engine), clock=FixedClock(NOON))
        try:
            yield ctx
        finally:
            engine.dispose()


def queue_jobs(ctx: AppContext, queue: str) -> list[tuple[str, str, dict]]:
    """(task, status, args) of one queue's jobs, oldest first."""
    with ctx.db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT task_name, status::text, args FROM procrastinate_jobs "
                "WHERE queue_name = :q ORDER BY id"
            ),
            {"q": queue},
        )
        return [(name, status, args) for name, status, args in rows]


async def deferred_by_two_workers(ctx: AppContext) -> None:
    """What both workers' periodic deferrers do at the clock's "now"."""
    apps = [engine_app.make_app(ctx, schedule=True) for _ in range(2)]
    for app in apps:
        async with app.open_async():
            deferrer = PeriodicDeferrer(registry=app.periodic_registry, **app.periodic_defaults)
            await deferrer.defer_jobs(deferrer.get_previous_tasks(at=ctx.clock.now().timestamp()))


async def run_two_workers(ctx: AppContext, queue: str, expected_jobs: int) -> None:
    """Two workers on the queues until every job of ``queue`` has finished."""
    apps = [engine_app.make_app(ctx, schedule=False) for _ in range(2)]
    async with apps[0].open_async(), apps[1].open_async():
        workers = [
            asyncio.create_task(
                app.run_worker_async(
                    name=f"w{i}",
                    install_signal_handlers=False,
                    fetch_job_polling_interval=0.1,
                    delete_jobs="never",
                )
            )
            for i, app in enumerate(apps, 1)
        ]
        try:
            for _ in range(600):
                jobs = queue_jobs(ctx, queue)
                if len(jobs) >= expected_jobs and all(
                    s not in ("todo", "doing") for _, s, _ in jobs
                ):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"jobs did not finish: {queue_jobs(ctx, queue)}")
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
