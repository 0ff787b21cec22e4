"""A range of whole UTC days, as the dashboards, the API's reports and the maps read it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DayRange:
    """UTC days ``first``..``last``, both included. An end that is None is open:
    ``first`` None reaches back to the first visit, ``last`` None forward to the newest
    (``DayRange()`` is all time)."""

    first: dt.date | None = None
    last: dt.date | None = None

    @classmethod
    def day(cls, day: dt.date) -> DayRange:
        return cls(day, day)
