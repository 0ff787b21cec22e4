"""A public suffix (com, co.uk, github.io) is refused as a site's domain and as a hostname,
on every path that registers one: the sites page, the API and `hitmap site add`."""

from __future__ import annotations

from click.testing import CliRunner

from app import cli
from app.sites import authz
from app.sites.keys import is_public_suffix
from tests.api.helpers import bearer, token_for
from tests.factories import make_account, make_site
from tests.sites.helpers import csrf, hostnames_of, post, sign_in

SUFFIXES = ["com", "co.uk", "github.io", "https://github.io/", "COM."]
MESSAGE = "is a public suffix"


def _site_count(ctx, account) -> int:
    with ctx.db.session() as session:
        return len(authz.owned_sites(session, account.id))


def test_the_bundled_list_knows_icann_and_private_suffixes():
    assert all(is_public_suffix(s) for s in ("com", "co.uk", "github.io", "kawasaki.jp"))
    for host in ("alice.github.io", "example.co.uk", "blog.example.org", "localhost"):
        assert not is_public_suffix(host), host


def test_sites_page_refuses_a_public_suffix_as_the_domain(ctx, client):
    account = make_account(ctx)
    sign_in(ctx, client, account)
    token = csrf(client, "/sites/new")
    for domain in SUFFIXES:
        response = post(client, "/sites", {"domain": domain}, token)
        assert response.status_code == 400, domain
        assert MESSAGE in response.text
    assert _site_count(ctx, account) == 0
    ok = post(client, "/sites", {"domain": "alice.github.io"}, token)
    assert ok.status_code == 303
    assert _site_count(ctx, account) == 1


def test_a_public_suffix_is_refused_as_an_extra_hostname(ctx, client):
    owner = make_account(ctx)
    sign_in(ctx, client, owner)
    site = make_site(ctx, owner)
    path = f"/sites/{site.public_key}"
    token = csrf(client, path)
    for hostname in SUFFIXES:
        response = post(client, f"{path}/hostnames", {"hostname": hostname}, token)
        assert response.status_code == 400, hostname
        assert MESSAGE in response.text
    assert hostnames_of(ctx, site.site_id) == ["blog.example.org"]
    assert (
        post(client, f"{path}/hostnames", {"hostname": "alice.github.io"}, token).status_code == 303
    )


def test_api_refuses_a_public_suffix(ctx, client):
    account = make_account(ctx)
    token = token_for(ctx, account)
    for domain in SUFFIXES:
        response = client.post("/api/v1/sites", json={"domain": domain}, headers=bearer(token))
        assert response.status_code == 400, domain
        assert MESSAGE in response.json()["detail"]
    assert client.get("/api/v1/sites", headers=bearer(token)).json() == []


def test_cli_site_add_refuses_a_public_suffix(ctx):
    owner = make_account(ctx)
    args = ["site", "add", "--owner", owner.email, "--domain", "co.uk"]
    result = CliRunner().invoke(cli.main, args, obj=ctx)
    assert result.exit_code == 1
    assert MESSAGE in result.stderr
    assert _site_count(ctx, owner) == 0
