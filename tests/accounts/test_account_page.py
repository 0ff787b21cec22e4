"""The account page: password change, API tokens, deletion, and CSRF on every form."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.accounts import service as accounts
from app.errors import NotAuthenticated
from app.models import (
    Account,
    ApiToken,
    DailyCountryCount,
    LocationCount,
    LoginSession,
    Site,
    SiteHostname,
    Visit,
)
from tests.accounts import HTML, count, form_post, get_with_session, session_cookie
from tests.factories import DEFAULT_PASSWORD, csrf_from, hit, login, make_account, make_site

NEW_PASSWORD = "a brand new long password"
TOKEN_IN_FIELD = re.compile(r'id="new_token"[^>]*value="(hm_[^"]+)"')


def _logged_in(ctx, client) -> Account:
    account = make_account(ctx)
    login(client, account.email)
    return account


def _password_ok(ctx, email: str, password: str) -> bool:
    with ctx.db.session() as session:
        account = accounts.find_account(session, email)
    from app.security import verify_password

    return verify_password(account.password_hash, password)


def _create_token(client, name: str = "weekly report"):
    return form_post(client, "/account", "/account/tokens", {"name": name})


def _api_account(ctx, token: str) -> Account:
    with ctx.db.session() as session:
        return accounts.account_for_api_token(session, ctx.clock, token)


# --- page ----------------------------------------------------------------------


def test_account_page_shows_the_email_and_every_form_has_a_csrf_token(ctx, client):
    account = _logged_in(ctx, client)
    page = client.get("/account", headers=HTML)
    assert page.status_code == 200
    assert account.email in page.text
    assert page.headers["cache-control"] == "no-store"
    forms = re.findall(r"<form\b.*?</form>", page.text, flags=re.S)
    assert len(forms) >= 4  # logout, password, token, delete
    for form in forms:
        assert 'method="post"' in form
        assert f'name="csrf_token" value="{csrf_from(page.text)}"' in form
    for field in ("current_password", "new_password", "new_password_confirm", "token_name"):
        assert f'<label for="{field}"' in page.text
    assert 'autocomplete="current-password"' in page.text
    assert 'autocomplete="new-password"' in page.text


def test_account_page_needs_a_login(client):
    response = client.get("/account", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/account"


def test_a_form_posted_after_the_session_ended_leads_to_login_and_a_page(ctx, client):
    account = make_account(ctx)
    page = client.get("/login", headers=HTML)
    response = client.post(
        "/account/tokens",
        data={"name": "late", "csrf_token": csrf_from(page.text)},
        headers=HTML,
        follow_redirects=False,
    )
    assert response.status_code == 303
    # A form post cannot be replayed after logging in, so the next page is the site list.
    assert response.headers["location"] == "/login?next=/sites"
    landing = client.get("/account/tokens", headers=HTML)  # an old bookmark of a form URL
    assert landing.status_code == 200
    assert landing.url.path == "/login"
    login_response = form_post(
        client,
        "/login",
        "/login",
        {"email": account.email, "password": DEFAULT_PASSWORD, "next": "/account/tokens"},
    )
    assert login_response.headers["location"] == "/account/tokens"
    landing = client.get("/account/tokens", headers=HTML)
    assert landing.status_code == 200
    assert landing.url.path == "/account"
    assert count(ctx, ApiToken, ApiToken.account_id == account.id) == 0


# --- password ------------------------------------------------------------------


def test_change_password_logs_out_other_sessions_but_keeps_this_one(ctx, client):
    account = _logged_in(ctx, client)
    with TestClient(client.app, base_url="http://hitmap.test") as other:
        login(other, account.email)
        other_session = session_cookie(other)
    assert other_session
    assert get_with_session(client, "/account", other_session).status_code == 200

    response = form_post(
        client,
        "/account",
        "/account/password",
        {
            "current_password": DEFAULT_PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/account?flash=")
    assert "password was changed" in client.get(response.headers["location"], headers=HTML).text

    assert client.get("/account", headers=HTML, follow_redirects=False).status_code == 200
    assert get_with_session(client, "/account", other_session).status_code == 303
    assert count(ctx, LoginSession, LoginSession.account_id == account.id) == 1

    with TestClient(client.app, base_url="http://hitmap.test") as fresh:
        old = form_post(
            fresh, "/login", "/login", {"email": account.email, "password": DEFAULT_PASSWORD}
        )
        assert old.status_code == 401
        new = form_post(
            fresh, "/login", "/login", {"email": account.email, "password": NEW_PASSWORD}
        )
        assert new.status_code == 303


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("not my password!", NEW_PASSWORD, NEW_PASSWORD, "current password is wrong"),
        (DEFAULT_PASSWORD, "short", "short", "at least 10 characters"),
        (DEFAULT_PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "not the same"),
    ],
)
def test_change_password_errors_change_nothing(ctx, client, current, new, confirm, message):
    account = _logged_in(ctx, client)
    response = form_post(
        client,
        "/account",
        "/account/password",
        {"current_password": current, "new_password": new, "new_password_confirm": confirm},
    )
    assert response.status_code == 400
    assert 'role="alert"' in response.text and message in response.text
    assert new not in response.text and current not in response.text
    assert _password_ok(ctx, account.email, DEFAULT_PASSWORD)


def _change_password(client, **extra: str):
    fields = {
        "current_password": DEFAULT_PASSWORD,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
        **extra,
    }
    return form_post(client, "/account", "/account/password", fields)


def test_password_change_offers_to_revoke_every_api_token(ctx, client):
    account = _logged_in(ctx, client)
    tokens = [TOKEN_IN_FIELD.search(_create_token(client, n).text).group(1) for n in "ab"]
    page = client.get("/account", headers=HTML)
    assert 'name="revoke_tokens"' in page.text and "revoke all 2 API tokens" in page.text

    response = _change_password(client, revoke_tokens="1")
    assert response.status_code == 303
    landing = client.get(response.headers["location"], headers=HTML).text
    assert "password was changed" in landing and "2 API tokens were revoked" in landing
    for token in tokens:
        with pytest.raises(NotAuthenticated):
            _api_account(ctx, token)
        assert (
            client.get("/api/v1/sites", headers={"authorization": f"Bearer {token}"}).status_code
            == 401
        )
    assert count(ctx, ApiToken, ApiToken.account_id == account.id) == 0
    assert 'name="revoke_tokens"' not in client.get("/account", headers=HTML).text  # none left


def test_password_change_keeps_api_tokens_unless_asked(ctx, client):
    account = _logged_in(ctx, client)
    token = TOKEN_IN_FIELD.search(_create_token(client).text).group(1)
    response = _change_password(client)
    assert response.status_code == 303
    assert "revoked" not in client.get(response.headers["location"], headers=HTML).text
    assert _api_account(ctx, token).id == account.id


def test_a_failed_password_change_revokes_nothing(ctx, client):
    account = _logged_in(ctx, client)
    _create_token(client)
    response = _change_password(client, current_password="not my password!", revoke_tokens="1")
    assert response.status_code == 400
    assert count(ctx, ApiToken, ApiToken.account_id == account.id) == 1


# --- API tokens ----------------------------------------------------------------


def test_api_token_is_shown_once_then_only_its_prefix(ctx, client):
    account = _logged_in(ctx, client)
    created = _create_token(client, "weekly report")
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    match = TOKEN_IN_FIELD.search(created.text)
    assert match, created.text
    token = match.group(1)
    assert created.text.count(token) == 1
    assert "will not be shown again" in created.text
    assert 'data-copy="new_token"' in created.text
    assert "weekly report" in created.text

    page = client.get("/account", headers=HTML)
    assert token not in page.text
    assert token[:10] in page.text
    assert "weekly report" in page.text
    assert "never" in page.text  # last used
    assert "2026-11-22" in page.text  # created
    assert _api_account(ctx, token).id == account.id


def test_api_token_last_use_is_listed(ctx, client, clock):
    _logged_in(ctx, client)
    token = TOKEN_IN_FIELD.search(_create_token(client).text).group(1)
    clock.advance(hours=3, minutes=5)
    _api_account(ctx, token)
    assert "2026-11-22 15:05 UTC" in client.get("/account", headers=HTML).text


def test_api_token_needs_a_name(ctx, client):
    account = _logged_in(ctx, client)
    response = _create_token(client, "   ")
    assert response.status_code == 400
    assert 'role="alert"' in response.text and "give the token a name" in response.text
    assert count(ctx, ApiToken, ApiToken.account_id == account.id) == 0


def test_revoke_api_token(ctx, client):
    account = _logged_in(ctx, client)
    token = TOKEN_IN_FIELD.search(_create_token(client, "ci").text).group(1)
    (token_id,) = [t.id for t in _tokens(ctx, account)]
    response = form_post(client, "/account", f"/account/tokens/{token_id}/revoke", {})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/account?flash=")
    assert token[:10] not in client.get("/account", headers=HTML).text
    assert count(ctx, ApiToken, ApiToken.account_id == account.id) == 0
    with pytest.raises(NotAuthenticated):
        _api_account(ctx, token)


def test_cannot_revoke_another_accounts_token(ctx, client):
    stranger = make_account(ctx)
    with ctx.db.session() as session:
        accounts.create_api_token(session, ctx.clock, stranger, "theirs")
    (their_id,) = [t.id for t in _tokens(ctx, stranger)]
    _logged_in(ctx, client)
    response = form_post(client, "/account", f"/account/tokens/{their_id}/revoke", {})
    assert response.status_code == 404
    assert count(ctx, ApiToken, ApiToken.account_id == stranger.id) == 1


def _tokens(ctx, account):
    with ctx.db.session() as session:
        return accounts.list_api_tokens(session, account)


# --- deletion ------------------------------------------------------------------


def test_delete_account_removes_its_sites_visits_and_tokens(ctx, client):
    account = _logged_in(ctx, client)
    site = make_site(ctx, account)
    assert hit(client, site.public_key, ip="216.160.83.56").status_code == 200
    assert count(ctx, Visit, Visit.site_id == site.site_id) == 1
    assert count(ctx, LocationCount, LocationCount.site_id == site.site_id) == 3
    _create_token(client, "to be deleted")
    bystander = make_account(ctx)
    other_site = make_site(ctx, bystander, domain="other.example.org")
    hit(client, other_site.public_key, ip="216.160.83.56", referer="https://other.example.org/")

    page = client.get("/account", headers=HTML)
    assert "Danger zone" in page.text
    assert "sites" in page.text and "visits" in page.text and "statistics" in page.text

    response = form_post(client, "/account", "/account/delete", {"password": DEFAULT_PASSWORD})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/?flash=")
    assert session_cookie(client) is None
    home = client.get(response.headers["location"], headers=HTML)
    assert home.status_code == 200 and "were deleted" in home.text

    assert count(ctx, Account, Account.id == account.id) == 0
    assert count(ctx, Site, Site.account_id == account.id) == 0
    assert count(ctx, SiteHostname, SiteHostname.site_id == site.site_id) == 0
    assert count(ctx, Visit, Visit.site_id == site.site_id) == 0
    assert count(ctx, DailyCountryCount, DailyCountryCount.site_id == site.site_id) == 0
    assert count(ctx, LocationCount, LocationCount.site_id == site.site_id) == 0
    assert count(ctx, ApiToken, ApiToken.account_id == account.id) == 0
    assert count(ctx, LoginSession, LoginSession.account_id == account.id) == 0
    # Someone else's data stays.
    assert count(ctx, Account, Account.id == bystander.id) == 1
    assert count(ctx, Site, Site.id == other_site.site_id) == 1
    assert count(ctx, DailyCountryCount, DailyCountryCount.site_id == other_site.site_id) == 1
    assert count(ctx, LocationCount, LocationCount.site_id == other_site.site_id) == 3


def test_delete_account_with_a_wrong_password_keeps_everything(ctx, client):
    account = _logged_in(ctx, client)
    make_site(ctx, account)
    response = form_post(client, "/account", "/account/delete", {"password": "not my password!"})
    assert response.status_code == 400
    assert 'role="alert"' in response.text and "not deleted" in response.text
    assert "not my password!" not in response.text
    assert count(ctx, Account, Account.id == account.id) == 1
    assert count(ctx, Site, Site.account_id == account.id) == 1
    assert client.get("/account", headers=HTML, follow_redirects=False).status_code == 200


# --- CSRF ----------------------------------------------------------------------


@pytest.mark.parametrize("csrf", [None, "", "deadbeef" * 8])
@pytest.mark.parametrize(
    "action",
    ["/account/password", "/account/tokens", "/account/tokens/{id}/revoke", "/account/delete"],
)
def test_account_forms_refuse_a_missing_or_wrong_csrf_token(ctx, client, action, csrf):
    account = _logged_in(ctx, client)
    with ctx.db.session() as session:
        accounts.create_api_token(session, ctx.clock, account, "existing")
    (token_id,) = [t.id for t in _tokens(ctx, account)]
    client.get("/account", headers=HTML)
    data = {
        "current_password": DEFAULT_PASSWORD,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
        "name": "sneaky",
        "password": DEFAULT_PASSWORD,
    }
    if csrf is not None:
        data["csrf_token"] = csrf
    response = client.post(
        action.format(id=token_id), data=data, headers=HTML, follow_redirects=False
    )
    assert response.status_code == 403
    assert 'role="alert"' in response.text
    assert count(ctx, Account, Account.id == account.id) == 1
    assert _password_ok(ctx, account.email, DEFAULT_PASSWORD)
    assert [t.name for t in _tokens(ctx, account)] == ["existing"]


def test_csrf_token_from_another_browser_is_refused(ctx, client):
    account = _logged_in(ctx, client)
    with TestClient(client.app, base_url="http://hitmap.test") as attacker:
        foreign = csrf_from(attacker.get("/login", headers=HTML).text)
    assert foreign != csrf_from(client.get("/account", headers=HTML).text)
    response = form_post(
        client, "/account", "/account/delete", {"password": DEFAULT_PASSWORD}, csrf=foreign
    )
    assert response.status_code == 403
    assert count(ctx, Account, Account.id == account.id) == 1
