"""Fixtures: every database test runs on SQLite and on PostgreSQL, rolled back per test."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from playwright.sync_api import Browser
from sqlalchemy import Connection, Engine

from app.clock import FixedClock
from app.context import AppContext, build_context
from app.db import Database, make_engine
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from tests.databases import fresh_postgres

TEST_GEOIP = Path(__file__).parent / "data" / "geoip" / "GeoIP2-City-Test.mmdb"
TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
START = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Argon2 at production cost makes each sign-up ~60 ms; tests need the logic, not the cost."""
    import app.security as security

    strong = security._hasher
    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    security.DUMMY_PASSWORD_HASH = security._hasher.hash("dummy")
    yield
    security._hasher = strong


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped at the end."""
    with fresh_postgres("hitmap_test") as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'hitmap.sqlite3'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        outer = conn.begin()
        try:
            yield conn
        finally:
            outer.rollback()


@pytest.fixture
def db(engine: Engine, connection: Connection) -> Database:
    """A Database whose commits are savepoints inside the test's rolled-back transaction."""
    return Database(engine, bind=connection)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        secret_key=TEST_SECRET,
        geoip_path=TEST_GEOIP,
        base_url="http://hitmap.test",
        # TestClient requests come from 127.0.0.1, standing in for a reverse proxy.
        trusted_proxies=["127.0.0.1"],
    )


@pytest.fixture
def ctx(settings: Settings, db: Database, clock: FixedClock) -> AppContext:
    return build_context(settings, db=db, clock=clock)


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(
        create_app(ctx), base_url="http://hitmap.test", client=("127.0.0.1", 50000)
    ) as test_client:
        yield test_client


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from Debian, driven by Playwright (never `playwright install`).

    One per test module: Playwright's sync API cannot run two instances in one
    thread, and while it runs, asyncio.run() fails in that thread, so it must not
    outlive the browser tests.
    """
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
