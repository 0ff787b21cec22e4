"""The login throttle: exact under parallel guesses, per address and per account from an
address with a higher ceiling per account, and no transaction open while a password is
checked (SQLite: no write lock held)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from app.accounts import service as accounts_service
from app.context import build_context
from app.db import Database, make_engine
from app.migrate import upgrade
from tests.accounts import HTML, client_for, make_ctx, session_cookie
from tests.conftest import TEST_GEOIP, TEST_SECRET
from tests.databases import try_sqlite_write_lock
from tests.factories import DEFAULT_PASSWORD, csrf_from, login, make_account
from tests.live import live_hitmap, own_database

STRANGER, OWNER_HOME, OTHER = "203.0.113.66", "198.51.100.7", "192.0.2.44"


def _login_from(client, email: str, password: str, ip: str) -> int:
    token = csrf_from(client.get("/login", headers=HTML).text)
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        headers={**HTML, "x-forwarded-for": ip},
        follow_redirects=False,
    )
    return int(response.status_code)


# --- parallel guesses ------------------------------------------------------------------


def test_parallel_wrong_passwords_end_in_exactly_the_limit_then_429(database_url, tmp_path):
    """30 guesses at once for one account from one address: 10 checked (401), 20 refused
    (429), never a 500 (on PostgreSQL, lost updates and colliding first inserts)."""
    with live_hitmap(database_url, tmp_path) as server:
        account = make_account(server.ctx)
        base = f"http://127.0.0.1:{server.port}"
        page = httpx.get(f"{base}/login", headers=HTML)
        cookies, token = dict(page.cookies), csrf_from(page.text)
        start = threading.Barrier(30)

        def guess(i: int) -> int:
            with httpx.Client(base_url=base, cookies=cookies, timeout=30) as client:
                start.wait()
                response = client.post(
                    "/login",
                    data={"email": account.email, "password": f"wrong {i}", "csrf_token": token},
                    headers=HTML,
                )
                return response.status_code

        with ThreadPoolExecutor(30) as pool:
            statuses = list(pool.map(guess, range(30)))
    assert sorted(statuses) == [401] * 10 + [429] * 20


# --- per address, per account from an address, per account -------------------------------


def test_a_strangers_failures_do_not_lock_the_owner_out_from_another_address(db, clock, tmp_path):
    ctx = make_ctx(db, clock, tmp_path / "data")
    owner = make_account(ctx)
    with client_for(ctx) as client:
        for _ in range(10):
            assert _login_from(client, owner.email, "a stranger's guess", STRANGER) == 401
        assert _login_from(client, owner.email, "a stranger's guess", STRANGER) == 429
        # The stranger is stopped even with the right password...
        assert _login_from(client, owner.email, DEFAULT_PASSWORD, STRANGER) == 429
        # ...but the owner, from an address that has not failed, logs in.
        assert _login_from(client, owner.email, DEFAULT_PASSWORD, OWNER_HOME) == 303
        assert session_cookie(client)


def test_an_address_that_guesses_many_accounts_is_stopped_across_accounts(db, clock, tmp_path):
    ctx = make_ctx(
        db, clock, tmp_path / "data", login_max_failures=3, login_max_failures_per_address=4
    )
    victim = make_account(ctx)
    with client_for(ctx) as client:
        for i in range(4):
            assert _login_from(client, f"guess{i}@example.org", "some guess!!", STRANGER) == 401
        assert _login_from(client, victim.email, DEFAULT_PASSWORD, STRANGER) == 429
        assert _login_from(client, victim.email, DEFAULT_PASSWORD, OWNER_HOME) == 303


def test_the_per_account_ceiling_bounds_guesses_spread_over_many_addresses(db, clock, tmp_path):
    ctx = make_ctx(
        db,
        clock,
        tmp_path / "data",
        login_max_failures=2,
        login_max_failures_per_address=2,
        login_max_failures_per_account=5,
        login_window_seconds=600,
    )
    owner = make_account(ctx)
    with client_for(ctx) as client:
        for i in range(5):
            assert _login_from(client, owner.email, "guess!!", f"203.0.113.{i + 1}") == 401
        # A sixth address, never seen, is refused: the account has had its five.
        assert _login_from(client, owner.email, DEFAULT_PASSWORD, "203.0.113.99") == 429
        clock.advance(seconds=601)
        assert _login_from(client, owner.email, DEFAULT_PASSWORD, "203.0.113.99") == 303


def test_refused_attempts_count_nowhere(db, clock, tmp_path):
    """A stranger stopped at one address cannot push the account to its ceiling from there."""
    ctx = make_ctx(
        db,
        clock,
        tmp_path / "data",
        login_max_failures=2,
        login_max_failures_per_address=100,
        login_max_failures_per_account=3,
    )
    owner = make_account(ctx)
    with client_for(ctx) as client:
        statuses = [_login_from(client, owner.email, "guess!!", STRANGER) for _ in range(20)]
        assert statuses == [401, 401] + [429] * 18
        assert _login_from(client, owner.email, DEFAULT_PASSWORD, OWNER_HOME) == 303


def test_a_successful_login_gives_back_its_attempt(db, clock, tmp_path):
    """An office behind one address logs in all day: successes never use up the budgets."""
    ctx = make_ctx(
        db,
        clock,
        tmp_path / "data",
        login_max_failures=2,
        login_max_failures_per_address=3,
        login_max_failures_per_account=3,
    )
    owner = make_account(ctx)
    with client_for(ctx) as client:
        for _ in range(10):
            assert _login_from(client, owner.email, DEFAULT_PASSWORD, OWNER_HOME) == 303
        assert _login_from(client, owner.email, "typo!!!!!!", OWNER_HOME) == 401
        assert _login_from(client, owner.email, DEFAULT_PASSWORD, OWNER_HOME) == 303
        # The success forgot this address's typo for this account: two more are allowed.
        assert _login_from(client, owner.email, "typo!!!!!!", OWNER_HOME) == 401
        assert _login_from(client, owner.email, "typo!!!!!!", OWNER_HOME) == 401
        assert _login_from(client, owner.email, DEFAULT_PASSWORD, OWNER_HOME) == 429


def test_a_passed_window_starts_the_count_again(db, clock, tmp_path):
    ctx = make_ctx(db, clock, tmp_path / "data", login_max_failures=3, login_window_seconds=600)
    owner = make_account(ctx)
    with client_for(ctx) as client:
        first = [_login_from(client, owner.email, "guess!!", STRANGER) for _ in range(4)]
        clock.advance(seconds=601)
        second = [_login_from(client, owner.email, "guess!!", STRANGER) for _ in range(4)]
    assert first == second == [401, 401, 401, 429]


def test_an_unknown_email_is_throttled_like_a_registered_one(db, clock, tmp_path):
    """Login must not tell whether an email is registered, throttled or not."""
    ctx = make_ctx(db, clock, tmp_path / "data", login_max_failures=3)
    known = make_account(ctx, email="known@example.org")
    with client_for(ctx) as client:

        def attempts(email: str, ip: str) -> list[tuple[int, str]]:
            out = []
            for _ in range(5):
                token = csrf_from(client.get("/login", headers=HTML).text)
                response = client.post(
                    "/login",
                    data={"email": email, "password": "not it at all", "csrf_token": token},
                    headers={**HTML, "x-forwarded-for": ip},
                )
                text = response.text.replace(email, "EMAIL").replace(token, "TOKEN")
                out.append((response.status_code, text))
            return out

        registered = attempts(known.email, STRANGER)
        unknown = attempts("nobody-here@example.org", OTHER)
    assert [s for s, _ in registered] == [401, 401, 401, 429, 429]
    assert registered == unknown


# --- no transaction during the password check ------------------------------------------


def _open_transactions_elsewhere(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
        ).fetchone()
    return int(row[0]) if row else -1


def test_no_transaction_is_open_while_a_password_is_checked(
    database_url, settings, clock, tmp_path
):
    """SQLite has one write lock for the whole database, and every unit of work takes it
    (BEGIN IMMEDIATE): a login that checked the password inside one held up the counter's
    writer for the whole argon2 check. On PostgreSQL, no transaction stays open either."""
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        own = build_context(settings, db=Database(engine), clock=clock)
        owner = make_account(own)
        seen: list[object] = []
        real = accounts_service.verify_login_password

        def check_while_another_connection_writes(password_hash: str, password: str) -> bool:
            if own.db.dialect == "sqlite":
                seen.append(try_sqlite_write_lock(Path(url.removeprefix("sqlite:///"))))
            else:
                seen.append(_open_transactions_elsewhere(own.db.psycopg_conninfo()))
            return real(password_hash, password)

        expected = "took the write lock" if own.db.dialect == "sqlite" else 0
        try:
            with client_for(own) as client, pytest.MonkeyPatch.context() as patch:
                login(client, owner.email)  # a browser with a session: the page reads it
                patch.setattr(
                    accounts_service, "verify_login_password", check_while_another_connection_writes
                )
                assert _login_from(client, owner.email, "wrong password!", OTHER) == 401
                assert _login_from(client, owner.email, DEFAULT_PASSWORD, OTHER) == 303
            assert seen == [expected, expected]
        finally:
            engine.dispose()


def test_settings_refuse_budgets_that_contradict_each_other(tmp_path):
    from app.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="HITMAP_LOGIN_MAX_FAILURES_PER_ADDRESS"):
        load_settings(
            data_dir=tmp_path,
            secret_key=TEST_SECRET,
            geoip_path=TEST_GEOIP,
            login_max_failures=10,
            login_max_failures_per_address=5,
        )


def test_sign_up_hashes_the_password_with_no_transaction_open(
    database_url, settings, clock, tmp_path
):
    """Sign-up is open to anyone and hashing is ~0.1 s of CPU on purpose: on SQLite a
    hash inside the unit of work held the database's one write lock (issue 11 review)."""
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        own = build_context(settings, db=Database(engine), clock=clock)
        seen: list[object] = []
        real = accounts_service.hash_new_password

        def hash_while_another_connection_writes(password: str) -> str:
            if own.db.dialect == "sqlite":
                seen.append(try_sqlite_write_lock(Path(url.removeprefix("sqlite:///"))))
            else:
                seen.append(_open_transactions_elsewhere(own.db.psycopg_conninfo()))
            return real(password)

        try:
            with client_for(own) as client, pytest.MonkeyPatch.context() as patch:
                patch.setattr(
                    accounts_service, "hash_new_password", hash_while_another_connection_writes
                )
                page = client.get("/signup", headers=HTML)
                response = client.post(
                    "/signup",
                    data={
                        "email": "new@example.org",
                        "password": DEFAULT_PASSWORD,
                        "password_confirm": DEFAULT_PASSWORD,
                        "csrf_token": csrf_from(page.text),
                    },
                    headers=HTML,
                    follow_redirects=False,
                )
                assert response.status_code == 303
            assert seen == ["took the write lock" if own.db.dialect == "sqlite" else 0]
        finally:
            engine.dispose()
