"""Flash notices are signed: a crafted link cannot make Hitmap show arbitrary text."""

from __future__ import annotations

from tests.factories import DEFAULT_PASSWORD, csrf_from, login, make_account

HTML = {"accept": "text/html"}


def test_forged_flash_is_not_shown_and_a_real_one_is(ctx, client):
    account = make_account(ctx)
    login(client, account.email)
    forged = client.get("/account?flash=Your+account+is+locked,+call+555-0100", headers=HTML)
    assert forged.status_code == 200
    assert "call 555-0100" not in forged.text
    tampered = client.get("/account?flash=Call+555-0100&fs=00000000000000000000", headers=HTML)
    assert "555-0100" not in tampered.text

    response = client.post(
        "/account/password",
        data={
            "current_password": DEFAULT_PASSWORD,
            "new_password": "another long password",
            "new_password_confirm": "another long password",
            "csrf_token": csrf_from(forged.text),
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert response.status_code == 303
    shown = client.get(response.headers["location"], headers=HTML)
    assert "Your password was changed" in shown.text
