"""No redirect is built from the request's Host header (both databases)."""

from __future__ import annotations

from tests.factories import make_account, make_site
from tests.sites.helpers import HTML, sign_in

FORGED = {"host": "attacker.example", **HTML}


def test_trailing_slash_redirect_stays_on_the_host_that_was_asked(ctx, client):
    sign_in(ctx, client, make_account(ctx))
    response = client.get("/sites/", headers=FORGED, follow_redirects=False)
    assert response.status_code in (301, 302, 303, 307, 308)
    assert response.headers["location"] == "/sites"
    with_query = client.get("/login/?next=/sites", headers=FORGED, follow_redirects=False)
    assert with_query.headers["location"] == "/login?next=/sites"
    assert client.get("/sites/", headers=HTML).status_code == 200  # followed: the list


def test_no_redirect_names_a_forged_host(ctx, client):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    paths = ["/", "/sites/", "/sites", f"/sites/{site.public_key}/", "/account/", "/login/"]
    for signed_in in (False, True):
        if signed_in:
            sign_in(ctx, client, owner)
        for path in paths:
            response = client.get(path, headers=FORGED, follow_redirects=False)
            location = response.headers.get("location", "")
            assert "attacker" not in location, (path, location)
            assert not location.startswith("//"), (path, location)


def test_protocol_relative_paths_are_not_redirected(client):
    for path in ("//attacker.example/", "/\\attacker.example/", "//sites/"):
        response = client.get(f"http://hitmap.test{path}", headers=HTML, follow_redirects=False)
        assert response.status_code == 404, path
