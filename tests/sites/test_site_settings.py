"""The forms on a site's page: settings, hostnames, deletion, and other tenants kept out."""

from __future__ import annotations

import pytest

from app.deps import CSRF_COOKIE
from app.security import keyed_digest
from app.sites import service as sites_service
from tests.factories import hit, make_account, make_site
from tests.sites.helpers import (
    HTML,
    csrf,
    hostnames_of,
    other_client,
    post,
    sign_in,
    site_row,
    stored_locations,
    stored_visits,
)


@pytest.fixture
def owner(ctx, client):
    account = make_account(ctx)
    sign_in(ctx, client, account)
    return account


def test_settings_rename_and_make_private(ctx, client, owner):
    site = make_site(ctx, owner)
    path = f"/sites/{site.public_key}"

    response = post(client, f"{path}/settings", {"name": "  Renamed  "}, csrf(client, path))

    assert response.status_code == 303
    assert response.headers["location"].startswith(f"{path}?flash=Settings+saved.&fs=")
    row = site_row(ctx, site.site_id)
    assert row is not None and (row.name, row.is_public) == ("Renamed", False)
    page = client.get(response.headers["location"], headers=HTML)
    assert "Settings saved." in page.text
    assert "<h1>Renamed</h1>" in page.text
    public_box = page.text[page.text.index('id="site-public"') :].split(">", 1)[0]
    assert "checked" not in public_box  # (the counter style form has boxes of its own)
    assert "Preview map (only you)" in page.text

    post(client, f"{path}/settings", {"name": "", "is_public": "1"}, csrf(client, path))
    row = site_row(ctx, site.site_id)
    assert row is not None and (row.name, row.is_public) == ("blog.example.org", True)


def test_settings_error_is_shown_and_nothing_changes(ctx, client, owner):
    site = make_site(ctx, owner, name="Original")
    path = f"/sites/{site.public_key}"

    response = post(client, f"{path}/settings", {"name": "x" * 101}, csrf(client, path))

    assert response.status_code == 400
    assert "the site name is too long" in response.text
    assert 'href="#settings"' in response.text
    assert 'aria-invalid="true"' in response.text
    row = site_row(ctx, site.site_id)
    assert row is not None and (row.name, row.is_public) == ("Original", True)


def test_added_hostname_is_counted_and_removed_one_is_not(ctx, client, owner):
    site = make_site(ctx, owner)
    key, path = site.public_key, f"/sites/{site.public_key}"
    docs = "https://docs.example.net/guide"
    hit(client, key, referer=docs)  # foreign before it is added (and now in the site cache)
    assert stored_visits(ctx, site.site_id) == (0, 0)

    added = post(client, f"{path}/hostnames", {"hostname": "Docs.Example.net"}, csrf(client, path))

    assert added.status_code == 303
    assert added.headers["location"].startswith(f"{path}?flash=docs.example.net")
    assert hostnames_of(ctx, site.site_id) == ["blog.example.org", "docs.example.net"]
    hit(client, key, referer=docs)
    assert stored_visits(ctx, site.site_id) == (1, 1)
    page = client.get(path, headers=HTML)
    assert 'aria-label="Remove docs.example.net"' in page.text
    assert 'aria-label="Remove blog.example.org"' not in page.text  # the main domain stays

    removed = post(
        client, f"{path}/hostnames/remove", {"hostname": "docs.example.net"}, csrf(client, path)
    )

    assert removed.status_code == 303
    assert hostnames_of(ctx, site.site_id) == ["blog.example.org"]
    hit(client, key, referer=docs, ip="89.160.20.112")
    assert stored_visits(ctx, site.site_id) == (1, 1)
    page = client.get(path, headers=HTML)
    assert "Referrer from another site" in page.text


def test_hostname_errors(ctx, client, owner):
    site = make_site(ctx, owner)
    path = f"/sites/{site.public_key}"
    token = csrf(client, path)

    main = post(client, f"{path}/hostnames/remove", {"hostname": "blog.example.org"}, token)
    assert main.status_code == 400
    assert "the site&#39;s main domain cannot be removed" in main.text

    missing = post(client, f"{path}/hostnames/remove", {"hostname": "nope.example.org"}, token)
    assert missing.status_code == 404
    assert "nope.example.org is not a hostname of this site" in missing.text

    duplicate = post(client, f"{path}/hostnames", {"hostname": "https://blog.example.org/"}, token)
    assert duplicate.status_code == 409
    assert "blog.example.org is already allowed for this site" in duplicate.text

    invalid = post(client, f"{path}/hostnames", {"hostname": "bad host"}, token)
    assert invalid.status_code == 400
    assert "is not a valid domain name" in invalid.text
    assert 'value="bad host"' in invalid.text
    assert hostnames_of(ctx, site.site_id) == ["blog.example.org"]


def test_delete_needs_the_domain_then_removes_site_and_visits(ctx, client, owner):
    site = make_site(ctx, owner)
    key, path = site.public_key, f"/sites/{site.public_key}"
    hit(client, key)
    hit(client, key, ip="216.160.83.56")
    assert stored_visits(ctx, site.site_id) == (2, 2)
    assert stored_locations(ctx, site.site_id) == 6  # two places: day, month, all time
    bystander = make_site(ctx, make_account(ctx), domain="other.example.org")
    hit(client, bystander.public_key, ip="216.160.83.56", referer="https://other.example.org/")
    token = csrf(client, path)

    wrong = post(client, f"{path}/delete", {"confirm": "blog.example.com"}, token)

    assert wrong.status_code == 400
    assert "type the site&#39;s domain, blog.example.org, to confirm" in wrong.text
    assert site_row(ctx, site.site_id) is not None

    deleted = post(client, f"{path}/delete", {"confirm": " Blog.Example.org "}, token)

    assert deleted.status_code == 303
    assert deleted.headers["location"].startswith("/sites?flash=")
    assert site_row(ctx, site.site_id) is None
    assert stored_visits(ctx, site.site_id) == (0, 0)
    assert stored_locations(ctx, site.site_id) == 0  # aggregates have no cascade
    assert stored_visits(ctx, bystander.site_id) == (1, 1)
    assert stored_locations(ctx, bystander.site_id) == 3
    assert hostnames_of(ctx, site.site_id) == []
    assert client.get(path, headers=HTML).status_code == 404
    assert client.get(f"/map/{key}", headers=HTML).status_code == 404
    assert hit(client, key).status_code == 404  # the counter forgot the site at once
    listing = client.get(deleted.headers["location"], headers=HTML)
    assert "was deleted" in listing.text and key not in listing.text


def test_another_account_gets_404_everywhere_and_changes_nothing(ctx, client, owner):
    site = make_site(ctx, owner, name="Owned")
    key, path = site.public_key, f"/sites/{site.public_key}"
    hit(client, key)
    before = (site_row(ctx, site.site_id), hostnames_of(ctx, site.site_id))
    stranger = make_account(ctx)
    make_site(ctx, stranger, "stranger.example.org")

    with other_client(client) as intruder:
        sign_in(ctx, intruder, stranger)
        token = csrf(intruder)
        assert intruder.get(path, headers=HTML).status_code == 404
        assert intruder.get(f"{path}?range=all", headers=HTML).status_code == 404
        attempts = {
            f"{path}/settings": {"name": "Pwned", "is_public": ""},
            f"{path}/hostnames": {"hostname": "evil.example.com"},
            f"{path}/hostnames/remove": {"hostname": "blog.example.org"},
            f"{path}/hostnames/scheme": {"hostname": "blog.example.org", "scheme": "http"},
            f"{path}/delete": {"confirm": "blog.example.org"},
        }
        for url, data in attempts.items():
            response = post(intruder, url, data, token)
            assert response.status_code == 404, url
            assert "Owned" not in response.text and "blog.example.org" not in response.text
        listing = intruder.get("/sites", headers=HTML)
        assert key not in listing.text

    row = site_row(ctx, site.site_id)
    assert row is not None
    assert (row.name, row.is_public, row.domain) == ("Owned", True, "blog.example.org")
    assert before[1] == hostnames_of(ctx, site.site_id) == ["blog.example.org"]
    assert _plain_http(ctx, site) == {"blog.example.org": False}
    assert stored_visits(ctx, site.site_id) == (1, 1)


def test_unknown_and_malformed_keys_are_404(ctx, client, owner):
    token = csrf(client)
    for key in ("AAAAAAAAAAAAAAAAAAAAAA", "nope", "x" * 200):
        assert client.get(f"/sites/{key}", headers=HTML).status_code == 404
        response = post(client, f"/sites/{key}/settings", {"name": "x"}, token)
        assert response.status_code == 404


def test_anonymous_posts_change_nothing(ctx, client):
    site = make_site(ctx, make_account(ctx), name="Owned")
    path = f"/sites/{site.public_key}"
    client.get("/login", headers=HTML)  # a page with a form sets the browser's CSRF cookie
    token = keyed_digest(ctx.secret, "csrf", client.cookies[CSRF_COOKIE]).hex()
    response = post(client, f"{path}/settings", {"name": "Pwned"}, token)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    deleted = post(client, f"{path}/delete", {"confirm": "blog.example.org"}, token)
    assert deleted.headers["location"].startswith("/login?next=")
    row = site_row(ctx, site.site_id)
    assert row is not None and row.name == "Owned"


def _plain_http(ctx, site) -> dict[str, bool]:
    with ctx.db.session() as session:
        return {h.name: h.plain_http for h in sites_service.hostname_list(session, site)}


def test_hostname_scheme_is_https_until_the_owner_chooses_http(ctx, client, owner):
    site = make_site(ctx, owner)
    path = f"/sites/{site.public_key}"
    assert "https://blog.example.org" in client.get(path, headers=HTML).text
    assert _plain_http(ctx, site) == {"blog.example.org": False}
    token = csrf(client, path)
    data = {"hostname": "blog.example.org", "scheme": "http"}
    chosen = post(client, f"{path}/hostnames/scheme", data, token)
    assert chosen.status_code == 303
    assert _plain_http(ctx, site) == {"blog.example.org": True}
    assert "Use https for blog.example.org" in client.get(path, headers=HTML).text

    unknown = post(client, f"{path}/hostnames/scheme", {**data, "hostname": "x.example.org"}, token)
    assert unknown.status_code == 404
    assert "x.example.org is not a hostname of this site" in unknown.text
    bad = post(client, f"{path}/hostnames/scheme", {**data, "scheme": "ftp"}, token)
    assert bad.status_code == 400 and "choose https or http" in bad.text
    assert _plain_http(ctx, site) == {"blog.example.org": True}
