"""Salts go 48 hours after their day began, even on an instance that gets no hits."""

from __future__ import annotations

import datetime as dt

from app.ingest.repository import stored_salt_days
from workers.housekeeping import rotate_salts


def test_rotation_deletes_salts_older_than_48_hours(ctx, clock):
    salts = ctx.ingest.salts
    first = salts.salt_for(dt.date(2026, 11, 22))
    assert salts.salt_for(dt.date(2026, 11, 22)) == first  # stable within the day
    clock.set(dt.datetime(2026, 11, 23, 0, 0, 1, tzinfo=dt.UTC))
    second = salts.salt_for(dt.date(2026, 11, 23))
    assert second != first
    assert rotate_salts(ctx) == 0  # yesterday's salt is only 24 h old
    clock.set(dt.datetime(2026, 11, 24, 0, 0, 1, tzinfo=dt.UTC))
    assert rotate_salts(ctx) == 1
    with ctx.db.session() as session:
        # The 22nd's salt is gone; each rotation made the next day's ready ahead.
        assert stored_salt_days(session) == [dt.date(2026, 11, d) for d in (23, 24, 25)]


def test_tomorrows_salt_is_ready_before_midnight_so_an_outage_then_counts(ctx, clock):
    rotate_salts(ctx)  # the hourly job, on the 22nd
    tomorrow = dt.date(2026, 11, 23)
    assert ctx.ingest.salts.has(tomorrow)
    with ctx.db.session() as session:
        assert tomorrow in stored_salt_days(session)


def test_serve_runs_housekeeping_in_process(ctx, monkeypatch):
    import threading

    from fastapi.testclient import TestClient

    import workers.housekeeping as housekeeping
    from app.main import create_app

    ran = threading.Event()
    monkeypatch.setattr(housekeeping, "rotate_salts", lambda _ctx: ran.set() or 0)
    with TestClient(create_app(ctx, background_jobs=True)):
        assert ran.wait(5), "the housekeeping task did not run at start-up"
    ran.clear()
    with TestClient(create_app(ctx)):
        assert not ran.wait(0.3), "tests' apps must not run background jobs"


def test_failed_login_counts_go_once_their_window_has_passed(ctx, clock, client):
    """A flood with made-up emails leaves three throttle rows per email and address."""
    from sqlalchemy import func, select

    from app.models import LoginThrottle
    from tests.factories import csrf_from
    from workers.housekeeping import forget_expired_login_attempts

    def rows() -> int:
        with ctx.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(LoginThrottle)))

    page = client.get("/login", headers={"accept": "text/html"})
    for n in range(3):
        client.post(
            "/login",
            data={
                "email": f"nobody{n}@example.org",
                "password": "wrong password!",
                "csrf_token": csrf_from(page.text),
            },
            headers={"accept": "text/html"},
        )
    counted = rows()
    assert counted >= 3
    assert forget_expired_login_attempts(ctx) == 0  # still within their window
    clock.set(clock.now() + ctx.login_policy.window + dt.timedelta(seconds=1))
    assert forget_expired_login_attempts(ctx) == counted
    assert rows() == 0
