"""`hitmap serve` runs the periodic work in-process on SQLite, and leaves it to
`hitmap worker` on PostgreSQL. (The schedules themselves: tests/jobs/test_schedule.py,
tests/maps/test_jobs.py.)"""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

import workers.scheduler as scheduler
from app.main import create_app


def test_serve_ticks_the_nightly_scheduler_on_sqlite_only(ctx, monkeypatch):
    ticked = threading.Event()
    monkeypatch.setattr(scheduler, "TICK_SECONDS", 0.01)
    monkeypatch.setattr(scheduler.PeriodicScheduler, "tick", lambda self: ticked.set())
    with TestClient(create_app(ctx, background_jobs=True)):
        ran = ticked.wait(3)
    assert ran == (ctx.db.dialect == "sqlite")
    ticked.clear()
    with TestClient(create_app(ctx)):
        assert not ticked.wait(0.2), "tests' apps must not run background jobs"


def test_a_failing_tick_is_retried(ctx, monkeypatch, caplog):
    import asyncio

    if ctx.db.dialect != "sqlite":
        assert asyncio.run(asyncio.wait_for(scheduler.run_forever(ctx, 0.01), 1)) is None
        return
    calls = []

    def flaky(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database locked")

    monkeypatch.setattr(scheduler.PeriodicScheduler, "tick", flaky)

    async def run_a_while() -> None:
        task = asyncio.create_task(scheduler.run_forever(ctx, 0.01))
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run_a_while(), 5))
    assert "periodic work failed; will retry" in caplog.text
