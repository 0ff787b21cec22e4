"""Every page route with an input, fuzzed: zero 5xx, on SQLite and PostgreSQL.

Routes are discovered from the app: every form (each POST but the beacon, which
tests/test_fuzz_ingest.py covers, must be a CSRF-protected form), every query
parameter and every path parameter. A new route is fuzzed without touching this
file. Forms of signed-in owners are posted by a signed-in owner of a real site
(with clicks, so the heatmap pages draw), the others by an anonymous browser,
each with its own valid CSRF token, so that the values reach the routes' own
validation instead of stopping at the CSRF check or the login.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import given, note, settings
from hypothesis import strategies as st

from app.accounts import service as accounts
from app.deps import require_account, verify_csrf
from tests.accounts import HTML
from tests.api.helpers import token_for
from tests.factories import csrf_from, login, make_account, make_site
from tests.fuzz import (
    FAST,
    calls,
    examples,
    field_names,
    header_bytes,
    mostly,
    page_routes,
    query_text,
    short_text,
    text,
)
from tests.heatmaps.beacons import batch, click, send
from tests.sites.helpers import other_client

EXAMPLES = 8  # per route and method: ~45 routes, a few seconds per database
DOMAIN = "fuzz-target.example.net"  # never among the fuzzed values: the site survives
PASSWORD = "the owner's own password, never fuzzed"  # noqa: S105
BEACON = "/b/{key}"
# The forms the issue names: discovery must find at least these.
NAMED_FORMS = {
    "/signup",
    "/login",
    "/account/password",
    "/account/tokens",
    "/account/tokens/{token_id}/revoke",
    "/account/delete",
    "/sites",
    "/sites/{key}/settings",
    "/sites/{key}/hostnames",
    "/sites/{key}/hostnames/remove",
    "/sites/{key}/retention",
    "/sites/{key}/delete",
    "/sites/{key}/map-style",
    "/sites/{key}/heatmaps/options",
    "/sites/{key}/heatmaps/live",
}
# Headers some page routes read (client address, overlay token and origin, validators).
HEADERS = ("x-forwarded-for", "authorization", "origin", "if-none-match", "if-modified-since")
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def _url(template: str, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: quote(values[m.group(1)], safe=""), template)


def _path_values(names: list[str], known: dict[str, list[str]]) -> st.SearchStrategy:
    """Mostly the real site key or token id (to get past authorisation), else anything."""
    return st.fixed_dictionaries(
        {
            n: st.sampled_from(known[n]).flatmap(lambda v: mostly(v, short_text))
            if n in known
            else short_text
            for n in names
        }
    )


def _fuzz(browser: TestClient, method: str, template: str, route: APIRoute, **known) -> None:
    path_names, query_names, form_names = field_names(route)
    csrf = known.pop("csrf")

    @settings(parent=FAST, max_examples=examples(EXAMPLES))
    @given(
        path=_path_values(path_names, known),
        query=st.fixed_dictionaries({}, optional={n: query_text for n in query_names}),
        form=st.fixed_dictionaries({}, optional={n: text for n in form_names}),
        headers=st.fixed_dictionaries({}, optional={n: header_bytes for n in HEADERS}),
    )
    def run(
        path: dict[str, str], query: dict[str, str], form: dict[str, str], headers: dict
    ) -> None:
        url = _url(template, path)
        data = {**form, "csrf_token": csrf} if method == "POST" else None
        note(f"{method} {url} query={query!r:.500} form={form!r:.500} headers={headers!r:.500}")
        response = browser.request(
            method,
            url,
            params=query,
            data=data,
            headers={**HTML, **headers},
            follow_redirects=False,
        )
        assert response.status_code < 500, (method, url, query, form, response.status_code)

    run()


def test_every_post_of_the_pages_is_a_csrf_form_or_the_beacon(client):
    forms = set()
    for path, route in page_routes(client.app):
        if "POST" in route.methods and path != BEACON:
            assert verify_csrf in set(calls(route.dependant)), f"POST {path} has no CSRF check"
            forms.add(path)
    assert forms >= NAMED_FORMS, NAMED_FORMS - forms


def test_no_page_route_answers_5xx_whatever_its_inputs(ctx, client):
    owner = make_account(ctx, password=PASSWORD)
    site = make_site(ctx, owner, domain=DOMAIN)
    strangers = make_site(ctx, make_account(ctx), domain="elsewhere.example.com")
    token_for(ctx, owner)
    assert (
        send(client, site.public_key, batch(click()), origin=f"https://{DOMAIN}").status_code == 204
    )
    with ctx.db.session() as session:
        token_ids = [str(t.id) for t in accounts.list_api_tokens(session, owner)]
    login(client, owner.email, PASSWORD)
    anonymous = other_client(client)
    known = {
        "key": [site.public_key, site.public_key, strangers.public_key],
        "token_id": token_ids,
        "name": ["30d", "all@2x", "24h"],  # map images
    }
    owner_csrf = csrf_from(client.get("/account", headers=HTML).text)
    anonymous_csrf = csrf_from(anonymous.get("/login", headers=HTML).text)

    fuzzed = []
    for template, route in page_routes(client.app):
        if template == BEACON or not any(field_names(route)):
            continue
        signed_in = require_account in set(calls(route.dependant))
        browser, csrf = (client, owner_csrf) if signed_in else (anonymous, anonymous_csrf)
        for method in sorted(route.methods - {"HEAD"}):
            _fuzz(browser, method, template, route, csrf=csrf, **known)
            fuzzed.append((method, template))

    assert {("POST", f) for f in NAMED_FORMS} <= set(fuzzed)
    # The owner's site outlived the fuzzing, so every example ran against a live site.
    assert client.get(f"/sites/{site.public_key}", headers=HTML).status_code == 200
