"""The live overlay: token scope and revocation, CORS, the bookmarklet, the overlay link."""

from __future__ import annotations

import hashlib
import html
import re
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from app.models import HeatmapOverlayToken
from tests.factories import make_account, make_site
from tests.heatmaps.beacons import ORIGIN, batch, click, send
from tests.sites.helpers import HTML, csrf, other_client, post, sign_in


@pytest.fixture
def owner(ctx):
    return make_account(ctx)


@pytest.fixture
def site(ctx, owner):
    return make_site(ctx, owner)


@pytest.fixture
def signed_in(ctx, client, owner):
    sign_in(ctx, client, owner)
    return client


def _bookmarklet(client, site) -> str:
    """Create a bookmarklet on the heatmap page; return its token."""
    key = site.public_key
    response = post(
        client, f"/sites/{key}/heatmaps/bookmarklet", {}, csrf(client, f"/sites/{key}/heatmaps")
    )
    assert response.status_code == 200
    match = re.search(r'id="bookmarklet-link" href="([^"]+)"', response.text)
    assert match, "no bookmarklet on the page"
    code = html.unescape(match.group(1))
    assert code.startswith("javascript:")
    assert "/overlay.js" in code and key in code
    token = re.search(r"'data-token',\"(hmo_[\w-]+)\"", code)
    assert token, code
    return token.group(1)


def _data(client, key, token, *, origin=ORIGIN, path="/pricing"):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if origin:
        headers["origin"] = origin
    return client.get(f"/o/{key}/clicks", params={"path": path}, headers=headers)


def test_bookmarklet_token_reads_the_sites_clicks_with_cors_for_its_pages(ctx, signed_in, site):
    send(
        signed_in,
        site.public_key,
        batch(click(640, 300, s="#buy", ox=0.25, oy=0.5), click(5, 6, s=None)),
    )
    send(signed_in, site.public_key, batch(click(9, 9, w=390, v=390), path="/other"))
    token = _bookmarklet(signed_in, site)

    response = _data(signed_in, site.public_key, token, path="/pricing?utm=x#top")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["vary"] == "Origin"
    assert "no-store" in response.headers["cache-control"]
    data = response.json()
    assert data["path"] == "/pricing"  # query and fragment dropped, as when recording
    assert [b["name"] for b in data["buckets"]] == ["mobile", "tablet", "desktop"]
    assert sorted(data["clicks"], key=str) == sorted(
        [["#buy", 0.25, 0.5, 640, 300, 1400, 2], [None, None, None, 5, 6, 1400, 2]], key=str
    )
    assert data["truncated"] is False

    # Only the hash is stored.
    with ctx.db.session() as session:
        row = session.scalars(select(HeatmapOverlayToken)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).digest()
    assert row.kind == "bookmarklet" and token.startswith(row.prefix)

    # The page shows the bookmarklet once; afterwards only its prefix.
    later = signed_in.get(f"/sites/{site.public_key}/heatmaps", headers=HTML)
    assert token not in later.text and row.prefix in later.text


def test_subdomain_origin_and_no_origin_are_served(signed_in, site):
    token = _bookmarklet(signed_in, site)
    sub = _data(signed_in, site.public_key, token, origin="http://www.blog.example.org:8080")
    assert sub.headers["access-control-allow-origin"] == "http://www.blog.example.org:8080"
    plain = _data(signed_in, site.public_key, token, origin=None)  # e.g. curl
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_tokens_are_scoped_to_their_site(ctx, client, signed_in, site, owner):
    mine = _bookmarklet(signed_in, site)
    second_site = make_site(ctx, owner, domain="shop.example.com")
    stranger = make_account(ctx)
    foreign_site = make_site(ctx, stranger, domain="blog.example.org")
    theirs_client = other_client(client)
    sign_in(ctx, theirs_client, stranger)
    theirs = _bookmarklet(theirs_client, foreign_site)

    assert _data(signed_in, site.public_key, mine).status_code == 200
    for key, token, origin in [
        (second_site.public_key, mine, "https://shop.example.com"),  # the owner's other site
        (foreign_site.public_key, mine, ORIGIN),  # someone else's site
        (site.public_key, theirs, ORIGIN),  # someone else's token
        (site.public_key, mine, "https://evil.example.com"),  # a foreign page
        (site.public_key, None, ORIGIN),  # no token
        (site.public_key, "hmo_" + "x" * 32, ORIGIN),  # a made-up token
        (site.public_key, mine[4:], ORIGIN),  # not an overlay token
        ("AAAAAAAAAAAAAAAAAAAAAA", mine, ORIGIN),
    ]:
        response = _data(signed_in, key, token, origin=origin)
        assert response.status_code == 404, (key, token, origin)
        assert "access-control-allow-origin" not in response.headers


def test_replacing_and_revoking_stop_old_tokens(signed_in, site):
    key = site.public_key
    first = _bookmarklet(signed_in, site)
    second = _bookmarklet(signed_in, site)
    assert _data(signed_in, key, first).status_code == 404
    assert _data(signed_in, key, second).status_code == 200

    response = post(
        signed_in,
        f"/sites/{key}/heatmaps/bookmarklet/revoke",
        {},
        csrf(signed_in, f"/sites/{key}/heatmaps"),
    )
    assert response.status_code == 303
    assert (
        "Overlay access revoked" in signed_in.get(response.headers["location"], headers=HTML).text
    )
    assert _data(signed_in, key, second).status_code == 404


def test_only_the_owner_creates_or_revokes_tokens(ctx, client, site):
    stranger = other_client(client)
    sign_in(ctx, stranger, make_account(ctx))
    token_form = csrf(stranger, "/sites")
    for path in ("bookmarklet", "bookmarklet/revoke", "live"):
        response = post(
            stranger, f"/sites/{site.public_key}/heatmaps/{path}", {"path": "/"}, token_form
        )
        assert response.status_code == 404
    with ctx.db.session() as session:
        assert session.scalars(select(HeatmapOverlayToken)).all() == []


def _live_link(client, key: str, path: str = "/pricing") -> str:
    response = post(
        client,
        f"/sites/{key}/heatmaps/live",
        {"path": path},
        csrf(client, f"/sites/{key}/heatmaps"),
    )
    assert response.status_code == 200, response.text
    match = re.search(r'<a href="([^"]+)" id="live-link"', response.text)
    assert match
    return html.unescape(match.group(1))


def test_overlay_link_opens_the_page_with_a_short_lived_token(ctx, signed_in, site, clock):
    key = site.public_key
    send(signed_in, key, batch(), origin="http://www.blog.example.org:8080")
    page = signed_in.get(f"/sites/{key}/heatmaps/page", params={"path": "/pricing"}, headers=HTML)
    assert 'id="open-live"' in page.text
    link = _live_link(signed_in, key)
    # The listed hostname over https: never the subdomain, port or scheme a beacon named.
    prefix = "https://blog.example.org/pricing#hitmap-overlay="
    assert link.startswith(prefix), link
    token = unquote(link[len(prefix) :])
    origin = "https://blog.example.org"
    assert _data(signed_in, key, token, origin=origin).status_code == 200
    clock.advance(minutes=11)
    assert _data(signed_in, key, token, origin=origin).status_code == 404


def test_overlay_link_goes_only_to_an_origin_the_owner_listed(ctx, client):
    """An anonymous beacon from a subdomain the owner does not control picks no destination."""
    owner = make_account(ctx)
    sign_in(ctx, client, owner)
    site = make_site(ctx, owner, domain="bob.example.net")
    key = site.public_key
    path = f"/sites/{key}"
    token = csrf(client, path)
    assert (
        post(client, f"{path}/hostnames", {"hostname": "docs.example.com"}, token).status_code
        == 303
    )
    attacker = "http://attacker.bob.example.net:8081"
    assert send(client, key, batch(path="/pricing"), origin=attacker).status_code == 204
    assert (
        send(client, key, batch(path="/docs"), origin="http://docs.example.com:8080").status_code
        == 204
    )
    link = _live_link(client, key, "/pricing")
    assert link.startswith("https://bob.example.net/pricing#hitmap-overlay="), link
    assert "attacker" not in link and ":8081" not in link
    assert _live_link(client, key, "/docs").startswith("https://docs.example.com/docs#")
    # Only the owner's choice makes a link plain http, for that hostname alone.
    chosen = post(
        client,
        f"{path}/hostnames/scheme",
        {"hostname": "docs.example.com", "scheme": "http"},
        token,
    )
    assert chosen.status_code == 303
    assert "http://docs.example.com" in client.get(chosen.headers["location"], headers=HTML).text
    assert _live_link(client, key, "/docs").startswith("http://docs.example.com/docs#")
    assert _live_link(client, key, "/pricing").startswith("https://bob.example.net/pricing#")
    back = post(
        client,
        f"{path}/hostnames/scheme",
        {"hostname": "docs.example.com", "scheme": "https"},
        token,
    )
    assert back.status_code == 303
    assert _live_link(client, key, "/docs").startswith("https://docs.example.com/docs#")


def test_overlay_link_needs_a_page_that_sent_clicks(signed_in, site):
    key = site.public_key
    response = post(
        signed_in,
        f"/sites/{key}/heatmaps/live",
        {"path": "/never"},
        csrf(signed_in, f"/sites/{key}/heatmaps"),
    )
    assert response.status_code == 400
    assert "sent no clicks" in response.text


def test_preflight_allows_only_the_sites_pages(client, site):
    url = f"/o/{site.public_key}/clicks"
    ok = client.options(
        url,
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization",
        },
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert ok.headers["access-control-allow-headers"] == "Authorization"
    assert ok.headers["access-control-allow-methods"] == "GET"
    for headers in ({"origin": "https://evil.example.com"}, {}):
        refused = client.options(url, headers=headers)
        assert refused.status_code == 404
        assert "access-control-allow-origin" not in refused.headers


def test_overlay_script_is_served_for_any_page(client):
    response = client.get("/overlay.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "hitmap-overlay" in response.text


def test_pages_that_show_an_overlay_token_are_never_cached(signed_in, site):
    key = site.public_key
    send(signed_in, key, batch())
    made = post(
        signed_in,
        f"/sites/{key}/heatmaps/bookmarklet",
        {},
        csrf(signed_in, f"/sites/{key}/heatmaps"),
    )
    assert 'id="bookmarklet-link"' in made.text
    live = post(
        signed_in,
        f"/sites/{key}/heatmaps/live",
        {"path": "/pricing"},
        csrf(signed_in, f"/sites/{key}/heatmaps"),
    )
    assert 'id="live-link"' in live.text
    for response in (made, live):
        directives = {d.strip() for d in response.headers["cache-control"].split(",")}
        assert "no-store" in directives
