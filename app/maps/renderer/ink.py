"""Anti-aliased shapes as sparse per-pixel coverage, and compositing them onto RGBA.

A shape is an :class:`Ink`: the flat indices of the pixels it covers with the fill and
outline coverage of each, computed analytically in numpy (no supersampling, no
per-shape drawing call). :func:`paint` composites it "over" a canvas in place,
touching only those pixels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


def colour_rgb(colour: str) -> np.ndarray:
    """``#rrggbb`` as float32 red, green and blue (0..255), the form :func:`paint` mixes."""
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


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
