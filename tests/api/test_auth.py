"""Bearer tokens: without a valid one every API route answers 401 with WWW-Authenticate."""

from __future__ import annotations

import pytest

from app.accounts import service as accounts
from tests.api.helpers import bearer, token_for
from tests.factories import make_account, make_site

ROUTES = [
    ("GET", "/api/v1/sites"),
    ("POST", "/api/v1/sites"),
    ("GET", "/api/v1/sites/AAAAAAAAAAAAAAAAAAAAAA/stats"),
]


def _assert_401(response):
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_token_is_401(client, method, path):
    _assert_401(client.request(method, path, json={"domain": "a.example.org"}))


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer hm_not-a-real-token",
        "Bearer not-even-the-prefix",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "hm_token-without-scheme",
    ],
)
def test_bad_token_is_401(client, authorization):
    _assert_401(client.get("/api/v1/sites", headers={"authorization": authorization}))


def test_revoked_token_is_401(ctx, client):
    account = make_account(ctx)
    token = token_for(ctx, account)
    assert client.get("/api/v1/sites", headers=bearer(token)).status_code == 200
    with ctx.db.session() as session:
        (row,) = accounts.list_api_tokens(session, account)
        accounts.revoke_api_token(session, account, row.id)
    _assert_401(client.get("/api/v1/sites", headers=bearer(token)))


def test_a_site_key_does_not_authenticate(ctx, client):
    site = make_site(ctx, make_account(ctx))
    _assert_401(client.get(f"/api/v1/sites/{site.public_key}/stats", headers=bearer("hm_x")))


def test_token_use_is_recorded(ctx, client):
    account = make_account(ctx)
    token = token_for(ctx, account)
    client.get("/api/v1/sites", headers=bearer(token))
    with ctx.db.session() as session:
        (row,) = accounts.list_api_tokens(session, account)
    assert row.last_used_at == ctx.clock.now()
