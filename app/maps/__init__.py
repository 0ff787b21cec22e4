"""Map rendering: counter thumbnails and large world maps as PNG bytes (pure functions).

See ``render.py`` for the pipeline, ``basemap.py`` for the cached base maps and
``clustering.py`` for how visits become dots. matplotlib and cartopy are imported only
when a base map is first drawn, so importing this package is cheap.
"""

from app.maps.render import (
    BACKGROUNDS,
    THUMBNAIL_SIZES,
    LocationCounts,
    ThumbnailStyle,
    render_thumbnail,
    render_world_map,
    warm_up,
)

__all__ = [
    "BACKGROUNDS",
    "THUMBNAIL_SIZES",
    "LocationCounts",
    "ThumbnailStyle",
    "render_thumbnail",
    "render_world_map",
    "warm_up",
]
