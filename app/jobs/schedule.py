"""When periodic work is due: a schedule in UTC, read against the injected clock.

The same schedule gives Procrastinate its cron line (``hitmap worker`` on PostgreSQL)
and tells the in-process scheduler of ``hitmap serve`` (SQLite) which start is due.
A start missed by more than ``max_delay`` (the service was down) is not caught up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# A night missed by more than this is not caught up late.
NIGHTLY_MAX_DELAY = dt.timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Starts on the minutes of a UTC cron line restricted to what Hitmap needs: every
    hour at ``minute``, or every day at ``hour:minute``, or every week on ``weekday``
    (Monday = 0) at ``hour:minute``."""

    minute: int = 0
    hour: int | None = None  # None: every hour
    weekday: int | None = None  # None: every day
    max_delay: dt.timedelta = NIGHTLY_MAX_DELAY

    def __post_init__(self) -> None:
        if self.hour is None and self.weekday is not None:
            raise ValueError("a weekly schedule needs an hour")

    @property
    def period(self) -> dt.timedelta:
        if self.hour is None:
            return dt.timedelta(hours=1)
        return dt.timedelta(days=1 if self.weekday is None else 7)

    def cron(self) -> str:
        hour = "*" if self.hour is None else str(self.hour)
        # cron counts Sunday as 0, Python's weekday() counts Monday as 0.
        weekday = "*" if self.weekday is None else str((self.weekday + 1) % 7)
        return f"{self.minute} {hour} * * {weekday}"

    def previous(self, now: dt.datetime) -> dt.datetime:
        """The latest start at or before ``now``."""
        now = now.astimezone(dt.UTC)
        start = now.replace(minute=self.minute, second=0, microsecond=0)
        if self.hour is not None:
            start = start.replace(hour=self.hour)
        if self.weekday is not None:
            start -= dt.timedelta(days=(start.weekday() - self.weekday) % 7)
        return start if start <= now else start - self.period

    def next(self, now: dt.datetime) -> dt.datetime:
        return self.previous(now) + self.period

    def due(self, now: dt.datetime) -> dt.datetime | None:
        """The start whose run is due at ``now``; None when it is more than
        ``max_delay`` ago."""
        start = self.previous(now)
        return start if now - start <= self.max_delay else None


def nightly(at: dt.time) -> Schedule:
    """Every day at ``at`` (UTC; ``HITMAP_NIGHTLY_AT``)."""
    return Schedule(minute=at.minute, hour=at.hour)


def hourly(minute: int = 0, *, max_delay: dt.timedelta = dt.timedelta(minutes=30)) -> Schedule:
    return Schedule(minute=minute, max_delay=max_delay)


def weekly(
    weekday: int, at: dt.time, *, max_delay: dt.timedelta = dt.timedelta(days=1)
) -> Schedule:
    return Schedule(minute=at.minute, hour=at.hour, weekday=weekday, max_delay=max_delay)
