"""How long a site's raw visits and clicks are kept, and which of them are due to go.

The rule (README, "Counting rules"): retention deletes only raw rows, the visits
(one per visitor and day) and the click positions. Counts derived from them
(``daily_country_counts``, ``location_counts`` at every grain, ``dropped_hits``)
hold no visitor data and stay, so the counter's total, the per-day and
per-country figures and every map, all time included, never shrink because old
rows went. What only raw rows can answer (the city lists, click heatmaps) covers
the days still kept.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.retention import repository
from app.settings import MAX_RETENTION_DAYS
from app.sites.scope import SiteScope

FOREVER = 0  # stored and configured as 0 days: nothing expires


def parse_choice(mode: str, days: str) -> int | None:
    """The owner's choice as stored: None (the instance default), 0 (forever) or days."""
    mode = mode.strip().lower()
    if mode == "default":
        return None
    if mode == "forever":
        return FOREVER
    if mode != "days":
        raise InvalidInput(
            "choose how long visits and clicks are kept: the instance default, forever, "
            "or a number of days"
        )
    return parse_days(days)


def parse_days(raw: str) -> int:
    text = raw.strip()
    shown = text if len(text) <= 20 else text[:20] + "…"
    if not text:
        raise InvalidInput(f"enter a number of days from 1 to {MAX_RETENTION_DAYS}, e.g. 90")
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise InvalidInput(
            f"{shown!r} is not a number of days; enter a whole number from 1 to "
            f"{MAX_RETENTION_DAYS}, e.g. 90"
        )
    # A long digit string is "too many" without int() (which limits digits itself).
    digits = text.lstrip("+-").lstrip("0") or "0"
    days = MAX_RETENTION_DAYS + 1 if len(digits) > 6 else int(digits)
    if text.startswith("-"):
        days = -days
    if days < 1:
        raise InvalidInput(
            f"keep visits and clicks at least 1 day (you entered {shown}); to keep them "
            "without a limit, choose forever"
        )
    if days > MAX_RETENTION_DAYS:
        raise InvalidInput(
            f"at most {MAX_RETENTION_DAYS} days (ten years) can be chosen; to keep visits "
            "and clicks without a limit, choose forever"
        )
    return days


def choice_of(session: Session, scope: SiteScope) -> int | None:
    return repository.retention_of(session, scope)


def set_choice(session: Session, scope: SiteScope, days: int | None) -> None:
    if days is not None and not 0 <= days <= MAX_RETENTION_DAYS:
        raise InvalidInput(f"a retention is 0 (forever) to {MAX_RETENTION_DAYS} days")
    repository.set_retention(session, scope, days)


def effective_days(choice: int | None, default_days: int) -> int:
    """Days kept for a site: its own choice, else the instance default; 0 = forever."""
    return default_days if choice is None else choice


def cutoff(night: dt.date, days: int) -> dt.date | None:
    """Rows of days before this date go on ``night``; None keeps everything.

    With 30 days on the night of 23 November, 24 October (30 days before) is kept
    and 23 October goes: a row goes once its UTC day is more than ``days`` days old.
    """
    if days == FOREVER:
        return None
    return night - dt.timedelta(days=days)


def describe(days: int, at: dt.time | None = None) -> str:
    """One sentence for pages and the command line (``at``: the nightly run's time)."""
    if days == FOREVER:
        return "Visits and clicks are kept forever."
    unit = "day" if days == 1 else "days"
    when = f" at {at:%H:%M} UTC" if at is not None else ""
    return f"Visits and clicks older than {days} {unit} are deleted every night{when}."
