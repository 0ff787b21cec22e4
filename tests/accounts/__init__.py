"""Tests of the account pages; the helpers below are shared by its modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.clock import FixedClock
from app.context import AppContext, build_context
from app.db import Database
from app.deps import SESSION_COOKIE
from app.main import create_app
from app.settings import Settings
from tests.conftest import TEST_GEOIP, TEST_SECRET
from tests.factories import DEFAULT_PASSWORD, csrf_from

HTML = {"accept": "text/html"}


def form_post(
    client: TestClient, page: str, action: str, data: dict[str, str], *, csrf: str | None = None
):
    """Submit a form the way a browser does: load the page, post with its CSRF token."""
    token = csrf if csrf is not None else csrf_from(client.get(page, headers=HTML).text)
    return client.post(
        action, data={**data, "csrf_token": token}, headers=HTML, follow_redirects=False
    )


def sign_up(client: TestClient, email: str, password: str = DEFAULT_PASSWORD):
    return form_post(
        client,
        "/signup",
        "/signup",
        {"email": email, "password": password, "password_confirm": password},
    )


def session_cookie(client: TestClient) -> str | None:
    return client.cookies.get(SESSION_COOKIE)


def get_with_session(client: TestClient, path: str, token: str):
    """GET with exactly this session cookie, whatever the client's jar holds."""
    return client.get(
        path, headers={**HTML, "cookie": f"{SESSION_COOKIE}={token}"}, follow_redirects=False
    )


def count(ctx: AppContext, model, *where) -> int:
    with ctx.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def make_ctx(db: Database, clock: FixedClock, data_dir: Path, **overrides) -> AppContext:
    settings = Settings(
        data_dir=data_dir,
        secret_key=TEST_SECRET,
        geoip_path=TEST_GEOIP,
        trusted_proxies=["127.0.0.1"],
        **{"base_url": "http://hitmap.test", **overrides},
    )
    return build_context(settings, db=db, clock=clock)


@contextmanager
def client_for(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(
        create_app(ctx), base_url=ctx.settings.base_url, client=("127.0.0.1", 50000)
    ) as test_client:
        yield test_client
