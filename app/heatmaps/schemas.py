"""Values passed between the heatmap routes, services and templates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from app.errors import InvalidInput
from app.inputs import check_day
from app.settings import WidthBucket

MAX_RANGE_DAYS = 366


@dataclass(frozen=True, slots=True)
class Click:
    """One validated click, as stored (the day and site come from the batch)."""

    x: int
    y: int
    doc_width: int
    doc_height: int
    viewport_width: int
    dpr: float
    selector: str | None
    offset_x: float | None
    offset_y: float | None
    bucket: str


@dataclass(frozen=True, slots=True)
class RecordingOptions:
    """The owner's choices for the widget; the server enforces them too."""

    keep_query: bool = False  # keep the query string and fragment of page URLs
    honour_dnt: bool = False  # record nothing from browsers that send DNT or GPC


def bucket_for(viewport_width: int, buckets: tuple[WidthBucket, ...]) -> WidthBucket:
    """The last bucket whose ``min_width`` is at most the viewport width."""
    found = buckets[0]
    for bucket in buckets:
        if viewport_width >= bucket.min_width:
            found = bucket
    return found


def bucket_label(bucket: WidthBucket, buckets: tuple[WidthBucket, ...]) -> str:
    """``< 768 px``, ``768–1279 px`` or ``≥ 1280 px``."""
    i = buckets.index(bucket)
    upper = buckets[i + 1].min_width - 1 if i + 1 < len(buckets) else None
    if bucket.min_width == 0 and upper is not None:
        return f"< {upper + 1} px"
    if upper is None:
        return f"≥ {bucket.min_width} px"
    return f"{bucket.min_width}–{upper} px"


class Preset(StrEnum):
    WEEK = "7d"
    MONTH = "30d"
    QUARTER = "90d"

    @property
    def label(self) -> str:
        return {"7d": "7 days", "30d": "30 days", "90d": "90 days"}[self.value]

    @property
    def days(self) -> int:
        return {"7d": 7, "30d": 30, "90d": 90}[self.value]


@dataclass(frozen=True, slots=True)
class DateRange:
    """Whole UTC days, both ends included."""

    first: dt.date
    last: dt.date
    preset: Preset | None = None

    @property
    def query(self) -> dict[str, str]:
        if self.preset is not None:
            return {"range": self.preset.value}
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}

    @property
    def phrase(self) -> str:
        if self.preset is not None:
            return f"in the last {self.preset.label}"
        return f"from {self.first.isoformat()} to {self.last.isoformat()}"


def _date(value: str, name: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInput(f"{name}: use a date like 2026-11-01") from exc
    return check_day(day, name)


def parse_range(
    today: dt.date, preset: str | None, first: str | None, last: str | None
) -> DateRange:
    """A preset (``7d``, ``30d`` (default), ``90d``: ending today) or ``from``/``to`` dates."""
    if first or last:
        end = _date(last, "to") if last else today
        start = _date(first, "from") if first else end - dt.timedelta(days=29)
        if start > end:
            raise InvalidInput("from: the first day must not be after the last")
        if (end - start).days >= MAX_RANGE_DAYS:
            raise InvalidInput(f"the range can span at most {MAX_RANGE_DAYS} days")
        return DateRange(start, end)
    try:
        chosen = Preset(preset or Preset.MONTH.value)
    except ValueError as exc:
        allowed = ", ".join(p.value for p in Preset)
        raise InvalidInput(f"unknown range {preset!r}; use one of {allowed}") from exc
    return DateRange(today - dt.timedelta(days=chosen.days - 1), today, chosen)


@dataclass(frozen=True, slots=True)
class PageRow:
    """A page of the site with its clicks in the range, per bucket."""

    path: str
    total: int
    per_bucket: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BucketView:
    """One width bucket of a page: its clicks and where its heatmap is."""

    name: str
    label: str
    reference_width: int
    clicks: int
    png_url: str
    download_url: str
    csv_url: str
    json_url: str


@dataclass(frozen=True, slots=True)
class RenderedHeatmap:
    png: bytes
    width: int
    height: int
    clicks: int
    fresh_render: bool  # rendered by this call (not read from storage)


@dataclass(frozen=True, slots=True)
class OverlayTokenInfo:
    kind: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
