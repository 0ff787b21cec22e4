"""Control characters, out-of-range ids and dates: a clear 4xx and nothing stored.

The reproductions of issue 11 (item 2): each answered a 500 on PostgreSQL (a driver
error), and on SQLite the text was stored verbatim.
"""

from __future__ import annotations

import datetime as dt
import json
import types
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import AfterValidator, BaseModel
from sqlalchemy import func, select

from app import inputs
from app.errors import InvalidInput
from app.inputs import LAST_DAY, MAX_ROW_ID, check_day, check_text, control_character_problem
from app.models import Account, ApiToken, Site, SiteHostname
from tests.accounts import HTML, count, form_post, sign_up
from tests.api.helpers import bearer, token_for
from tests.factories import login, make_account, make_site
from tests.fuzz import all_routes, dependants
from tests.sites.helpers import csrf, post

NUL_EMAIL = "victim@example.org\x00"


def _all(ctx, column) -> list:
    with ctx.db.session() as session:
        return list(session.scalars(select(column)))


def _control_message(page: str) -> bool:
    return "control character (U+0000)" in page


# --- the rule itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["a\x00b", "tab\there", "line\nbreak", "\x7f", "c1\x85", "\u2028", "\ud800"]
)
def test_control_characters_and_lone_surrogates_are_refused(value):
    assert control_character_problem(value) is not None
    with pytest.raises(InvalidInput, match="name: contains a control character"):
        check_text(value, "name")


@pytest.mark.parametrize("value", ["", "Blog", "Café ☕ 日本 👩‍💻", "a" * 10_000, "\u200d"])
def test_ordinary_text_passes(value):
    assert control_character_problem(value) is None
    assert check_text(value, "name") == value


def test_days_far_from_the_calendar_ends_are_refused():
    for day in (dt.date.min, dt.date(1999, 12, 31), dt.date.max):
        with pytest.raises(InvalidInput, match="from: use a day from 2000-01-01 to 9998-12-31"):
            check_day(day, "from")
    assert check_day(LAST_DAY, "to") == LAST_DAY


# --- sign-up and login --------------------------------------------------------------------


def test_nul_in_the_signup_email_is_refused_and_nothing_is_stored(ctx, client):
    response = sign_up(client, NUL_EMAIL)

    assert response.status_code == 400
    assert _control_message(response.text) and "email" in response.text
    assert count(ctx, Account) == 0


def test_nul_in_the_login_email_is_refused_without_a_trace(ctx, client):
    make_account(ctx, email="victim@example.org")

    response = form_post(
        client, "/login", "/login", {"email": NUL_EMAIL, "password": "whatever-password"}
    )

    assert response.status_code == 400
    assert _control_message(response.text)
    assert client.cookies.get("hitmap_session") is None


# --- the account page's tokens ------------------------------------------------------------


def test_nul_in_a_token_name_is_refused(ctx, client):
    login(client, make_account(ctx).email)

    response = form_post(client, "/account", "/account/tokens", {"name": "ci\x00bot"})

    assert response.status_code == 400
    assert _control_message(response.text)
    assert count(ctx, ApiToken) == 0


@pytest.mark.parametrize("token_id", ["18446744073709551616", str(MAX_ROW_ID + 1), "0", "-1"])
def test_revoking_a_token_id_no_column_can_hold_is_refused(ctx, client, token_id):
    account = make_account(ctx)
    token_for(ctx, account)
    login(client, account.email)

    response = form_post(client, "/account", f"/account/tokens/{token_id}/revoke", {})

    assert response.status_code == 400
    assert "token_id: not an id: ids are whole numbers from 1 to" in response.text
    assert count(ctx, ApiToken) == 1


def test_revoking_the_largest_possible_token_id_is_an_ordinary_not_found(ctx, client):
    login(client, make_account(ctx).email)

    response = form_post(client, "/account", f"/account/tokens/{MAX_ROW_ID}/revoke", {})

    assert response.status_code == 404


# --- sites ------------------------------------------------------------------------------


def test_nul_in_a_new_sites_name_is_refused(ctx, client):
    login(client, make_account(ctx).email)

    response = post(
        client, "/sites", {"domain": "blog.example.org", "name": "Blog\x00"}, csrf(client)
    )

    assert response.status_code == 400
    assert _control_message(response.text)
    assert count(ctx, Site) == 0


def test_nul_in_a_renamed_site_is_refused(ctx, client):
    account = make_account(ctx)
    site = make_site(ctx, account, name="Blog")
    login(client, account.email)
    path = f"/sites/{site.public_key}"

    response = post(client, f"{path}/settings", {"name": "Bl\x00og"}, csrf(client, path))

    assert response.status_code == 400
    assert _control_message(response.text)
    assert _all(ctx, Site.name) == ["Blog"]


@pytest.mark.parametrize("action", ["hostnames", "hostnames/remove"])
def test_nul_in_a_hostname_is_refused(ctx, client, action):
    account = make_account(ctx)
    site = make_site(ctx, account, domain="blog.example.org")
    login(client, account.email)
    path = f"/sites/{site.public_key}"

    response = post(
        client, f"{path}/{action}", {"hostname": "www.example.org\x00"}, csrf(client, path)
    )

    assert response.status_code == 400
    assert _control_message(response.text)
    assert _all(ctx, SiteHostname.hostname) == ["blog.example.org"]


# --- the JSON API -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"domain": "blog.example.org", "name": "Blog\x00"},
        {"domain": "blog.example.org\x00"},
        {"domain": "blog.example.org", "name": "\ud800"},
    ],
)
def test_api_refuses_control_characters_in_a_new_site(ctx, client, body):
    token = token_for(ctx, make_account(ctx))

    # ASCII-escaped JSON, as a client would send a lone surrogate ("\ud800").
    response = client.post(
        "/api/v1/sites",
        content=json.dumps(body),
        headers={**bearer(token), "content-type": "application/json"},
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "control_character"
    assert error["msg"].startswith("contains a control character (U+")
    assert count(ctx, Site) == 0


@pytest.mark.parametrize(
    "query",
    ["to=0001-01-01", "from=0001-01-01", "to=9999-12-31", "from=1999-12-31&to=2000-01-01"],
)
def test_api_stats_refuse_days_out_of_range(ctx, client, query):
    account = make_account(ctx)
    site = make_site(ctx, account)

    response = client.get(
        f"/api/v1/sites/{site.public_key}/stats?{query}", headers=bearer(token_for(ctx, account))
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["msg"] == "use a day from 2000-01-01 to 9998-12-31"


def test_api_stats_take_the_edges_of_the_range(ctx, client):
    account = make_account(ctx)
    site = make_site(ctx, account)
    url = f"/api/v1/sites/{site.public_key}/stats"

    first = client.get(f"{url}?to=2000-01-01", headers=bearer(token_for(ctx, account)))
    last = client.get(
        f"{url}?from=9998-12-01&to=9998-12-31", headers=bearer(token_for(ctx, account))
    )

    assert first.status_code == 200 and first.json()["from"] == "1999-12-03"
    assert last.status_code == 200 and len(last.json()["per_day"]) == 31


def test_api_stats_refuse_a_reversed_or_too_long_range(ctx, client):
    account = make_account(ctx)
    site = make_site(ctx, account)
    url = f"/api/v1/sites/{site.public_key}/stats"
    headers = bearer(token_for(ctx, account))

    reversed_ = client.get(f"{url}?from=2026-02-01&to=2026-01-01", headers=headers)
    too_long = client.get(f"{url}?from=2000-01-01&to=9998-12-31", headers=headers)

    assert reversed_.status_code == 400
    assert reversed_.json() == {"detail": "the start date is after the end date"}
    assert too_long.status_code == 400
    assert too_long.json() == {"detail": "a date range may span at most 3660 days"}


# --- query parameters of the pages ----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("to=0001-01-01", "to: use a day from 2000-01-01 to 9998-12-31"),
        ("from=0001-01-01", "from: use a day from 2000-01-01 to 9998-12-31"),
        ("range=7d%00", "range: contains a control character (U+0000)"),
    ],
)
def test_heatmap_pages_refuse_bad_days_and_control_characters(ctx, client, query, message):
    account = make_account(ctx)
    site = make_site(ctx, account)
    login(client, account.email)

    response = client.get(f"/sites/{site.public_key}/heatmaps?{query}", headers=HTML)

    assert response.status_code == 400
    assert message in response.text


def test_the_public_map_refuses_control_characters_in_its_range(ctx, client):
    site = make_site(ctx, make_account(ctx))

    response = client.get(f"/map/{site.public_key}?range=30d%00", headers=HTML)

    assert response.status_code == 400
    assert "range: contains a control character (U+0000)" in response.text


def test_nothing_was_left_behind_by_refused_sign_ups(ctx, client):
    for email in (NUL_EMAIL, "a\x01@example.org", "b@example.org\u2028"):
        assert sign_up(client, email).status_code == 400
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 0


# --- every route uses the shared rules ----------------------------------------------------

# The login's `next`: safe_next_path() replaces a value with a control character by the
# default page (a tampered link still lets the owner log in); it is never stored.
EXEMPT = {("/login", "next")}
RULES = {str: inputs._plain_text, dt.date: inputs._day, int: inputs._row_id}


def _unwrap(annotation: Any) -> tuple[set[type], set[Any]]:
    """The plain types inside an annotation and the AfterValidator functions on them."""
    kinds: set[type] = set()
    checks: set[Any] = set()
    stack = [annotation]
    while stack:
        item = stack.pop()
        origin = get_origin(item)
        if origin is Annotated:
            base, *meta = get_args(item)
            checks |= {m.func for m in meta if isinstance(m, AfterValidator)}
            stack.append(base)
        elif origin in (Union, types.UnionType):
            stack.extend(a for a in get_args(item) if a is not type(None))
        elif isinstance(item, type):
            kinds.add(item)
    return kinds, checks


def _inputs(path: str, route) -> list[tuple[str, str, Any, list[Any]]]:
    """(where, name, annotation, metadata) of every query, form, body and path input."""
    found = []
    for dependant in dependants(route.dependant):
        for where in ("query_params", "body_params", "path_params"):
            for field in getattr(dependant, where):
                info = field.field_info
                model = info.annotation
                if isinstance(model, type) and issubclass(model, BaseModel):
                    found += [
                        (where, f"{field.alias}.{n}", f.annotation, f.metadata)
                        for n, f in model.model_fields.items()
                    ]
                else:
                    found.append((where, field.alias, info.annotation, info.metadata))
    return found


def test_every_text_day_and_id_a_route_takes_goes_through_the_shared_rules(client):
    """A new route with a plain `str`, `date` or `int` input fails here, naming it.

    Path parameters that are text (site keys, image names) are identifiers that
    authz or a pattern checks before any use; any other input follows app/inputs.py.
    """
    unchecked = []
    seen = 0
    for path, route in all_routes(client.app.routes):
        for where, name, annotation, metadata in _inputs(path, route):
            kinds, checks = _unwrap(annotation)
            checks |= {m.func for m in metadata if isinstance(m, AfterValidator)}
            for kind, rule in RULES.items():
                if kind not in kinds or (where == "path_params" and kind is str):
                    continue
                seen += 1
                if rule not in checks and (path, name) not in EXEMPT:
                    unchecked.append(f"{path} {name}: {kind.__name__} without app.inputs")
    assert unchecked == []
    assert seen >= 40, "inputs not found: has FastAPI's routing structure changed?"


@pytest.mark.parametrize(
    ("value", "ticked"),
    [("1", True), ("on", True), ("true", True), ("", False), ("0", False), ("off", False)]
    + [("false", False)],
)
def test_checkbox_reads_what_forms_send(value: str, ticked: bool) -> None:
    assert inputs.checkbox(value, "public") is ticked


@pytest.mark.parametrize("value", ["yes", "maybe", "ON", " 1", "2"])
def test_checkbox_refuses_anything_else(value: str) -> None:
    with pytest.raises(InvalidInput, match="public must be on or off"):
        inputs.checkbox(value, "public")
