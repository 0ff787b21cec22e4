"""Drawing a site's images: what changed since they were stored, and drawing only that.

Reads only (the caller stores what was drawn, ``service.store_drawn``), so that on SQLite
a job can draw inside a read-only snapshot. The renderer (``app.maps.renderer.render``:
matplotlib and cartopy) is imported on first use, so that the counter and the command
line start without it. A render is skipped when its *fingerprint* is unchanged: the
renderer's version, the style (thumbnails), and the range's
:class:`~app.maps.repository.RangeStats`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from app.clock import Clock, utc_today
from app.days import DayRange
from app.ingest.counter_image import etag_for
from app.maps import repository as repo
from app.maps.kinds import MAP, THUMBNAIL, THUMBNAIL_KEY
from app.maps.repository import RangeStats
from app.maps.spans import NIGHTLY_VARIANTS, SPANS, VARIANTS, Span, window
from app.maps.styles import Style, current_style
from app.ops import metrics
from app.sites.scope import SiteScope

if TYPE_CHECKING:
    from app.maps.renderer.render import LocationCounts

# Every module whose code shapes the pixels or bytes of an image, in a fixed order (the
# digest must not depend on the file system's): ``render.py`` is only the renderer's
# front, the drawing and encoding live in the others. tests/maps/test_render.py checks
# that every app.maps.renderer module the renderer imports is listed.
_RENDERER_FILES = (
    "render.py",
    "spec.py",
    "ink.py",
    "dots.py",
    "thumbnail.py",
    "world.py",
    "png_pieces.py",
    "clustering.py",
    "basemap.py",
    "natural_earth.py",
)


@cache
def renderer_version() -> str:
    """Digest of the renderer's source: a new renderer redraws every image once."""
    digest = hashlib.blake2b(b"hitmap-maps-1", digest_size=6)
    folder = Path(__file__).parent / "renderer"
    for name in _RENDERER_FILES:
        path = folder / name
        if path.exists():
            source = path.read_bytes()
            # Framed by name and size: code moving from one module to the next still
            # changes the digest.
            digest.update(f"{name}:{len(source)}:".encode())
            digest.update(source)
    return digest.hexdigest()


def fingerprint(*parts: object) -> str:
    text = "|".join(str(p) for p in (renderer_version(), *parts))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _stats_key(stats: RangeStats) -> str:
    return f"{stats.visits}:{stats.first_day}:{stats.last_day}"


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


@lru_cache(maxsize=8)
def empty_map(scale: int) -> bytes:
    from app.maps.renderer.render import LocationCounts, render_world_map

    return render_world_map(LocationCounts.empty(), scale=scale)


@lru_cache(maxsize=256)
def _thumbnail_without_dots(style: Style, total: int) -> bytes:
    from app.maps.renderer.render import LocationCounts, render_thumbnail

    return render_thumbnail(LocationCounts.empty(), total, style.for_renderer())


@dataclass
class RenderReport:
    rendered: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, other: RenderReport) -> None:
        self.rendered += other.rendered
        self.skipped += other.skipped


@dataclass
class DrawnSite:
    """What :func:`draw_site` drew, to be stored by :func:`store_drawn`."""

    report: RenderReport
    images: list[repo.NewImage]
    at: dt.datetime


def draw_site(
    session: Session,
    clock: Clock,
    scope: SiteScope,
    *,
    spans: Iterable[Span] = SPANS,
    thumbnail: bool = True,
    variants: Sequence[str] = NIGHTLY_VARIANTS,
    force: bool = False,
) -> DrawnSite:
    """Draw the site's thumbnail and range maps whose input changed (reads only).

    Ranges with the same input (a young site's 365 days and all time, say) are read
    and drawn once; images without dots come from a per-process cache.
    """
    spans = list(dict.fromkeys(spans))
    drawing = _Drawing(session, clock, scope, spans)
    if thumbnail:
        drawing.thumbnail(force)
    drawing.maps(spans, variants, force)
    return DrawnSite(drawing.report, drawing.new, drawing.now)


class _Drawing:
    """One site's drawing: the ranges' figures and stored fingerprints, read once, the
    places of each distinct input, read once, and what was drawn."""

    def __init__(self, session: Session, clock: Clock, scope: SiteScope, spans: list[Span]):
        self.session, self.scope = session, scope
        self.today, self.now = utc_today(clock), clock.now()
        self.firsts: dict[str, dt.date | None] = {
            s.value: window(s, self.today).first for s in spans
        }
        self.firsts[Span.ALL.value] = None  # also tells which ranges hold every visit
        self.stats = repo.range_stats(session, scope, self.firsts)
        self.stored = {
            (m.kind, m.span, m.variant): m.fingerprint for m in repo.image_metas(session, scope)
        }
        self.report = RenderReport()
        self.new: list[repo.NewImage] = []
        self._loaded: dict[str, LocationCounts] = {}

    def locations_for(self, name: str) -> LocationCounts:
        from app.maps.renderer.render import LocationCounts

        key = _stats_key(self.stats[name])
        if key not in self._loaded:
            if self.stats[name].visits == 0:
                self._loaded[key] = LocationCounts.empty()
            else:
                # A range holding every visit (a site younger than the range) reads the
                # all-time rows: no summing over days and months.
                whole = key == _stats_key(self.stats[Span.ALL.value])
                first = None if whole else self.firsts[name]
                places = repo.place_counts(self.session, self.scope, DayRange(first, self.today))
                self._loaded[key] = LocationCounts(*places.decoded())
        return self._loaded[key]

    def store(self, key: tuple[str, str, str], png: bytes, fp: str, visits: int) -> None:
        width, height = png_size(png)
        empty = key[0] == MAP and png == empty_map(VARIANTS[key[2]])
        self.new.append(
            repo.NewImage(
                kind=key[0],
                span=key[1],
                variant=key[2],
                png=b"" if empty else png,  # a map without dots: every process has it cached
                etag=etag_for(png),
                fingerprint=fp,
                width=width,
                height=height,
                visits=visits,
            )
        )
        self.report.rendered.append(key)

    def thumbnail(self, force: bool) -> None:
        from app.maps.renderer.render import render_thumbnail

        style = current_style(self.session, self.scope)
        total = self.stats[Span.ALL.value]
        fp = fingerprint(THUMBNAIL, style.digest, _stats_key(total))
        if not force and self.stored.get(THUMBNAIL_KEY) == fp:
            self.report.skipped.append(THUMBNAIL_KEY)
            return
        with metrics.timed_render(THUMBNAIL, Span.ALL.value):  # its input read included
            places = self.locations_for(Span.ALL.value)
            if len(places.visits) == 0:
                png = _thumbnail_without_dots(style, total.visits)
            else:
                png = render_thumbnail(places, total.visits, style.for_renderer())
        self.store(THUMBNAIL_KEY, png, fp, total.visits)

    def maps(self, spans: list[Span], variants: Sequence[str], force: bool) -> None:
        from app.maps.renderer.render import render_world_map

        drawn: dict[tuple[str, str], bytes] = {}
        for span in spans:
            span_stats = self.stats[span.value]
            for variant in variants:
                key = (MAP, span.value, variant)
                fp = fingerprint(MAP, variant, _stats_key(span_stats))
                if not force and self.stored.get(key) == fp:
                    self.report.skipped.append(key)
                    continue
                same_input = (_stats_key(span_stats), variant)
                if same_input not in drawn:
                    with metrics.timed_render(MAP, span.value):
                        places = self.locations_for(span.value)
                        scale = VARIANTS[variant]
                        if len(places.visits) == 0:
                            drawn[same_input] = empty_map(scale)
                        else:
                            drawn[same_input] = render_world_map(places, scale=scale)
                self.store(key, drawn[same_input], fp, span_stats.visits)
