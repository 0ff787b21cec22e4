"""Click budgets of POST /b/{key} through HTTP, on both databases: a flood from one
address or at one site is shed and counted, other visitors and other sites are not.

The default settings are tested (500 clicks at once and 2 a second per address,
5,000 at once and 50 a second per site). The test clock stands still unless moved,
so no bucket refills behind a test's back. Requests come from 127.0.0.1, a trusted
proxy in the test settings: X-Forwarded-For names the visitor.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import DroppedHits
from app.stats import service as stats
from tests.factories import make_account, make_site
from tests.heatmaps.beacons import batch, click, click_count, send
from tests.ops.helpers import delta, scrape
from tests.sites.helpers import HTML, sign_in, stat, table_rows

FLOODER = "81.2.69.142"


@pytest.fixture
def owner(ctx):
    return make_account(ctx)


@pytest.fixture
def site(ctx, owner):
    return make_site(ctx, owner)


def _drops(ctx, scope) -> dict[str, int]:
    with ctx.db.session() as session:
        rows = session.scalars(select(DroppedHits).where(DroppedHits.site_id == scope.site_id))
        return {r.reason: r.hits for r in rows}


def _clicks(n: int) -> dict:
    return batch(*(click(10 + i, 20 + i) for i in range(n)))


def _send_from(client, key, address: str, clicks: int, path: str = "/pricing"):
    body = batch(*(click(10 + i, 20 + i) for i in range(clicks)), path=path)
    return send(client, key, body, headers={"x-forwarded-for": address})


def test_a_flood_from_one_address_stores_its_burst_and_counts_the_rest(ctx, client, site, clock):
    before = scrape(client)
    answers = [_send_from(client, site.public_key, FLOODER, 50) for _ in range(200)]

    # Stored or shed, the answer is the same: the sender learns nothing.
    assert {(a.status_code, a.content, a.headers["cache-control"]) for a in answers} == {
        (204, b"", "no-store")
    }
    assert {tuple(sorted(a.headers)) for a in answers} == {tuple(sorted(answers[0].headers))}
    assert click_count(ctx, site) == 500  # the first 10 batches; at most a quarter of 10,000
    assert _drops(ctx, site) == {"clicks_ip_budget": 9_500}
    after = scrape(client)
    assert delta(before, after, "hitmap_beacon_clicks_shed_total", reason="clicks_ip_budget") == (
        9_500
    )
    assert delta(before, after, "hitmap_beacon_clicks_shed_total", reason="clicks_site_budget") == 0
    assert delta(before, after, "hitmap_beacon_batches_total", result="shed") == 190
    assert delta(before, after, "hitmap_beacon_batches_total", result="accepted") == 10
    assert delta(before, after, "hitmap_beacon_clicks_accepted_total") == 500
    # Counter hits are another thing: nothing of this is a dropped hit.
    assert delta(before, after, "hitmap_hits_dropped_total", reason="ip_budget") == 0

    # The budget refills at 2 clicks a second: 25 s later, one more full batch.
    clock.advance(seconds=25)
    assert _send_from(client, site.public_key, FLOODER, 50).status_code == 204
    assert _send_from(client, site.public_key, FLOODER, 1).status_code == 204
    assert click_count(ctx, site) == 550
    assert _drops(ctx, site) == {"clicks_ip_budget": 9_501}


def test_small_batches_drain_the_budget_by_their_clicks(ctx, client, site):
    for _ in range(9):
        assert _send_from(client, site.public_key, FLOODER, 50).status_code == 204
    # 50 clicks left: one-click batches take one each, a full batch no longer fits.
    assert _send_from(client, site.public_key, FLOODER, 49).status_code == 204
    assert _send_from(client, site.public_key, FLOODER, 2).status_code == 204
    assert _send_from(client, site.public_key, FLOODER, 1).status_code == 204
    assert _send_from(client, site.public_key, FLOODER, 1).status_code == 204
    assert click_count(ctx, site) == 500
    assert _drops(ctx, site) == {"clicks_ip_budget": 3}


def test_normal_visitors_are_never_shed_even_beside_a_flood(ctx, client, site):
    for _ in range(40):
        _send_from(client, site.public_key, FLOODER, 50)
    flooded = click_count(ctx, site)
    # Two page views at the widget's cap (10 batches of 20 clicks each) from one address,
    # and a few ordinary visitors behind one office NAT: every click is kept.
    for page in ("/pricing", "/about"):
        for _ in range(10):
            assert _send_from(client, site.public_key, "89.160.20.112", 20, page).status_code == 204
    for _ in range(30):
        assert _send_from(client, site.public_key, "2001:db8::7", 3).status_code == 204
    assert click_count(ctx, site) == flooded + 400 + 90
    assert _drops(ctx, site) == {"clicks_ip_budget": 2_000 - 500}


def test_a_flood_from_many_addresses_is_bounded_by_the_site_budget(ctx, client, site, owner):
    other = make_site(ctx, owner, domain="other.example.org")
    for n in range(150):  # 7,500 clicks, 50 per address: no address is over its own budget
        _send_from(client, site.public_key, f"10.0.{n // 200}.{n % 200 + 1}", 50)
    assert click_count(ctx, site) == 5_000
    assert _drops(ctx, site) == {"clicks_site_budget": 2_500}

    # Another site is not touched by it, even from the flood's addresses.
    for address in ("10.0.0.1", "89.160.20.112"):
        response = send(
            client,
            other.public_key,
            _clicks(20),
            origin="https://other.example.org",
            headers={"x-forwarded-for": address},
        )
        assert response.status_code == 204
    assert click_count(ctx, other) == 40
    assert _drops(ctx, other) == {}


def test_ipv6_visitors_are_budgeted_by_their_64_prefix(ctx, client, site):
    for n in range(12):  # a fresh address per batch within one /64
        _send_from(client, site.public_key, f"2001:db8:1:2::{n + 1:x}", 50)
    assert click_count(ctx, site) == 500
    assert _drops(ctx, site) == {"clicks_ip_budget": 100}


def test_the_site_page_shows_shed_clicks_apart_from_dropped_hits(ctx, client, site, owner, clock):
    for _ in range(12):
        _send_from(client, site.public_key, FLOODER, 50)
    sign_in(ctx, client, owner)
    page = client.get(f"/sites/{site.public_key}?range=today", headers=HTML).text
    assert table_rows(page, "clicks-shed") == [["Too many clicks from one address (shed)", "100"]]
    assert stat(page, "stat-dropped") == 0  # clicks are not counter hits
    assert "Nothing was dropped today" in page
    with ctx.db.session() as session:  # nor in the API's and CLI's report
        day = clock.now().date()
        assert stats.report(session, site, day, day).dropped == []
