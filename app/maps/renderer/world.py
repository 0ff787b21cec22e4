"""The large public map: 1200×600 (or 2400×1200) with dots and a legend of dot sizes.

What every map at one scale shares is made once per process (:class:`_WorldKit`): the
fixed palette, the base map as indexed scanlines compressed in strips of
:data:`PNG_STRIP_ROWS` rows, and the legend bands. A map draws its dots on a scratch
copy, re-indexes the pixels they touched and re-compresses only the strips holding
them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from app.maps.renderer.basemap import THEMES, BaseMap, BaseMapSpec, Theme, get_base_map
from app.maps.renderer.dots import draw_clusters, draw_dots
from app.maps.renderer.ink import colour_rgb, ellipse_ink, paint
from app.maps.renderer.png_pieces import (
    Palette,
    Piece,
    deflate,
    deflate_small,
    indexed_png,
    pixel_words,
)
from app.maps.renderer.spec import (
    APPROX_LEGEND_FILL,
    APPROX_RING_ALPHA,
    APPROX_SAMPLE,
    LEGEND_FONT,
    WORLD_DOT_COLOUR,
    WORLD_SCALES,
    WORLD_SIZE,
    LocationCounts,
    class_label,
    font,
    size_class,
    text_width,
    world_dots,
)

PNG_STRIP_ROWS = 32  # rows per independently compressed piece of a large map
LEGEND_BANDS_KEPT = 16  # legend bands (size classes × approximate × text) kept per scale
SCRATCH_KEPT = 2  # free scratch copies kept per scale (one per job a worker runs at once)


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
    x = 24.0 * scale + text_width("Visits", size) + 16 * scale
    entries: list[LegendEntry] = []
    last = max(3, max_class)
    for k in range(last + 1):
        r = dots.radii[k]
        label = class_label(k, last=k == last)
        entries.append(LegendEntry(label, r, x + r, mid))
        x += 2 * r + 6 * scale + text_width(label, size) + 16 * scale
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
    rgb = colour_rgb(WORLD_DOT_COLOUR)
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
    kit = world_kit(scale)
    scratch = kit.take_scratch()  # the base map's pixels and scanlines, to draw on
    canvas, raw = scratch.canvas, scratch.raw
    touched: list[np.ndarray] = []
    clusters, has_approx = draw_clusters(
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
        raw[band.top :, 1:] = kit.lookup(pixel_words(pixels[band.top :])).reshape(-1, width)
        dirty[band.top // PNG_STRIP_ROWS :] = True
        scratch.spoilt = True
    if idx.size:
        raw.reshape(-1)[at] = kit.lookup(pixel_words(pixels)[idx])
    pieces = []
    for s in range(kit.strips):
        rows = slice(s * PNG_STRIP_ROWS, (s + 1) * PNG_STRIP_ROWS)
        if dirty[s]:
            pieces.append(deflate(raw[rows]))
        elif rows.stop <= band.top:
            pieces.append(kit.base_piece(s))
        else:
            pieces.append(band.piece(s))
    png = indexed_png(width, base.height, kit.palette, pieces)
    kit.give_back(scratch, idx, at)
    return png


def world_image(locations: LocationCounts, scale: int, updated: str | None) -> Image.Image:
    """The large map drawn whole on a fresh copy, without the kit's shortcuts: the
    palette's training render, and what tests and the bench hold the PNG against."""
    base = world_base(scale)
    canvas = base.pixels.copy()
    clusters, has_approx = draw_clusters(
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
        image = world_image(training, scale, "Updated 0123456789 UTC, - : / .")
        found = image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        _world_palettes[scale] = found
    return found


# ------------------------------------------------- what every map at one scale shares


@dataclass(frozen=True, slots=True)
class _Band:
    """The legend strip of one legend look, indexed and compressed once."""

    top: int  # first row the legend changes
    rows: np.ndarray  # PNG scanlines (filter byte + indices) from ``top`` down
    kit: _WorldKit
    key: tuple[int, bool, str | None]
    pieces: dict[int, Piece]

    def piece(self, strip: int) -> Piece:
        found = self.pieces.get(strip)
        if found is None:
            raw = self.kit.base_raw[strip * PNG_STRIP_ROWS : (strip + 1) * PNG_STRIP_ROWS].copy()
            start = strip * PNG_STRIP_ROWS
            lo = max(self.top - start, 0)
            raw[lo:] = self.rows[start + lo - self.top : start + raw.shape[0] - self.top]
            found = self.pieces[strip] = deflate_small(raw)
        return found


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
        self.palette = Palette(np.column_stack([colours, np.full(len(colours), 255, np.uint8)]))
        # Nearest palette entry per 7-bit RGB cell, filled on first sight (-1: not yet).
        self._table = np.full(1 << 21, -1, dtype=np.int16)
        raw = np.zeros((self.height, self.width + 1), dtype=np.uint8)  # filter 0: none
        raw[:, 1:] = self.lookup(pixel_words(base.pixels)).reshape(self.height, self.width)
        raw.setflags(write=False)
        self.base_raw = raw
        self._base_pieces: dict[int, Piece] = {}
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
            pixel_words(scratch.canvas)[idx] = pixel_words(world_base(self.scale).pixels)[idx]
            scratch.raw.reshape(-1)[at] = self.base_raw.reshape(-1)[at]
        with self._lock:
            if len(self._free) < SCRATCH_KEPT:
                self._free.append(scratch)

    def lookup(self, words: np.ndarray) -> np.ndarray:
        """Palette indices (uint8) of RGBA pixels given as :func:`pixel_words` (alpha ignored)."""
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

    def base_piece(self, strip: int) -> Piece:
        found = self._base_pieces.get(strip)
        if found is None:
            rows = self.base_raw[strip * PNG_STRIP_ROWS : (strip + 1) * PNG_STRIP_ROWS]
            found = self._base_pieces[strip] = deflate_small(rows)
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
        rows[:, 1:] = self.lookup(pixel_words(pixels[top:])).reshape(-1, self.width)
        found = _Band(top, rows, self, key, {})
        with self._lock:
            self._bands[key] = found
            while len(self._bands) > LEGEND_BANDS_KEPT:
                self._bands.popitem(last=False)
        return found


_world_kits: dict[int, _WorldKit] = {}
_kit_lock = threading.Lock()


def world_kit(scale: int) -> _WorldKit:
    """The scale's kit: one per process, made on first use."""
    found = _world_kits.get(scale)
    if found is None:
        with _kit_lock:
            found = _world_kits.get(scale)
            if found is None:
                found = _world_kits[scale] = _WorldKit(scale)
    return found
