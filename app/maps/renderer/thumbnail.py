"""The counter thumbnail: a small world map with visit dots and the visit count.

Every thumbnail of one style shares a kit made once per process (:class:`_ThumbnailKit`:
a fixed palette and the base map's indexed scanlines); a thumbnail indexes only the
pixels its dots touched and its count band. A style seen too rarely for a kit gets an
adaptive palette per image.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from app.maps.renderer.basemap import THEMES, BaseMap, BaseMapSpec, get_base_map
from app.maps.renderer.dots import draw_clusters
from app.maps.renderer.ink import Ink, capsule_ink, colour_rgb, disc_ink, paint
from app.maps.renderer.png_pieces import Palette, deflate, indexed_png, pixel_words
from app.maps.renderer.spec import (
    DEFAULT_DOT_COLOUR,
    THUMBNAIL_SIZES,
    LocationCounts,
    ThumbnailStyle,
    font,
    text_width,
    thumbnail_dots,
)


def thumbnail_band(size: str) -> int:
    """Height of the count band below the map, pixels."""
    return {"small": 15, "medium": 20, "large": 26}[size]


def thumbnail_base(style: ThumbnailStyle) -> BaseMap:
    width, height = THUMBNAIL_SIZES[style.size]
    band = thumbnail_band(style.size) if style.show_count else 0
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
    band = thumbnail_band(style.size)
    f = width / 160.0
    number, unit = count_text(total)
    number_size, unit_size = round(11 * f), round(9 * f)
    gap = round(3 * f)
    dot_r = 2.6 * f
    room = width - 10 * f
    while True:  # shrink (then drop the unit) until a huge count fits the width
        nw = text_width(number, number_size)
        uw = text_width(unit, unit_size) if unit else 0.0
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


def draw_count(canvas: np.ndarray, total: int, style: ThumbnailStyle) -> Image.Image:
    """The count band (panel, dot, number, unit) drawn over ``canvas``, which it changes."""
    theme = THEMES[style.background]
    lay = count_layout(style, total)
    shape = canvas.shape[:2]
    if lay.pill is not None:
        x0, x1, cy, r = lay.pill
        panel = np.array(theme.panel[:3], dtype=np.float32)
        paint(canvas, _capsule(shape, x0, x1, cy, r), panel, theme.panel[3] / 255.0, panel)
    dot = _count_dot(shape, lay.dot_x, lay.dot_y, lay.dot_r)
    rgb = colour_rgb(style.dot_color)
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
    kit = thumbnail_kit(style)
    canvas = base.pixels.copy()
    dots = thumbnail_dots(base.width)
    touched: list[np.ndarray] = []
    dark = style.background == "dark"
    draw_clusters(canvas, base, locations, dots, style.dot_color, dark, touched)
    width = base.width
    pixels = np.asarray(draw_count(canvas, total, style)) if style.show_count else canvas
    if kit is None:  # a style seen too rarely for a palette of its own: one per image
        transparent = style.background == "transparent"
        palette, indices = _adaptive_palette(Image.fromarray(pixels, "RGBA"), transparent)
        raw = np.zeros((base.height, width + 1), dtype=np.uint8)
        raw[:, 1:] = indices
        return indexed_png(width, base.height, Palette(palette), [deflate(raw)])
    raw = kit.raw.copy()
    if style.show_count:
        band = pixel_words(pixels[kit.band_top :])
        raw[kit.band_top :, 1:] = kit.palette.lookup(band).reshape(-1, width)
    if touched:
        idx = np.concatenate(touched)
        raw.reshape(-1)[idx + idx // width + 1] = kit.palette.lookup(pixel_words(pixels)[idx])
    return indexed_png(width, base.height, kit.palette, [deflate(raw)])


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
            draw_clusters(canvas, base, training, dots, style.dot_color, dark)
            if style.show_count:
                parts.append(np.asarray(draw_count(canvas, total, style)))
            else:
                parts.append(canvas)
        parts.append(base.pixels)
        image = Image.fromarray(np.concatenate(parts), "RGBA")
        self.palette = Palette(_adaptive_palette(image, transparent)[0])
        raw = np.zeros((base.height, base.width + 1), dtype=np.uint8)  # filter 0: none
        raw[:, 1:] = self.palette.lookup(pixel_words(base.pixels)).reshape(base.height, base.width)
        raw.setflags(write=False)
        self.raw = raw
        band = thumbnail_band(style.size) if style.show_count else 0
        self.band_top = base.height - band  # the count band's rows: indexed whole


THUMBNAIL_KITS_KEPT = 32
KIT_AFTER_USES = 3  # a style in another colour gets its kit at its third thumbnail
_thumbnail_kits: OrderedDict[ThumbnailStyle, _ThumbnailKit] = OrderedDict()
_style_uses: dict[ThumbnailStyle, int] = {}
_thumbnail_kits_lock = threading.Lock()


def thumbnail_kit(style: ThumbnailStyle, *, build: bool = False) -> _ThumbnailKit | None:
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
