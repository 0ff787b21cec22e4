"""Factory functions for tests: real rows through the real services."""

from __future__ import annotations

import itertools
import re

from fastapi.testclient import TestClient

from app.accounts import service as accounts
from app.context import AppContext
from app.models import Account
from app.sites import service as sites
from app.sites.scope import SiteScope

DEFAULT_PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def make_account(
    ctx: AppContext, email: str | None = None, password: str = DEFAULT_PASSWORD
) -> Account:
    email = email or f"owner{next(_counter)}@example.org"
    with ctx.db.session() as session:
        return accounts.sign_up(session, ctx.clock, email, password)


def make_site(
    ctx: AppContext, account: Account, domain: str = "blog.example.org", name: str | None = None
) -> SiteScope:
    with ctx.db.session() as session:
        return sites.create_site(
            session, ctx.clock, account_id=account.id, domain=domain, name=name
        )


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client: TestClient, email: str, password: str = DEFAULT_PASSWORD) -> None:
    page = client.get("/login", headers={"accept": "text/html"})
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_from(page.text)},
        headers={"accept": "text/html"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def hit(
    client: TestClient,
    key: str,
    *,
    ip: str = "81.2.69.142",
    ua: str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
    referer: str | None = "https://blog.example.org/post/1",
    headers: dict[str, str] | None = None,
):
    """Fetch the counter as a browser on a page of the site would (peer IP via a trusted proxy)."""
    h = {"user-agent": ua, "x-forwarded-for": ip, **(headers or {})}
    if referer is not None:
        h["referer"] = referer
    return client.get(f"/c/{key}.png", headers=h)
