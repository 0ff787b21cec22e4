"""Render visitor maps: the counter thumbnail and the large world map, as PNG bytes.

Pure functions: no database, no HTTP. The caller passes what the database query
returns, one row per distinct (lat, lon, accuracy) with its visit count
(:class:`LocationCounts`). Each render:

1. takes the cached base map for its look and size (``app.maps.renderer.basemap``: matplotlib +
   cartopy drew it once per process, together with its Robinson → pixel affine);
2. splits off approximate locations (country centroids, accuracy ≥ 500 km), projects
   the rest and sums them into cells of the clustering grid in one pass
   (``BaseMap.bin``: a per-latitude Robinson table with the affine and the cell size
   folded in), then clusters the cells in pixel space (``app.maps.renderer.clustering``);
3. draws anti-aliased dots on a copy of the base pixels (``app.maps.renderer.dots``): the
   coverage of every disc and outline is computed analytically per pixel in numpy, for
   all dots of a size class in one broadcast (no supersampling, no per-dot drawing
   call), and composited ("over") only where there is ink (``app.maps.renderer.ink``) — big
   dots first, smaller ones on top;
4. adds the count band or the legend (shapes the same way, text with Pillow's bundled
   font; the large map's legend band is drawn once per look and process);
5. writes an 8-bit palette PNG itself (``app.maps.renderer.png_pieces``): a fixed palette per
   style or scale (made once from a training render), the base map's indices and
   compressed scanlines made once, and per image only the pixels the dots touched
   re-indexed and, on the large map, only the 32-row strips holding them
   re-compressed (the kits in ``app.maps.renderer.world`` and ``app.maps.renderer.thumbnail``).

Dot sizes are discrete classes on a log scale — 1–9, 10–99, 100–999, 1,000–9,999,
10,000–99,999, 100,000+ visits — so the legend shows exactly the radii drawn (the
same code draws both; ``app.maps.renderer.spec``).

This module is the renderer's public face; callers import from here.
"""

from __future__ import annotations

import numpy as np

from app.maps.renderer.spec import (
    BACKGROUNDS,
    THUMBNAIL_SIZES,
    WORLD_SCALES,
    LocationCounts,
    ThumbnailStyle,
    thumbnail_dots,
)
from app.maps.renderer.thumbnail import (
    count_layout,
    render_thumbnail,
    thumbnail_base,
    thumbnail_kit,
)
from app.maps.renderer.world import render_world_map, world_base, world_kit

__all__ = [
    "BACKGROUNDS",
    "THUMBNAIL_SIZES",
    "LocationCounts",
    "ThumbnailStyle",
    "render_thumbnail",
    "render_world_map",
    "thumbnail_base",
    "thumbnail_dots",
    "warm_up",
    "world_base",
]


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
        world_kit(scale).band(3, False, None)
    render_world_map(LocationCounts.empty())  # compresses the 1x base strips (~0.2 s)
    thumbnail_kit(ThumbnailStyle())
    count_layout(ThumbnailStyle(), 0)
