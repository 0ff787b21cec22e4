"""Periodic work is declared by name and schedule; the in-process scheduler of
`hitmap serve` runs it on the injected clock, hourly as well as nightly, and
Procrastinate defers it on the same schedule."""

from __future__ import annotations

import asyncio
import datetime as dt

from app.jobs import service as jobs
from app.jobs.port import Periodic
from app.jobs.schedule import hourly
from tests.workers.procrastinate_helpers import (
    deferred_by_two_workers,
    queue_context,
    queue_jobs,
    run_two_workers,
)
from workers.scheduler import PeriodicScheduler

UTC = dt.UTC


def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, 23, hour, minute, second, tzinfo=UTC)


def _hourly(runs: list[tuple[dt.datetime, object]]) -> Periodic:
    def record(ctx, start, queue):
        runs.append((start, queue))
        return len(runs)

    return Periodic("test.hourly", "test-hourly", "test", lambda _settings: hourly(20), record)


def test_an_hourly_declaration_runs_once_per_hour_in_process(ctx, clock):
    runs: list[tuple[dt.datetime, object]] = []
    scheduler = PeriodicScheduler(ctx, [_hourly(runs)])

    clock.set(at(9, 19))
    assert scheduler.tick() == {}  # 08:20 is more than half an hour ago
    clock.set(at(9, 20))
    assert scheduler.tick() == {"test.hourly": 1}
    clock.set(at(9, 50))
    assert scheduler.tick() == {}  # the same hour
    clock.set(at(10, 21))
    assert scheduler.tick() == {"test.hourly": 2}
    assert runs == [(at(9, 20), None), (at(10, 20), None)]  # None: run here, no queue


def test_a_failing_run_is_retried_at_the_next_tick_and_others_still_run(ctx, clock):
    runs: list[tuple[dt.datetime, object]] = []
    attempts: list[dt.datetime] = []

    def flaky(ctx, start, queue):
        attempts.append(start)
        if len(attempts) == 1:
            raise RuntimeError("database locked")
        return "ok"

    broken = Periodic("test.flaky", "test-flaky", "test", lambda _s: hourly(20), flaky)
    scheduler = PeriodicScheduler(ctx, [broken, _hourly(runs)])
    clock.set(at(9, 21))
    assert scheduler.tick() == {"test.hourly": 1}
    assert scheduler.tick() == {"test.flaky": "ok"}
    assert attempts == [at(9, 20), at(9, 20)]


def test_without_a_job_queue_enqueue_asks_the_caller_to_run_the_work(ctx, monkeypatch):
    from app.jobs import port
    from workers import procrastinate_app as engine_app

    monkeypatch.setattr(port, "_installed", [])
    with ctx.db.session() as session:
        assert jobs.enqueue(session, "hitmap.maps.render_site", site_id=1) is None  # no engine
    engine_app.install()  # as the entry points do
    with ctx.db.session() as session:
        # SQLite, or PostgreSQL without Procrastinate's tables (the test database).
        assert jobs.enqueue(session, "hitmap.maps.render_site", site_id=1) is None
        assert jobs.enqueue_all(session, []) is None


def test_procrastinate_runs_an_hourly_declaration_once_per_hour(settings, tmp_path, monkeypatch):
    from workers import procrastinate_app as engine_app

    runs: list[tuple[dt.datetime, object]] = []
    declared = _hourly(runs)
    original = engine_app.make_app

    def with_only_the_hourly(ctx, *, schedule=True, **_catalog):
        return original(ctx, schedule=schedule, tasks=(), periodic=(declared,))

    monkeypatch.setattr(engine_app, "make_app", with_only_the_hourly)
    with queue_context(settings, tmp_path) as ctx:
        for hour, jobs_so_far in ((9, 1), (10, 2)):
            ctx.clock.set(at(hour, 20, 5))  # type: ignore[attr-defined]
            asyncio.run(deferred_by_two_workers(ctx))
            asyncio.run(deferred_by_two_workers(ctx))  # a restarted worker: still one
            asyncio.run(run_two_workers(ctx, "test", expected_jobs=jobs_so_far))
        done = queue_jobs(ctx, "test")
    assert [(name, status) for name, status, _ in done] == [("test.hourly", "succeeded")] * 2
    assert runs == [(at(9, 20), engine_app.QUEUE), (at(10, 20), engine_app.QUEUE)]
