"""Helpers for the page tests of sites, the dashboard and the public map."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.accounts import service as accounts
from app.context import AppContext
from app.deps import SESSION_COOKIE
from app.models import Account, DailyCountryCount, LocationCount, Site, SiteHostname, Visit
from tests.factories import csrf_from

HTML = {"accept": "text/html"}


def sign_in(ctx: AppContext, client: TestClient, account: Account) -> None:
    """Give ``client`` a login session for ``account`` (the login form is tested elsewhere)."""
    with ctx.db.session() as session:
        token = accounts.start_session(session, ctx.clock, ctx.login_policy, account)
    client.cookies.set(SESSION_COOKIE, token)


def other_client(client: TestClient) -> TestClient:
    """A second browser on the same app, with its own cookies."""
    return TestClient(client.app, base_url="http://hitmap.test", client=("127.0.0.1", 50001))


def csrf(client: TestClient, path: str = "/sites") -> str:
    page = client.get(path, headers=HTML)
    assert page.status_code == 200, page.text
    return csrf_from(page.text)


def post(client: TestClient, path: str, data: dict[str, str], token: str):
    return client.post(
        path, data={**data, "csrf_token": token}, headers=HTML, follow_redirects=False
    )


def stat(page: str, name: str) -> int:
    match = re.search(rf'id="{name}">([\d,]+)<', page)
    assert match, f"no stat {name} on the page"
    return int(match.group(1).replace(",", ""))


def table_rows(page: str, table_id: str) -> list[list[str]]:
    """The body rows of ``<table id=table_id>`` as lists of cell texts (tags stripped)."""
    match = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert match, f"no table {table_id} on the page"
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


def textarea(page: str, element_id: str) -> str:
    match = re.search(rf'<textarea[^>]*id="{element_id}"[^>]*>(.*?)</textarea>', page, re.S)
    assert match, f"no textarea {element_id} on the page"
    return html.unescape(match.group(1))


def site_row(ctx: AppContext, site_id: int) -> Site | None:
    with ctx.db.session() as session:
        return session.get(Site, site_id)


def sites_of(ctx: AppContext, account: Account) -> list[Site]:
    with ctx.db.session() as session:
        return list(session.scalars(select(Site).where(Site.account_id == account.id)))


def hostnames_of(ctx: AppContext, site_id: int) -> list[str]:
    with ctx.db.session() as session:
        return sorted(
            session.scalars(select(SiteHostname.hostname).where(SiteHostname.site_id == site_id))
        )


def stored_visits(ctx: AppContext, site_id: int) -> tuple[int, int]:
    """(rows in visits, rows in daily_country_counts) for a site."""
    with ctx.db.session() as session:
        visits = session.scalar(
            select(func.count()).select_from(Visit).where(Visit.site_id == site_id)
        )
        counts = session.scalar(
            select(func.count())
            .select_from(DailyCountryCount)
            .where(DailyCountryCount.site_id == site_id)
        )
    return int(visits or 0), int(counts or 0)


def stored_locations(ctx: AppContext, site_id: int) -> int:
    """Rows in location_counts (the maps' aggregate) for a site."""
    with ctx.db.session() as session:
        rows = session.scalar(
            select(func.count()).select_from(LocationCount).where(LocationCount.site_id == site_id)
        )
    return int(rows or 0)
