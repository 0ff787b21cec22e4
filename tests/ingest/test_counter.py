"""Counting through the real HTTP endpoint, on both databases."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from app.models import DroppedHits, Visit
from tests.factories import hit, make_account, make_site


def _visits(ctx, scope):
    with ctx.db.session() as session:
        return session.scalars(select(Visit).where(Visit.site_id == scope.site_id)).all()


def _drops(ctx, scope):
    with ctx.db.session() as session:
        rows = session.scalars(select(DroppedHits).where(DroppedHits.site_id == scope.site_id))
        return {r.reason: r.hits for r in rows}


def test_same_visitor_twice_a_day_counts_once(ctx, client):
    site = make_site(ctx, make_account(ctx))
    first = hit(client, site.public_key)
    second = hit(client, site.public_key)
    assert first.status_code == 200 and second.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert first.content.startswith(b"\x89PNG")
    visits = _visits(ctx, site)
    assert len(visits) == 1
    v = visits[0]
    assert (v.country_code, v.city) == ("GB", "London")
    assert (v.latitude, v.longitude, v.accuracy_km) == (51.51, -0.09, 10)


def test_other_user_agent_is_another_visitor(ctx, client):
    site = make_site(ctx, make_account(ctx))
    hit(client, site.public_key, ua="Mozilla/5.0 Firefox/130.0")
    hit(client, site.public_key, ua="Mozilla/5.0 Chrome/130.0 Safari/537.36")
    assert len(_visits(ctx, site)) == 2


def test_next_day_is_a_new_visit_and_salts_rotate(ctx, client, clock):
    site = make_site(ctx, make_account(ctx))
    hit(client, site.public_key)
    clock.advance(days=1)
    hit(client, site.public_key)
    visits = _visits(ctx, site)
    assert sorted(v.day for v in visits) == [dt.date(2026, 11, 22), dt.date(2026, 11, 23)]
    assert visits[0].visitor_hash != visits[1].visitor_hash
    clock.advance(days=1)
    hit(client, site.public_key)
    from app.ingest.repository import stored_salt_days

    with ctx.db.session() as session:
        assert stored_salt_days(session) == [dt.date(2026, 11, 23), dt.date(2026, 11, 24)]


def test_dropped_hits_get_the_image_and_a_counted_reason(ctx, client):
    site = make_site(ctx, make_account(ctx))
    key = site.public_key
    assert hit(client, key, referer=None).status_code == 200
    assert hit(client, key, referer="https://evil.example.com/").status_code == 200
    assert hit(client, key, ua="Mozilla/5.0 (compatible; Googlebot/2.1)").status_code == 200
    assert hit(client, key, headers={"sec-purpose": "prefetch"}).status_code == 200
    assert _visits(ctx, site) == []
    assert _drops(ctx, site) == {
        "no_referrer": 1,
        "foreign_referrer": 1,
        "bot": 1,
        "prefetch": 1,
    }


def test_subdomain_referrer_counts(ctx, client):
    site = make_site(ctx, make_account(ctx), domain="example.org")
    hit(client, site.public_key, referer="https://www.example.org/a")
    hit(client, site.public_key, referer="https://notexample.org/a", ip="89.160.20.112")
    assert len(_visits(ctx, site)) == 1


def test_unknown_and_malformed_keys_get_neutral_404(ctx, client):
    site = make_site(ctx, make_account(ctx))
    for key in ["AAAAAAAAAAAAAAAAAAAAAA", "short", "x" * 200, "bad%20chars-here!!!!!!!"]:
        response = hit(client, key)
        assert response.status_code == 404
        assert response.content.startswith(b"\x89PNG")
    assert _visits(ctx, site) == [] and _drops(ctx, site) == {}


def test_unknown_address_stored_as_unknown_location(ctx, client):
    site = make_site(ctx, make_account(ctx))
    hit(client, site.public_key, ip="8.8.8.8")
    (v,) = _visits(ctx, site)
    assert v.country_code is None and v.latitude is None and v.city is None


def test_stored_rows_hold_no_ip_or_user_agent(ctx, client, connection):
    site = make_site(ctx, make_account(ctx))
    ua = "Mozilla/5.0 UniqueAgentString/987"
    hit(client, site.public_key, ip="216.160.83.56", ua=ua)
    from app.models import Base

    for table in Base.metadata.sorted_tables:
        for row in connection.execute(table.select()):
            text = repr(tuple(row))
            assert "216.160.83.56" not in text and "UniqueAgentString" not in text
            for value in row:
                if isinstance(value, bytes):
                    assert b"216.160.83.56" not in value


def test_conditional_request_revalidates_and_still_counts(ctx, client, monkeypatch):
    import time

    from app.ingest import images
    from app.ingest.counter_image import render_total

    monkeypatch.setattr(images, "REDRAW_TOTAL_AFTER_SECONDS", 0.0)
    site = make_site(ctx, make_account(ctx))
    first = hit(client, site.public_key)
    assert first.headers["cache-control"] == "private, no-cache"
    assert first.content == render_total(1)
    again = hit(
        client,
        site.public_key,
        ip="89.160.20.112",
        headers={"if-none-match": first.headers["etag"]},
    )
    assert again.status_code in (200, 304)  # counted; the total is redrawn behind the answer
    # The new total shows within moments: the repeat visitor's revalidation gets it.
    deadline = time.monotonic() + 5
    while True:
        repeat = hit(
            client,
            site.public_key,
            ip="89.160.20.112",
            headers={"if-none-match": first.headers["etag"]},
        )
        if repeat.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert repeat.status_code == 200 and repeat.content == render_total(2)
    unchanged = hit(
        client,
        site.public_key,
        ip="89.160.20.112",
        headers={"if-none-match": repeat.headers["etag"]},
    )
    assert unchanged.status_code == 304
    assert len(_visits(ctx, site)) == 2


def test_head_answers_like_get_without_a_body_and_counts_nothing(ctx, client):
    site = make_site(ctx, make_account(ctx))
    headers = {
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        "x-forwarded-for": "81.2.69.142",
        "referer": "https://blog.example.org/post/1",
    }
    head = client.head(f"/c/{site.public_key}.png", headers=headers)
    assert head.status_code == 200 and head.content == b""
    assert _visits(ctx, site) == [] and _drops(ctx, site) == {}
    get = hit(client, site.public_key, ip="81.2.69.200")  # counted, so the total moves on
    again = client.head(f"/c/{site.public_key}.png", headers=headers)
    for name in ("content-type", "cache-control", "cross-origin-resource-policy"):
        assert again.headers[name] == get.headers[name]
    assert again.headers["etag"] == get.headers["etag"]
    assert again.headers["content-length"] == str(len(get.content))
    assert len(_visits(ctx, site)) == 1 and _drops(ctx, site) == {}
    fresh = client.head(f"/c/{site.public_key}.png", headers={"if-none-match": get.headers["etag"]})
    assert fresh.status_code == 304 and fresh.content == b""
    unknown = client.head("/c/AAAAAAAAAAAAAAAAAAAAAA.png")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "image/png"
    assert unknown.content == b"" and int(unknown.headers["content-length"]) > 0
    assert len(_visits(ctx, site)) == 1 and _drops(ctx, site) == {}
