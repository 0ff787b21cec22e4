"""Rendering rules: which images a site has, when one must be redrawn, styles, serving.

Nothing here knows HTTP or the job engine. The renderer (``app.maps.renderer.render``:
matplotlib and cartopy) is imported on first use, so that the counter and the
command line start without it.

Images per site (``rendered_images``):

* ``("thumbnail", "all", "1x")``: the counter, in the owner's style, all-time visits;
* ``("map", span, "1x" | "2x")``: the public page's world map for each range.

A render is skipped when its *fingerprint* is unchanged: the renderer's version,
the style (thumbnails), and the range's :class:`~app.maps.repository.RangeStats`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from app.clock import Clock, utc_today
from app.days import DayRange
from app.errors import InvalidInput
from app.ingest.counter_image import etag_for
from app.inputs import checkbox
from app.maps import repository as repo
from app.maps.kinds import MAP, THUMBNAIL, THUMBNAIL_KEY
from app.maps.repository import RangeStats
from app.models import RenderedImage
from app.ops import metrics
from app.sites.scope import SiteScope

if TYPE_CHECKING:
    from app.maps.renderer.render import LocationCounts, ThumbnailStyle

log = logging.getLogger("hitmap.maps")


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


# --- styles --------------------------------------------------------------------------

SIZES = ("small", "medium", "large")
BACKGROUNDS = ("light", "dark", "transparent")
_COLOR = re.compile(r"#[0-9a-f]{6}")


@dataclass(frozen=True, slots=True)
class Style:
    """The owner's thumbnail choices (validated; the renderer's ThumbnailStyle checks again)."""

    size: str = "small"
    dot_color: str = "#e11d48"
    background: str = "light"
    show_count: bool = True

    @property
    def digest(self) -> str:
        return f"{self.size},{self.dot_color},{self.background},{int(self.show_count)}"

    def for_renderer(self) -> ThumbnailStyle:
        from app.maps.renderer.render import ThumbnailStyle

        return ThumbnailStyle(
            size=self.size,
            dot_color=self.dot_color,
            background=self.background,
            show_count=self.show_count,
        )


DEFAULT_STYLE = Style()


def parse_style(size: str, dot_color: str, background: str, show_count: str) -> Style:
    """A style from form fields; InvalidInput names the first bad field."""
    size, background = size.strip().lower(), background.strip().lower()
    color = dot_color.strip().lower()
    if size not in SIZES:
        raise InvalidInput(f"size must be one of {', '.join(SIZES)}")
    if not _COLOR.fullmatch(color):
        raise InvalidInput("dot colour must be a colour like #e11d48")
    if background not in BACKGROUNDS:
        raise InvalidInput(f"background must be one of {', '.join(BACKGROUNDS)}")
    style = Style(size, color, background, checkbox(show_count, "show count"))
    try:
        style.for_renderer()
    except ValueError as exc:
        raise InvalidInput(f"this style cannot be drawn: {exc}") from exc
    return style


def current_style(session: Session, scope: SiteScope) -> Style:
    row = repo.style(session, scope)
    if row is None:
        return DEFAULT_STYLE
    return Style(row.size, row.dot_color, row.background, row.show_count)


def save_style(session: Session, clock: Clock, scope: SiteScope, style: Style) -> bool:
    """Store the style; True when it changed (and so the thumbnail must be redrawn)."""
    if current_style(session, scope) == style:
        return False
    repo.save_style(
        session,
        scope,
        size=style.size,
        dot_color=style.dot_color,
        background=style.background,
        show_count=style.show_count,
        now=clock.now(),
    )
    return True


# --- rendering -----------------------------------------------------------------------

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
def _empty_map(scale: int) -> bytes:
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


def render_site(
    session: Session,
    clock: Clock,
    scope: SiteScope,
    *,
    spans: Iterable[Span] = SPANS,
    thumbnail: bool = True,
    variants: Sequence[str] = NIGHTLY_VARIANTS,
    force: bool = False,
) -> RenderReport:
    """Render the site's thumbnail and range maps whose input changed; store them."""
    drawn = draw_site(
        session, clock, scope, spans=spans, thumbnail=thumbnail, variants=variants, force=force
    )
    store_drawn(session, scope, drawn)
    return drawn.report


def store_drawn(session: Session, scope: SiteScope, drawn: DrawnSite) -> None:
    repo.store_images(session, scope, drawn.images, drawn.at)
    repo.mark_checked(session, scope, drawn.report.skipped, drawn.at)


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
    from app.maps.renderer.render import LocationCounts, render_thumbnail, render_world_map

    spans = list(dict.fromkeys(spans))
    today, now = utc_today(clock), clock.now()
    firsts: dict[str, dt.date | None] = {s.value: window(s, today).first for s in spans}
    firsts[Span.ALL.value] = None  # also tells which ranges hold every visit
    stats = repo.range_stats(session, scope, firsts)
    stored = {(m.kind, m.span, m.variant): m.fingerprint for m in repo.image_metas(session, scope)}
    report = RenderReport()
    loaded: dict[str, LocationCounts] = {}

    def locations_for(name: str) -> LocationCounts:
        key = _stats_key(stats[name])
        if key not in loaded:
            if stats[name].visits == 0:
                loaded[key] = LocationCounts.empty()
            else:
                # A range holding every visit (a site younger than the range) reads the
                # all-time rows: no summing over days and months.
                whole = key == _stats_key(stats[Span.ALL.value])
                first = None if whole else firsts[name]
                places = repo.place_counts(session, scope, DayRange(first, today))
                loaded[key] = LocationCounts(*places.decoded())
        return loaded[key]

    new: list[repo.NewImage] = []

    def store(key: tuple[str, str, str], png: bytes, fp: str, visits: int) -> None:
        width, height = png_size(png)
        empty = key[0] == MAP and png == _empty_map(VARIANTS[key[2]])
        new.append(
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
        report.rendered.append(key)

    if thumbnail:
        style = current_style(session, scope)
        total = stats[Span.ALL.value]
        fp = fingerprint(THUMBNAIL, style.digest, _stats_key(total))
        if force or stored.get(THUMBNAIL_KEY) != fp:
            with metrics.timed_render(THUMBNAIL, Span.ALL.value):  # its input read included
                places = locations_for(Span.ALL.value)
                if len(places.visits) == 0:
                    png = _thumbnail_without_dots(style, total.visits)
                else:
                    png = render_thumbnail(places, total.visits, style.for_renderer())
            store(THUMBNAIL_KEY, png, fp, total.visits)
        else:
            report.skipped.append(THUMBNAIL_KEY)

    drawn: dict[tuple[str, str], bytes] = {}
    for span in spans:
        span_stats = stats[span.value]
        for variant in variants:
            key = (MAP, span.value, variant)
            fp = fingerprint(MAP, variant, _stats_key(span_stats))
            if not force and stored.get(key) == fp:
                report.skipped.append(key)
                continue
            same_input = (_stats_key(span_stats), variant)
            if same_input not in drawn:
                with metrics.timed_render(MAP, span.value):
                    places = locations_for(span.value)
                    scale = VARIANTS[variant]
                    if len(places.visits) == 0:
                        drawn[same_input] = _empty_map(scale)
                    else:
                        drawn[same_input] = render_world_map(places, scale=scale)
            store(key, drawn[same_input], fp, span_stats.visits)
    return DrawnSite(report, new, now)


def image_bytes(image: RenderedImage) -> bytes:
    """The PNG of a stored image. Maps without dots (most small sites' 24 hours and 7
    days) are stored without bytes: the same base map is cached in every process, and
    deterministic, so the stored ETag still names these bytes."""
    png = bytes(image.png)
    if png or image.kind != MAP:
        return png
    return _empty_map(VARIANTS[image.variant])


def ensure_image(
    session: Session, clock: Clock, scope: SiteScope, kind: str, span: Span, variant: str
) -> RenderedImage:
    """The stored image, rendered now if it never was (a site's first visitors), or,
    for a 2x map, if its 1x was redrawn since (2x maps follow their 1x lazily)."""
    found = repo.image(session, scope, kind, span.value, variant)
    if found is not None and variant != "1x":
        base = repo.image(session, scope, kind, span.value, "1x")
        if base is not None and base.rendered_at > found.rendered_at:
            found = None
    if found is not None:
        return found
    if kind == THUMBNAIL:
        render_site(session, clock, scope, spans=(), thumbnail=True, force=True)
    else:
        render_site(
            session, clock, scope, spans=(span,), thumbnail=False, variants=(variant,), force=True
        )
    found = repo.image(session, scope, kind, span.value, variant)
    assert found is not None
    return found


def current_thumbnail(session: Session, clock: Clock, scope: SiteScope) -> RenderedImage:
    """The thumbnail as the counter will show it after the next job: drawn now if its
    style or visits changed (the owner's preview after saving a style)."""
    render_site(session, clock, scope, spans=(), thumbnail=True)
    found = repo.image(session, scope, *THUMBNAIL_KEY)
    assert found is not None
    return found


# --- the public page -----------------------------------------------------------------


def _when(moment: dt.datetime) -> str:
    return f"{moment:%d %b %Y, %H:%M} UTC"


@dataclass(frozen=True, slots=True)
class SpanTab:
    value: str
    label: str
    href: str
    image: str
    image_2x: str
    visits: int
    updated: str  # "" when not drawn yet (the image request draws it)
    current: bool


@dataclass(frozen=True, slots=True)
class MapView:
    """What map.html needs for the world map: the range tabs and the current image."""

    tabs: list[SpanTab]
    span: Span
    label: str
    image: str
    image_2x: str
    width: int
    height: int
    visits: int
    updated: dt.datetime

    @property
    def updated_text(self) -> str:
        return _when(self.updated)


def image_path(scope: SiteScope, span: Span | str, variant: str = "1x") -> str:
    suffix = "" if variant == "1x" else f"@{variant}"
    return f"/map/{scope.public_key}/{span}{suffix}.png"


_SPAN_VALUES = frozenset(s.value for s in SPANS)


def map_view(session: Session, clock: Clock, scope: SiteScope, span_param: str | None) -> MapView:
    """The page's map for ``?range=`` (default all time), drawn now if it never was."""
    span = Span(span_param) if span_param in _SPAN_VALUES else DEFAULT_SPAN
    shown = ensure_image(session, clock, scope, MAP, span, "1x")
    drawn = {
        m.span: m for m in repo.image_metas(session, scope) if m.kind == MAP and m.variant == "1x"
    }
    today = utc_today(clock)
    live = repo.range_stats(session, scope, {s.value: window(s, today).first for s in SPANS})
    page = f"/map/{scope.public_key}"
    tabs = []
    for s in SPANS:
        meta = drawn.get(s.value)
        tabs.append(
            SpanTab(
                value=s.value,
                label=SPAN_LABELS[s],
                href=page if s is DEFAULT_SPAN else f"{page}?range={s.value}",
                image=image_path(scope, s),
                image_2x=image_path(scope, s, "2x"),
                visits=meta.visits if meta else live[s.value].visits,
                updated=_when(meta.checked_at) if meta else "",
                current=s is span,
            )
        )
    return MapView(
        tabs=tabs,
        span=span,
        label=SPAN_LABELS[span],
        image=image_path(scope, span),
        image_2x=image_path(scope, span, "2x"),
        width=shown.width,
        height=shown.height,
        visits=shown.visits,
        updated=shown.checked_at,
    )
