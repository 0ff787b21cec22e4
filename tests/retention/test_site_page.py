"""The owner chooses the retention on the site's page; bad values change nothing."""

from __future__ import annotations

import html

import pytest

from app.models import Site
from tests.factories import make_account, make_site
from tests.sites.helpers import HTML, csrf, other_client, post, sign_in


@pytest.fixture
def owner(ctx, client):
    account = make_account(ctx)
    sign_in(ctx, client, account)
    return account


def _stored(ctx, site_id: int) -> int | None:
    with ctx.db.session() as session:
        site = session.get(Site, site_id)
        assert site is not None
        return site.retention_days


def _summary(page: str) -> str:
    start = page.index('id="retention-summary">') + len('id="retention-summary">')
    return html.unescape(page[start : page.index("</p>", start)])


def _checked(page: str) -> str:
    section = page[page.index('id="retention"') :]
    for mode in ("default", "forever", "days"):
        tag = section.split(f'value="{mode}"', 1)[1].split(">", 1)[0]
        if "checked" in tag:
            return mode
    raise AssertionError("no retention choice is checked")


def test_set_days_then_forever_then_the_default(ctx, client, owner):
    ctx.settings.retention_days = 365
    site = make_site(ctx, owner)
    path = f"/sites/{site.public_key}"
    page = client.get(path, headers=HTML).text
    assert _checked(page) == "default" and "Instance default (365 days)" in page
    assert _summary(page) == (
        "Visits and clicks older than 365 days are deleted every night at 03:00 UTC."
    )

    saved = post(client, f"{path}/retention", {"mode": "days", "days": " 90 "}, csrf(client, path))

    assert saved.status_code == 303
    assert _stored(ctx, site.site_id) == 90
    page = client.get(saved.headers["location"], headers=HTML).text
    assert "Retention saved. Visits and clicks older than 90 days are deleted every night." in page
    assert _checked(page) == "days" and 'name="days" value="90"' in page

    post(client, f"{path}/retention", {"mode": "forever", "days": "90"}, csrf(client, path))
    assert _stored(ctx, site.site_id) == 0
    page = client.get(path, headers=HTML).text
    assert _checked(page) == "forever"
    assert _summary(page) == "Visits and clicks are kept forever."

    post(client, f"{path}/retention", {"mode": "default"}, csrf(client, path))
    assert _stored(ctx, site.site_id) is None


BAD = [
    ({"mode": "days", "days": "-5"}, "keep visits and clicks at least 1 day (you entered -5)"),
    ({"mode": "days", "days": "0"}, "keep visits and clicks at least 1 day (you entered 0)"),
    ({"mode": "days", "days": "ten"}, "'ten' is not a number of days"),
    ({"mode": "days", "days": "1.5"}, "'1.5' is not a number of days"),
    ({"mode": "days", "days": ""}, "enter a number of days from 1 to 3650"),
    ({"mode": "days", "days": "3651"}, "at most 3650 days (ten years) can be chosen"),
    ({"mode": "days", "days": "9" * 5000}, "at most 3650 days (ten years) can be chosen"),
    ({"mode": "sometimes", "days": "5"}, "choose how long visits and clicks are kept"),
    ({}, "choose how long visits and clicks are kept"),
]


@pytest.mark.parametrize(("form", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_values_are_refused_and_change_nothing(ctx, client, owner, form, message):
    site = make_site(ctx, owner)
    path = f"/sites/{site.public_key}"
    post(client, f"{path}/retention", {"mode": "days", "days": "30"}, csrf(client, path))

    response = post(client, f"{path}/retention", form, csrf(client, path))

    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert 'id="retention-error"' in response.text and 'href="#retention"' in response.text
    assert _stored(ctx, site.site_id) == 30


def test_needs_the_csrf_token_and_the_owner(ctx, client, owner):
    site = make_site(ctx, owner)
    url = f"/sites/{site.public_key}/retention"

    forged = post(client, url, {"mode": "forever"}, "0" * 64)
    assert forged.status_code == 403

    stranger = make_account(ctx)
    with other_client(client) as intruder:
        sign_in(ctx, intruder, stranger)
        response = post(intruder, url, {"mode": "forever"}, csrf(intruder))
    assert response.status_code == 404
    assert _stored(ctx, site.site_id) is None
