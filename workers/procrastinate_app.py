"""The job engine on PostgreSQL: Procrastinate, implementing the jobs port of ``app.jobs``.

* ``hitmap worker`` runs :func:`run_worker`; any number of worker processes, on any
  number of machines, share the queues in the database. They run every task and
  periodic work of ``workers/catalog.py``.
* Periodic work is a periodic task (its schedule's cron line, UTC). Every worker's
  periodic deferrer tries to defer it; Procrastinate's ``procrastinate_periodic_defers``
  table lets exactly one succeed per scheduled time, and the task's queueing lock
  keeps a second one out of the queue. The nightly maps and retention fan out from
  there (``app.jobs.nightly``: the claim and one job per site in one transaction).
* :class:`ProcrastinateQueue` is the port's ``JobQueue``: ``app.jobs.service.enqueue``
  defers through it in the caller's transaction (a style change's render).

Procrastinate's own schema is installed by ``hitmap migrate`` (:func:`apply_schema`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import procrastinate
from procrastinate import exceptions as pexc
from procrastinate.schema import SchemaManager
from procrastinate.tasks import configure_task
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.context import AppContext
from app.jobs import port
from app.jobs.port import Job, Periodic, Task
from workers.catalog import PERIODIC, TASKS

log = logging.getLogger("hitmap.worker")

BATCH = 500
_SCHEMA_LOCK = 4243  # advisory lock key while installing the schema
_SCHEMA_PRESENT = text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")


def conninfo(database_url: str) -> str:
    """libpq connection string from the SQLAlchemy URL (drops the +driver part)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("the job queue needs PostgreSQL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def make_app(
    ctx: AppContext,
    *,
    schedule: bool = True,
    tasks: Iterable[Task] = TASKS,
    periodic: Iterable[Periodic] = PERIODIC,
) -> procrastinate.App:
    """A Procrastinate app whose tasks run the declared work on ``ctx``.

    ``schedule=False`` leaves out the periodic deferral (tests and the benchmark
    defer periodic work themselves, at an injected time).
    """
    tasks, periodic = tuple(tasks), tuple(periodic)
    schedules = [work.schedule(ctx.settings) for work in periodic]
    queues = sorted({t.queue for t in tasks} | {w.queue for w in periodic})
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo(ctx.settings.effective_database_url), min_size=1, max_size=4
        ),
        worker_defaults={"delete_jobs": "successful", "queues": queues},
        # Procrastinate has one catch-up limit for all periodic tasks (used when a
        # worker starts): the most patient schedule's.
        periodic_defaults={
            "max_delay": max(
                (s.max_delay for s in schedules), default=dt.timedelta(0)
            ).total_seconds()
        },
    )
    retry = procrastinate.RetryStrategy(max_attempts=3, wait=30)
    for task in tasks:
        app.task(name=task.name, queue=task.queue, retry=retry)(_runner(ctx, task))
    for work, when in zip(periodic, schedules, strict=True):
        registered = app.task(
            name=work.name, queue=work.queue, queueing_lock=work.name, retry=retry
        )(_periodic_runner(ctx, work))
        if schedule:
            app.periodic(cron=when.cron(), periodic_id=work.periodic_id)(registered)
    return app


def _runner(ctx: AppContext, task: Task) -> Any:
    def run(**args: Any) -> str:
        return task.run(ctx, **args).status

    return run


def _periodic_runner(ctx: AppContext, work: Periodic) -> Any:
    def run(timestamp: int) -> Any:
        result = work.run(ctx, dt.datetime.fromtimestamp(timestamp, dt.UTC), QUEUE)
        return result if result is None or isinstance(result, int | str) else str(result)

    return run


# One app only for deferring through a caller's connection: it never opens a pool.
DEFERRER = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
_QUEUE_OF = {task.name: task.queue for task in TASKS} | {w.name: w.queue for w in PERIODIC}


def _procrastinate_job(job: Job) -> Any:
    return configure_task(
        name=job.task,
        job_manager=DEFERRER.job_manager,
        queue=_QUEUE_OF[job.task],
        queueing_lock=job.queueing_lock,
        task_kwargs=dict(job.args),
    ).job


def defer_in_session(session: Session, jobs: Sequence[Job]) -> int:
    """Queue jobs in the session's transaction; returns how many were queued. A job
    refused by its queueing lock (the same job is waiting) is skipped."""
    manager = DEFERRER.job_manager
    pending = [_procrastinate_job(job) for job in jobs]

    def raw() -> Any:
        # Inside begin_nested(): asking for the connection emits the SAVEPOINT, which
        # a refused job (queueing lock) rolls back to, keeping the transaction usable.
        return session.connection().connection.driver_connection

    queued = 0
    for start in range(0, len(pending), BATCH):
        batch = pending[start : start + BATCH]
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


class ProcrastinateQueue:
    """The jobs port on Procrastinate's tables (``app.jobs.port.JobQueue``)."""

    def ready(self, session: Session) -> bool:
        return schema_installed(session)

    def defer(self, session: Session, jobs: Sequence[Job]) -> int:
        return defer_in_session(session, jobs)

    def install_schema(self, engine: Engine) -> bool:
        return apply_schema(engine)


QUEUE = ProcrastinateQueue()


def install() -> None:
    """Make Procrastinate the engine behind ``app.jobs`` (the entry points call this)."""
    port.install(QUEUE)


# --- schema and worker ---------------------------------------------------------------


def schema_installed(bind: Engine | Connection | Session) -> bool:
    """Whether Procrastinate's tables are here: PostgreSQL after ``hitmap migrate``."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    if dialect.name != "postgresql":
        return False  # checked first: on SQLite a session's first statement takes the lock
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return bool(conn.scalar(_SCHEMA_PRESENT))
    return bool(bind.scalar(_SCHEMA_PRESENT))


def apply_schema(engine: Engine) -> bool:
    """Install Procrastinate's schema on PostgreSQL unless present; True if installed now.

    A newer Procrastinate release ships migration scripts (``procrastinate
    schema --migrations-path``): apply them when upgrading it.
    """
    if engine.dialect.name != "postgresql":
        return False
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k, 0)"), {"k": _SCHEMA_LOCK})
        if schema_installed(conn):
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


def job_counts(engine: Engine, queue: str = "maps") -> dict[str, int]:
    """Jobs per status in a queue (for the benchmark and operators)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status::text, count(*) FROM procrastinate_jobs WHERE queue_name = :q "
                "GROUP BY status"
            ),
            {"q": queue},
        )
        return {status: int(n) for status, n in rows}
