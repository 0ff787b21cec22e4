"""Every route that takes a site answers 404 to another account and changes nothing.

The routes are found by walking the application, so a new route that takes a
site key is covered without editing this test.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from sqlalchemy import select

from app.accounts import service as accounts
from app.models import Site, SiteHostname
from app.sites import authz
from app.sites import service as sites_service
from tests.factories import csrf_from, hit, login, make_account, make_site

PUBLIC_BY_DESIGN = {"/c/{key}.png"}  # the counter: anyone's browser may fetch it
# A superset of every site form's fields, so a 404 comes from authorisation, not validation.
FORM = {
    "name": "Hijacked",
    "is_public": "1",
    "hostname": "evil.example.com",
    "confirm": "blog.example.org",
    "domain": "evil.example.com",
}


def _api_routes(routes, prefix: str = ""):
    """All endpoint routes, descending into included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):  # FastAPI's included-router node
            yield from _api_routes(
                route.original_router.routes, prefix + route.include_context.prefix
            )


def _site_routes(app) -> list[tuple[str, str]]:
    found = []
    for path, route in _api_routes(app.routes):
        if "{key}" in path:
            found.extend((method, path) for method in sorted(route.methods - {"HEAD"}))
    assert found, "no routes found: has FastAPI's routing structure changed?"
    return found


def _snapshot(ctx, site_id: int):
    with ctx.db.session() as session:
        site = session.get(Site, site_id)
        hosts = session.scalars(
            select(SiteHostname.hostname).where(SiteHostname.site_id == site_id)
        )
        return (site.name, site.is_public, sorted(hosts)) if site else None


def test_every_site_route_is_404_for_another_account(ctx, client):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    hit(client, site.public_key)
    with ctx.db.session() as session:
        sites_service.update_settings(
            session,
            authz.owned_site(session, owner.id, site.public_key),
            name="Mine",
            is_public=False,
        )
    before = _snapshot(ctx, site.site_id)

    stranger = make_account(ctx)
    with ctx.db.session() as session:
        token = accounts.create_api_token(session, ctx.clock, stranger, "stranger")
    login(client, stranger.email)
    csrf = csrf_from(client.get("/account", headers={"accept": "text/html"}).text)

    routes = _site_routes(client.app)
    checked = []
    for method, template in routes:
        if template in PUBLIC_BY_DESIGN:
            continue
        path = template.replace("{key}", site.public_key)
        headers = {"accept": "text/html"}
        if template.startswith("/api/"):
            headers = {"authorization": f"Bearer {token}"}
        if method == "GET":
            response = client.get(path, headers=headers)
        elif template.startswith("/api/"):
            response = client.request(method, path, headers=headers, json=FORM)
        else:
            response = client.request(
                method, path, headers=headers, data={**FORM, "csrf_token": csrf}
            )
        assert response.status_code == 404, (method, template, response.status_code)
        checked.append((method, template))
        assert _snapshot(ctx, site.site_id) == before, (method, template)

    assert ("GET", "/sites/{key}") in checked and ("GET", "/map/{key}") in checked
    assert any(t.startswith("/api/") for _, t in checked)
    assert sum(1 for m, _ in checked if m == "POST") >= 4


def test_same_routes_work_for_the_owner(ctx, client):
    """The 404s above come from authorisation: the owner gets through the same routes."""
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    login(client, owner.email)
    assert client.get(f"/sites/{site.public_key}").status_code == 200
    assert client.get(f"/map/{site.public_key}").status_code == 200
    with ctx.db.session() as session:
        token = accounts.create_api_token(session, ctx.clock, owner, "owner")
    api = [t for m, t in _site_routes(client.app) if t.startswith("/api/") and m == "GET"]
    for template in api:
        path = template.replace("{key}", site.public_key)
        assert client.get(path, headers={"authorization": f"Bearer {token}"}).status_code == 200
