"""Shedding: one client, one site or too much load never queue without bound; sheds are counted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from app.context import build_context
from app.ingest.budgets import Backlog, LoopLag, TokenBuckets
from app.main import create_app
from app.models import DroppedHits, Visit
from tests.factories import hit, make_account, make_site


def _drops(ctx, scope) -> dict[str, int]:
    with ctx.db.session() as session:
        rows = session.scalars(select(DroppedHits).where(DroppedHits.site_id == scope.site_id))
        return {r.reason: r.hits for r in rows}


def _visits(ctx, scope) -> int:
    with ctx.db.session() as session:
        return len(session.scalars(select(Visit).where(Visit.site_id == scope.site_id)).all())


def test_token_bucket_refills_at_its_rate():
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b", now=0.0)  # another client has its own budget
    assert not buckets.take("a", now=0.2)  # 0.4 token: not yet
    assert buckets.take("a", now=0.5)  # one token back after half a second


def test_token_buckets_stay_bounded():
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=100)
    for n in range(1000):
        buckets.take(f"10.0.{n // 256}.{n % 256}", now=0.0)
    assert len(buckets._buckets) <= 100


@dataclass
class Gauge:
    pending: int = 0
    per_site: dict[int, int] = field(default_factory=dict)

    def pending_for(self, site_id: int) -> int:
        return self.per_site.get(site_id, 0)


def test_backlog_sheds_when_full_and_limits_one_site_when_busy():
    backlog = Backlog(max_pending=1000)
    assert backlog.verdict(Gauge(400, {1: 400}), 1) is None  # quiet: a site may use it all
    busy = Gauge(600, {1: 300, 2: 10})
    assert backlog.verdict(busy, 1) == "site_budget"  # over a quarter while busy
    assert backlog.verdict(busy, 2) is None  # the other sites still count
    assert backlog.verdict(Gauge(1000, {2: 10}), 2) == "shed"
    assert backlog.verdict(Gauge(0), 2, loop_lag=0.5) == "shed"  # the CPU, not the database


def test_loop_lag_notices_a_blocked_loop():
    async def scenario() -> float:
        lag = LoopLag(interval=0.01)
        task = asyncio.create_task(lag.run())
        await asyncio.sleep(0.05)
        import time

        time.sleep(0.3)  # a request hogging the loop
        await asyncio.sleep(0.02)
        task.cancel()
        return lag.lag

    assert asyncio.run(scenario()) > 0.2


@pytest.fixture
def tight_client(settings, db, clock):
    from fastapi.testclient import TestClient

    settings.ip_budget_burst = 3
    settings.ip_budget_per_second = 0.001
    ctx = build_context(settings, db=db, clock=clock)
    with TestClient(
        create_app(ctx), base_url="http://hitmap.test", client=("127.0.0.1", 50000)
    ) as client:
        yield ctx, client


def test_one_client_hammering_is_one_visitor_and_its_excess_is_shed(tight_client):
    ctx, client = tight_client
    site = make_site(ctx, make_account(ctx))
    other = make_site(ctx, make_account(ctx), domain="other.example.org")
    answers = [hit(client, site.public_key, ip="81.2.69.142") for _ in range(10)]
    assert {a.status_code for a in answers} == {200}  # shed hits still get their image
    assert all(a.content.startswith(b"\x89PNG") for a in answers)
    assert _visits(ctx, site) == 1
    assert _drops(ctx, site) == {"ip_budget": 7}
    # Other clients are not starved by that one.
    other_hit = hit(
        client, other.public_key, ip="89.160.20.112", referer="https://other.example.org/"
    )
    assert other_hit.status_code == 200
    assert _visits(ctx, other) == 1


def test_an_overloaded_process_sheds_with_a_counted_reason(ctx, client):
    site = make_site(ctx, make_account(ctx))
    ctx.ingest.loop_lag.lag = 1.0  # requests wait a second for the CPU
    response = hit(client, site.public_key)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert _visits(ctx, site) == 0
    assert _drops(ctx, site) == {"shed": 1}
    ctx.ingest.loop_lag.lag = 0.0  # recovered: counting again
    hit(client, site.public_key)
    assert _visits(ctx, site) == 1


def test_a_flood_of_unknown_keys_does_not_evict_known_sites():
    from app.capture.cache import RefreshingCache

    cache: RefreshingCache[str, str | None] = RefreshingCache(
        lambda key: None, ttl=60, name="site", max_entries=100
    )
    cache.put("real-site", "scope")
    for n in range(500):
        cache.get(f"made-up-{n}")  # each one a remembered miss
    assert cache.peek("real-site") == (True, "scope")
