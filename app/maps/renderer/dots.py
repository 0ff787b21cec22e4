"""Visits as dots: project, split off approximate locations, cluster, paint.

Precise locations are binned and clustered in pixel space (``app.maps.renderer.clustering``)
and drawn as discs sized by class, big ones first; approximate ones (country
centroids) as faint ellipses the size of their uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.maps.renderer.basemap import BaseMap, BaseMapSpec
from app.maps.renderer.clustering import Clusters, approximate_mask, merge
from app.maps.renderer.ink import Ink, colour_rgb, disc_ink, ellipse_ink, paint, union
from app.maps.renderer.spec import (
    APPROX_FILL_MAX,
    APPROX_FILL_MIN,
    APPROX_RING_ALPHA,
    DotStyle,
    LocationCounts,
)


def _outline_colour(rgb: np.ndarray, dark_background: bool) -> np.ndarray:
    """A darker shade of the dot colour (lighter on a dark background)."""
    if dark_background:
        return rgb + (255.0 - rgb) * 0.45
    return rgb * 0.62


def _draw_approximate(
    canvas: np.ndarray,
    base: BaseMap,
    lat: np.ndarray,
    lon: np.ndarray,
    accuracy_km: np.ndarray,
    visits: np.ndarray,
    dots: DotStyle,
    rgb: np.ndarray,
    touched: list[np.ndarray] | None = None,
) -> None:
    """Approximate locations as faint ellipses the size of their uncertainty.

    Each distinct place is an ellipse whose half-axes are its accuracy radius projected
    east-west and north-south there (outline dashed on the large map). The fill is
    faint and only a little stronger with more visits (log scale, capped): "this many
    visits somewhere around here", never a hot spot. Overlapping ellipses add up.
    """
    # One ellipse per place: same rounded centre → add visits, keep the largest radius.
    key = np.round(lat, 2) * 1000.0 + np.round(lon, 2)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    n = first.size
    v = np.bincount(inverse.ravel(), weights=visits, minlength=n)
    acc = np.zeros(n)
    np.maximum.at(acc, inverse.ravel(), accuracy_km)
    strength = APPROX_FILL_MIN + (APPROX_FILL_MAX - APPROX_FILL_MIN) * np.clip(
        np.log10(np.maximum(v, 1.0)) / 5.0, 0.0, 1.0
    )
    inks = [
        _approximate_ink(
            base, round(float(lat[k]), 2), round(float(lon[k]), 2), float(acc[i]), dots
        )
        for i, k in enumerate(first)
    ]
    ink = Ink(
        np.concatenate([e.ink.idx for e in inks]),
        np.concatenate([e.ink.fill * np.float32(a) for e, a in zip(inks, strength, strict=True)]),
        np.concatenate([e.ink.ring for e in inks]) * np.float32(APPROX_RING_ALPHA),
    )
    if _overlap([e.box for e in inks]):  # else every pixel is once in ``ink``: no union
        ink = union(ink, canvas.size // 4)
    paint(canvas, ink, rgb, 1.0, rgb, touched=touched)


def _overlap(boxes: list[tuple[int, int, int, int]]) -> bool:
    """Whether any two of these (x0, y0, x1, y1) boxes intersect."""
    for i, (ax0, ay0, ax1, ay1) in enumerate(boxes):
        for bx0, by0, bx1, by1 in boxes[i + 1 :]:
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                return True
    return False


@dataclass(frozen=True, slots=True)
class _Ellipse:
    ink: Ink
    box: tuple[int, int, int, int]  # pixels it may cover: x0, y0, x1, y1 (exclusive)


_approx_cache: dict[tuple[BaseMapSpec, float, float, float, DotStyle], _Ellipse] = {}


def _approximate_ink(
    base: BaseMap, lat: float, lon: float, acc_km: float, dots: DotStyle
) -> _Ellipse:
    """The ellipse of one approximate place on one base map (cached: country centroids
    are a small fixed set)."""
    key = (base.spec, lat, lon, acc_km, dots)
    found = _approx_cache.get(key)
    if found is not None:
        return found
    dlat = min(acc_km / 110.57, 45.0)
    dlon = min(acc_km / (111.32 * max(np.cos(np.radians(lat)), 0.05)), 90.0)
    lats = np.array([lat, lat, lat, min(lat + dlat, 90.0), max(lat - dlat, -90.0)])
    lons = np.array([lon, min(lon + dlon, 179.999), max(lon - dlon, -180.0), lon, lon])
    px, py = base.project(lats, lons)
    rx = max((px[1] - px[2]) / 2.0, 2.0)
    ry = max((py[4] - py[3]) / 2.0, 2.0)
    shape = (base.height, base.width)
    ink = ellipse_ink(shape, px[0], py[0], rx, ry, dots.approx_outline_px, dots.dashed)
    box = (
        int(np.floor(px[0] - rx - 2)),
        int(np.floor(py[0] - ry - 2)),
        int(np.ceil(px[0] + rx + 2)),
        int(np.ceil(py[0] + ry + 2)),
    )  # ellipse_ink's window, unclipped
    found = _Ellipse(ink, box)
    if len(_approx_cache) > 4096:
        _approx_cache.clear()
    _approx_cache[key] = found
    return found


def draw_clusters(
    canvas: np.ndarray,
    base: BaseMap,
    locations: LocationCounts,
    dots: DotStyle,
    colour: str,
    dark: bool,
    touched: list[np.ndarray] | None = None,
) -> tuple[Clusters, bool]:
    """Project, split, cluster and paint; returns the precise-location clusters and
    whether any approximate location was drawn."""
    lat, lon, acc, visits = (
        locations.lat,
        locations.lon,
        locations.accuracy_km,
        locations.visits,
    )
    if visits.size == 0:
        return Clusters.empty(), False
    # NaN fails every comparison: in range means finite, and no wrapping or clamping.
    in_range = -90.0 <= lat.min() <= lat.max() <= 90.0 and (
        -180.0 <= lon.min() <= lon.max() < 180.0
    )
    if not (in_range and visits.min() > 0):
        ok = np.isfinite(lat) & np.isfinite(lon) & (visits > 0)
        lat, lon, acc, visits = lat[ok], lon[ok], acc[ok], visits[ok]
    rgb = colour_rgb(colour)
    approx = approximate_mask(acc)
    has_approx = bool(approx.any())
    if has_approx:
        ids = np.flatnonzero(approx)
        _draw_approximate(
            canvas, base, lat[ids], lon[ids], acc[ids], visits[ids], dots, rgb, touched
        )
        # Zero weight instead of a (slow) boolean selection: empty cells are skipped.
        weights = np.where(approx, 0.0, visits)  # zero weight: left out, no selection
    else:
        weights = visits.astype(np.float64)
    if visits.size == 0:
        return Clusters.empty(), has_approx
    cells = base.bin(lat, lon, weights, dots.merge_px / 2.0, in_range=in_range)
    clusters = merge(cells, dots.merge_px, dots.radius)
    radius = dots.radius(clusters.weight)
    draw_dots(canvas, clusters.x, clusters.y, radius, dots, rgb, dark, touched)
    return clusters, has_approx


def draw_dots(
    canvas: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: np.ndarray,
    dots: DotStyle,
    rgb: np.ndarray,
    dark: bool,
    touched: list[np.ndarray] | None = None,
) -> None:
    """Dots in painter's order by size: big ones first, smaller ones on top (within one
    size the coverage is a union, so order does not matter there)."""
    shape = canvas.shape[:2]
    outline_rgb = _outline_colour(rgb, dark)
    pixels = canvas.size // 4
    if dots.outline_px == 0:  # no outlines: one flat union of all dots, one paint
        ink = union(disc_ink(shape, x, y, radius, 0.0), pixels)
        paint(canvas, ink, rgb, dots.fill_alpha, outline_rgb, touched=touched)
        return
    for r in np.unique(radius)[::-1]:
        sel = radius == r
        ink = union(disc_ink(shape, x[sel], y[sel], float(r), dots.outline_px), pixels)
        paint(canvas, ink, rgb, dots.fill_alpha, outline_rgb, touched=touched)
