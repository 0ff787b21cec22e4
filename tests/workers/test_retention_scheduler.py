"""The nightly retention in `hitmap serve`'s scheduler (the embedded engine), once per
night, before the maps. The clock is injected."""

from __future__ import annotations

import datetime as dt

from app.maps import tasks as maps
from app.retention import repository as repo
from app.retention import service
from app.retention.tasks import NIGHTLY
from tests.factories import make_account, make_site
from tests.retention.helpers import NIGHT, add_day, aggregates, days_ago, raw_days
from workers.scheduler import PeriodicScheduler

UTC = dt.UTC


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def test_one_retention_run_per_night(ctx, clock):
    ctx.settings.retention_days = 30
    account = make_account(ctx)
    site, keeper = (make_site(ctx, account, domain=f"{n}.example.org") for n in "sk")
    with ctx.db.session() as session:
        service.set_choice(session, keeper, service.FOREVER)
    for scope in (site, keeper):
        add_day(ctx, scope, days_ago(31))
        add_day(ctx, scope, days_ago(30))
    totals = aggregates(ctx, site)
    scheduler = PeriodicScheduler(ctx)

    clock.set(at(23, 2, 59))
    assert scheduler.tick() == {}
    assert raw_days(ctx, site)[0] == {days_ago(31): 1, days_ago(30): 1}  # not yet

    clock.set(at(23, 3, 0, 30))
    ran = scheduler.tick()
    assert ran[NIGHTLY.name] is not None  # the night ran
    assert list(ran) == [NIGHTLY.name, maps.NIGHTLY.name]  # old raw rows go first
    assert raw_days(ctx, site) == ({days_ago(30): 1}, {days_ago(30): 1})
    assert raw_days(ctx, keeper)[0] == {days_ago(31): 1, days_ago(30): 1}
    assert aggregates(ctx, site) == totals
    with ctx.db.session() as session:
        run = repo.night_run(session, NIGHT)
        assert run is not None and (run.sites, run.finished_at) == (1, at(23, 3, 0, 30))

    # The same night again, from a restarted server: claimed, nothing runs.
    add_day(ctx, site, days_ago(45))
    clock.set(at(23, 3, 20))
    PeriodicScheduler(ctx).tick()
    assert days_ago(45) in raw_days(ctx, site)[0]

    clock.set(at(24, 3, 0, 5))  # the next night: the 24th keeps 25 October on
    scheduler.tick()
    assert raw_days(ctx, site)[0] == {}
    assert raw_days(ctx, keeper)[0] == {days_ago(31): 1, days_ago(30): 1}
