"""The maps feature's rules: which images a site has, drawing and storing them, serving.

Nothing here knows HTTP or the job engine. The ranges are in ``spans.py``, the owner's
style in ``styles.py``, the drawing (only what changed, ranges with equal input once) in
``drawing.py``, which imports the renderer (matplotlib and cartopy) on first use, so that
the counter and the command line start without it.

Images per site (``rendered_images``):

* ``("thumbnail", "all", "1x")``: the counter, in the owner's style, all-time visits;
* ``("map", span, "1x" | "2x")``: the public page's world map for each range.

A render is skipped when its *fingerprint* is unchanged: the renderer's version,
the style (thumbnails), and the range's :class:`~app.maps.repository.RangeStats`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.clock import Clock, utc_today
from app.maps import repository as repo
from app.maps.drawing import DrawnSite, RenderReport, draw_site, empty_map
from app.maps.kinds import MAP, THUMBNAIL, THUMBNAIL_KEY
from app.maps.spans import (
    DEFAULT_SPAN,
    NIGHTLY_VARIANTS,
    SPAN_LABELS,
    SPANS,
    VARIANTS,
    Span,
    window,
)
from app.models import RenderedImage
from app.sites.scope import SiteScope


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


def image_bytes(image: RenderedImage) -> bytes:
    """The PNG of a stored image. Maps without dots (most small sites' 24 hours and 7
    days) are stored without bytes: the same base map is cached in every process, and
    deterministic, so the stored ETag still names these bytes."""
    png = bytes(image.png)
    if png or image.kind != MAP:
        return png
    return empty_map(VARIANTS[image.variant])


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
