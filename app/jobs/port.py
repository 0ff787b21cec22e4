"""The jobs port: how ``app/`` declares background work and asks for it by name.

``app/`` never imports a job engine. A feature declares its :class:`Task` s (work a
job runs, by name, with JSON arguments) and its :class:`Periodic` work (by name and
schedule); ``workers/`` lists those declarations and implements :class:`JobQueue`
with Procrastinate (PostgreSQL), and runs periodic work in-process where there is
no queue (``hitmap serve`` on SQLite). The entry points install the engine
(:func:`install`); without one, every caller runs its work in-process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from app.context import AppContext
    from app.jobs.schedule import Schedule
    from app.settings import Settings


class Outcome(Protocol):
    """What a job returns: its status ("rendered", "discarded", …) for the engine's log."""

    @property
    def status(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Task:
    """Work that a job runs: ``run(ctx, **args)``, on the named queue. Arguments are
    JSON values, so the job is the same in the queue's table and in-process. A task
    must be idempotent (a job may run twice) and discard itself when its site is gone."""

    name: str
    queue: str
    run: Callable[..., Outcome]


@dataclass(frozen=True, slots=True)
class Job:
    """One run of a task asked for by name. A queueing lock keeps a second job with
    the same lock out of the queue while the first one waits."""

    task: str
    args: Mapping[str, Any] = field(default_factory=dict)
    queueing_lock: str | None = None


class JobQueue(Protocol):
    """A job engine that queues jobs in the caller's transaction."""

    def ready(self, session: Session) -> bool:
        """Whether this database has the queue (else the work runs in-process)."""
        ...

    def defer(self, session: Session, jobs: Sequence[Job]) -> int:
        """Queue the jobs in the session's transaction: they exist if and only if it
        commits. Returns how many were queued; a job refused by its queueing lock (the
        same job is waiting) is skipped."""
        ...

    def install_schema(self, engine: Engine) -> bool:
        """Install the queue's tables where it runs; True if installed now."""
        ...


@dataclass(frozen=True, slots=True)
class Periodic:
    """Work that runs on a schedule, declared by name.

    ``run(ctx, start, queue)`` gets the scheduled start it runs for (UTC) and the job
    queue to fan out to, or None to do the work in this process. A job engine runs it
    at most once per start and process; work that must run once per start across
    processes claims the start itself (the nightly runner does, ``app.jobs.nightly``).
    """

    name: str  # the task name on the queue, and its queueing lock
    periodic_id: str
    queue: str
    schedule: Callable[[Settings], Schedule]
    run: Callable[[AppContext, dt.datetime, JobQueue | None], object]


_installed: list[JobQueue] = []


def install(queue: JobQueue) -> None:
    """Make ``queue`` the engine ``enqueue`` uses (the entry points do)."""
    _installed[:] = [queue]


def installed() -> JobQueue | None:
    return _installed[0] if _installed else None
