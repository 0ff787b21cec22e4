"""Asking for work by name: ``enqueue`` in the caller's transaction, or in-process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.jobs.port import Job, JobQueue, installed


def queue_for(session: Session) -> JobQueue | None:
    """The installed job queue if this database has it; None: run work in-process."""
    queue = installed()
    return queue if queue is not None and queue.ready(session) else None


def enqueue(
    session: Session, name: str, *, queueing_lock: str | None = None, **args: Any
) -> bool | None:
    """Queue task ``name`` with ``args`` in the session's transaction (the job exists
    if and only if it commits). True: queued; False: a job with the same queueing lock
    is waiting already (it has not started, so it will see this change too); None: no
    job queue here, the caller runs the work itself (after its commit)."""
    queued = enqueue_all(session, [Job(name, args, queueing_lock)])
    return None if queued is None else queued == 1


def enqueue_all(session: Session, jobs: Sequence[Job]) -> int | None:
    """Queue many jobs at once; how many were queued, or None without a job queue."""
    queue = queue_for(session)
    return None if queue is None else queue.defer(session, jobs)


def install_schema(engine: Engine) -> bool:
    """Install the job queue's tables where the installed engine runs (``hitmap
    migrate``, ``hitmap restore``); True if installed now."""
    queue = installed()
    return queue is not None and queue.install_schema(engine)
