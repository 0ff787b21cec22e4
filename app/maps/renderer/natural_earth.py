"""The world's outlines: Natural Earth read from the vendored files, projected to
Robinson once per process, and drawn with matplotlib + cartopy.

Everything here that touches matplotlib, cartopy or shapely imports it inside the
function, so importing the renderer stays cheap; only the first base map pays for them.
Which layers to draw, in which colours, and where the map sits in the image are the
base map's choice (``basemap``); this module only draws what it is given.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyproj import Transformer
    from shapely.geometry.base import BaseGeometry

DATA_DIR = Path(__file__).parent / "naturalearth"
"""Folder holding ``shapefiles/natural_earth/{physical,cultural}/`` (cartopy's layout)."""
CARTOPY_CACHE_DIR = Path(tempfile.gettempdir()) / "hitmap-cartopy"
"""cartopy's writable ``data_dir``: never site-packages. Nothing is downloaded into it."""

ROBINSON_PROJ4 = "+proj=robin +lon_0=0 +a=6378137 +no_defs"
"""The same CRS as ``cartopy.crs.Robinson()``."""

Layer = tuple[str, dict[str, object]]
"""A feature of :data:`_FEATURES` by name and its matplotlib style, drawn in order."""


@cache
def robinson() -> Transformer:
    """lon/lat (degrees, WGS84) → Robinson metres, vectorised."""
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", ROBINSON_PROJ4, always_xy=True)


def configure_cartopy() -> None:
    """Point cartopy at the vendored Natural Earth files; keep its writable dir out of
    site-packages. Idempotent; called before every base map render."""
    import cartopy

    cartopy.config["pre_existing_data_dir"] = str(DATA_DIR)
    cartopy.config["data_dir"] = str(CARTOPY_CACHE_DIR)


_FEATURES = {  # name → (Natural Earth category, Natural Earth name)
    "ocean": ("physical", "ocean"),
    "land": ("physical", "land"),
    "lakes": ("physical", "lakes"),
    "borders": ("cultural", "admin_0_boundary_lines_land"),
    "coastline": ("physical", "coastline"),
}


@cache
def projected_features(scale: str) -> dict[str, tuple[BaseGeometry, ...]]:
    """The Natural Earth geometries at ``scale``, projected to Robinson once per process.

    cartopy reads the vendored shapefiles (``NaturalEarthFeature`` → ``natural_earth()``,
    which would call the downloader only for a missing file). Projection is one
    vectorised pyproj call per feature instead of cartopy's per-geometry projection
    (15-30 s for 50m). This is exact here because Natural Earth splits every geometry at
    the antimeridian; long edges (the ocean's ±180° sides) are first segmentized to 1°
    so they follow Robinson's curved outline.
    """
    if scale not in ("110m", "50m"):
        raise ValueError(f"only the vendored 110m and 50m scales exist, not {scale!r}")
    configure_cartopy()
    import cartopy.feature as cfeature
    import shapely

    rob = robinson()

    def to_robinson(coords: np.ndarray) -> np.ndarray:
        # Natural Earth has vertices a hair past ±180° (180.00000044): PROJ would wrap
        # them to the opposite edge and draw a line across the map.
        lon = np.clip(coords[:, 0], -180.0, 180.0)
        lat = np.clip(coords[:, 1], -90.0, 90.0)
        x, y = rob.transform(lon, lat)
        return np.column_stack([x, y])

    out: dict[str, tuple[BaseGeometry, ...]] = {}
    for name, (category, ne_name) in _FEATURES.items():
        geoms = np.array(
            list(cfeature.NaturalEarthFeature(category, ne_name, scale).geometries()),
            dtype=object,
        )
        projected = shapely.transform(shapely.segmentize(geoms, 1.0), to_robinson)
        out[name] = tuple(projected.tolist())
    return out


def draw_outlines(
    size: tuple[int, int],
    frame: tuple[int, int, int, int],
    box: tuple[int, int, int, int],
    view: tuple[float, float, float, float],
    scale: str,
    layers: Sequence[Layer],
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Draw ``layers`` of the Natural Earth features at ``scale`` into an image of
    ``size`` (width, height) pixels on the ``frame`` colour, the Robinson ``view`` filling
    the pixel ``box``. Returns the RGBA pixels (height, width, 4) and matplotlib's
    Robinson → display transform, for the caller to check its own affine against."""
    configure_cartopy()
    import cartopy.crs as ccrs
    import cartopy.feature as cfeature
    from cartopy.mpl.geoaxes import GeoAxes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = size
    left, top, right, bottom = box
    dpi = 100.0
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    r, g, b, a = (c / 255 for c in frame)
    fig.patch.set_facecolor((r, g, b, a))
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes(
        (left / width, 1 - bottom / height, (right - left) / width, (bottom - top) / height),
        projection=ccrs.Robinson(),
    )
    assert isinstance(ax, GeoAxes)
    ax.set_aspect("auto")  # the view already has the box's ratio; never shrink the box
    ax.set_xlim(view[0], view[1])
    ax.set_ylim(view[2], view[3])
    ax.patch.set_visible(False)
    ax.spines["geo"].set_visible(False)

    features = projected_features(scale)
    rob = ccrs.Robinson()
    for zorder, (name, style) in enumerate(layers):
        feature = cfeature.ShapelyFeature(features[name], rob)
        ax.add_feature(feature, zorder=zorder, **style)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()), ax.transData.transform
