"""Render visitor maps: the counter thumbnail and the large world map, as PNG bytes.

Pure functions: no database, no HTTP. The caller passes what the database query
returns, one row per distinct (lat, lon, accuracy) with its visit count
(:class:`LocationCounts`). Each render:

1. takes the cached base map for its look and size (``app.maps.basemap``: matplotlib +
   cartopy drew it once per process, together with its Robinson → pixel affine);
2. projects all locations at once (``BaseMap.project``: a per-latitude Robinson table
   with the affine folded in, a handful of numpy operations);
3. splits off approximate locations (country centroids, accuracy ≥ 500 km) and
   clusters the rest in pixel space (``app.maps.clustering``);
4. draws anti-aliased dots on a copy of the base pixels: the coverage of every disc and
   outline is computed analytically per pixel in numpy, for all dots of a size class
   in one broadcast (no supersampling, no per-dot drawing call), and composited
   ("over") only where there is ink — big dots first, smaller ones on top;
5. adds the count band or the legend (shapes the same way, text with Pillow's bundled
   font) and encodes the PNG (see :func:`_encode`).

Dot sizes are discrete classes on a log scale — 1–9, 10–99, 100–999, 1,000–9,999,
10,000–99,999, 100,000+ visits — so the legend shows exactly the radii drawn (the
same code draws both).
"""

from __future__ import annotations

import io
import itertools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.maps.basemap import THEMES, BaseMap, BaseMapSpec, Theme, get_base_map
from app.maps.clustering import Clusters, approximate_mask, cluster

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
LEGEND_FONT = 13  # pixels at scale 1
APPROX_SAMPLE = (15.0, 9.0)  # half-axes of the legend's approximate-location ellipse
PNG_COMPRESS_LEVEL = 1  # see _encode

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
    dot_color: str = "#e11d48"  # "#rrggbb"
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
) -> None:
    """Composite ``ink`` (fill, then its outline on top) over the RGBA ``canvas`` in
    place: Porter-Duff "over" with straight alpha, touching only inked pixels. Repeated
    indices compute the same value from the same inputs, so they are harmless."""
    if ink.idx.size == 0:
        return
    a_ring = ink.ring * np.float32(ring_alpha)
    a_fill = ink.fill * np.float32(fill_alpha) * (1.0 - a_ring)
    a = a_ring + a_fill
    pixels = canvas.reshape(-1).view(np.uint32)  # one word per RGBA pixel
    base = pixels[ink.idx].view(np.uint8).reshape(-1, 4)
    keep = base[:, 3] * np.float32(1.0 / 255.0) * (1.0 - a)  # what shows of the base
    out_a = a + keep
    inv = 1.0 / np.maximum(out_a, np.float32(1e-6))
    out = np.empty_like(base)
    for c in range(3):  # channel by channel: 1-D arithmetic is the fast path
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
    ink = union(
        Ink(
            np.concatenate([e.idx for e in inks]),
            np.concatenate([e.fill * np.float32(a) for e, a in zip(inks, strength, strict=True)]),
            np.concatenate([e.ring for e in inks]) * np.float32(APPROX_RING_ALPHA),
        ),
        canvas.size // 4,
    )
    paint(canvas, ink, rgb, 1.0, rgb)


_approx_cache: dict[tuple[BaseMapSpec, float, float, float, DotStyle], Ink] = {}


def _approximate_ink(base: BaseMap, lat: float, lon: float, acc_km: float, dots: DotStyle) -> Ink:
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
    found = ellipse_ink(shape, px[0], py[0], rx, ry, dots.approx_outline_px, dots.dashed)
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
) -> tuple[Clusters, bool]:
    """Project, split, cluster and paint; returns the precise-location clusters and
    whether any approximate location was drawn."""
    lat, lon, acc, visits = (
        locations.lat,
        locations.lon,
        locations.accuracy_km,
        locations.visits,
    )
    if visits.size and not (np.isfinite(lat.sum() + lon.sum()) and visits.min() > 0):
        ok = np.isfinite(lat) & np.isfinite(lon) & (visits > 0)
        lat, lon, acc, visits = lat[ok], lon[ok], acc[ok], visits[ok]
    rgb = _rgb(colour)
    approx = approximate_mask(acc)
    has_approx = bool(approx.any())
    if has_approx:
        ids = np.flatnonzero(approx)
        _draw_approximate(canvas, base, lat[ids], lon[ids], acc[ids], visits[ids], dots, rgb)
        # Zero weight instead of a (slow) boolean selection: empty cells are skipped.
        visits = np.where(approx, 0, visits)
    if visits.size == 0 or not visits.any():
        return Clusters.empty(), has_approx
    x, y = base.project(lat, lon)
    clusters = cluster(x, y, visits, dots.merge_px, dots.radius)
    draw_dots(canvas, clusters.x, clusters.y, dots.radius(clusters.weight), dots, rgb, dark)
    return clusters, has_approx


def draw_dots(
    canvas: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: np.ndarray,
    dots: DotStyle,
    rgb: np.ndarray,
    dark: bool,
) -> None:
    """Dots in painter's order by size: big ones first, smaller ones on top (within one
    size the coverage is a union, so order does not matter there)."""
    shape = canvas.shape[:2]
    outline_rgb = _outline_colour(rgb, dark)
    pixels = canvas.size // 4
    sizes = np.unique(radius)[::-1]
    if dots.outline_px == 0:  # no outlines: one flat union of all dots, one paint
        ink = union(disc_ink(shape, x, y, radius, 0.0), pixels)
        paint(canvas, ink, rgb, dots.fill_alpha, outline_rgb)
        return
    for r in sizes:
        sel = radius == r
        ink = union(disc_ink(shape, x[sel], y[sel], float(r), dots.outline_px), pixels)
        paint(canvas, ink, rgb, dots.fill_alpha, outline_rgb)


# --------------------------------------------------------------------------- text


@cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font (Aileron) at ``size`` pixels: no system fonts needed."""
    return ImageFont.load_default(size=size)


def _text_width(text: str, size: int) -> float:
    return float(font(size).getlength(text))


def _encode(image: Image.Image, transparent: bool) -> bytes:
    """Thumbnail PNG bytes, quantised to a 256-colour palette first (FASTOCTREE, alpha
    kept for the transparent style): encoding gets 1.5-2.5x faster than 24/32-bit and
    the files 3x smaller, with no visible difference — these images have two hues plus
    anti-aliasing ramps. zlib level 1: level 3+ saves ~5% for 10-150% more time.
    Figures in bench/README.md. (Large maps use a fixed palette: world_palette.)"""
    if not transparent:
        image = image.convert("RGB")
    image = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    if transparent:
        # The octree averages alpha too (opaque land came out at 253): snap the ends
        # so opaque stays opaque and the ocean stays fully transparent.
        palette = np.array(image.getpalette("RGBA"), dtype=np.uint8).reshape(-1, 4)
        palette[palette[:, 3] >= 248, 3] = 255
        palette[palette[:, 3] <= 6, 3] = 0
        image.putpalette(palette.tobytes(), "RGBA")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


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


def _draw_count(canvas: np.ndarray, total: int, style: ThumbnailStyle) -> Image.Image:
    theme = THEMES[style.background]
    lay = count_layout(style, total)
    shape = canvas.shape[:2]
    if lay.pill is not None:
        x0, x1, cy, r = lay.pill
        panel = np.array(theme.panel[:3], dtype=np.float32)
        paint(canvas, capsule_ink(shape, x0, x1, cy, r), panel, theme.panel[3] / 255.0, panel)
    dot = disc_ink(shape, np.array([lay.dot_x]), np.array([lay.dot_y]), lay.dot_r, 0.0)
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
    canvas = base.pixels.copy()
    dots = thumbnail_dots(base.width)
    _draw_clusters(canvas, base, locations, dots, style.dot_color, style.background == "dark")
    if style.show_count:
        image = _draw_count(canvas, total, style)
    else:
        image = Image.fromarray(canvas, "RGBA")
    return _encode(image, transparent=style.background == "transparent")


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
    starts with "Updated"). PNG bytes."""
    image = _world_image(locations, scale, updated).convert("RGB")
    # Mapping onto a palette made once per scale is ~8x faster than building an
    # adaptive one per image (see world_palette).
    indexed = image.quantize(palette=world_palette(scale), dither=Image.Dither.NONE)
    buf = io.BytesIO()
    indexed.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


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


def warm_up() -> None:
    """Render and cache every base map with its tables (call at worker start)."""
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
        world_palette(scale)
    count_layout(ThumbnailStyle(), 0)
