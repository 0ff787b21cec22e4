"""Render visitor maps: the counter thumbnail and the large world map, as PNG bytes.

Pure functions: no database, no HTTP. The caller passes what the database query
returns, one row per distinct (lat, lon, accuracy) with its visit count
(:class:`LocationCounts`). Each render:

1. takes the cached base map for its look and size (``app.maps.basemap``: matplotlib +
   cartopy drew it once per process, together with its Robinson → pixel affine);
2. splits off approximate locations (country centroids, accuracy ≥ 500 km), projects
   the rest and sums them into cells of the clustering grid in one pass
   (``BaseMap.bin``: a per-latitude Robinson table with the affine and the cell size
   folded in), then clusters the cells in pixel space (``app.maps.clustering``);
3. draws anti-aliased dots on a copy of the base pixels: the coverage of every disc and
   outline is computed analytically per pixel in numpy, for all dots of a size class
   in one broadcast (no supersampling, no per-dot drawing call), and composited
   ("over") only where there is ink — big dots first, smaller ones on top;
4. adds the count band or the legend (shapes the same way, text with Pillow's bundled
   font; the large map's legend band is drawn once per look and process);
5. writes an 8-bit palette PNG itself: a fixed palette per style or scale (made once
   from a training render), the base map's indices and compressed scanlines made
   once, and per image only the pixels the dots touched re-indexed and, on the large
   map, only the 32-row strips holding them re-compressed (:class:`_WorldKit`,
   :class:`_ThumbnailKit`).

Dot sizes are discrete classes on a log scale — 1–9, 10–99, 100–999, 1,000–9,999,
10,000–99,999, 100,000+ visits — so the legend shows exactly the radii drawn (the
same code draws both).
"""

from __future__ import annotations

import itertools
import re
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.maps.basemap import THEMES, BaseMap, BaseMapSpec, Theme, get_base_map
from app.maps.clustering import Clusters, approximate_mask, merge

THUMBNAIL_SIZES: dict[str, tuple[int, int]] = {
    "small": (160, 80),
    "medium": (240, 120),
    "large": (320, 160),
}
BACKGROUNDS: tuple[str, ...] = ("light", "dark", "transparent")
WORLD_SIZE = (1200, 600)
WORLD_SCALES = (1, 2)

# Dot radius per size class (see size_class), in pixels.
WORLD_RADII = (2.5, 3.5, 5.0, 7.0, 9.0, 11.0)  # at scale 1; times the scale
THUMBNAIL_RADII = (1.3, 1.8, 2.4, 3.0, 3.6, 4.2)  # at 160 px wide; times width / 160
WORLD_MERGE_PX = 5.0  # at scale 1
THUMBNAIL_MERGE_PX = 2.5  # at 160 px wide
CLASS_BOUNDS = (1, 10, 100, 1_000, 10_000, 100_000)
APPROX_RING_ALPHA = 0.65  # outline of an approximate-location ellipse
APPROX_FILL_MIN, APPROX_FILL_MAX = 0.10, 0.24  # its fill, by log10(visits) up to 100,000
APPROX_LEGEND_FILL = 0.17
WORLD_DOT_COLOUR = "#e11d48"
DEFAULT_DOT_COLOUR = "#e11d48"  # of thumbnails
LEGEND_FONT = 13  # pixels at scale 1
APPROX_SAMPLE = (15.0, 9.0)  # half-axes of the legend's approximate-location ellipse
PNG_COMPRESS_LEVEL = 1  # per image (see _deflate); pieces made once: level 9

_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True, slots=True)
class LocationCounts:
    """One row per distinct (lat, lon, accuracy) with its visit count."""

    lat: np.ndarray  # float64 degrees
    lon: np.ndarray  # float64 degrees
    accuracy_km: np.ndarray  # float64; NaN or 0 where unknown
    visits: np.ndarray  # int64 counts

    def __post_init__(self) -> None:
        lat = np.asarray(self.lat, dtype=np.float64).ravel()
        lon = np.asarray(self.lon, dtype=np.float64).ravel()
        acc = np.asarray(self.accuracy_km, dtype=np.float64).ravel()
        visits = np.asarray(self.visits, dtype=np.int64).ravel()
        if not lat.shape == lon.shape == acc.shape == visits.shape:
            raise ValueError("lat, lon, accuracy_km and visits must have the same length")
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "accuracy_km", acc)
        object.__setattr__(self, "visits", visits)

    def __len__(self) -> int:
        return int(self.visits.shape[0])

    @property
    def total(self) -> int:
        return int(self.visits.sum())

    @classmethod
    def empty(cls) -> LocationCounts:
        return cls(np.empty(0), np.empty(0), np.empty(0), np.empty(0, dtype=np.int64))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[float, float, int | None, int]]) -> LocationCounts:
        """From ``(lat, lon, accuracy_km or None, visits)`` rows, e.g. a SQL result
        (tuples or SQLAlchemy rows). One C-level pass over all values: ~5x faster
        than building the arrays row by row (``np.array`` on ``Row`` objects is ~100x
        slower still), which matters at 50k+ rows."""
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=object)
        if flat.size == 0:
            return cls.empty()
        if flat.size % 4:
            raise ValueError("rows must be (lat, lon, accuracy_km, visits)")
        table = flat.reshape(-1, 4)
        return cls(
            table[:, 0].astype(np.float64),
            table[:, 1].astype(np.float64),
            table[:, 2].astype(np.float64),  # None → NaN
            table[:, 3].astype(np.int64),
        )


@dataclass(frozen=True, slots=True)
class ThumbnailStyle:
    size: str = "small"  # key of THUMBNAIL_SIZES
    dot_color: str = DEFAULT_DOT_COLOUR  # "#rrggbb"
    background: str = "light"  # one of BACKGROUNDS; "transparent": ocean alpha 0
    show_count: bool = True

    def __post_init__(self) -> None:
        if self.size not in THUMBNAIL_SIZES:
            raise ValueError(f"size must be one of {', '.join(THUMBNAIL_SIZES)}, not {self.size!r}")
        if not isinstance(self.dot_color, str) or not _HEX_COLOUR.fullmatch(self.dot_color):
            raise ValueError(f"dot_color must look like #rrggbb, not {self.dot_color!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(
                f"background must be one of {', '.join(BACKGROUNDS)}, not {self.background!r}"
            )
        if not isinstance(self.show_count, bool):
            raise ValueError("show_count must be true or false")


# ---------------------------------------------------------------------------- sizes


def size_class(visits: np.ndarray) -> np.ndarray:
    """0 for 1–9 visits, 1 for 10–99, … 5 for 100,000+ (log10 classes)."""
    v = np.maximum(np.asarray(visits, dtype=np.int64), 1)
    return np.searchsorted(np.array(CLASS_BOUNDS), v, side="right") - 1


def class_label(k: int, last: bool) -> str:
    low = CLASS_BOUNDS[k]
    if last or k + 1 >= len(CLASS_BOUNDS):
        return f"{low:,}+"
    return f"{low:,}-{CLASS_BOUNDS[k + 1] - 1:,}"  # the bundled font has no en dash


@dataclass(frozen=True, slots=True)
class DotStyle:
    """How clusters look on one kind and size of map."""

    radii: tuple[float, ...]  # per size class, pixels
    merge_px: float
    outline_px: float  # 0: no outline
    fill_alpha: float
    approx_outline_px: float
    dashed: bool

    def radius(self, visits: np.ndarray) -> np.ndarray:
        return np.asarray(self.radii)[size_class(visits)]


def world_dots(scale: int) -> DotStyle:
    return DotStyle(
        radii=tuple(r * scale for r in WORLD_RADII),
        merge_px=WORLD_MERGE_PX * scale,
        outline_px=1.0 * scale,
        fill_alpha=0.72,
        approx_outline_px=1.2 * scale,
        dashed=True,
    )


def thumbnail_dots(width: int) -> DotStyle:
    f = width / 160.0
    return DotStyle(
        radii=tuple(r * f for r in THUMBNAIL_RADII),
        merge_px=THUMBNAIL_MERGE_PX * f,
        outline_px=0.0,
        fill_alpha=0.85,
        approx_outline_px=0.8 * f,
        dashed=False,
    )


# ------------------------------------------------------------------------- drawing


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


def _outline_colour(rgb: np.ndarray, dark_background: bool) -> np.ndarray:
    """A darker shade of the dot colour (lighter on a dark background)."""
    if dark_background:
        return rgb + (255.0 - rgb) * 0.45
    return rgb * 0.62


@dataclass(frozen=True, slots=True)
class Ink:
    """Sparse coverage on an image: flat pixel indices (may repeat where shapes of one
    layer overlap) with the fill and outline coverage (0..1) of each entry."""

    idx: np.ndarray  # intp, y * width + x
    fill: np.ndarray  # float32
    ring: np.ndarray  # float32


def disc_ink(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    radius: float | np.ndarray,
    outline: float,
) -> Ink:
    """Anti-aliased discs centred at (x, y) with an ``outline`` px ring; ``radius`` is
    one value or one per disc.

    Coverage of a pixel is ``clip(r + 0.5 - d, 0, 1)`` with ``d`` the distance from the
    pixel centre to the disc centre — a close approximation of the exact area
    coverage. All discs are computed in one (n, m, m) broadcast over a window of the
    largest radius.
    """
    h, w = shape
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    r = np.broadcast_to(np.asarray(radius, dtype=np.float32), x.shape)
    k = int(np.ceil(float(r.max(initial=0.0)) + 0.5))
    off = np.arange(-k, k + 1)
    px = np.floor(x).astype(np.intp)[:, None] + off  # (n, m) pixel columns
    py = np.floor(y).astype(np.intp)[:, None] + off  # (n, m) pixel rows
    ddx = (px + 0.5 - x[:, None]).astype(np.float32)
    ddy = (py + 0.5 - y[:, None]).astype(np.float32)
    d = np.sqrt(ddy[:, :, None] ** 2 + ddx[:, None, :] ** 2)  # (n, m, m)
    inner = (r + np.float32(0.5))[:, None, None] - d
    valid = inner > 0
    valid &= ((py >= 0) & (py < h))[:, :, None]
    valid &= ((px >= 0) & (px < w))[:, None, :]
    idx = (py * w)[:, :, None] + px[:, None, :]
    fill = np.minimum(inner[valid], 1.0)
    if outline > 0:
        # Distance inside the ring's inner edge: inner - outline, capped by the fill.
        ring = np.clip(np.minimum(fill, np.float32(outline) - inner[valid] + 1.0), 0.0, 1.0)
    else:
        ring = np.zeros_like(fill)
    return Ink(idx[valid], fill, ring)


def ellipse_ink(
    shape: tuple[int, int],
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    outline: float,
    dashed: bool,
) -> Ink:
    """An anti-aliased axis-aligned ellipse and its outline (dashed if asked)."""
    h, w = shape
    x0, x1 = max(int(np.floor(cx - rx - 2)), 0), min(int(np.ceil(cx + rx + 2)), w)
    y0, y1 = max(int(np.floor(cy - ry - 2)), 0), min(int(np.ceil(cy + ry + 2)), h)
    if x0 >= x1 or y0 >= y1:
        empty = np.empty(0, dtype=np.float32)
        return Ink(np.empty(0, dtype=np.intp), empty, empty)
    gx = (np.arange(x0, x1) + 0.5 - cx).astype(np.float32)[None, :]
    gy = (np.arange(y0, y1) + 0.5 - cy).astype(np.float32)[:, None]
    q = np.sqrt((gx / np.float32(rx)) ** 2 + (gy / np.float32(ry)) ** 2)  # float32 all along
    dist = (1.0 - q) * np.float32(min(rx, ry))  # ≈ signed distance to the edge, pixels
    inside = np.clip(dist + 0.5, 0.0, 1.0)
    edge = np.clip(np.minimum(dist + 0.5, np.float32(outline + 0.5) - dist), 0.0, 1.0)
    if dashed:
        dashes = max(8, int(np.pi * (rx + ry) / (6.0 * outline)) // 2 * 2)
        angle = np.arctan2(gy / ry, gx / rx)
        edge = edge * (np.sin(angle * (dashes / 2.0)) > -0.2)
    keep = inside > 0
    idx = (np.arange(y0, y1)[:, None] * w + np.arange(x0, x1)[None, :])[keep]
    return Ink(idx, inside[keep].astype(np.float32), edge[keep].astype(np.float32))


def capsule_ink(shape: tuple[int, int], x0: float, x1: float, cy: float, r: float) -> Ink:
    """An anti-aliased horizontal pill from x0 to x1 (end-cap centres), radius r."""
    h, w = shape
    c0, c1 = max(int(np.floor(x0 - r - 1)), 0), min(int(np.ceil(x1 + r + 1)), w)
    r0, r1 = max(int(np.floor(cy - r - 1)), 0), min(int(np.ceil(cy + r + 1)), h)
    gx = np.arange(c0, c1) + 0.5
    gy = np.arange(r0, r1) + 0.5
    dx = np.maximum(np.maximum(x0 - gx, gx - x1), 0.0)[None, :]
    dy = (gy - cy)[:, None]
    cover = np.clip(r + 0.5 - np.sqrt(dx**2 + dy**2), 0.0, 1.0).astype(np.float32)
    keep = cover > 0
    idx = (np.arange(r0, r1)[:, None] * w + np.arange(c0, c1)[None, :])[keep]
    return Ink(idx, cover[keep], np.zeros(int(keep.sum()), dtype=np.float32))


_scratch = threading.local()


def _accumulator(pixels: int) -> np.ndarray:
    """A zeroed float32 buffer of ``pixels`` entries, reused per thread (a fresh
    ``np.zeros`` would page-fault on every touched page, every time). Callers put back
    zeros where they wrote."""
    buffers: dict[int, np.ndarray] = _scratch.__dict__.setdefault("buffers", {})
    found = buffers.get(pixels)
    if found is None:
        found = buffers[pixels] = np.zeros(pixels, dtype=np.float32)
    return found


def union(ink: Ink, pixels: int) -> Ink:
    """Coverage of overlapping shapes of one layer: summed per pixel, capped at 1."""
    if ink.idx.size == 0:
        return ink
    acc = _accumulator(pixels)  # float32: same-dtype ufunc.at is the fast path (~10x)
    try:
        np.add.at(acc, ink.idx, ink.fill.astype(np.float32, copy=False))
        fill = np.minimum(acc[ink.idx], 1.0)
        acc[ink.idx] = 0.0
        if ink.ring.any():
            np.add.at(acc, ink.idx, ink.ring.astype(np.float32, copy=False))
            ring = np.minimum(acc[ink.idx], 1.0)
        else:
            ring = ink.ring
    finally:
        acc[ink.idx] = 0.0
    return Ink(ink.idx, fill, ring)


def paint(
    canvas: np.ndarray,
    ink: Ink,
    fill_rgb: np.ndarray,
    fill_alpha: float,
    ring_rgb: np.ndarray,
    ring_alpha: float = 1.0,
    touched: list[np.ndarray] | None = None,
) -> None:
    """Composite ``ink`` (fill, then its outline on top) over the RGBA ``canvas`` in
    place: Porter-Duff "over" with straight alpha, touching only inked pixels. Repeated
    indices compute the same value from the same inputs, so they are harmless. The
    pixels written are appended to ``touched`` if given (the large map's encoder only
    re-indexes and re-compresses those)."""
    if ink.idx.size == 0:
        return
    if touched is not None:
        touched.append(ink.idx)
    a_ring = ink.ring * np.float32(ring_alpha)
    a_fill = ink.fill * np.float32(fill_alpha) * (1.0 - a_ring)
    a = a_ring + a_fill
    pixels = canvas.reshape(-1).view(np.uint32)  # one word per RGBA pixel
    base = pixels[ink.idx].view(np.uint8).reshape(-1, 4)
    out = np.empty_like(base)
    if base[:, 3].min() == 255:  # opaque below (the large map, most thumbnails): stays so
        keep = 1.0 - a
        for c in range(3):  # channel by channel: 1-D arithmetic is the fast path
            out[:, c] = a_ring * ring_rgb[c] + a_fill * fill_rgb[c] + base[:, c] * keep + 0.5
        out[:, 3] = 255
    else:
        keep = base[:, 3] * np.float32(1.0 / 255.0) * (1.0 - a)  # what shows of the base
        out_a = a + keep
        inv = 1.0 / np.maximum(out_a, np.float32(1e-6))
        for c in range(3):
            premul = a_ring * ring_rgb[c] + a_fill * fill_rgb[c] + base[:, c] * keep
            out[:, c] = premul * inv + 0.5  # a convex mix: stays within 0..255.5
        out[:, 3] = out_a * 255.0 + 0.5
    pixels[ink.idx] = out.view(np.uint32).ravel()


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


def _draw_clusters(
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
    rgb = _rgb(colour)
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


# --------------------------------------------------------------------------- text


@cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font (Aileron) at ``size`` pixels: no system fonts needed."""
    return ImageFont.load_default(size=size)


def _text_width(text: str, size: int) -> float:
    return float(font(size).getlength(text))


def _adaptive_palette(image: Image.Image, transparent: bool) -> tuple[np.ndarray, np.ndarray]:
    """Up to 256 RGBA colours made for ``image`` (FASTOCTREE; alpha kept for the
    transparent style, else 255) and the image's indices into them."""
    if not transparent:
        image = image.convert("RGB")
    quantised = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    palette = np.array(quantised.getpalette("RGBA"), dtype=np.uint8).reshape(-1, 4)
    if transparent:
        # The octree averages alpha too (opaque land came out at 253): snap the ends
        # so opaque stays opaque and the ocean stays fully transparent.
        palette[palette[:, 3] >= 248, 3] = 255
        palette[palette[:, 3] <= 6, 3] = 0
    else:
        palette[:, 3] = 255
    return palette, np.asarray(quantised)


# ---------------------------------------------------------------------- thumbnail


def _thumbnail_band(size: str) -> int:
    return {"small": 15, "medium": 20, "large": 26}[size]


def thumbnail_base(style: ThumbnailStyle) -> BaseMap:
    width, height = THUMBNAIL_SIZES[style.size]
    band = _thumbnail_band(style.size) if style.show_count else 0
    return get_base_map(BaseMapSpec("thumbnail", width, height, style.background, band))


def count_text(total: int) -> tuple[str, str]:
    """The thumbnail's count: digits with thousands separators, and the unit."""
    total = max(int(total), 0)
    return f"{total:,}", ("visit" if total == 1 else "visits")


@dataclass(frozen=True, slots=True)
class CountLayout:
    """Where the thumbnail's count band draws its parts (pixels)."""

    number: str
    unit: str
    number_size: int
    unit_size: int
    dot_x: float
    dot_y: float
    dot_r: float
    number_x: float
    unit_x: float
    baseline: float
    pill: tuple[float, float, float, float] | None  # x0, x1 (cap centres), cy, radius


def count_layout(style: ThumbnailStyle, total: int) -> CountLayout:
    width, height = THUMBNAIL_SIZES[style.size]
    band = _thumbnail_band(style.size)
    f = width / 160.0
    number, unit = count_text(total)
    number_size, unit_size = round(11 * f), round(9 * f)
    gap = round(3 * f)
    dot_r = 2.6 * f
    room = width - 10 * f
    while True:  # shrink (then drop the unit) until a huge count fits the width
        nw = _text_width(number, number_size)
        uw = _text_width(unit, unit_size) if unit else 0.0
        content = 2 * dot_r + gap + nw + (gap + uw if unit else 0.0)
        if content <= room or number_size <= 7:
            break
        if unit and number_size <= round(9 * f):
            unit = ""
        else:
            number_size -= 1
            unit_size = max(unit_size - 1, 7)
    x = (width - content) / 2.0
    cy = height - band / 2.0
    pill = None
    if THEMES[style.background].frame[3] == 0:  # text over the page: give it a panel
        pr = band / 2.0 - 1.5 * f
        pad = 4 * f
        pill = (x - pad + pr, x + content + pad - pr, cy, pr)
    return CountLayout(
        number=number,
        unit=unit,
        number_size=number_size,
        unit_size=unit_size,
        dot_x=x + dot_r,
        dot_y=cy,
        dot_r=dot_r,
        number_x=x + 2 * dot_r + gap,
        unit_x=x + 2 * dot_r + gap + nw + gap,
        baseline=cy + 4 * f,
        pill=pill,
    )


@lru_cache(maxsize=256)
def _count_dot(shape: tuple[int, int], x: float, y: float, r: float) -> Ink:
    """The count band's dot (a few positions per style: by the width of the number)."""
    return disc_ink(shape, np.array([x]), np.array([y]), r, 0.0)


@lru_cache(maxsize=256)
def _capsule(shape: tuple[int, int], x0: float, x1: float, cy: float, r: float) -> Ink:
    return capsule_ink(shape, x0, x1, cy, r)


def _draw_count(canvas: np.ndarray, total: int, style: ThumbnailStyle) -> Image.Image:
    theme = THEMES[style.background]
    lay = count_layout(style, total)
    shape = canvas.shape[:2]
    if lay.pill is not None:
        x0, x1, cy, r = lay.pill
        panel = np.array(theme.panel[:3], dtype=np.float32)
        paint(canvas, _capsule(shape, x0, x1, cy, r), panel, theme.panel[3] / 255.0, panel)
    dot = _count_dot(shape, lay.dot_x, lay.dot_y, lay.dot_r)
    rgb = _rgb(style.dot_color)
    paint(canvas, dot, rgb, 1.0, rgb)
    image = Image.fromarray(canvas, "RGBA")
    draw = ImageDraw.Draw(image)
    draw.text(
        (lay.number_x, lay.baseline),
        lay.number,
        font=font(lay.number_size),
        fill=theme.text,
        anchor="ls",
    )
    draw.text(
        (lay.unit_x, lay.baseline),
        lay.unit,
        font=font(lay.unit_size),
        fill=theme.muted,
        anchor="ls",
    )
    return image


def render_thumbnail(locations: LocationCounts, total: int, style: ThumbnailStyle) -> bytes:
    """The counter image: a small world map with visit clusters and, if
    ``style.show_count``, ``total`` in a band below it. PNG bytes."""
    base = thumbnail_base(style)
    kit = _thumbnail_kit(style)
    canvas = base.pixels.copy()
    dots = thumbnail_dots(base.width)
    touched: list[np.ndarray] = []
    dark = style.background == "dark"
    _draw_clusters(canvas, base, locations, dots, style.dot_color, dark, touched)
    width = base.width
    pixels = np.asarray(_draw_count(canvas, total, style)) if style.show_count else canvas
    if kit is None:  # a style seen too rarely for a palette of its own: one per image
        transparent = style.background == "transparent"
        palette, indices = _adaptive_palette(Image.fromarray(pixels, "RGBA"), transparent)
        raw = np.zeros((base.height, width + 1), dtype=np.uint8)
        raw[:, 1:] = indices
        return _indexed_png(width, base.height, _Palette(palette), [_deflate(raw)])
    raw = kit.raw.copy()
    if style.show_count:
        raw[kit.band_top :, 1:] = kit.palette.lookup(_words(pixels[kit.band_top :])).reshape(
            -1, width
        )
    if touched:
        idx = np.concatenate(touched)
        raw.reshape(-1)[idx + idx // width + 1] = kit.palette.lookup(_words(pixels)[idx])
    return _indexed_png(width, base.height, kit.palette, [_deflate(raw)])


class _ThumbnailKit:
    """What every thumbnail of one style shares, made once per process (LRU): a fixed
    palette from a training render holding every ingredient (dots of every size over
    land and sea, overlapping; approximate-location ellipses; the count band with
    every digit), and the base map as indexed PNG scanlines. A thumbnail then indexes
    only the pixels its dots touched and its count band — no adaptive quantisation
    per image (FASTOCTREE took ~0.2 ms of a ~3 ms render)."""

    def __init__(self, style: ThumbnailStyle) -> None:
        base = thumbnail_base(style)
        transparent = style.background == "transparent"
        lat = np.repeat(np.arange(-57.5, 85.0, 6.5), 56)
        lon = np.tile(np.arange(-178.0, 180.0, 6.5), lat.size // 56)
        visits = 10 ** (np.arange(lat.size) % 7)
        near_lat, near_lon = lat[::3] + 1.6, lon[::3] + 2.1  # overlapping neighbours
        # Approximate places over land and sea, overlapping, faint to strong.
        a_lat = np.repeat([-45.0, -20.0, 5.0, 30.0, 55.0], 15)
        a_lon = np.tile(np.arange(-170.0, 180.0, 24.0), 5)
        a_visits = 10 ** (np.arange(a_lat.size) % 6)
        training = LocationCounts(
            np.concatenate([lat, near_lat, a_lat]),
            np.concatenate([lon, near_lon, a_lon]),
            np.concatenate([np.full(lat.size + near_lat.size, 10.0), np.full(75, 1500.0)]),
            np.concatenate([visits, visits[::3][::-1], a_visits]),
        )
        dots = thumbnail_dots(base.width)
        dark = style.background == "dark"
        parts = []
        for total in (1_234_567, 890, 1):
            canvas = base.pixels.copy()
            _draw_clusters(canvas, base, training, dots, style.dot_color, dark)
            if style.show_count:
                parts.append(np.asarray(_draw_count(canvas, total, style)))
            else:
                parts.append(canvas)
        parts.append(base.pixels)
        image = Image.fromarray(np.concatenate(parts), "RGBA")
        self.palette = _Palette(_adaptive_palette(image, transparent)[0])
        raw = np.zeros((base.height, base.width + 1), dtype=np.uint8)  # filter 0: none
        raw[:, 1:] = self.palette.lookup(_words(base.pixels)).reshape(base.height, base.width)
        raw.setflags(write=False)
        self.raw = raw
        band = _thumbnail_band(style.size) if style.show_count else 0
        self.band_top = base.height - band  # the count band's rows: indexed whole


THUMBNAIL_KITS_KEPT = 32
KIT_AFTER_USES = 3  # a style in another colour gets its kit at its third thumbnail
_thumbnail_kits: OrderedDict[ThumbnailStyle, _ThumbnailKit] = OrderedDict()
_style_uses: dict[ThumbnailStyle, int] = {}
_thumbnail_kits_lock = threading.Lock()


def _thumbnail_kit(style: ThumbnailStyle, *, build: bool = False) -> _ThumbnailKit | None:
    """The style's kit, made on first use for the default colour (most counters) and at
    the :data:`KIT_AFTER_USES`-th for others; None before (such a thumbnail gets an
    adaptive palette: a kit costs 15-40 ms, worth it only for a style seen again)."""
    with _thumbnail_kits_lock:
        found = _thumbnail_kits.get(style)
        if found is not None:
            _thumbnail_kits.move_to_end(style)
            return found
        if not build and style.dot_color != DEFAULT_DOT_COLOUR:
            if len(_style_uses) > 4096:
                _style_uses.clear()
            uses = _style_uses[style] = _style_uses.get(style, 0) + 1
            if uses < KIT_AFTER_USES:
                return None
    found = _ThumbnailKit(style)  # outside the lock (a race makes two, both right)
    with _thumbnail_kits_lock:
        _thumbnail_kits[style] = found
        while len(_thumbnail_kits) > THUMBNAIL_KITS_KEPT:
            _thumbnail_kits.popitem(last=False)
    return found


# -------------------------------------------------------------------------- world


def _world_band(scale: int) -> int:
    return 56 * scale


def world_base(scale: int) -> BaseMap:
    if scale not in WORLD_SCALES:
        raise ValueError(f"scale must be one of {WORLD_SCALES}, not {scale!r}")
    w, h = WORLD_SIZE
    return get_base_map(
        BaseMapSpec("world", w * scale, h * scale, "light", _world_band(scale), 2 * scale)
    )


@dataclass(frozen=True, slots=True)
class LegendEntry:
    label: str
    radius: float  # pixels, as drawn on the map; 0 for the approximate-location sample
    x: float  # centre of the sample, pixels
    y: float


def legend_layout(scale: int, max_class: int, has_approx: bool) -> list[LegendEntry]:
    """The legend's samples: one per size class up to ``max(3, max_class)`` (so at least
    1-9, 10-99, 100-999, 1,000+), with the radii :func:`draw_dots` uses, and the
    approximate-location sample if any is drawn. In the strip below the map."""
    dots = world_dots(scale)
    height = WORLD_SIZE[1] * scale
    top = world_base(scale).box[3]
    mid = top + (height - top) / 2.0
    size = LEGEND_FONT * scale
    x = 24.0 * scale + _text_width("Visits", size) + 16 * scale
    entries: list[LegendEntry] = []
    last = max(3, max_class)
    for k in range(last + 1):
        r = dots.radii[k]
        label = class_label(k, last=k == last)
        entries.append(LegendEntry(label, r, x + r, mid))
        x += 2 * r + 6 * scale + _text_width(label, size) + 16 * scale
    if has_approx:
        entries.append(LegendEntry("approximate location", 0.0, x + APPROX_SAMPLE[0] * scale, mid))
    return entries


def _draw_legend(
    canvas: np.ndarray,
    scale: int,
    max_class: int,
    has_approx: bool,
    updated: str | None,
) -> Image.Image:
    theme: Theme = THEMES["light"]
    dots = world_dots(scale)
    entries = legend_layout(scale, max_class, has_approx)
    rgb = _rgb(WORLD_DOT_COLOUR)
    discs = [e for e in entries if e.radius > 0]
    draw_dots(
        canvas,
        np.array([e.x for e in discs]),
        np.array([e.y for e in discs]),
        np.array([e.radius for e in discs]),
        dots,
        rgb,
        False,
    )
    shape = canvas.shape[:2]
    for e in entries:
        if e.radius == 0:
            rx, ry = APPROX_SAMPLE[0] * scale, APPROX_SAMPLE[1] * scale
            ink = ellipse_ink(shape, e.x, e.y, rx, ry, dots.approx_outline_px, True)
            paint(canvas, ink, rgb, APPROX_LEGEND_FILL, rgb, APPROX_RING_ALPHA)
    image = Image.fromarray(canvas, "RGBA")
    draw = ImageDraw.Draw(image)
    label_font = font(LEGEND_FONT * scale)
    mid = entries[0].y
    draw.text((24 * scale, mid), "Visits", font=label_font, fill=theme.text, anchor="lm")
    for e in entries:
        half = e.radius if e.radius > 0 else APPROX_SAMPLE[0] * scale
        draw.text(
            (e.x + half + 6 * scale, mid), e.label, font=label_font, fill=theme.muted, anchor="lm"
        )
    if updated:
        text = updated if updated.lower().startswith("updated") else f"Updated {updated}"
        width = canvas.shape[1]
        draw.text((width - 24 * scale, mid), text, font=label_font, fill=theme.muted, anchor="rm")
    return image


def render_world_map(
    locations: LocationCounts, *, scale: int = 1, updated: str | None = None
) -> bytes:
    """The large public map: 1200×600 (2400×1200 at ``scale=2``) with a legend of dot
    sizes and, if given, the "updated" text (drawn as "Updated <text>" unless it already
    starts with "Updated"). PNG bytes.

    Only what the dots change is computed per map (see :class:`_WorldKit`): the base map
    and the legend band are indexed onto the scale's fixed palette and compressed once
    per process, in strips of :data:`PNG_STRIP_ROWS` rows; a map re-indexes the pixels
    its dots touched and re-compresses the strips holding them.
    """
    base = world_base(scale)
    kit = _world_kit(scale)
    scratch = kit.take_scratch()  # the base map's pixels and scanlines, to draw on
    canvas, raw = scratch.canvas, scratch.raw
    touched: list[np.ndarray] = []
    clusters, has_approx = _draw_clusters(
        canvas, base, locations, world_dots(scale), WORLD_DOT_COLOUR, False, touched
    )
    max_class = max(3, int(size_class(clusters.weight).max())) if len(clusters) else 3
    band = kit.band(max_class, has_approx, updated)
    scratch.show_band(band)
    width = base.width
    idx = np.concatenate(touched) if touched else np.empty(0, dtype=np.intp)
    at = idx + idx // width + 1  # the same pixels in the scanlines (filter byte first)
    dirty = np.zeros(kit.strips, dtype=bool)
    dirty[idx // (width * PNG_STRIP_ROWS)] = True
    pixels = canvas
    if idx.size and int(idx.max()) >= band.top * width:
        # Ink reaches the legend's rows (a dot or ellipse at the very south): draw the
        # legend over it as it comes and index those rows whole.
        pixels = np.asarray(_draw_legend(canvas, scale, max_class, has_approx, updated))
        raw[band.top :, 1:] = kit.lookup(_words(pixels[band.top :])).reshape(-1, width)
        dirty[band.top // PNG_STRIP_ROWS :] = True
        scratch.spoilt = True
    if idx.size:
        raw.reshape(-1)[at] = kit.lookup(_words(pixels)[idx])
    pieces = []
    for s in range(kit.strips):
        rows = slice(s * PNG_STRIP_ROWS, (s + 1) * PNG_STRIP_ROWS)
        if dirty[s]:
            pieces.append(_deflate(raw[rows]))
        elif rows.stop <= band.top:
            pieces.append(kit.base_piece(s))
        else:
            pieces.append(band.piece(s))
    png = _indexed_png(width, base.height, kit.palette, pieces)
    kit.give_back(scratch, idx, at)
    return png


def _world_image(locations: LocationCounts, scale: int, updated: str | None) -> Image.Image:
    base = world_base(scale)
    canvas = base.pixels.copy()
    clusters, has_approx = _draw_clusters(
        canvas, base, locations, world_dots(scale), WORLD_DOT_COLOUR, False
    )
    max_class = int(size_class(clusters.weight).max()) if len(clusters) else 0
    return _draw_legend(canvas, scale, max_class, has_approx, updated)


_world_palettes: dict[int, Image.Image] = {}


def world_palette(scale: int) -> Image.Image:
    """The 256 colours of every large map at ``scale``, made once per process.

    The large map has a fixed look: every pixel is a base map colour, the dot colour or
    its outline mixed over those at some coverage, an approximate-location tint, or
    legend text. A training render containing all of them (every dot size over land
    and sea, overlapping; faint and strong ellipses; the full legend and digits) is
    quantised once (FASTOCTREE); each map is then mapped onto that palette, which is
    ~8x faster than quantising each 2400×1200 map adaptively and looks the same.
    """
    found = _world_palettes.get(scale)
    if found is None:
        lat = np.repeat(np.arange(-57.5, 85.0, 6.5), 56)
        lon = np.tile(np.arange(-178.0, 180.0, 6.5), lat.size // 56)
        visits = 10 ** (np.arange(lat.size) % 7)
        near_lat, near_lon = lat[::3] + 0.6, lon[::3] + 0.9  # overlapping neighbours
        approx = np.array([[37.75, -97.82], [51.3, 9.5], [-10.0, -55.0], [0.0, -140.0]])
        training = LocationCounts(
            np.concatenate([lat, near_lat, approx[:, 0]]),
            np.concatenate([lon, near_lon, approx[:, 1]]),
            np.concatenate([np.full(lat.size + near_lat.size, 10.0), np.full(4, 1000.0)]),
            np.concatenate([visits, visits[::3][::-1], [1, 100, 10_000, 1_000_000]]),
        )
        image = _world_image(training, scale, "Updated 0123456789 UTC, - : / .")
        found = image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        _world_palettes[scale] = found
    return found


# ----------------------------------------------------------- indexed PNG in strips

PNG_STRIP_ROWS = 32  # rows per independently compressed piece of a large map
LEGEND_BANDS_KEPT = 16  # legend bands (size classes × approximate × text) kept per scale
SCRATCH_KEPT = 2  # free scratch copies kept per scale (one per job a worker runs at once)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, "fastest" (check bits: 0x7801 % 31 == 0)
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # zlib.compressobj(1, zlib.DEFLATED, -15).flush()


@dataclass(frozen=True, slots=True)
class _Piece:
    """Raw deflate data of a run of PNG scanlines, compressed on its own (no reference
    to earlier data) and ending byte-aligned, not final: pieces concatenate into one
    valid zlib stream in any combination."""

    data: bytes
    adler: int  # Adler-32 of the uncompressed bytes
    size: int  # uncompressed bytes


def _deflate(raw: np.ndarray) -> _Piece:
    """Scanlines (a C-contiguous uint8 array) compressed as one piece, fast: zlib level
    1 with the run-length strategy. On these images (large flat areas, short
    anti-aliased ramps) it is both faster and ~25 % smaller than the default strategy
    at level 1 (figures in bench/README.md)."""
    data = raw.data
    z = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return _Piece(z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH), zlib.adler32(data), raw.nbytes)


def _deflate_small(raw: np.ndarray) -> _Piece:
    """The smallest of a few level-9 settings: for pieces compressed once and reused."""
    data = raw.data
    tries = []
    for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_RLE, zlib.Z_FILTERED):
        z = zlib.compressobj(9, zlib.DEFLATED, -15, 9, strategy)
        tries.append(z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))
    return _Piece(min(tries, key=len), zlib.adler32(data), raw.nbytes)


def _adler32_combine(first: int, second: int, second_size: int) -> int:
    """Adler-32 of two byte strings joined, from theirs (zlib's adler32_combine)."""
    mod = 65521
    rem = second_size % mod
    s1 = first & 0xFFFF
    s2 = (rem * s1 + (first >> 16) + (second >> 16) + mod - rem) % mod
    s1 = (s1 + (second & 0xFFFF) + mod - 1) % mod
    return s1 | (s2 << 16)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


class _Palette:
    """A fixed palette (RGBA, up to 256 entries) with a memo of the nearest entry of
    every colour seen (premultiplied RGBA distance: fully transparent pixels match a
    transparent entry whatever their colour)."""

    MEMO_MAX = 1 << 16

    def __init__(self, rgba: np.ndarray) -> None:
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(-1, 4)
        self.plte = rgba[:, :3].tobytes()
        alpha = rgba[:, 3].tobytes()
        self.trns = alpha.rstrip(b"\xff")  # entries past the last translucent one: opaque
        self._points = self._premultiplied(rgba)
        self._memo = (np.empty(0, dtype="<u4"), np.empty(0, dtype=np.uint8))

    @staticmethod
    def _premultiplied(rgba: np.ndarray) -> np.ndarray:
        c = rgba.astype(np.float32)
        c[:, :3] *= c[:, 3:] / 255.0
        return c

    def lookup(self, words: np.ndarray) -> np.ndarray:
        """Palette indices (uint8) of RGBA pixels given as :func:`_words`."""
        keys, values = self._memo
        pos = np.searchsorted(keys, words)
        np.minimum(pos, keys.size - 1, out=pos)
        if keys.size and (keys[pos] == words).all():
            return values[pos]
        new = np.unique(words if keys.size == 0 else words[keys[pos] != words])
        rgba = new.view(np.uint8).reshape(-1, 4)
        d = ((self._premultiplied(rgba)[:, None, :] - self._points[None]) ** 2).sum(axis=2)
        found = d.argmin(axis=1).astype(np.uint8)
        if keys.size + new.size > self.MEMO_MAX:
            keys, values = keys[:0], values[:0]
        keys = np.concatenate([keys, new])
        values = np.concatenate([values, found])
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        self._memo = (keys, values)  # one assignment: readers see old or new, whole
        pos = np.minimum(np.searchsorted(keys, words), keys.size - 1)
        return values[pos]


def _indexed_png(width: int, height: int, palette: _Palette, pieces: list[_Piece]) -> bytes:
    """An 8-bit palette PNG from the compressed pieces of its scanlines (each scanline
    filter byte 0, "none", as Pillow writes palette images)."""
    adler = 1  # of nothing
    for piece in pieces:
        adler = _adler32_combine(adler, piece.adler, piece.size)
    idat = b"".join(
        [_ZLIB_HEADER, *(p.data for p in pieces), _FINAL_EMPTY_BLOCK, adler.to_bytes(4, "big")]
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"PLTE", palette.plte),
            *([_chunk(b"tRNS", palette.trns)] if palette.trns else []),
            _chunk(b"IDAT", idat),
            _chunk(b"IEND", b""),
        ]
    )


@dataclass(frozen=True, slots=True)
class _Band:
    """The legend strip of one legend look, indexed and compressed once."""

    top: int  # first row the legend changes
    rows: np.ndarray  # PNG scanlines (filter byte + indices) from ``top`` down
    kit: _WorldKit
    key: tuple[int, bool, str | None]
    pieces: dict[int, _Piece]

    def piece(self, strip: int) -> _Piece:
        found = self.pieces.get(strip)
        if found is None:
            raw = self.kit.base_raw[strip * PNG_STRIP_ROWS : (strip + 1) * PNG_STRIP_ROWS].copy()
            start = strip * PNG_STRIP_ROWS
            lo = max(self.top - start, 0)
            raw[lo:] = self.rows[start + lo - self.top : start + raw.shape[0] - self.top]
            found = self.pieces[strip] = _deflate_small(raw)
        return found


def _words(pixels: np.ndarray) -> np.ndarray:
    """RGBA pixels (contiguous, any shape ending in 4) as one little-endian 32-bit word
    each (red in the low byte), a view: 1-D gathers and scatters are the fast path."""
    return np.ascontiguousarray(pixels).reshape(-1).view("<u4")


class _Scratch:
    """A working copy of a large map: RGBA pixels and PNG scanlines, put back to the
    base map after each render (only where it drew), so that a render copies neither
    the 2.9 MB of pixels nor the scanlines."""

    def __init__(self, kit: _WorldKit) -> None:
        self.kit = kit
        self.canvas = world_base(kit.scale).pixels.copy()
        self.raw = kit.base_raw.copy()
        self.band_key: tuple[int, bool, str | None] | None = None
        self.band_top = kit.height  # rows from here hold the legend band ``band_key``
        self.spoilt = False  # drawn over beyond the touched pixels: restore all

    def show_band(self, band: _Band) -> None:
        if self.band_key == band.key:
            return
        low = min(self.band_top, band.top)
        self.raw[low : band.top] = self.kit.base_raw[low : band.top]
        self.raw[band.top :] = band.rows
        self.band_key, self.band_top = band.key, band.top


class _WorldKit:
    """What every large map at one scale shares, made once per process: the palette
    (:func:`world_palette`) as PLTE bytes and a nearest-colour table, the base map as
    indexed scanlines and their compressed strips, and the legend bands (LRU)."""

    def __init__(self, scale: int) -> None:
        base = world_base(scale)
        self.width, self.height = base.width, base.height
        self.strips = -(-self.height // PNG_STRIP_ROWS)
        palette = world_palette(scale).getpalette("RGB") or []
        colours = np.array(palette, dtype=np.uint8).reshape(-1, 3)
        self._colours = colours.astype(np.float32)
        self.palette = _Palette(np.column_stack([colours, np.full(len(colours), 255, np.uint8)]))
        # Nearest palette entry per 7-bit RGB cell, filled on first sight (-1: not yet).
        self._table = np.full(1 << 21, -1, dtype=np.int16)
        raw = np.zeros((self.height, self.width + 1), dtype=np.uint8)  # filter 0: none
        raw[:, 1:] = self.lookup(_words(base.pixels)).reshape(self.height, self.width)
        raw.setflags(write=False)
        self.base_raw = raw
        self._base_pieces: dict[int, _Piece] = {}
        self._bands: OrderedDict[tuple[int, bool, str | None], _Band] = OrderedDict()
        self._lock = threading.Lock()
        self._free: list[_Scratch] = []
        self.scale = scale

    def take_scratch(self) -> _Scratch:
        """A free scratch, or a new one; :meth:`give_back` returns it. A render that
        fails in between returns none (the next one may make a fresh copy). At most
        :data:`SCRATCH_KEPT` are kept: memory stays bounded however many threads
        render (a 2x scratch is 14 MB)."""
        with self._lock:
            if self._free:
                return self._free.pop()
        return _Scratch(self)

    def give_back(self, scratch: _Scratch, idx: np.ndarray, at: np.ndarray) -> None:
        """Put the base map back where a render drew (``idx`` pixels, ``at`` bytes)."""
        if scratch.spoilt:
            scratch.canvas[...] = world_base(self.scale).pixels
            scratch.raw[...] = self.base_raw
            scratch.band_key, scratch.band_top, scratch.spoilt = None, self.height, False
        else:
            _words(scratch.canvas)[idx] = _words(world_base(self.scale).pixels)[idx]
            scratch.raw.reshape(-1)[at] = self.base_raw.reshape(-1)[at]
        with self._lock:
            if len(self._free) < SCRATCH_KEPT:
                self._free.append(scratch)

    def lookup(self, words: np.ndarray) -> np.ndarray:
        """Palette indices (uint8) of RGBA pixels given as :func:`_words` (alpha ignored)."""
        cell = (words >> 1) & 0x7F
        cell |= (words >> 2) & 0x3F80
        cell |= (words >> 3) & 0x1FC000
        found = self._table[cell]
        if found.min(initial=0) < 0:
            missing = np.unique(cell[found < 0])
            centre = np.stack([missing & 0x7F, (missing >> 7) & 0x7F, missing >> 14], axis=1)
            centre = centre.astype(np.float32) * 2.0 + 0.5
            for i in range(0, missing.size, 4096):
                d = ((centre[i : i + 4096, None, :] - self._colours[None]) ** 2).sum(axis=2)
                self._table[missing[i : i + 4096]] = d.argmin(axis=1)
            found = self._table[cell]
        return found.astype(np.uint8)

    def base_piece(self, strip: int) -> _Piece:
        found = self._base_pieces.get(strip)
        if found is None:
            rows = self.base_raw[strip * PNG_STRIP_ROWS : (strip + 1) * PNG_STRIP_ROWS]
            found = self._base_pieces[strip] = _deflate_small(rows)
        return found

    def band(self, max_class: int, has_approx: bool, updated: str | None) -> _Band:
        key = (max_class, has_approx, updated)
        with self._lock:
            found = self._bands.get(key)
            if found is not None:
                self._bands.move_to_end(key)
                return found
        base = world_base(self.scale)
        pixels = np.asarray(_draw_legend(base.pixels.copy(), self.scale, *key))
        changed = np.flatnonzero((pixels != base.pixels).any(axis=(1, 2)))
        top = int(changed[0]) if changed.size else self.height
        rows = self.base_raw[top:].copy()
        rows[:, 1:] = self.lookup(_words(pixels[top:])).reshape(-1, self.width)
        found = _Band(top, rows, self, key, {})
        with self._lock:
            self._bands[key] = found
            while len(self._bands) > LEGEND_BANDS_KEPT:
                self._bands.popitem(last=False)
        return found


_world_kits: dict[int, _WorldKit] = {}
_kit_lock = threading.Lock()


def _world_kit(scale: int) -> _WorldKit:
    found = _world_kits.get(scale)
    if found is None:
        with _kit_lock:
            found = _world_kits.get(scale)
            if found is None:
                found = _world_kits[scale] = _WorldKit(scale)
    return found


def warm_up() -> None:
    """Render and cache every base map with its tables, palettes and compressed
    strips (call at worker start)."""
    bases = [
        thumbnail_base(ThumbnailStyle(size, "#e11d48", background, show_count))
        for size in THUMBNAIL_SIZES
        for background in BACKGROUNDS
        for show_count in (True, False)
    ]
    bases += [world_base(scale) for scale in WORLD_SCALES]
    for base in bases:
        base.project(np.zeros(1), np.zeros(1))
        _ = base.pixels
    for scale in WORLD_SCALES:
        _world_kit(scale).band(3, False, None)
    render_world_map(LocationCounts.empty())  # compresses the 1x base strips (~0.2 s)
    _thumbnail_kit(ThumbnailStyle())
    count_layout(ThumbnailStyle(), 0)
