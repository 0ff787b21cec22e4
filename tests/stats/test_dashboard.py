"""The owner's dashboard on a site's page, through HTTP, on both databases."""

from __future__ import annotations

import re

import pytest

from app.stats.schemas import format_share
from tests.factories import hit, make_account, make_site
from tests.sites.helpers import HTML, other_client, sign_in, stat, table_rows

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
CHROME = "Mozilla/5.0 (Windows NT 10.0) Chrome/130.0 Safari/537.36"


@pytest.fixture
def owner(ctx, client):
    account = make_account(ctx)
    sign_in(ctx, client, account)
    return account


@pytest.fixture
def site(ctx, owner):
    return make_site(ctx, owner)


def _page(client, site, query: str = "") -> str:
    response = client.get(f"/sites/{site.public_key}{query}", headers=HTML)
    assert response.status_code == 200, response.text
    return response.text


def test_visitors_from_two_countries_fill_the_country_table(client, site):
    hit(client, site.public_key, ip="81.2.69.142", ua=FIREFOX)
    hit(client, site.public_key, ip="81.2.69.142", ua=CHROME)
    hit(client, site.public_key, ip="81.2.69.142", ua=CHROME)  # the same visitor again
    hit(client, site.public_key, ip="89.160.20.112")

    page = _page(client, site)

    assert table_rows(page, "countries") == [
        ["\U0001f1ec\U0001f1e7United Kingdom", "2", "66.7%"],
        ["\U0001f1f8\U0001f1eaSweden", "1", "33.3%"],
    ]
    assert '<span class="flag" aria-hidden="true">\U0001f1ec\U0001f1e7</span>' in page
    assert stat(page, "stat-today") == 3
    assert stat(page, "stat-total") == 3
    assert stat(page, "stat-range") == 3


def test_unknown_location_has_a_globe(client, site):
    hit(client, site.public_key, ip="8.8.8.8")
    assert table_rows(_page(client, site), "countries") == [
        ["\U0001f310Unknown location", "1", "100%"]
    ]


def test_today_and_total_part_after_a_day(client, clock, site):
    hit(client, site.public_key, ip="81.2.69.142")
    hit(client, site.public_key, ip="216.160.83.56")
    clock.advance(days=1)
    hit(client, site.public_key, ip="89.160.20.112")

    page = _page(client, site)

    assert stat(page, "stat-today") == 1
    assert stat(page, "stat-total") == 3
    clock.advance(days=1)
    page = _page(client, site)
    assert (stat(page, "stat-today"), stat(page, "stat-total")) == (0, 3)


def test_range_selector_changes_the_numbers(ctx, client, clock, owner, site):
    hit(client, site.public_key, ip="81.2.69.142")  # 40 days ago
    clock.advance(days=30)
    hit(client, site.public_key, ip="216.160.83.56")  # 10 days ago
    clock.advance(days=10)
    hit(client, site.public_key, ip="89.160.20.112")  # today
    hit(client, site.public_key, ua="Mozilla/5.0 (compatible; Googlebot/2.1)")
    sign_in(ctx, client, owner)  # the first login session has expired by now

    expected = {"today": 1, "7d": 1, "30d": 2, "all": 3}
    for value, visitors in expected.items():
        page = _page(client, site, f"?range={value}")
        assert stat(page, "stat-range") == visitors, value
        assert stat(page, "stat-total") == 3
        current = re.findall(r'<a href="([^"]+)" aria-current="page">', page)
        assert current == [f"/sites/{site.public_key}?range={value}"]
        assert len(table_rows(page, "countries")) == visitors
    assert table_rows(_page(client, site, "?range=7d"), "countries") == [
        ["\U0001f1f8\U0001f1eaSweden", "1", "100%"]
    ]
    default = _page(client, site)
    assert stat(default, "stat-range") == 2  # 30 days unless told
    assert "Visitors in the last 30 days" in default


def test_unknown_range_is_a_400(client, site):
    response = client.get(f"/sites/{site.public_key}?range=year", headers=HTML)
    assert response.status_code == 400
    assert "unknown range &#39;year&#39;" in response.text


def test_dropped_hits_show_by_reason(client, clock, site):
    key = site.public_key
    hit(client, key, ua="Mozilla/5.0 (compatible; Googlebot/2.1)")
    hit(client, key, ua="Mozilla/5.0 (compatible; bingbot/2.0)")
    hit(client, key, referer="https://evil.example.com/")
    hit(client, key, referer=None)
    hit(client, key)

    page = _page(client, site, "?range=today")

    assert table_rows(page, "dropped") == [
        ["Bot or crawler", "2"],
        ["Referrer from another site", "1"],  # ties in the order of the reason's code
        ["No referrer (page not identified)", "1"],
    ]
    assert stat(page, "stat-dropped") == 4
    assert stat(page, "stat-range") == 1
    clock.advance(days=1)
    tomorrow = _page(client, site, "?range=today")
    assert stat(tomorrow, "stat-dropped") == 0
    assert "Nothing was dropped today" in tomorrow
    assert stat(_page(client, site, "?range=7d"), "stat-dropped") == 4


def test_dashboard_is_only_for_the_owner(ctx, client, site):
    hit(client, site.public_key)
    assert client.get("/sites/AAAAAAAAAAAAAAAAAAAAAA", headers=HTML).status_code == 404
    with other_client(client) as anonymous:
        response = anonymous.get(f"/sites/{site.public_key}", headers=HTML, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next=/sites/{site.public_key}"
        sign_in(ctx, anonymous, make_account(ctx))
        response = anonymous.get(f"/sites/{site.public_key}?range=all", headers=HTML)
        assert response.status_code == 404
        assert "United Kingdom" not in response.text
        assert site.public_key not in response.text


@pytest.mark.parametrize(
    ("part", "whole", "text"),
    [(1, 3, "33.3%"), (2, 3, "66.7%"), (5, 5, "100%"), (0, 0, "0%"), (1, 2000, "<0.1%")],
)
def test_share_format(part, whole, text):
    assert format_share(part, whole) == text
