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

from app.clock import FixedClock
from app.jobs import nightly
from app.retention import repository as repo
from app.retention import service, tasks
from app.sites import authz
from app.sites import service as sites
from tests.factories import make_account, make_site
from tests.retention.helpers import NIGHT, add_day, aggregates, days_ago, raw_days
from tests.workers.procrastinate_helpers import (
    deferred_by_two_workers,
    queue_context,
    queue_jobs,
    run_two_workers,
)
from workers import procrastinate_app as engine_app

UTC = dt.UTC


@pytest.fixture
def pg_ctx(settings, tmp_path):
    settings.retention_days = 30
    with queue_context(settings, tmp_path) as ctx:
        yield ctx


def _jobs(ctx) -> list[tuple[str, str, dict]]:
    return queue_jobs(ctx, tasks.QUEUE)


async def _run_two_workers(ctx, expected_jobs: int) -> None:
    await run_two_workers(ctx, tasks.QUEUE, expected_jobs)


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

    monkeypatch.setattr(repo, "sites_with_retention", list_then_delete)
    caplog.set_level(logging.INFO, logger="hitmap.retention")

    clock.set(dt.datetime(2026, 11, 23, 2, 59, tzinfo=UTC))
    asyncio.run(deferred_by_two_workers(ctx))
    assert _jobs(ctx) == []  # not due yet

    clock.set(dt.datetime(2026, 11, 23, 3, 0, 20, tzinfo=UTC))
    asyncio.run(deferred_by_two_workers(ctx))
    asyncio.run(deferred_by_two_workers(ctx))  # a worker restarted: still one
    assert [(n, s) for n, s, _ in _jobs(ctx)] == [(tasks.NIGHTLY.name, "todo")]

    asyncio.run(_run_two_workers(ctx, expected_jobs=3))

    jobs = _jobs(ctx)
    assert [(n, s) for n, s, _ in jobs] == [
        (tasks.NIGHTLY.name, "succeeded"),
        (tasks.PURGE.name, "succeeded"),
        (tasks.PURGE.name, "succeeded"),
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
    assert nightly.fan_out(ctx, tasks.NIGHT, NIGHT, engine_app.QUEUE) is None
    assert len(_jobs(ctx)) == 3
