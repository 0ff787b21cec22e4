"""Schedules in UTC for periodic work of any period: their starts, lateness and cron."""

from __future__ import annotations

import datetime as dt

import pytest

from app.jobs.schedule import Schedule, hourly, weekly

UTC = dt.UTC


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def test_an_hourly_schedule_starts_every_hour_at_its_minute():
    every = hourly(15)
    assert every.cron() == "15 * * * *"
    assert every.previous(at(23, 10, 14, 59)) == at(23, 9, 15)
    assert every.previous(at(23, 10, 15)) == at(23, 10, 15)
    assert every.next(at(23, 10, 15)) == at(23, 11, 15)
    assert every.previous(at(23, 0, 5)) == at(22, 23, 15)  # across midnight
    assert every.due(at(23, 10, 45)) == at(23, 10, 15)
    assert every.due(at(23, 10, 45, 1)) is None  # missed by more than half an hour


def test_a_weekly_schedule_starts_on_its_weekday():
    # 23 November 2026 is a Monday.
    mondays = weekly(0, dt.time(4, 30))
    assert mondays.cron() == "30 4 * * 1"
    assert weekly(6, dt.time(0, 0)).cron() == "0 0 * * 0"  # Sunday is cron's 0
    assert mondays.previous(at(23, 4, 29)) == at(16, 4, 30)
    assert mondays.previous(at(23, 4, 30)) == at(23, 4, 30)
    assert mondays.previous(at(29, 23, 59)) == at(23, 4, 30)
    assert mondays.next(at(23, 5)) == at(30, 4, 30)
    assert mondays.due(at(24, 4, 30)) == at(23, 4, 30)
    assert mondays.due(at(24, 4, 30, 1)) is None


def test_a_weekday_needs_an_hour():
    with pytest.raises(ValueError, match="needs an hour"):
        Schedule(weekday=2)
