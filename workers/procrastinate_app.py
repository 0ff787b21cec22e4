"""The job engine on PostgreSQL: Procrastinate, wired to the map jobs of ``app.maps.tasks``.

* ``hitmap worker`` runs :func:`run_worker`; any number of worker processes, on any
  number of machines, share the queue in the database.
* The nightly run is a periodic task (cron from ``HITMAP_NIGHTLY_AT``, UTC). Every
  worker's periodic deferrer tries to defer it; Procrastinate's
  ``procrastinate_periodic_defers`` table lets exactly one succeed per night, and the
  task's queueing lock keeps a second one out of the queue.
* The nightly task claims its night in ``map_nightly_runs`` and defers one render job
  per site **in the same transaction**: the claim exists if and only if all site jobs
  are queued, so a crash before the commit is simply retried. Site jobs carry a
  queueing lock per site and purpose, so fanning out twice never queues a site twice.
* Requests (a style change) defer their job inside the request's transaction too.
* The nightly retention (``workers/retention_queue.py``) is a second periodic task on
  the same schedule and pattern, on its own queue; workers take both queues.

Procrastinate's own schema is installed by ``hitmap migrate`` (:func:`apply_schema`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import procrastinate
from procrastinate import exceptions as pexc
from procrastinate.schema import SchemaManager
from procrastinate.tasks import configure_task
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.context import AppContext
from app.maps import repository as repo
from app.maps import tasks
from app.maps.service import SPANS, Span

log = logging.getLogger("hitmap.worker")

QUEUE = "maps"
RENDER_TASK = "hitmap.maps.render_site"
NIGHTLY_TASK = "hitmap.maps.nightly"
BATCH = 500
_SCHEMA_LOCK = 4243  # advisory lock key while installing the schema


def conninfo(database_url: str) -> str:
    """libpq connection string from the SQLAlchemy URL (drops the +driver part)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("the job queue needs PostgreSQL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def night_of(timestamp: int) -> dt.date:
    """The night a periodic defer timestamp (the scheduled start, UTC) belongs to."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date()


def make_app(ctx: AppContext, *, schedule: bool = True) -> procrastinate.App:
    """A Procrastinate app whose tasks run the map jobs on ``ctx``.

    ``schedule=False`` leaves out the periodic nightly deferral (tests and the
    benchmark defer the nightly job themselves, at an injected time).
    """
    from workers.retention_queue import RETENTION_QUEUE, register_retention

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo(ctx.settings.effective_database_url), min_size=1, max_size=4
        ),
        worker_defaults={"delete_jobs": "successful", "queues": [QUEUE, RETENTION_QUEUE]},
        periodic_defaults={"max_delay": tasks.MAX_DELAY.total_seconds()},
    )
    retry = procrastinate.RetryStrategy(max_attempts=3, wait=30)

    @app.task(name=RENDER_TASK, queue=QUEUE, retry=retry)
    def render_site(
        site_id: int, spans: list[str], thumbnail: bool = True, reason: str = ""
    ) -> str:
        if reason == "nightly":
            return tasks.nightly_site_job(ctx, site_id).status
        return tasks.render_site_job(ctx, site_id, spans=spans, thumbnail=thumbnail).status

    @app.task(name=NIGHTLY_TASK, queue=QUEUE, queueing_lock=NIGHTLY_TASK, retry=retry)
    def nightly(timestamp: int) -> int | None:
        return fan_out_night(ctx, night_of(timestamp))

    if schedule:
        app.periodic(cron=tasks.cron_for(ctx.settings.nightly_at), periodic_id="nightly")(nightly)
    register_retention(app, ctx, schedule=schedule)
    return app


# One app only for deferring through a caller's connection: it never opens a pool.
DEFERRER = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())


def _render_job(site_id: int, spans: Sequence[Span | str], thumbnail: bool, reason: str) -> Any:
    return configure_task(
        name=RENDER_TASK,
        job_manager=DEFERRER.job_manager,
        queue=QUEUE,
        queueing_lock=f"maps:{reason}:{site_id}",
        task_kwargs={
            "site_id": site_id,
            "spans": [str(s) for s in spans],
            "thumbnail": thumbnail,
            "reason": reason,
        },
    ).job


def defer_renders(
    session: Session,
    site_ids: Sequence[int],
    *,
    spans: Sequence[Span | str] = SPANS,
    thumbnail: bool = True,
    reason: str,
) -> int:
    """Queue render jobs in the session's transaction; returns how many were queued.

    A site that already has a waiting job for the same ``reason`` is left alone
    (queueing lock): that job has not started, so it will see today's data anyway.
    """
    return defer_in_session(session, [_render_job(i, spans, thumbnail, reason) for i in site_ids])


def defer_in_session(session: Session, jobs: Sequence[Any]) -> int:
    """Queue Procrastinate jobs in the session's transaction; returns how many were
    queued. A job refused by its queueing lock (the same job is waiting) is skipped."""
    manager = DEFERRER.job_manager

    def raw() -> Any:
        # Inside begin_nested(): asking for the connection emits the SAVEPOINT, which
        # a refused job (queueing lock) rolls back to, keeping the transaction usable.
        return session.connection().connection.driver_connection

    queued = 0
    for start in range(0, len(jobs), BATCH):
        batch = list(jobs[start : start + BATCH])
        try:
            with session.begin_nested():
                manager.batch_defer_jobs(jobs=batch, connection=raw())
            queued += len(batch)
            continue
        except pexc.AlreadyEnqueued:
            pass
        for job in batch:  # some are waiting already: queue the others one by one
            try:
                with session.begin_nested():
                    manager.defer_job(job=job, connection=raw())
                queued += 1
            except pexc.AlreadyEnqueued:
                log.debug("job %s is waiting already", job.queueing_lock)
    return queued


def fan_out_night(ctx: AppContext, night: dt.date) -> int | None:
    """Claim the night and queue one render job per site, atomically. None when the
    night was claimed before (a second nightly job for the same night does nothing)."""
    with ctx.db.session() as session:
        if not repo.claim_night(session, night, ctx.clock.now()):
            log.info("nightly maps for %s were already queued", night)
            return None
        site_ids = repo.all_site_ids(session)
        queued = defer_renders(session, site_ids, reason="nightly")
        repo.finish_night(session, night, len(site_ids), ctx.clock.now())
    log.info("nightly maps for %s: %d sites, %d jobs queued", night, len(site_ids), queued)
    return queued


# --- schema and worker ---------------------------------------------------------------


def schema_installed(engine: Engine) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return bool(conn.scalar(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")))


def apply_schema(engine: Engine) -> bool:
    """Install Procrastinate's schema on PostgreSQL unless present; True if installed now.

    A newer Procrastinate release ships migration scripts (``procrastinate
    schema --migrations-path``): apply them when upgrading it.
    """
    if engine.dialect.name != "postgresql":
        return False
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k, 0)"), {"k": _SCHEMA_LOCK})
        if conn.scalar(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")):
            return False
        # No parameters: psycopg sends the script as is, all statements at once.
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute(SchemaManager.get_schema())
    return True


def run_worker(
    ctx: AppContext,
    *,
    concurrency: int = 1,
    once: bool = False,
    name: str | None = None,
    schedule: bool = True,
) -> None:
    """Run one worker until stopped (SIGINT/SIGTERM), or until the queue is empty
    (``once``). ``concurrency`` jobs run in threads at once: a job waits on the
    database part of the time, so two per process keep a core busier."""
    from app.maps.renderer.render import warm_up

    warm_up()  # every base map drawn once, before the first job
    app = make_app(ctx, schedule=schedule)
    options: dict[str, Any] = {"concurrency": concurrency, "wait": not once}
    if name:
        options["name"] = name

    async def main() -> None:
        async with app.open_async():
            await app.run_worker_async(**options)

    asyncio.run(main())


def job_counts(engine: Engine) -> dict[str, int]:
    """Jobs per status in the maps queue (for the benchmark and operators)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status::text, count(*) FROM procrastinate_jobs WHERE queue_name = :q "
                "GROUP BY status"
            ),
            {"q": QUEUE},
        )
        return {status: int(n) for status, n in rows}
