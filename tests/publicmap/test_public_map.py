"""The public map page /map/{key}: public by default, private ones only for the owner."""

from __future__ import annotations

from app.sites import service as sites
from tests.factories import csrf_from, hit, make_account, make_site
from tests.sites.helpers import HTML, csrf, other_client, post, sign_in, stat, table_rows


def _make_private(ctx, scope) -> None:
    with ctx.db.session() as session:
        sites.update_settings(session, scope, name=scope.name, is_public=False)


def test_public_page_shows_total_countries_and_cities(ctx, client):
    site = make_site(ctx, make_account(ctx), name="Travel notes")
    hit(client, site.public_key, ip="81.2.69.142")
    hit(client, site.public_key, ip="81.2.69.142", ua="Mozilla/5.0 Chrome/130.0 Safari/537.36")
    hit(client, site.public_key, ip="216.160.83.56")
    hit(client, site.public_key, ip="8.8.8.8")

    page = client.get(f"/map/{site.public_key}", headers=HTML)

    assert page.status_code == 200
    assert "<h1>Travel notes</h1>" in page.text
    assert stat(page.text, "map-total") == 4
    assert table_rows(page.text, "countries") == [
        ["\U0001f1ec\U0001f1e7United Kingdom", "2"],
        ["\U0001f310Unknown location", "1"],
        ["\U0001f1fa\U0001f1f8United States", "1"],
    ]
    assert table_rows(page.text, "cities") == [
        ["\U0001f1ec\U0001f1e7London, United Kingdom", "2"],
        ["\U0001f1fa\U0001f1f8Milton, United States", "1"],
    ]
    assert "only you can see it" not in page.text
    assert "noindex" not in page.text
    assert f'<img id="world-map" src="/map/{site.public_key}/all.png"' in page.text  # issue 3
    assert "coming" not in page.text.lower()


def test_public_page_of_a_site_without_visitors(ctx, client):
    site = make_site(ctx, make_account(ctx))
    page = client.get(f"/map/{site.public_key}", headers=HTML)
    assert page.status_code == 200
    assert stat(page.text, "map-total") == 0
    assert "No visitors yet" in page.text


def test_unknown_key_is_a_404_page(client):
    for key in ("AAAAAAAAAAAAAAAAAAAAAA", "short", "%3Cscript%3E"):
        response = client.get(f"/map/{key}", headers=HTML)
        assert response.status_code == 404
        assert "Not found" in response.text
        assert response.headers["content-type"].startswith("text/html")


def test_private_map_is_only_for_its_owner(ctx, client):
    owner = make_account(ctx)
    site = make_site(ctx, owner, name="Secret garden")
    hit(client, site.public_key)
    _make_private(ctx, site)
    path = f"/map/{site.public_key}"

    anonymous = client.get(path, headers=HTML)
    assert anonymous.status_code == 404
    assert "Secret garden" not in anonymous.text

    with other_client(client) as stranger_browser:
        sign_in(ctx, stranger_browser, make_account(ctx))
        stranger = stranger_browser.get(path, headers=HTML)
        assert stranger.status_code == 404
        assert "Secret garden" not in stranger.text

    sign_in(ctx, client, owner)
    mine = client.get(path, headers=HTML)
    assert mine.status_code == 200
    assert "<h1>Secret garden</h1>" in mine.text
    assert "This map is private: only you can see it." in mine.text
    assert '<meta name="robots" content="noindex, nofollow">' in mine.text
    assert mine.headers["cache-control"] == "private, no-store"
    assert stat(mine.text, "map-total") == 1


def test_making_the_map_private_through_settings_hides_it(ctx, client):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    path = f"/map/{site.public_key}"
    with other_client(client) as visitor:
        assert visitor.get(path, headers=HTML).status_code == 200
        sign_in(ctx, client, owner)
        settings = f"/sites/{site.public_key}"
        saved = post(client, f"{settings}/settings", {"name": "Hidden"}, csrf(client, settings))
        assert saved.status_code == 303
        assert visitor.get(path, headers=HTML).status_code == 404
        assert client.get(path, headers=HTML).status_code == 200
        post(
            client,
            f"{settings}/settings",
            {"name": "Hidden", "is_public": "1"},
            csrf(client, settings),
        )
        assert visitor.get(path, headers=HTML).status_code == 200


def test_public_page_sets_no_cookie_on_an_anonymous_visitor(ctx, client):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    page = client.get(f"/map/{site.public_key}", headers=HTML)
    assert page.status_code == 200
    assert "set-cookie" not in page.headers
    assert not client.cookies
    # A signed-in owner's page still carries a working form (log out) with its CSRF cookie.
    sign_in(ctx, client, owner)
    own = client.get(f"/map/{site.public_key}", headers=HTML)
    assert 'action="/logout"' in own.text
    out = post(client, "/logout", {}, csrf_from(own.text))
    assert out.status_code == 303
