"""Site statistics through the API match the hits made through the counter."""

from __future__ import annotations

import pytest

from tests.api.helpers import bearer, token_for
from tests.factories import hit, make_account, make_site

LONDON, MILTON = "81.2.69.142", "216.160.83.56"


def _stats(client, token, key, **params):
    return client.get(f"/api/v1/sites/{key}/stats", params=params, headers=bearer(token))


def test_stats_count_per_day_and_per_country(ctx, client, clock):
    account = make_account(ctx)
    site = make_site(ctx, account, name="Blog")
    key = site.public_key
    hit(client, key, ip=LONDON)
    hit(client, key, ip=LONDON)  # the same visitor again the same day
    hit(client, key, ip=MILTON)
    hit(client, key, ip=MILTON, referer=None)  # dropped: no referrer
    clock.advance(days=1)
    hit(client, key, ip=LONDON)

    response = _stats(
        client, token_for(ctx, account), key, **{"from": "2026-11-21", "to": "2026-11-23"}
    )

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["site"]["key"] == key and body["site"]["name"] == "Blog"
    assert (body["from"], body["to"]) == ("2026-11-21", "2026-11-23")
    assert body["total"] == 3 and body["all_time"] == 3
    assert body["per_day"] == [
        {"date": "2026-11-21", "visits": 0},
        {"date": "2026-11-22", "visits": 2},
        {"date": "2026-11-23", "visits": 1},
    ]
    assert body["countries"] == [
        {"code": "GB", "name": "United Kingdom", "visits": 2},
        {"code": "US", "name": "United States", "visits": 1},
    ]
    assert body["dropped"] == [{"reason": "no_referrer", "hits": 1}]


def test_range_limits_totals_but_not_all_time(ctx, client, clock):
    account = make_account(ctx)
    key = make_site(ctx, account).public_key
    hit(client, key, ip=LONDON)
    clock.advance(days=1)
    hit(client, key, ip=MILTON)

    body = _stats(client, token_for(ctx, account), key, **{"from": "2026-11-23"}).json()

    assert (body["from"], body["to"], body["total"], body["all_time"]) == (
        "2026-11-23",
        "2026-11-23",
        1,
        2,
    )
    assert body["countries"] == [{"code": "US", "name": "United States", "visits": 1}]


def test_default_range_is_the_last_30_days_to_today(ctx, client):
    account = make_account(ctx)
    key = make_site(ctx, account).public_key
    hit(client, key)

    body = _stats(client, token_for(ctx, account), key).json()

    assert (body["from"], body["to"]) == ("2026-10-24", "2026-11-22")
    assert len(body["per_day"]) == 30
    assert body["per_day"][-1] == {"date": "2026-11-22", "visits": 1}
    assert body["total"] == 1


def test_only_to_given_ends_the_30_days_there(ctx, client):
    account = make_account(ctx)
    key = make_site(ctx, account).public_key
    body = _stats(client, token_for(ctx, account), key, to="2026-01-30").json()
    assert (body["from"], body["to"]) == ("2026-01-01", "2026-01-30")


def test_another_accounts_site_is_404_like_an_unknown_one(ctx, client):
    owner, stranger = make_account(ctx), make_account(ctx)
    key = make_site(ctx, owner).public_key
    hit(client, key)
    token = token_for(ctx, stranger)

    theirs = _stats(client, token, key)
    unknown = _stats(client, token, "A" * 22)
    garbage = _stats(client, token, "not-a-key")

    for response in (theirs, unknown, garbage):
        assert response.status_code == 404
        assert response.json() == {"detail": "no such site"}
    assert "visits" not in theirs.text


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-11-23", "to": "2026-11-22"},
        {"from": "2026-11-30"},  # after today, the default end
        {"from": "2000-01-01", "to": "2026-11-22"},  # longer than MAX_RANGE_DAYS
    ],
)
def test_rule_breaking_range_is_400(ctx, client, params):
    account = make_account(ctx)
    key = make_site(ctx, account).public_key
    response = _stats(client, token_for(ctx, account), key, **params)
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    "params", [{"from": "2026-13-01"}, {"to": "yesterday"}, {"from": "22.11.2026"}]
)
def test_malformed_date_is_422(ctx, client, params):
    account = make_account(ctx)
    key = make_site(ctx, account).public_key
    response = _stats(client, token_for(ctx, account), key, **params)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
