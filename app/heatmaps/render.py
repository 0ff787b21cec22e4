"""Click heatmap renderer: click points → transparent RGBA PNG overlay (numpy + Pillow only).

Pipeline (every step vectorised; no Python loop over clicks or pixels):

1. **Accumulate** on a coarse grid, ``k × k`` output pixels per cell, where
   ``k = floor(sigma / 3)`` (so the blur is ~3 cells wide whatever the radius; 4 px for
   the default radius), with ``np.bincount`` on flat cell indices. A click moves to its
   cell's centre, at most ``k / 2`` px away, which the blur hides; spreading each click
   over four cells (bilinear splatting) was tried and cost 4–5× as much for no visible
   gain. Clicks are taken ``CHUNK`` at a time, so temporary memory does not grow with
   the number of clicks.
2. **Smooth** with a separable, normalised Gaussian (``sigma = radius / 2`` output px,
   truncated at 3 sigma), as two 1-D passes of shifted slices on the coarse grid. Cells
   that no kernel reaches stay exactly 0.0.
3. **Normalise** by log scaling: ``L = log1p(density / base)``, where ``base`` is one
   click's peak density (or the page's median density if higher: a page covered in
   clicks shows its background blue, not green), divided by the 99.5th percentile of
   ``L`` over the drawn area (at least ``log1p(HOT_FLOOR)``, so a handful of clicks is
   not instantly red; the percentile keeps one bot hammering one spot from dimming the
   rest). A cluster of 5 clicks beside one of 5,000 stays clearly visible, where
   divide-by-max would leave it at 0.1 %. Density below ``CUT`` of one click's peak is
   "no click": index 0.
4. **Upsample** the 8-bit intensity image to full size with Pillow's bilinear resize (C),
   with a box that keeps cell centres at their pixel positions.
5. **Colour** through the 256-entry RGBA table of :mod:`app.heatmaps.gradient`
   (blue → green → yellow → red; alpha rises with intensity; index 0 is (0, 0, 0, 0),
   so there is no alpha at all where nobody clicked).
6. **PNG**, written as an *indexed* RGBA image: colour type 3 with the gradient as a
   256-entry ``PLTE`` and a 256-entry ``tRNS`` (per-entry alpha). Every pixel already is
   one of the table's 256 RGBA colours, so this is lossless — browsers and image tools
   decode exactly the pixels :func:`heatmap_array` returns (Pillow opens it as mode
   ``"P"``; ``.convert("RGBA")`` gives the RGBA array). It is chosen for speed: a
   truecolour RGBA PNG is 4× the bytes to deflate and Pillow filters each of its rows
   adaptively, which alone took ~0.3 s for 1280×4000 on the 2-core machine; indexed is
   ~0.05 s and ~2.5× smaller. ``compress_level=1``: the overlay is mostly zeros and
   smooth ramps, which level 1 packs well; level 6 took 3× as long for a ~30 % smaller
   file.

Memory is bounded by **downsampling**, not tiling: when ``width × height`` exceeds
``spec.max_pixels`` the whole overlay is rendered at a uniform scale
``s = sqrt(max_pixels / (width × height))`` (aspect ratio kept; see
:attr:`HeatmapSpec.output_size` and :attr:`HeatmapSpec.scale`), and the PNG says so in
its text chunks: ``hitmap:scale``, ``hitmap:source-size`` (``WIDTHxHEIGHT`` asked for)
and ``hitmap:size`` (what the PNG holds). A heatmap is a blur tens of pixels wide, so a
reduced scale loses nothing visible once the page stretches the image back to the
document's size (``width: 100%`` in CSS). Peak memory of :func:`render_heatmap` is then
about ``max_pixels × 3 bytes`` (index images, PNG buffer) plus the coarse grid and one
chunk of clicks (~100 MB), whatever the number of clicks or the document's height;
:func:`heatmap_array` adds its RGBA result (4 bytes a pixel, twice while converting).

Inputs: ``x`` and ``y`` are click positions in output pixels of the *requested* size
(the caller scales page coordinates to the reference width); pixel ``j`` covers
``[j, j + 1)``. Points outside ``[0, width) × [0, height)`` — including NaN and ±inf —
are ignored. ``weights`` (optional) must be finite and non-negative, else
``ValueError``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.heatmaps.gradient import LUT

COMPRESS_LEVEL = 1
CHUNK = 1 << 21  # clicks per accumulation step; bounds the temporaries to ~70 MB
CELLS_PER_SIGMA = 3.0  # coarse-grid resolution: sigma spans this many cells
TRUNCATE = 3.0  # kernel half-width in sigmas
CUT = 0.02  # density below this fraction of one click's peak is "no click"
PERCENTILE = 99.5  # top of the log scale, robust to a single bot hammering one spot
BASE_PERCENTILE = 50.0  # unit of the log scale: one click's peak, or the page's median
# density if higher (a page covered in clicks: its background is blue, not green)
HOT_FLOOR = 8.0  # the log scale never tops out below ~8 clicks on one spot


@dataclass(frozen=True, slots=True)
class HeatmapSpec:
    """What to render. Sizes are output pixels at the bucket's reference width."""

    width: int  # output width in px (the bucket's reference width, e.g. 1280)
    height: int  # output height in px (document height scaled to that width)
    radius: float = 24.0  # visible radius of one click's blob; Gaussian sigma = radius / 2
    max_pixels: int = 1280 * 8000  # above this, render downsampled (see module docstring)

    def __post_init__(self) -> None:
        for name in ("width", "height", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"HeatmapSpec.{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"HeatmapSpec.radius must be a positive number, got {self.radius!r}")

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the rendered image: the requested size, or a uniform
        downscale of it to at most ``max_pixels`` pixels."""
        w, h = int(self.width), int(self.height)
        if w * h <= self.max_pixels:
            return w, h
        out_w = max(1, math.floor(w * math.sqrt(self.max_pixels / (w * h))))
        out_h = max(1, min(round(h * out_w / w), self.max_pixels // out_w))
        return out_w, out_h

    @property
    def scale(self) -> float:
        """Output px per requested px: 1.0 unless downsampled. Height is scaled by the
        same factor, rounded to whole pixels (only a 1-px-wide extreme may differ)."""
        return self.output_size[0] / self.width


def heatmap_array(
    x: np.ndarray,
    y: np.ndarray,
    spec: HeatmapSpec,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The overlay as an RGBA uint8 array of shape ``spec.output_size[::-1] + (4,)``."""
    image, _ = _palette_image(x, y, spec, weights)
    return np.array(image.convert("RGBA"))


def render_heatmap(
    x: np.ndarray,
    y: np.ndarray,
    spec: HeatmapSpec,
    weights: np.ndarray | None = None,
) -> bytes:
    """The overlay as an RGBA PNG of ``spec.output_size``, with its scale in text chunks."""
    image, clicks = _palette_image(x, y, spec, weights)
    out_w, out_h = image.size
    info = PngInfo()
    info.add_text("Software", "Hitmap")
    info.add_text("hitmap:source-size", f"{spec.width}x{spec.height}")
    info.add_text("hitmap:size", f"{out_w}x{out_h}")
    info.add_text("hitmap:scale", f"{out_w / spec.width:.6g}")
    info.add_text("hitmap:radius", f"{spec.radius:g}")
    info.add_text("hitmap:clicks", f"{clicks:.15g}")
    buf = io.BytesIO()
    # Mode "P" with an RGBA palette: Pillow writes PLTE + a 256-entry tRNS chunk.
    image.save(buf, format="PNG", compress_level=COMPRESS_LEVEL, pnginfo=info)
    return buf.getvalue()


# --- internals -----------------------------------------------------------------------------


def _palette_image(
    x: np.ndarray, y: np.ndarray, spec: HeatmapSpec, weights: np.ndarray | None
) -> tuple[Image.Image, float]:
    """The overlay as a "P" image with the RGBA gradient as its palette, and the total
    weight of the clicks drawn."""
    image, clicks = _intensity_index(x, y, spec, weights)
    image.putpalette(LUT.tobytes(), rawmode="RGBA")  # "L" → "P", same pixels
    return image, clicks


def _kernel(sigma: float) -> np.ndarray:
    r = max(1, math.ceil(TRUNCATE * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _intensity_index(
    x: np.ndarray, y: np.ndarray, spec: HeatmapSpec, weights: np.ndarray | None
) -> tuple[Image.Image, float]:
    """Intensity 0..255 as an "L" image of ``spec.output_size``; 0 = no clicks."""
    out_w, out_h = spec.output_size
    sigma = spec.radius / 2.0 * (out_w / spec.width)  # in output px
    k = max(1, int(sigma / CELLS_PER_SIGMA))
    kernel = _kernel(sigma / k)
    r = len(kernel) // 2
    cw, ch = -(-out_w // k), -(-out_h // k)  # coarse grid: ceil(out / k)

    grid, clicks = _accumulate(x, y, weights, spec, out_w, out_h, k, pad=r)
    density = _blur(grid, kernel, r, ch, cw)

    one_click = float(kernel[r]) ** 2  # peak density of one centred click of weight 1
    drawn = density > CUT * one_click
    index = np.zeros((ch, cw), dtype=np.uint8)
    if drawn.any():
        d = density[drawn]
        high = float(np.percentile(d, PERCENTILE))
        base = max(one_click, float(np.percentile(density, BASE_PERCENTILE)))
        top = max(math.log1p(float(high) / base), math.log1p(HOT_FLOOR))
        level = np.log1p(d / base)
        level *= 255.0 / top
        np.minimum(level, 255.0, out=level)
        index[drawn] = np.rint(level).astype(np.uint8)

    image = Image.fromarray(index)
    if (cw, ch) != (out_w, out_h):
        box = (0.0, 0.0, out_w / k, out_h / k)
        image = image.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box)
    return image, clicks


def _column(values: np.ndarray | None, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _accumulate(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    spec: HeatmapSpec,
    out_w: int,
    out_h: int,
    k: int,
    pad: int,
) -> tuple[np.ndarray, float]:
    """Click counts (or summed weights) per coarse cell, padded by ``pad`` cells each side.

    A click at output pixel ``(px, py)`` lands in cell ``(py // k, px // k)``, whose centre
    is at most ``k / 2`` px away; with ``k ≈ sigma / 3`` that shift is invisible under the
    blur. Returns the (ch + 2 pad, cw + 2 pad) float32 grid and the total weight drawn.
    """
    xs_all, ys_all = _column(x, "x"), _column(y, "y")
    ws_all = _column(weights, "weights")
    assert xs_all is not None and ys_all is not None
    n = xs_all.shape[0]
    if ys_all.shape[0] != n or (ws_all is not None and ws_all.shape[0] != n):
        raise ValueError("x, y (and weights) must have the same length")

    cw, ch = -(-out_w // k), -(-out_h // k)
    wp, hp = cw + 2 * pad, ch + 2 * pad
    size = wp * hp
    grid = np.zeros(size, dtype=np.float64)
    sx = out_w / spec.width / k
    sy = out_h / spec.height / k
    total = 0.0

    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        xs, ys = _floats(xs_all[start:stop]), _floats(ys_all[start:stop])
        ws = None
        if ws_all is not None:
            ws = _floats(ws_all[start:stop])
            if not np.isfinite(ws).all() or (ws < 0).any():
                raise ValueError("weights must be finite and non-negative")
        # NaN compares false, so non-finite points drop out here with the out-of-range ones.
        keep = (xs >= 0) & (xs < spec.width) & (ys >= 0) & (ys < spec.height)
        if not keep.all():
            xs, ys = xs[keep], ys[keep]
            ws = ws[keep] if ws is not None else None
        if xs.size == 0:
            continue
        total += float(ws.sum()) if ws is not None else float(xs.size)

        # Truncation is floor here: every kept coordinate is >= 0. A value that rounds up
        # to the far edge lands in the padding, never outside the grid.
        idx = (ys * sy).astype(np.intp)
        idx += pad
        idx *= wp
        idx += (xs * sx).astype(np.intp)
        idx += pad
        grid += np.bincount(idx, ws, minlength=size)

    return grid.reshape(hp, wp).astype(np.float32), total


def _floats(values: np.ndarray) -> np.ndarray:
    return values if values.dtype.kind == "f" else values.astype(np.float64)


def _blur(grid: np.ndarray, kernel: np.ndarray, pad: int, ch: int, cw: int) -> np.ndarray:
    """Separable convolution of the padded grid; returns the unpadded (ch, cw) result.

    Plain weighted sums of shifted slices: exact zeros stay exact zeros (no cumulative-sum
    round-off), so "no clicks within 3 sigma" means alpha exactly 0. Near the page's edges
    part of the kernel falls outside the page, where nobody can click; the result is
    divided by the kernel's weight inside the page (normalised convolution), so clicks
    along an edge are not drawn fainter than the same clicks further in.
    """
    taps = len(kernel)
    assert pad == taps // 2
    rows = np.zeros((grid.shape[0], cw), dtype=np.float32)
    tmp = np.empty_like(rows)
    for m in range(taps):
        np.multiply(grid[:, m : m + cw], kernel[m], out=tmp)
        rows += tmp
    out = np.zeros((ch, cw), dtype=np.float32)
    tmp = np.empty_like(out)
    for m in range(taps):
        np.multiply(rows[m : m + ch], kernel[m], out=tmp)
        out += tmp
    out /= _inside_weight(kernel, ch)[:, None]
    out /= _inside_weight(kernel, cw)[None, :]
    return out


def _inside_weight(kernel: np.ndarray, n: int) -> np.ndarray:
    """For each of n cells, the sum of the kernel taps that land on cells 0..n-1."""
    r = len(kernel) // 2
    inside = np.zeros(n + 2 * r, dtype=np.float32)
    inside[r : r + n] = 1.0
    return np.convolve(inside, kernel, mode="valid").astype(np.float32)
