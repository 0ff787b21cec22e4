"""All SQL of the nightly runner: one claim row per night and kind of work."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db import insert_for
from app.models import MapNightlyRun, RetentionRun

NightRun = type[MapNightlyRun] | type[RetentionRun]


def claim_night(session: Session, runs: NightRun, night: dt.date, now: dt.datetime) -> bool:
    """True for the one caller that starts this night's run."""
    stmt = (
        insert_for(session, runs)
        .values(night=night, started_at=now, sites=0)
        .on_conflict_do_nothing()
        .returning(runs.night)
    )
    return session.execute(stmt).first() is not None


def finish_night(
    session: Session, runs: NightRun, night: dt.date, sites: int, now: dt.datetime
) -> None:
    session.execute(update(runs).where(runs.night == night).values(finished_at=now, sites=sites))
