"""The nightly maps on PostgreSQL through Procrastinate, with two workers.

Workers use their own connections, so this cannot run in the rolled-back test
transaction: it gets a database of its own (as the live-server tests do). Time is
injected: each worker's periodic deferrer is asked what is due at the test clock's
"now" (Procrastinate's own deferrer code and its once-per-timestamp table), and the
jobs then run on two real Procrastinate workers sharing the queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from app.clock import FixedClock
from app.jobs import nightly
from app.jobs import service as jobs
from app.maps import repository as repo
from app.maps import tasks
from app.sites import authz
from app.sites import service as sites
from tests.factories import make_account, make_site
from tests.maps.helpers import LONDON, PARIS, SYDNEY, add_visits
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
    with queue_context(settings, tmp_path) as ctx:
        yield ctx


def _jobs(ctx) -> list[tuple[str, str, dict]]:
    return queue_jobs(ctx, tasks.QUEUE)


async def _run_two_workers(ctx, expected_jobs: int) -> None:
    await run_two_workers(ctx, tasks.QUEUE, expected_jobs)


def _rendered_at(ctx, scope) -> set[dt.datetime]:
    with ctx.db.session() as session:
        return {m.rendered_at for m in repo.image_metas(session, scope)}


def test_one_nightly_run_on_two_workers_renders_changed_sites_only(pg_ctx, monkeypatch, caplog):
    ctx = pg_ctx
    clock: FixedClock = ctx.clock  # type: ignore[assignment]
    account = make_account(ctx)
    a, b, c = (make_site(ctx, account, domain=f"{n}.example.org") for n in "abc")
    ten_days_ago = dt.date(2026, 11, 12)
    add_visits(ctx, a, ten_days_ago, LONDON, 2)
    add_visits(ctx, b, ten_days_ago, PARIS, 3)
    add_visits(ctx, c, ten_days_ago, SYDNEY)

    # Site C is deleted right after the fan-out listed it: its job must discard itself.
    listed = repo.all_site_ids

    def list_then_delete_c(session):
        ids = listed(session)
        with ctx.db.session() as other:
            sites.delete_site(other, authz.owned_site(other, account.id, c.public_key))
        return ids

    monkeypatch.setattr(repo, "all_site_ids", list_then_delete_c)
    caplog.set_level(logging.INFO, logger="hitmap.maps.jobs")

    clock.set(dt.datetime(2026, 11, 23, 2, 59, tzinfo=UTC))
    asyncio.run(deferred_by_two_workers(ctx))
    assert _jobs(ctx) == []  # not due yet

    clock.set(dt.datetime(2026, 11, 23, 3, 0, 20, tzinfo=UTC))
    asyncio.run(deferred_by_two_workers(ctx))
    asyncio.run(deferred_by_two_workers(ctx))  # a worker restarted: still one
    assert [(n, s) for n, s, _ in _jobs(ctx)] == [(tasks.NIGHTLY.name, "todo")]

    asyncio.run(_run_two_workers(ctx, expected_jobs=4))
    jobs = _jobs(ctx)
    assert [(n, s) for n, s, _ in jobs] == [(tasks.NIGHTLY.name, "succeeded")] + [
        (tasks.RENDER.name, "succeeded")
    ] * 3
    assert sorted(args["site_id"] for _, _, args in jobs[1:]) == sorted(
        s.site_id for s in (a, b, c)
    )
    night_one = clock.now()
    assert _rendered_at(ctx, a) == {night_one} and _rendered_at(ctx, b) == {night_one}
    assert f"site {c.site_id} no longer exists; render job discarded" in caplog.text
    monkeypatch.setattr(repo, "all_site_ids", listed)

    # The nightly job again for the same night (a retry, a manual defer): nothing more.
    assert nightly.fan_out(ctx, tasks.NIGHT, dt.date(2026, 11, 23), engine_app.QUEUE) is None

    # The next night: only A had a visitor in between.
    clock.set(dt.datetime(2026, 11, 23, 18, tzinfo=UTC))
    add_visits(ctx, a, dt.date(2026, 11, 23), SYDNEY)
    clock.set(dt.datetime(2026, 11, 24, 3, 0, 7, tzinfo=UTC))
    asyncio.run(deferred_by_two_workers(ctx))
    asyncio.run(_run_two_workers(ctx, expected_jobs=4 + 3))
    assert [s for _, s, _ in _jobs(ctx)] == ["succeeded"] * 7
    assert _rendered_at(ctx, a) == {clock.now()}
    assert _rendered_at(ctx, b) == {night_one}  # unchanged: skipped
    with ctx.db.session() as session:
        nights = [repo.night_run(session, dt.date(2026, 11, d)) for d in (23, 24)]
    assert [n.sites for n in nights if n] == [3, 2]


def test_migrate_installs_the_queue_and_worker_once_drains_it(pg_ctx, monkeypatch):
    from click.testing import CliRunner

    from app import cli
    from tests.databases import fresh_postgres

    runner = CliRunner()
    with fresh_postgres() as url:
        monkeypatch.setenv("HITMAP_DATABASE_URL", url)
        first = runner.invoke(cli.main, ["migrate"])
        assert first.exit_code == 0, first.output
        assert "job queue (Procrastinate) schema installed" in first.output
        again = runner.invoke(cli.main, ["migrate"])
        assert again.exit_code == 0 and "job queue" not in again.output

    ctx = pg_ctx
    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, ctx.clock.now().date(), LONDON)
    with ctx.db.session() as session:
        job = tasks.render_job(site.site_id, reason="manual")
        assert jobs.enqueue(session, job.task, queueing_lock=job.queueing_lock, **job.args)
        assert jobs.enqueue_all(session, [job]) == 0  # the same job waits already
    drained = runner.invoke(cli.main, ["worker", "--once", "--name", "cli"], obj=ctx)
    assert drained.exit_code == 0, drained.output
    assert "nightly maps at 03:00 UTC" in drained.output
    assert _jobs(ctx) == []  # done, and successful jobs are not kept
    with ctx.db.session() as session:
        assert len(repo.image_metas(session, site)) == 6


def test_worker_serves_its_render_times_as_metrics(pg_ctx, monkeypatch):
    import socket
    import urllib.request

    from click.testing import CliRunner

    from app import cli

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scraped: list[str] = []
    real_run = engine_app.run_worker

    def run_then_scrape(*args, **kwargs):
        real_run(*args, **kwargs)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            scraped.append(answer.read().decode())

    monkeypatch.setattr(engine_app, "run_worker", run_then_scrape)
    ctx = pg_ctx
    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, ctx.clock.now().date(), LONDON)
    with ctx.db.session() as session:
        jobs.enqueue_all(session, [tasks.render_job(site.site_id, reason="manual")])

    args = ["worker", "--once", "--metrics-port", str(port)]
    drained = CliRunner().invoke(cli.main, args, obj=ctx)

    assert drained.exit_code == 0, drained.output
    (text,) = scraped
    thumbnails = [
        line
        for line in text.splitlines()
        if line.startswith('hitmap_render_seconds_count{kind="thumbnail",range="all"}')
    ]
    assert thumbnails and float(thumbnails[0].split()[-1]) >= 1.0
    taken = CliRunner().invoke(cli.main, args, obj=ctx)  # the port is still held
    assert taken.exit_code == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in taken.output
