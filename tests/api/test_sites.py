"""Listing and registering sites through the API."""

from __future__ import annotations

from app.sites import authz
from tests.api.helpers import bearer, token_for
from tests.factories import make_account, make_site


def test_list_shows_only_the_token_accounts_sites(ctx, client):
    mine, theirs = make_account(ctx), make_account(ctx)
    first = make_site(ctx, mine, domain="blog.example.org", name="Blog")
    second = make_site(ctx, mine, domain="shop.example.org")
    make_site(ctx, theirs, domain="other.example.net")

    response = client.get("/api/v1/sites", headers=bearer(token_for(ctx, mine)))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert [s["key"] for s in body] == [first.public_key, second.public_key]
    assert body[0] == {
        "key": first.public_key,
        "name": "Blog",
        "domain": "blog.example.org",
        "is_public": True,
        "created_at": "2026-11-22T12:00:00Z",
        "counter_url": f"http://hitmap.test/c/{first.public_key}.png",
        "map_url": f"http://hitmap.test/map/{first.public_key}",
    }
    assert body[1]["name"] == "shop.example.org"


def test_an_account_without_sites_gets_an_empty_list(ctx, client):
    response = client.get("/api/v1/sites", headers=bearer(token_for(ctx, make_account(ctx))))
    assert response.status_code == 200 and response.json() == []


def test_create_site_returns_it_with_the_snippet(ctx, client):
    account = make_account(ctx)
    response = client.post(
        "/api/v1/sites",
        json={"domain": "https://News.Example.org/today", "name": "  News "},
        headers=bearer(token_for(ctx, account)),
    )

    assert response.status_code == 201, response.text
    body = response.json()
    key = body["key"]
    assert body["domain"] == "news.example.org"
    assert body["name"] == "News"
    assert body["counter_url"] == f"http://hitmap.test/c/{key}.png"
    snippet = body["snippet"]
    assert f'src="http://hitmap.test/c/{key}.png"' in snippet["counter_html"]
    assert f'data-site="{key}"' in snippet["script_html"]
    assert snippet["html"] == f"{snippet['counter_html']}\n{snippet['script_html']}"
    with ctx.db.session() as session:
        stored = authz.owned_site(session, account.id, key)
    assert stored.domain == "news.example.org"
    listed = client.get("/api/v1/sites", headers=bearer(token_for(ctx, account))).json()
    assert [s["key"] for s in listed] == [key]


def test_create_site_name_defaults_to_the_domain(ctx, client):
    token = token_for(ctx, make_account(ctx))
    response = client.post(
        "/api/v1/sites", json={"domain": "blog.example.org"}, headers=bearer(token)
    )
    assert response.status_code == 201 and response.json()["name"] == "blog.example.org"


def test_bad_domain_is_400_with_a_sentence(ctx, client):
    token = token_for(ctx, make_account(ctx))
    for domain in ["", "not a domain", "exa_mple..org", "-bad-.example.org"]:
        response = client.post("/api/v1/sites", json={"domain": domain}, headers=bearer(token))
        assert response.status_code == 400, (domain, response.text)
        assert isinstance(response.json()["detail"], str)
    assert client.get("/api/v1/sites", headers=bearer(token)).json() == []


def test_too_long_name_is_400(ctx, client):
    token = token_for(ctx, make_account(ctx))
    response = client.post(
        "/api/v1/sites", json={"domain": "a.example.org", "name": "x" * 101}, headers=bearer(token)
    )
    assert response.status_code == 400
    assert "too long" in response.json()["detail"]


def test_malformed_body_is_422_with_field_errors(ctx, client):
    token = token_for(ctx, make_account(ctx))
    for kwargs in [
        {"json": {}},
        {"json": {"domain": 5}},
        {"json": {"domain": "a.example.org", "owner": 1}},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
    ]:
        headers = {**bearer(token), **kwargs.pop("headers", {})}
        response = client.post("/api/v1/sites", headers=headers, **kwargs)
        assert response.status_code == 422, response.text
        assert isinstance(response.json()["detail"], list)


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/api/v1/sites")
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]  # the handler keeps the exception's headers
