"""The nightly retention on PostgreSQL through Procrastinate, with two workers.

As for the nightly maps (test_nightly_procrastinate.py): a database of its own,
each worker's periodic deferrer asked what is due at the test clock's "now", then
two real workers sharing the queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest
from procrastinate.periodic import PeriodicDeferrer
from sqlalchemy import text

from app.clock import FixedClock
from app.context import build_context
from app.db import Database, make_engine
from app.migrate import upgrade
from app.retention import repository as repo
from app.retention import service
from app.sites import authz
from app.sites import service as sites
from tests.factories import make_account, make_site
from tests.live import own_database
from tests.retention.helpers import NIGHT, add_day, aggregates, days_ago, raw_days
from workers import procrastinate_app as engine_app
from workers import retention_queue

UTC = dt.UTC


@pytest.fixture
def pg_ctx(settings, tmp_path):
    with own_database("postgresql", tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine_app.apply_schema(engine)
        settings.database_url = url
        settings.retention_days = 30
        ctx = build_context(
            settings,
            db=Database(engine),
            clock=FixedClock(dt.datetime(2026, 11, 22, 12, tzinfo=UTC)),
        )
        try:
            yield ctx
        finally:
            engine.dispose()


def _jobs(ctx) -> list[tuple[str, str, dict]]:
    with ctx.db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT task_name, status::text, args FROM procrastinate_jobs "
                "WHERE queue_name = :q ORDER BY id"
            ),
            {"q": retention_queue.RETENTION_QUEUE},
        )
        return [(name, status, args) for name, status, args in rows]


async def _deferred_by_two_workers(ctx) -> None:
    apps = [engine_app.make_app(ctx, schedule=True) for _ in range(2)]
    for app in apps:
        async with app.open_async():
            deferrer = PeriodicDeferrer(registry=app.periodic_registry, **app.periodic_defaults)
            await deferrer.defer_jobs(deferrer.get_previous_tasks(at=ctx.clock.now().timestamp()))


async def _run_two_workers(ctx, expected_jobs: int) -> None:
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
                jobs = _jobs(ctx)
                if len(jobs) >= expected_jobs and all(
                    s not in ("todo", "doing") for _, s, _ in jobs
                ):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"jobs did not finish: {_jobs(ctx)}")
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


def test_one_nightly_retention_on_two_workers(pg_ctx, monkeypatch, caplog):
    ctx = pg_ctx
    clock: FixedClock = ctx.clock
    account = make_account(ctx)
    a, keeper, gone = (make_site(ctx, account, domain=f"{n}.example.org") for n in "akg")
    with ctx.db.session() as session:
        service.set_choice(session, keeper, service.FOREVER)
    for scope in (a, keeper, gone):
        add_day(ctx, scope, days_ago(31), visits=3)
        add_day(ctx, scope, days_ago(2))
    totals = aggregates(ctx, a)

    # Site "gone" is deleted right after the fan-out listed it: its job discards itself.
    listed = repo.sites_with_retention

    def list_then_delete(session, default_days):
        ids = listed(session, default_days)
        with ctx.db.session() as other:
            sites.delete_site(other, authz.owned_site(other, account.id, gone.public_key))
        return ids

    monkeypatch.setattr(retention_queue.repo, "sites_with_retention", list_then_delete)
    caplog.set_level(logging.INFO, logger="hitmap.retention")

    clock.set(dt.datetime(2026, 11, 23, 2, 59, tzinfo=UTC))
    asyncio.run(_deferred_by_two_workers(ctx))
    assert _jobs(ctx) == []  # not due yet

    clock.set(dt.datetime(2026, 11, 23, 3, 0, 20, tzinfo=UTC))
    asyncio.run(_deferred_by_two_workers(ctx))
    asyncio.run(_deferred_by_two_workers(ctx))  # a worker restarted: still one
    assert [(n, s) for n, s, _ in _jobs(ctx)] == [(retention_queue.NIGHTLY_RETENTION_TASK, "todo")]

    asyncio.run(_run_two_workers(ctx, expected_jobs=3))

    jobs = _jobs(ctx)
    assert [(n, s) for n, s, _ in jobs] == [
        (retention_queue.NIGHTLY_RETENTION_TASK, "succeeded"),
        (retention_queue.PURGE_TASK, "succeeded"),
        (retention_queue.PURGE_TASK, "succeeded"),
    ]
    assert sorted(args["site_id"] for _, _, args in jobs[1:]) == [a.site_id, gone.site_id]
    assert {args["night"] for _, _, args in jobs[1:]} == {NIGHT.isoformat()}
    assert raw_days(ctx, a) == ({days_ago(2): 1}, {days_ago(2): 1})
    assert aggregates(ctx, a) == totals
    assert raw_days(ctx, keeper)[0] == {days_ago(31): 3, days_ago(2): 1}
    assert f"site {gone.site_id} no longer exists; retention job discarded" in caplog.text
    with ctx.db.session() as session:
        run = repo.night_run(session, NIGHT)
        assert run is not None and run.sites == 2

    # The nightly job again for the same night (a retry, a manual defer): nothing.
    assert retention_queue.fan_out_night(ctx, NIGHT) is None
    assert len(_jobs(ctx)) == 3
