"""Base maps: the world drawn once per look and size, with its lat/lon → pixel transform.

matplotlib + cartopy are slow (50m outlines cost ~3 s to project) but only draw what
never changes: ocean, land, lakes, country borders and coastlines from the Natural
Earth files vendored in ``app/maps/renderer/naturalearth/`` (110m for thumbnails, 50m
for the large map; every feature has an explicit scale, so cartopy never picks 10m and
never downloads; ``natural_earth`` reads, projects and draws them). Each
:class:`BaseMap` is rendered once per process and cached in memory with the affine that
maps Robinson coordinates to pixels; the per-site dots are drawn later on a copy
(``app.maps.renderer.render``) and points are projected with one vectorised pyproj call
— the world is never re-projected per site.

View: Robinson (``+proj=robin +a=6378137``, cartopy's ``Robinson()``), full longitude
range, latitudes from :data:`SOUTH_LAT` (-60°, Antarctica is cut off) to the North Pole.
The map sits centred in the image above an optional ``band`` of pixels at the bottom
(the thumbnail's count band, the large map's legend), on the theme's frame colour.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
from PIL import Image

from app.maps.renderer.clustering import Cells, bin_points, cell_sums
from app.maps.renderer.natural_earth import Layer, draw_outlines, robinson

SOUTH_LAT = -60.0
NORTH_LAT = 90.0
ROBINSON_HALF_WIDTH = 17005833.33052523  # x of lon ±180 at the equator, metres

Kind = Literal["thumbnail", "world"]
SCALE_FOR_KIND: dict[str, str] = {"thumbnail": "110m", "world": "50m"}


@dataclass(frozen=True, slots=True)
class Theme:
    """Colours of one background style. ``None`` means fully transparent."""

    frame: tuple[int, int, int, int]  # outside the globe and the band/legend strip
    ocean: str | None
    land: str
    lake: str | None
    coast: str
    border: str
    text: tuple[int, int, int, int]
    muted: tuple[int, int, int, int]
    panel: tuple[int, int, int, int]  # behind text drawn over the map (transparent style)


THEMES: dict[str, Theme] = {
    "light": Theme(
        frame=(255, 255, 255, 255),
        ocean="#d5e3ef",
        land="#f4f2ec",
        lake="#d5e3ef",
        coast="#8fa6bb",
        border="#bcc6cf",
        text=(30, 41, 59, 255),
        muted=(100, 116, 139, 255),
        panel=(255, 255, 255, 255),
    ),
    "dark": Theme(
        frame=(15, 23, 42, 255),
        ocean="#1c2b45",
        land="#3a4a63",
        lake="#1c2b45",
        coast="#56698a",
        border="#4d5d78",
        text=(241, 245, 249, 255),
        muted=(148, 163, 184, 255),
        panel=(15, 23, 42, 255),
    ),
    "transparent": Theme(
        frame=(0, 0, 0, 0),
        ocean=None,
        land="#cbd2db",
        lake="#b4bfcc",
        coast="#8794a6",
        border="#a3aebd",
        text=(255, 255, 255, 255),
        muted=(226, 232, 240, 255),
        panel=(30, 41, 59, 215),
    ),
}


@dataclass(frozen=True, slots=True)
class BaseMapSpec:
    """What identifies a base map: one is rendered per distinct spec and process."""

    kind: Kind
    width: int  # final image size in pixels (scale included)
    height: int
    background: str = "light"
    band: int = 0  # pixels reserved at the bottom, scale included
    margin: int = 2  # minimum frame around the map, pixels

    @property
    def ne_scale(self) -> str:
        return SCALE_FOR_KIND[self.kind]


@dataclass(frozen=True, slots=True)
class BaseMap:
    """A rendered base map and the affine from Robinson metres to pixel coordinates.

    Pixel coordinates are continuous: (0, 0) is the top-left corner of the top-left
    pixel, so the centre of pixel (i, j) is (i + 0.5, j + 0.5).
    """

    spec: BaseMapSpec
    image: Image.Image  # RGBA; treat as read-only, copy before drawing
    box: tuple[int, int, int, int]  # map area (left, top, right, bottom) in pixels
    view: tuple[float, float, float, float]  # Robinson (x0, x1, y0, y1) shown in ``box``

    @property
    def pixels(self) -> np.ndarray:
        """The image as a read-only (height, width, 4) uint8 array (cached)."""
        found = _pixels_cache.get(self.spec)
        if found is None:
            found = np.array(self.image)
            found.setflags(write=False)
            _pixels_cache[self.spec] = found
        return found

    @property
    def width(self) -> int:
        return self.spec.width

    @property
    def height(self) -> int:
        return self.spec.height

    @property
    def pixels_per_metre(self) -> float:
        left, _, right, _ = self.box
        x0, x1, _, _ = self.view
        return (right - left) / (x1 - x0)

    def xy_to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Robinson metres → pixel coordinates (vectorised affine)."""
        left, top, _, _ = self.box
        x0, _, _, y1 = self.view
        k = self.pixels_per_metre
        return left + (x - x0) * k, top + (y1 - y) * k

    def project(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Degrees → pixel coordinates, vectorised.

        Robinson's x is linear in longitude for a given latitude and its y depends on
        the latitude only, so both come from a per-latitude table (computed once with
        pyproj at 0.01° steps, the precision of the stored locations; elsewhere the
        error is below 0.005° ≈ 0.6 km, far under a pixel) and the affine is folded in:
        ``px = x_origin + x_per_degree[lat] * lon``, ``py = y_table[lat]``. This is
        ~20x faster than calling pyproj per render.

        Longitudes are wrapped to [-180, 180); latitudes south of the view are clamped
        to its bottom edge (a visit in Antarctica shows at the bottom of the map rather
        than nowhere).
        """
        x_origin, x_per_degree, y_table = _tables(self)
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if lat.size == 0:
            return np.empty(0), np.empty(0)
        if lon.min() < -180.0 or lon.max() >= 180.0:
            lon = np.mod(lon + 180.0, 360.0) - 180.0
        if lat.min() < -90.0 or lat.max() > 90.0:
            lat = np.clip(lat, -90.0, 90.0)
        # Table row of the nearest 0.01° (the table covers -90..90; rows south of the
        # view repeat its bottom edge). Values are >= 0: truncation after +0.5 rounds.
        k = (lat * LUT_PER_DEGREE + (90.0 * LUT_PER_DEGREE + 0.5)).astype(np.intp)
        px = x_per_degree[k]
        px *= lon
        px += x_origin
        return px, y_table[k]

    def bin(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        weight: np.ndarray,
        cell: float,
        *,
        in_range: bool = False,
    ) -> Cells:
        """:meth:`project` and ``clustering.bin_points`` in one pass, for many points.

        The cells are the same (side ``cell`` pixels, at multiples of ``cell``), on a
        fixed grid over the whole image: the projection table is scaled to cells and
        each latitude's row of cells is looked up, so a point costs a handful of
        operations and three ``bincount`` steps. ``weight``: float64, finite, >= 0
        (0 leaves a point out); coordinates finite. Few points (a grid mostly empty)
        go the general way, whose grid covers only the points. ``in_range``: the
        caller checked that latitudes are within ±90 and longitudes in [-180, 180).
        """
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        w = np.asarray(weight, dtype=np.float64)
        x_origin, x_per_degree, y_table, row_key, nx, cells = _cell_tables(self, cell)
        if lat.size * 4 < cells or not (
            in_range
            or (
                -90.0 <= lat.min() <= lat.max() <= 90.0 and -180.0 <= lon.min() <= lon.max() < 180.0
            )
        ):
            x, y = self.project(lat, lon)  # wraps longitudes, clamps latitudes
            return bin_points(x, y, w, cell)
        k = lat * LUT_PER_DEGREE
        k += 90.0 * LUT_PER_DEGREE + 0.5  # as in project: the nearest table row
        k = k.astype(np.intp)
        fx = x_per_degree[k]  # x in cells
        fx *= lon
        fx += x_origin
        key = row_key[k]
        key += fx.astype(np.intp)  # x >= 0 in the image: truncation is floor
        fx *= w
        fy = y_table[k]
        fy *= w
        return cell_sums(key, cells, nx, w, fx, fy, unit=cell)

    def project_exact(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`project`, with a pyproj call (reference for tests)."""
        lon = np.mod(np.asarray(lon, dtype=np.float64) + 180.0, 360.0) - 180.0
        lat = np.clip(np.asarray(lat, dtype=np.float64), SOUTH_LAT, NORTH_LAT)
        x, y = robinson().transform(lon, lat)
        return self.xy_to_pixels(np.asarray(x), np.asarray(y))


LUT_PER_DEGREE = 100  # table steps per degree of latitude


@cache
def _lat_table() -> tuple[np.ndarray, np.ndarray]:
    """Robinson x per degree of longitude and y, in metres, per 0.01° of latitude from
    -90 to 90; latitudes south of the view take the values of its bottom edge."""
    lat = np.linspace(-90.0, 90.0, 180 * LUT_PER_DEGREE + 1)
    x, y = robinson().transform(np.ones_like(lat), np.maximum(lat, SOUTH_LAT))
    return np.asarray(x), np.asarray(y)


_tables_cache: dict[BaseMapSpec, tuple[float, np.ndarray, np.ndarray]] = {}
_pixels_cache: dict[BaseMapSpec, np.ndarray] = {}


_cell_tables_cache: dict[
    tuple[BaseMapSpec, float], tuple[float, np.ndarray, np.ndarray, np.ndarray, int, int]
] = {}


def _cell_tables(
    base: BaseMap, cell: float
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """:func:`_tables` in cells of ``cell`` pixels, with each table row's first cell key
    (``floor(y) * nx``), the grid's width ``nx`` and its number of cells."""
    found = _cell_tables_cache.get((base.spec, cell))
    if found is None:
        x_origin, x_per_degree, y_table = _tables(base)
        nx = int(base.width / cell) + 2
        ny = int(base.height / cell) + 2
        y_cells = y_table / cell
        row_key = np.floor(y_cells).astype(np.intp) * nx
        found = (x_origin / cell, x_per_degree / cell, y_cells, row_key, nx, nx * ny)
        _cell_tables_cache[(base.spec, cell)] = found
    return found


def _tables(base: BaseMap) -> tuple[float, np.ndarray, np.ndarray]:
    found = _tables_cache.get(base.spec)
    if found is None or found[1].size == 0:
        x_metres, y_metres = _lat_table()
        left, top, _, _ = base.box
        x0, _, _, y1 = base.view
        k = base.pixels_per_metre
        found = (left - x0 * k, x_metres * k, top + (y1 - y_metres) * k)
        _tables_cache[base.spec] = found
    return found


_lock = threading.Lock()
_cache: dict[BaseMapSpec, BaseMap] = {}


def get_base_map(spec: BaseMapSpec) -> BaseMap:
    """The cached base map for ``spec``, rendered on first use (thread-safe)."""
    found = _cache.get(spec)
    if found is not None:
        return found
    with _lock:  # matplotlib is not thread-safe; render each spec once
        found = _cache.get(spec)
        if found is None:
            found = _render(spec)
            _cache[spec] = found
        return found


def _layout(
    spec: BaseMapSpec,
) -> tuple[tuple[int, int, int, int], tuple[float, float, float, float]]:
    """The pixel box of the map and the Robinson view it shows, with equal x/y scale."""
    rob = robinson()
    _, y_top = rob.transform(0.0, NORTH_LAT)
    _, y_bottom = rob.transform(0.0, SOUTH_LAT)
    avail_w = spec.width - 2 * spec.margin
    avail_h = spec.height - spec.band - 2 * spec.margin
    if avail_w < 8 or avail_h < 4:
        raise ValueError(f"image {spec.width}x{spec.height} is too small for a map")
    full_w, full_h = 2 * ROBINSON_HALF_WIDTH, y_top - y_bottom
    k = min(avail_w / full_w, avail_h / full_h)  # pixels per metre
    box_w, box_h = round(full_w * k), round(full_h * k)
    left = (spec.width - box_w) // 2
    top = spec.margin + (avail_h - box_h) // 2
    # Exact metres per pixel from the integer box: the height decides, x follows.
    mpp = full_h / box_h
    half_x = box_w * mpp / 2
    view = (-half_x, half_x, float(y_bottom), float(y_top))
    return (left, top, left + box_w, top + box_h), view


def _render(spec: BaseMapSpec) -> BaseMap:
    theme = THEMES[spec.background]
    box, view = _layout(spec)
    rgba, to_display = draw_outlines(
        (spec.width, spec.height), theme.frame, box, view, spec.ne_scale, _layers(spec, theme)
    )
    if rgba.shape[:2] != (spec.height, spec.width):
        raise RuntimeError(f"matplotlib drew {rgba.shape[1]}x{rgba.shape[0]}, not {spec}")
    image = Image.fromarray(np.array(rgba, dtype=np.uint8), "RGBA")
    base = BaseMap(spec=spec, image=image, box=box, view=view)
    # Self-check: our affine must be the one matplotlib drew with, or dots drift.
    probe = np.array([[view[0], view[2]], [view[1], view[3]], [0.0, 0.0]])
    display = to_display(probe)
    ours_x, ours_y = base.xy_to_pixels(probe[:, 0], probe[:, 1])
    err = max(
        np.abs(display[:, 0] - ours_x).max(), np.abs(spec.height - display[:, 1] - ours_y).max()
    )
    if err > 0.01:
        raise RuntimeError(f"base map affine is {err:.3f} px off matplotlib's for {spec}")
    return base


def _layers(spec: BaseMapSpec, theme: Theme) -> list[Layer]:
    """What the base map shows, bottom to top, in the theme's colours; line widths grow
    with the image (the large map at 2x draws them twice as wide)."""
    px = 72.0 / 100.0  # one pixel in points at the figure's 100 dpi
    ppi = spec.width / (1200.0 if spec.kind == "world" else 320.0)  # line width factor
    coast_w = (0.55 if spec.kind == "world" else 0.45) * max(ppi, 1.0)
    border_w = (0.45 if spec.kind == "world" else 0.35) * max(ppi, 1.0)
    layers: list[Layer] = []
    if theme.ocean is not None:
        layers.append(("ocean", {"facecolor": theme.ocean, "edgecolor": "none"}))
    layers.append(("land", {"facecolor": theme.land, "edgecolor": "none"}))
    if theme.lake is not None:
        layers.append(("lakes", {"facecolor": theme.lake, "edgecolor": "none"}))
    layers.append(
        ("borders", {"facecolor": "none", "edgecolor": theme.border, "linewidth": border_w * px})
    )
    layers.append(
        ("coastline", {"facecolor": "none", "edgecolor": theme.coast, "linewidth": coast_w * px})
    )
    return layers
