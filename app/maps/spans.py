"""The ranges of the public map and the pixel densities of its images."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from app.days import DayRange


class Span(StrEnum):
    """The ranges of the public map. Days are UTC; "24h" is today and yesterday, so it
    always covers the last 24 hours whatever the time of day."""

    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"
    YEAR = "365d"
    ALL = "all"


SPANS: tuple[Span, ...] = tuple(Span)
SPAN_DAYS = {Span.DAY: 2, Span.WEEK: 7, Span.MONTH: 30, Span.YEAR: 365, Span.ALL: None}
SPAN_LABELS = {
    Span.DAY: "24 hours",
    Span.WEEK: "7 days",
    Span.MONTH: "30 days",
    Span.YEAR: "365 days",
    Span.ALL: "All time",
}
VARIANTS = {"1x": 1, "2x": 2}
# Jobs draw the 1x maps; a 2x map (4 times the pixels) is drawn when first asked for
# after its 1x changed: most pages are never seen on a high-DPI screen the same night.
NIGHTLY_VARIANTS = ("1x",)
DEFAULT_SPAN = Span.ALL


def window(span: Span, today: dt.date) -> DayRange:
    days = SPAN_DAYS[span]
    return DayRange(None if days is None else today - dt.timedelta(days=days - 1), today)
