"""The owner's heatmaps: pages with clicks, rendered heatmaps, downloads, recording options.

Nothing here knows HTTP. Rendered heatmaps are stored per page, width bucket and
date range: a stored render is used while its input is unchanged (same number of
clicks and same newest click), or, for a range that includes today, while it is
younger than ``HITMAP_HEATMAP_FRESH_SECONDS``, so that a busy page is not
re-rendered on every view.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape

import numpy as np
from sqlalchemy.orm import Session

from app.csv_export import csv_stream
from app.db import Database
from app.errors import InvalidInput
from app.heatmaps import repository
from app.heatmaps.render import HeatmapSpec, render_heatmap
from app.heatmaps.schemas import DateRange, PageRow, RecordingOptions, RenderedHeatmap
from app.heatmaps.validation import MAX_PATH_LENGTH, PATH_PATTERN
from app.ops import metrics
from app.settings import Settings, WidthBucket
from app.sites.scope import SiteScope

MAX_PAGES = 200  # pages listed on the heatmap page, most clicked first
MAX_OVERLAY_HEIGHT = 100_000  # px at the reference width; the renderer downsamples above its cap
EXPORT_FLUSH_ROWS = 1000


def check_path(raw: str | None) -> str:
    """A page path from a query string, as stored: starts with /, URL-encoded ASCII."""
    path = (raw or "").strip()
    if not path:
        raise InvalidInput("path: choose a page, e.g. /pricing")
    if len(path) > MAX_PATH_LENGTH or not PATH_PATTERN.fullmatch(path):
        raise InvalidInput("path: not a page path (it starts with / and is URL-encoded)")
    return path


def find_bucket(settings: Settings, name: str | None) -> WidthBucket:
    for bucket in settings.width_buckets:
        if bucket.name == name:
            return bucket
    allowed = ", ".join(b.name for b in settings.width_buckets)
    raise InvalidInput(f"bucket: use one of {allowed}")


def list_pages(session: Session, scope: SiteScope, days: DateRange) -> list[PageRow]:
    per_page: dict[str, dict[str, int]] = {}
    for path, bucket, clicks in repository.page_bucket_counts(
        session, scope, days.first, days.last, MAX_PAGES
    ):
        per_page.setdefault(path, {})[bucket] = clicks
    rows = [PageRow(path, sum(b.values()), b) for path, b in per_page.items()]
    rows.sort(key=lambda r: (-r.total, r.path))
    return rows


def bucket_counts(session: Session, scope: SiteScope, path: str, days: DateRange) -> dict[str, int]:
    return repository.bucket_counts(session, scope, path, days.first, days.last)


def render_points(points: np.ndarray, bucket: WidthBucket, radius: float) -> tuple[bytes, int, int]:
    """PNG of clicks ``(x, y, doc width, doc height)`` scaled to the bucket's reference width.

    The overlay is as tall as the tallest document among the clicks (at that
    width), so it lies over the page at its document size.
    """
    scale = bucket.reference_width / points[:, 2]
    xs = points[:, 0] * scale
    ys = points[:, 1] * scale
    tallest = float(np.max(points[:, 3] * scale)) if len(points) else 1.0
    height = int(min(MAX_OVERLAY_HEIGHT, max(1, math.ceil(tallest))))
    spec = HeatmapSpec(width=bucket.reference_width, height=height, radius=radius)
    return render_heatmap(xs, ys, spec), spec.width, spec.height


@dataclass(frozen=True, slots=True)
class NewRender:
    """A heatmap :func:`draw_heatmap` drew, for :func:`store_heatmap` to keep."""

    path: str
    bucket: str
    first: dt.date
    last: dt.date
    clicks: int
    last_click_id: int
    width: int
    height: int
    radius: float
    png: bytes
    rendered_at: dt.datetime


def heatmap(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    scope: SiteScope,
    path: str,
    bucket: WidthBucket,
    days: DateRange,
) -> RenderedHeatmap | None:
    """The stored heatmap if current, else a new render (stored); None without clicks."""
    result, new = draw_heatmap(session, settings, now, scope, path, bucket, days)
    if new is not None:
        store_heatmap(session, scope, new)
    return result


def draw_heatmap(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    scope: SiteScope,
    path: str,
    bucket: WidthBucket,
    days: DateRange,
) -> tuple[RenderedHeatmap | None, NewRender | None]:
    """The stored heatmap if current, else a new render to store (reads only)."""
    clicks, last_id = repository.fingerprint(
        session, scope, path, bucket.name, days.first, days.last
    )
    if clicks == 0:
        return None, None
    radius = settings.heatmap_radius
    stored = repository.stored_render(session, scope, path, bucket.name, days.first, days.last)
    if stored is not None and stored.radius == radius and stored.width == bucket.reference_width:
        same_input = (stored.clicks, stored.last_click_id) == (clicks, last_id)
        today = now.astimezone(dt.UTC).date()
        recent = now - stored.rendered_at < dt.timedelta(seconds=settings.heatmap_fresh_seconds)
        if same_input or (days.last >= today and recent):
            kept = RenderedHeatmap(stored.png, stored.width, stored.height, stored.clicks, False)
            return kept, None
    span = days.preset.value if days.preset else "custom"
    with metrics.timed_render("heatmap", span):
        points = repository.click_points(session, scope, path, bucket.name, days.first, days.last)
        png, width, height = render_points(points, bucket, radius)
    new = NewRender(
        path, bucket.name, days.first, days.last, clicks, last_id, width, height, radius, png, now
    )
    return RenderedHeatmap(png, width, height, clicks, True), new


def store_heatmap(session: Session, scope: SiteScope, new: NewRender) -> None:
    repository.save_render(
        session,
        scope,
        path=new.path,
        bucket=new.bucket,
        first=new.first,
        last=new.last,
        clicks=new.clicks,
        last_click_id=new.last_click_id,
        width=new.width,
        height=new.height,
        radius=new.radius,
        png=new.png,
        rendered_at=new.rendered_at,
    )


def _cell(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.date) else value


def export_csv(
    db: Database,
    scope: SiteScope,
    path: str,
    bucket: WidthBucket | None,
    days: DateRange,
) -> Iterator[str]:
    """The raw clicks as CSV (formula-safe, see app.csv_export), from a session of its own."""
    with db.session() as session:
        rows = repository.export_rows(
            session, scope, path, bucket.name if bucket else None, days.first, days.last
        )
        yield from csv_stream(repository.EXPORT_COLUMNS, rows, flush_rows=EXPORT_FLUSH_ROWS)


def export_json(
    db: Database,
    scope: SiteScope,
    path: str,
    bucket: WidthBucket | None,
    days: DateRange,
) -> Iterator[str]:
    """The raw clicks as one JSON object with a ``clicks`` list, streamed."""
    head = {
        "site": scope.public_key,
        "path": path,
        "bucket": bucket.name if bucket else None,
        "from": days.first.isoformat(),
        "to": days.last.isoformat(),
    }
    yield json.dumps(head)[:-1] + ', "clicks": ['
    parts: list[str] = []
    with db.session() as session:
        rows = repository.export_rows(
            session, scope, path, bucket.name if bucket else None, days.first, days.last
        )
        for i, row in enumerate(rows):
            item = dict(zip(repository.EXPORT_COLUMNS, (_cell(v) for v in row), strict=True))
            parts.append(("," if i else "") + json.dumps(item))
            if len(parts) >= EXPORT_FLUSH_ROWS:
                yield "".join(parts)
                parts = []
    parts.append("]}\n")
    yield "".join(parts)


def recording_options(session: Session, scope: SiteScope) -> RecordingOptions:
    return repository.options(session, scope)


def save_recording_options(
    session: Session, now: dt.datetime, scope: SiteScope, value: RecordingOptions
) -> None:
    repository.save_options(session, scope, value, now)


def script_tag(base_url: str, scope: SiteScope, options: RecordingOptions) -> str:
    """The widget's script tag with the owner's options as data- attributes."""
    extra = ""
    if options.keep_query:
        extra += ' data-query="1"'
    if options.honour_dnt:
        extra += ' data-dnt="1"'
    return (
        f'<script async src="{escape(base_url)}/w.js" '
        f'data-site="{escape(scope.public_key)}"{extra}></script>'
    )


def page_origin(session: Session, scope: SiteScope, path: str) -> str | None:
    return repository.page_origin(session, scope, path)
