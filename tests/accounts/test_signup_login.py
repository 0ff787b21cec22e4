"""Start page, sign-up, login, logout and the session cookie, through real HTTP."""

from __future__ import annotations

import pytest

from app.deps import SESSION_COOKIE
from app.models import Account, LoginSession
from tests.accounts import (
    HTML,
    client_for,
    count,
    form_post,
    get_with_session,
    make_ctx,
    session_cookie,
    sign_up,
)
from tests.factories import DEFAULT_PASSWORD, csrf_from, login, make_account


def _session_set_cookie(response) -> str:
    cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    return cookies[0]


def _login(client, email, password, next_path=None, **kwargs):
    data = {"email": email, "password": password}
    if next_path is not None:
        data["next"] = next_path
    return form_post(client, "/login", "/login", data, **kwargs)


# --- start page ----------------------------------------------------------------


def test_home_explains_hitmap_and_offers_sign_up(client):
    page = client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "visitor" in page.text.lower() and "privacy" in page.text.lower()
    assert 'href="/signup"' in page.text and 'href="/login"' in page.text
    assert "heatmap" in page.text.lower()


def test_home_sends_a_logged_in_owner_to_the_sites(ctx, client):
    login(client, make_account(ctx).email)
    response = client.get("/", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/sites"


# --- sign-up -------------------------------------------------------------------


def test_sign_up_logs_in_and_the_account_page_shows_the_email(ctx, client):
    response = sign_up(client, "New.Owner@Example.org")
    assert response.status_code == 303
    assert response.headers["location"] == "/sites"
    assert session_cookie(client)
    page = client.get("/account", headers=HTML, follow_redirects=False)
    assert page.status_code == 200
    assert "new.owner@example.org" in page.text
    assert count(ctx, Account, Account.email == "new.owner@example.org") == 1


def test_sign_up_with_a_taken_email_keeps_the_email_but_not_the_password(ctx, client):
    make_account(ctx, email="taken@example.org")
    response = sign_up(client, "Taken@Example.org", password="another long password")
    assert response.status_code == 409
    assert 'role="alert"' in response.text
    assert "already exists" in response.text
    assert 'value="Taken@Example.org"' in response.text
    assert "another long password" not in response.text
    assert session_cookie(client) is None
    assert count(ctx, Account, Account.email == "taken@example.org") == 1


def test_sign_up_with_a_weak_password_is_refused(ctx, client):
    response = sign_up(client, "weak@example.org", password="short1")
    assert response.status_code == 400
    assert "at least 10 characters" in response.text
    assert 'value="weak@example.org"' in response.text
    assert "short1" not in response.text
    assert count(ctx, Account, Account.email == "weak@example.org") == 0


def test_sign_up_needs_the_same_password_twice(ctx, client):
    response = form_post(
        client,
        "/signup",
        "/signup",
        {
            "email": "twice@example.org",
            "password": "first long password",
            "password_confirm": "second long password",
        },
    )
    assert response.status_code == 400
    assert "not the same" in response.text
    assert count(ctx, Account, Account.email == "twice@example.org") == 0


def test_sign_up_with_a_bad_email_escapes_what_was_typed(ctx, client):
    response = sign_up(client, "<script>x")
    assert response.status_code == 400
    assert "valid email" in response.text
    assert "<script>x" not in response.text
    assert "&lt;script&gt;x" in response.text


def test_sign_up_page_sends_a_logged_in_owner_to_the_sites(ctx, client):
    login(client, make_account(ctx).email)
    response = client.get("/signup", headers=HTML, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/sites")


# --- login ---------------------------------------------------------------------


def test_login_with_a_wrong_password_answers_401_and_keeps_the_email(ctx, client):
    account = make_account(ctx)
    response = _login(client, account.email, "not the password at all")
    assert response.status_code == 401
    assert 'role="alert"' in response.text
    assert "wrong email or password" in response.text
    assert f'value="{account.email}"' in response.text
    assert "not the password at all" not in response.text
    assert session_cookie(client) is None


def test_login_with_an_unknown_email_says_the_same(client):
    response = _login(client, "nobody@example.org", DEFAULT_PASSWORD)
    assert response.status_code == 401
    assert "wrong email or password" in response.text


def test_login_answers_alike_whether_or_not_the_email_is_registered(ctx, client):
    """Sign-up may say an email is taken; login must not tell who has an account."""
    registered = make_account(ctx, email="known@example.org")
    known = _login(client, registered.email, "not the password at all")
    unknown = _login(client, "unknown@example.org", "not the password at all")

    def page(response, email: str) -> str:
        text = response.text.replace(email, "EMAIL")
        return text.replace(csrf_from(response.text), "TOKEN")

    assert known.status_code == unknown.status_code == 401
    assert page(known, registered.email) == page(unknown, "unknown@example.org")
    ignored = {"content-length", "set-cookie", "date"}
    assert {k: v for k, v in known.headers.items() if k not in ignored} == {
        k: v for k, v in unknown.headers.items() if k not in ignored
    }


def test_login_required_page_comes_back_after_login(ctx, client):
    account = make_account(ctx)
    bounce = client.get("/account", headers=HTML, follow_redirects=False)
    assert bounce.status_code == 303
    assert bounce.headers["location"] == "/login?next=/account"
    page = client.get(bounce.headers["location"], headers=HTML)
    assert 'name="next" value="/account"' in page.text
    response = _login(client, account.email, DEFAULT_PASSWORD, "/account")
    assert (response.status_code, response.headers["location"]) == (303, "/account")
    assert client.get("/account", headers=HTML).status_code == 200


def test_login_keeps_a_relative_next_with_its_query(ctx, client):
    account = make_account(ctx)
    response = _login(client, account.email, DEFAULT_PASSWORD, "/sites/7?range=30d")
    assert response.headers["location"] == "/sites/7?range=30d"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "https://evil.com",
        "http://evil.com/sites",
        "/\\evil.com",
        "/\t/evil.com",
        "evil.com",
        "javascript:alert(1)",
    ],
)
def test_login_never_redirects_off_site(ctx, client, target):
    account = make_account(ctx)
    page = client.get("/login", params={"next": target}, headers=HTML)
    assert 'name="next" value="/sites"' in page.text
    response = _login(client, account.email, DEFAULT_PASSWORD, target)
    assert response.status_code == 303
    assert response.headers["location"] == "/sites"


def test_login_takes_next_from_the_query_string_too(ctx, client):
    account = make_account(ctx)
    page = client.get("/login", headers=HTML)
    response = client.post(
        "/login?next=//evil.com",
        data={
            "email": account.email,
            "password": DEFAULT_PASSWORD,
            "csrf_token": csrf_from(page.text),
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert response.headers["location"] == "/sites"


def test_login_throttles_after_the_configured_failures_even_with_the_right_password(
    db, clock, tmp_path
):
    ctx = make_ctx(db, clock, tmp_path / "data", login_max_failures=3, login_window_seconds=600)
    account = make_account(ctx)
    with client_for(ctx) as client:
        for _ in range(3):
            assert _login(client, account.email, "a wrong password").status_code == 401
        blocked = _login(client, account.email, DEFAULT_PASSWORD)
        assert blocked.status_code == 429
        assert 'role="alert"' in blocked.text
        assert "too many failed logins" in blocked.text
        assert blocked.headers["retry-after"] == "600"
        assert session_cookie(client) is None

        # Once the window has passed, the right password works again.
        clock.advance(seconds=601)
        assert _login(client, account.email, DEFAULT_PASSWORD).status_code == 303
        assert session_cookie(client)


def test_login_throttle_counts_per_account_across_addresses(db, clock, tmp_path):
    ctx = make_ctx(
        db, clock, tmp_path / "data", login_max_failures=2, login_max_failures_per_account=2
    )
    account = make_account(ctx)
    with client_for(ctx) as client:
        for ip in ("203.0.113.1", "203.0.113.2"):
            token = csrf_from(client.get("/login", headers=HTML).text)
            response = client.post(
                "/login",
                data={"email": account.email, "password": "wrong guess!!", "csrf_token": token},
                headers={**HTML, "x-forwarded-for": ip},
            )
            assert response.status_code == 401
        token = csrf_from(client.get("/login", headers=HTML).text)
        response = client.post(
            "/login",
            data={"email": account.email, "password": DEFAULT_PASSWORD, "csrf_token": token},
            headers={**HTML, "x-forwarded-for": "203.0.113.3"},
            follow_redirects=False,
        )
        assert response.status_code == 429


def test_login_throttle_counts_per_address_across_accounts(db, clock, tmp_path):
    ctx = make_ctx(
        db, clock, tmp_path / "data", login_max_failures=2, login_max_failures_per_address=2
    )
    victim = make_account(ctx)
    with client_for(ctx) as client:
        assert _login(client, "first@example.org", "some guess!!").status_code == 401
        assert _login(client, "second@example.org", "some guess!!").status_code == 401
        assert _login(client, victim.email, DEFAULT_PASSWORD).status_code == 429


# --- logout and the session cookie --------------------------------------------


def test_logout_ends_the_session_and_the_old_cookie_stops_working(ctx, client):
    account = make_account(ctx)
    login(client, account.email)
    old = session_cookie(client)
    assert old
    assert get_with_session(client, "/account", old).status_code == 200

    response = form_post(client, "/account", "/logout", {})
    assert (response.status_code, response.headers["location"]) == (303, "/")
    cleared = _session_set_cookie(response)
    assert 'hitmap_session=""' in cleared or "Max-Age=0" in cleared
    assert session_cookie(client) is None
    assert count(ctx, LoginSession, LoginSession.account_id == account.id) == 0

    replay = get_with_session(client, "/account", old)
    assert replay.status_code == 303
    assert replay.headers["location"].startswith("/login")


def test_logout_needs_the_csrf_token(ctx, client):
    login(client, make_account(ctx).email)
    response = client.post("/logout", data={}, headers=HTML, follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/account", headers=HTML, follow_redirects=False).status_code == 200


def test_session_cookie_flags_on_plain_http(ctx, client):
    response = sign_up(client, "flags@example.org")
    cookie = _session_set_cookie(response).lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    assert f"max-age={ctx.settings.session_days * 86400}" in cookie
    assert "secure" not in cookie


def test_session_cookie_is_secure_when_served_over_https(db, clock, tmp_path):
    ctx = make_ctx(db, clock, tmp_path / "data", base_url="https://hitmap.test")
    account = make_account(ctx)
    with client_for(ctx) as client:
        response = _login(client, account.email, DEFAULT_PASSWORD)
        assert response.status_code == 303
        cookie = _session_set_cookie(response).lower()
        assert "; secure" in cookie
        assert "httponly" in cookie and "samesite=lax" in cookie


def test_login_replaces_the_previous_session_of_this_browser(ctx, client):
    account = make_account(ctx)
    login(client, account.email)
    first = session_cookie(client)
    login(client, account.email)
    second = session_cookie(client)
    assert first and second and first != second
    assert get_with_session(client, "/account", first).status_code == 303
    assert count(ctx, LoginSession, LoginSession.account_id == account.id) == 1


@pytest.mark.parametrize("path", ["/signup", "/login"])
def test_forms_without_a_valid_csrf_token_are_refused(ctx, client, path):
    make_account(ctx, email="csrf@example.org")
    data = {"email": "csrf@example.org", "password": DEFAULT_PASSWORD}
    if path == "/signup":
        data = {
            "email": "fresh@example.org",
            "password": DEFAULT_PASSWORD,
            "password_confirm": DEFAULT_PASSWORD,
        }
    client.get(path, headers=HTML)  # the browser has a CSRF cookie
    missing = client.post(path, data=data, headers=HTML, follow_redirects=False)
    wrong = client.post(
        path, data={**data, "csrf_token": "00" * 32}, headers=HTML, follow_redirects=False
    )
    assert missing.status_code == 403 and wrong.status_code == 403
    assert session_cookie(client) is None
    assert count(ctx, Account, Account.email == "fresh@example.org") == 0
