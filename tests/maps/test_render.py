"""Pixel tests of the rendered PNGs: placement, sizes, legend, count digits, transparency."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.maps.renderer.basemap import THEMES, BaseMap
from app.maps.renderer.dots import draw_clusters
from app.maps.renderer.png_pieces import adler32_combine, pixel_words
from app.maps.renderer.render import (
    BACKGROUNDS,
    THUMBNAIL_SIZES,
    LocationCounts,
    ThumbnailStyle,
    render_thumbnail,
    render_world_map,
)
from app.maps.renderer.spec import font, text_width, thumbnail_dots, world_dots
from app.maps.renderer.thumbnail import (
    KIT_AFTER_USES,
    count_layout,
    count_text,
    draw_count,
    thumbnail_band,
    thumbnail_base,
    thumbnail_kit,
)
from app.maps.renderer.world import legend_layout, world_base, world_image, world_kit, world_palette

LONDON = (51.51, -0.13)


def _decode(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(np.int32)


def _at(lat: float, lon: float, visits: int, accuracy: int = 20) -> LocationCounts:
    return LocationCounts.from_rows([(lat, lon, accuracy, visits)])


def _red(pixels: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Mask of the dot colour (#e11d48 and its anti-aliased mixes) inside ``box``."""
    mask = (pixels[:, :, 0] - pixels[:, :, 1] > 50) & (pixels[:, :, 3] > 0)
    if box is not None:
        left, top, right, bottom = box
        outside = np.ones_like(mask)
        outside[top:bottom, left:right] = False
        mask[outside] = False
    return mask


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


def _expected_pixel(base: BaseMap, lat: float, lon: float) -> tuple[float, float]:
    """Independently of the renderer: cartopy's own Robinson transform + the layout (the
    base map checks at render time that this affine is matplotlib's)."""
    import cartopy.crs as ccrs

    x, y = ccrs.Robinson().transform_point(lon, lat, ccrs.PlateCarree())
    left, top, right, bottom = base.box
    x0, x1, y0, y1 = base.view
    return left + (x - x0) / (x1 - x0) * (right - left), top + (y1 - y) / (y1 - y0) * (bottom - top)


@pytest.fixture(scope="module")
def world() -> BaseMap:
    return world_base(1)


def test_a_visit_in_london_lands_on_london_on_the_world_map(world: BaseMap) -> None:
    pixels = _decode(render_world_map(_at(*LONDON, 1500)))
    cx, cy = _centroid(_red(pixels, world.box))
    ex, ey = _expected_pixel(world, *LONDON)
    assert abs(cx - ex) < 1.0 and abs(cy - ey) < 1.0, (cx, cy, ex, ey)
    # And that pixel is on land in the drawn base map (Great Britain, not the sea).
    land = np.asarray(world.image)[int(ey), int(ex)]
    assert tuple(land[:3]) != tuple(np.asarray(world.image)[int(ey), int(ex) - 40][:3])


@pytest.mark.parametrize("size", list(THUMBNAIL_SIZES))
def test_a_visit_in_london_lands_on_london_on_the_thumbnail(size: str) -> None:
    style = ThumbnailStyle(size=size)
    base = thumbnail_base(style)
    pixels = _decode(render_thumbnail(_at(*LONDON, 1500), 1500, style))
    cx, cy = _centroid(_red(pixels, base.box))
    ex, ey = _expected_pixel(base, *LONDON)
    assert abs(cx - ex) < 1.0 and abs(cy - ey) < 1.0, (cx, cy, ex, ey)


def test_fixed_places_are_land_or_water_where_they_should_be(world: BaseMap) -> None:
    """The base map and the projection agree: no offset between drawing and dots."""
    image = np.asarray(world.image).astype(np.int32)
    land = np.array([244, 242, 236])  # THEMES["light"].land
    places = {
        (23.0, 13.0): True,  # Sahara
        (-19.0, 46.8): True,  # Madagascar
        (37.5, 14.2): True,  # Sicily
        (40.1, 9.0): True,  # Sardinia
        (64.8, -18.5): True,  # Iceland
        (42.0, 50.5): False,  # Caspian Sea
        (47.7, -87.5): False,  # Lake Superior
        (-1.0, 33.0): False,  # Lake Victoria
        (0.0, -150.0): False,  # Pacific
        (35.0, 18.0): False,  # Mediterranean
    }
    lat = np.array([p[0] for p in places])
    lon = np.array([p[1] for p in places])
    xs, ys = world.project(lat, lon)
    for (place, is_land), x, y in zip(places.items(), xs, ys, strict=True):
        rgb = image[int(y), int(x), :3]
        assert (np.abs(rgb - land).max() < 6) == is_land, (place, rgb)


def test_projection_table_matches_pyproj(world: BaseMap) -> None:
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-60, 90, 5000), rng.uniform(-180, 180, 5000)
    fast = world.project(lat, lon)
    exact = world.project_exact(lat, lon)
    assert np.abs(fast[0] - exact[0]).max() < 0.05
    assert np.abs(fast[1] - exact[1]).max() < 0.05
    rounded = np.round(lat, 2), np.round(lon, 2)  # what the database stores: exact
    assert np.abs(world.project(*rounded)[1] - world.project_exact(*rounded)[1]).max() < 1e-6
    # South of the view (Antarctica) clamps to the map's bottom edge; wrapping works.
    _, y = world.project(np.array([-77.85, -90.0]), np.array([166.67, 0.0]))
    assert np.allclose(y, world.box[3], atol=0.01)
    x, _ = world.project(np.array([10.0, 10.0]), np.array([190.0, -170.0]))
    assert x[0] == pytest.approx(x[1])


def test_dots_grow_with_counts_and_match_the_legend(world: BaseMap) -> None:
    areas = []
    for k, visits in enumerate([5, 50, 500, 5000, 50_000, 500_000]):
        pixels = _decode(render_world_map(_at(0.0, -150.0, visits)))  # mid-Pacific
        area = int(_red(pixels, world.box).sum())
        areas.append(area)
        # The legend shows this class with the same radius as drawn on the map.
        entry = legend_layout(1, k, False)[k]
        r = entry.radius
        assert r == world_dots(1).radii[k]
        region = (int(entry.x - r - 2), int(entry.y - r - 2), int(entry.x + r + 3), 600)
        legend_area = int(_red(pixels, region).sum())
        assert abs(legend_area - area) <= max(4, 0.12 * area), (k, area, legend_area)
        assert abs(area - np.pi * r**2) <= max(6, 0.15 * area), (k, area, r)
    assert areas == sorted(areas) and len(set(areas)) == len(areas), areas


def test_legend_lists_size_classes_and_approximate_locations() -> None:
    labels = [e.label for e in legend_layout(1, 0, True)]
    assert labels == ["1-9", "10-99", "100-999", "1,000+", "approximate location"]
    labels = [e.label for e in legend_layout(1, 5, False)]
    assert labels[-3:] == ["1,000-9,999", "10,000-99,999", "100,000+"]


def test_approximate_locations_are_faint_ellipses_not_hot_spots(world: BaseMap) -> None:
    us = (37.751, -97.822)
    approx = _decode(render_world_map(_at(*us, 300_000, accuracy=1000)))
    precise = _decode(render_world_map(_at(*us, 300_000, accuracy=20)))
    x, y = (int(v[0]) for v in world.project(np.array([us[0]]), np.array([us[1]])))
    strength = lambda p: p[y, x, 0] - p[y, x, 1]  # noqa: E731
    assert strength(precise) > 120  # a saturated dot
    assert strength(approx) < 70  # only a tint
    # The tint spans the uncertainty: ~1000 km each way (~30 px at this scale).
    row = approx[y, :, 0] - approx[y, :, 1] > 20
    tinted = np.flatnonzero(row[world.box[0] : world.box[2]])
    assert 45 < tinted.max() - tinted.min() < 80
    # ...and it never sizes or absorbs the precise dots nearby.
    rows = [(*us, 1000, 300_000), (us[0] + 0.1, us[1], 20, 3)]
    canvas = np.array(world.image)
    clusters, has_approx = draw_clusters(
        canvas, world, LocationCounts.from_rows(rows), world_dots(1), "#e11d48", False
    )
    assert clusters.weight.tolist() == [3]
    assert has_approx


def test_antimeridian_visits_show_at_both_edges_not_in_the_middle(world: BaseMap) -> None:
    rows = [(-17.0, 179.9, 10, 50), (-17.0, -179.9, 10, 50)]
    pixels = _decode(render_world_map(LocationCounts.from_rows(rows)))
    xs = np.flatnonzero(_red(pixels, world.box).any(axis=0))
    left, _, right, _ = world.box
    assert xs.min() < left + 20 and xs.max() > right - 20
    assert not ((xs > left + 100) & (xs < right - 100)).any()


def _glyph_mask(style: ThumbnailStyle, total: int) -> np.ndarray:
    """The count digits drawn alone with the renderer's font at its layout position."""
    width, height = THUMBNAIL_SIZES[style.size]
    lay = count_layout(style, total)
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).text(
        (lay.number_x, lay.baseline),
        lay.number,
        font=font(lay.number_size),
        fill=255,
        anchor="ls",
    )
    return np.asarray(mask) > 200


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_thumbnail_shows_the_count_digits(background: str) -> None:
    style = ThumbnailStyle(size="medium", background=background)
    theme_text = np.array(THEMES[background].text[:3])
    shown = _decode(render_thumbnail(LocationCounts.empty(), 123, style))
    zero = _decode(render_thumbnail(LocationCounts.empty(), 0, style))
    digits = _glyph_mask(style, 123)
    assert digits.sum() > 20
    band_top = THUMBNAIL_SIZES["medium"][1] - thumbnail_band("medium")
    assert not digits[:band_top].any()  # the digits sit in the band
    # Where "123" has ink, the image has the text colour...
    assert np.abs(shown[digits][:, :3] - theme_text).max(axis=1).mean() < 40
    # ...which the image with "0" does not have everywhere there.
    only_123 = digits & ~_glyph_mask(style, 0)
    assert np.abs(zero[only_123][:, :3] - theme_text).max(axis=1).mean() > 60
    assert count_text(1234567) == ("1,234,567", "visits")
    assert count_text(1) == ("1", "visit")


def test_a_huge_count_still_fits_the_small_thumbnail() -> None:
    lay = count_layout(ThumbnailStyle(), 10**18)
    end = lay.unit_x + text_width(lay.unit, lay.unit_size) if lay.unit else 0.0
    end = max(end, lay.number_x + text_width(lay.number, lay.number_size))
    assert lay.dot_x - lay.dot_r >= 0 and end <= 160


def test_thumbnail_without_count_has_no_band() -> None:
    style = ThumbnailStyle(show_count=False)
    base = thumbnail_base(style)
    assert base.box[3] > THUMBNAIL_SIZES["small"][1] - 10
    pixels = _decode(render_thumbnail(LocationCounts.empty(), 999, style))
    assert pixels.shape[:2] == (80, 160)


def test_transparent_ocean_has_alpha_zero_and_land_is_opaque() -> None:
    style = ThumbnailStyle(size="large", background="transparent")
    base = thumbnail_base(style)
    pixels = _decode(render_thumbnail(LocationCounts.empty(), 0, style))
    (ox, sx), (oy, sy) = base.project(np.array([0.0, 23.0]), np.array([-150.0, 13.0]))
    assert pixels[int(oy), int(ox), 3] == 0  # Pacific
    assert pixels[int(sy), int(sx), 3] == 255  # Sahara
    assert pixels[0, 0, 3] == 0  # outside the globe
    assert (pixels[:, :, 3] == 0).mean() > 0.4
    for background in ("light", "dark"):
        opaque = _decode(
            render_thumbnail(
                LocationCounts.empty(), 0, ThumbnailStyle("large", background=background)
            )
        )
        assert (opaque[:, :, 3] == 255).all()


def test_dots_on_a_transparent_ocean_are_visible() -> None:
    style = ThumbnailStyle(size="large", background="transparent")
    pixels = _decode(render_thumbnail(_at(0.0, -150.0, 500), 500, style))
    base = thumbnail_base(style)
    dot = _red(pixels, base.box)
    assert dot.sum() > 10
    assert pixels[dot][:, 3].max() > 200


@pytest.mark.parametrize("size", list(THUMBNAIL_SIZES))
@pytest.mark.parametrize("background", BACKGROUNDS)
def test_image_sizes_per_style(size: str, background: str) -> None:
    for show_count in (True, False):
        png = render_thumbnail(
            _at(*LONDON, 3), 3, ThumbnailStyle(size, "#2563eb", background, show_count)
        )
        assert Image.open(io.BytesIO(png)).size == THUMBNAIL_SIZES[size]


def test_world_map_sizes_and_updated_text() -> None:
    small = render_world_map(LocationCounts.empty())
    assert Image.open(io.BytesIO(small)).size == (1200, 600)
    big = render_world_map(_at(*LONDON, 10), scale=2, updated="2026-11-22 03:00 UTC")
    assert Image.open(io.BytesIO(big)).size == (2400, 1200)
    with_text = _decode(render_world_map(LocationCounts.empty(), updated="2026-11-22"))
    right_strip = (slice(540, 600), slice(900, 1200))
    plain = _decode(small)
    assert (np.abs(with_text[right_strip] - plain[right_strip]).sum(axis=2) > 100).sum() > 30
    with pytest.raises(ValueError, match="scale"):
        render_world_map(LocationCounts.empty(), scale=3)


def test_rendering_is_deterministic() -> None:
    rows = [(48.86, 2.35, 10, 40), (52.52, 13.4, 10, 7), (37.751, -97.822, 1000, 99)]
    loc = LocationCounts.from_rows(rows)
    assert render_world_map(loc) == render_world_map(loc)
    style = ThumbnailStyle(background="dark")
    assert render_thumbnail(loc, 146, style) == render_thumbnail(loc, 146, style)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": "huge"},
        {"dot_color": "red"},
        {"dot_color": "#12345"},
        {"dot_color": "#12345g"},
        {"dot_color": "#1234567"},
        {"background": "blue"},
        {"show_count": "yes"},
    ],
)
def test_invalid_style_values_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ThumbnailStyle(**kwargs)  # type: ignore[arg-type]


def test_location_counts() -> None:
    loc = LocationCounts.from_rows([(1.5, 2.5, None, 3), (4.0, 5.0, 250, 7)])
    assert np.isnan(loc.accuracy_km[0]) and loc.accuracy_km[1] == 250.0
    assert loc.visits.dtype == np.int64 and loc.total == 10 and len(loc) == 2
    assert len(LocationCounts.from_rows([])) == 0
    assert len(LocationCounts.empty()) == 0
    with pytest.raises(ValueError, match="same length"):
        LocationCounts(np.zeros(2), np.zeros(1), np.zeros(2), np.zeros(2))


def test_bad_rows_are_skipped() -> None:
    rows = [(float("nan"), 2.0, None, 5), (10.0, 20.0, None, 0), (*LONDON, None, 4)]
    pixels = _decode(render_world_map(LocationCounts.from_rows(rows)))
    assert _red(pixels, world_base(1).box).sum() > 5


# --- the encoders: cached strips, legend bands and palettes give the plain result -------


def _indices(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "P"
    return np.asarray(image)


def _strict_idat(png: bytes) -> bytes:
    """The IDAT payload, decompressed with zlib's checks (Adler-32, CRCs read below)."""
    import struct
    import zlib

    pos, idat = 8, b""
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        (crc,) = struct.unpack(">I", png[pos + 8 + size : pos + 12 + size])
        assert zlib.crc32(kind + data) == crc, kind
        if kind == b"IDAT":
            idat += data
        pos += 12 + size
    return zlib.decompress(idat)


def _world_cases() -> list[tuple[LocationCounts, int, str | None]]:
    rng = np.random.default_rng(3)
    many = LocationCounts(
        rng.uniform(-58, 80, 3000),
        rng.uniform(-180, 180, 3000),
        rng.choice([5.0, 50.0, 1000.0], 3000),
        rng.integers(1, 5000, 3000),
    )
    south = LocationCounts.from_rows(  # ink at the very bottom, near the legend
        [(-75.0, 10.0, 20, 200_000), (-58.0, -60.0, 3000, 50), (10.0, 10.0, 20, 3)]
    )
    return [
        (LocationCounts.empty(), 1, None),
        (_at(*LONDON, 1500), 1, None),
        (many, 1, None),
        (south, 1, None),
        (_at(*LONDON, 15), 1, "2026-11-22 03:00 UTC"),
        (many, 2, None),
        (_at(*LONDON, 1500), 1, None),  # again, after the others: nothing left behind
    ]


def test_world_map_equals_the_plain_pipeline() -> None:
    """Whatever the cached strips, legend bands and scratch buffers do, each map is the
    drawn image mapped pixel by pixel onto the scale's palette, in a valid PNG."""
    first: dict[int, bytes] = {}
    for n, (loc, scale, updated) in enumerate(_world_cases()):
        png = render_world_map(loc, scale=scale, updated=updated)
        kit = world_kit(scale)
        drawn = np.asarray(world_image(loc, scale, updated))
        expected = kit.lookup(pixel_words(drawn)).reshape(drawn.shape[:2])
        assert np.array_equal(_indices(png), expected), n
        raw = np.frombuffer(_strict_idat(png), dtype=np.uint8).reshape(drawn.shape[0], -1)
        assert (raw[:, 0] == 0).all()  # filter "none" on every scanline
        assert np.array_equal(raw[:, 1:], expected)
        first.setdefault(len(loc) * 10 + scale, png)
    assert render_world_map(_at(*LONDON, 1500)) == first[11]


def test_world_palette_mapping_is_as_close_as_pillows() -> None:
    """Nearest palette entries: no further from the drawn colours than Pillow's own
    mapping onto the same palette (3,000 random places, ellipses all over: colours the
    palette's training render lacks)."""
    loc, scale, updated = _world_cases()[2]
    image = world_image(loc, scale, updated).convert("RGB")
    drawn = np.asarray(image).astype(np.int32)
    pillow = image.quantize(palette=world_palette(scale), dither=Image.Dither.NONE)
    pillow_error = np.abs(np.asarray(pillow.convert("RGB")).astype(np.int32) - drawn)
    error = np.abs(_decode(render_world_map(loc, scale=scale, updated=updated))[:, :, :3] - drawn)
    assert error.mean() <= pillow_error.mean() + 0.05
    assert error.max() <= pillow_error.max()


@pytest.mark.parametrize("background", BACKGROUNDS)
@pytest.mark.parametrize("size", list(THUMBNAIL_SIZES))
def test_thumbnail_equals_the_plain_pipeline(size: str, background: str) -> None:
    for show_count in (True, False):
        style = ThumbnailStyle(size, "#2563eb", background, show_count)
        loc, _, _ = _world_cases()[2]
        png = render_thumbnail(loc, 1_234_567, style)
        base = thumbnail_base(style)
        canvas = np.array(base.pixels)
        draw_clusters(
            canvas,
            base,
            loc,
            thumbnail_dots(base.width),
            style.dot_color,
            background == "dark",
        )
        drawn = np.asarray(draw_count(canvas, 1_234_567, style)) if show_count else canvas
        kit = thumbnail_kit(style, build=True)
        assert kit is not None
        png = render_thumbnail(loc, 1_234_567, style)  # now with the style's kit
        expected = kit.palette.lookup(pixel_words(drawn)).reshape(drawn.shape[:2])
        assert np.array_equal(_indices(png), expected)
        _strict_idat(png)
        rgba = _decode(png)
        error = np.abs(rgba[:, :, 3] - drawn[:, :, 3].astype(np.int32))
        assert error.max() <= 40  # alpha kept (transparent style), else 255 everywhere


@pytest.mark.parametrize("background", BACKGROUNDS)
@pytest.mark.parametrize("size", list(THUMBNAIL_SIZES))
def test_the_count_draws_only_inside_its_band(size: str, background: str) -> None:
    """The thumbnail indexes the band rows whole and elsewhere only what dots touched."""
    style = ThumbnailStyle(size=size, background=background)
    base = thumbnail_base(style)
    kit = thumbnail_kit(style, build=True)
    assert kit is not None
    top = kit.band_top
    for total in (0, 1, 7_777, 1_234_567, 10**15):
        drawn = np.asarray(draw_count(np.array(base.pixels), total, style))
        assert np.array_equal(drawn[:top], base.pixels[:top]), total


def test_adler32_of_joined_pieces() -> None:
    import zlib

    rng = np.random.default_rng(5)
    for _ in range(50):
        a = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
        b = rng.integers(0, 256, int(rng.integers(0, 200_000)), dtype=np.uint8).tobytes()
        joined = adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b))
        assert joined == zlib.adler32(a + b)


def _cities(n: int = 3000, seed: int = 9) -> LocationCounts:
    """Places around 40 cities, a tenth of the visits on three country centroids."""
    rng = np.random.default_rng(seed)
    centre = np.column_stack([rng.uniform(-40, 60, 40), rng.uniform(-170, 170, 40)])
    pick = rng.integers(0, 40, n)
    lat = np.concatenate([centre[pick, 0] + rng.normal(0, 1.0, n), [37.75, 51.3, -10.0]])
    lon = np.concatenate([centre[pick, 1] + rng.normal(0, 1.0, n), [-97.82, 9.5, -55.0]])
    acc = np.concatenate([rng.choice([5.0, 20.0, 100.0], n), np.full(3, 1000.0)])
    visits = np.concatenate([rng.zipf(1.6, n) % 10_000, [3000, 800, 200]])
    return LocationCounts(np.round(lat, 2), np.round(lon, 2), acc, np.maximum(visits, 1))


def test_a_rare_style_gets_a_palette_of_its_own_then_a_kit() -> None:
    style = ThumbnailStyle("medium", "#0f9d58", "transparent")
    loc = _cities()
    assert thumbnail_kit(style) is None  # first use: adaptive palette
    adaptive = render_thumbnail(loc, 42, style)
    for _ in range(KIT_AFTER_USES):
        render_thumbnail(loc, 42, style)
    assert thumbnail_kit(style) is not None
    fixed = render_thumbnail(loc, 42, style)
    one, two = _decode(adaptive), _decode(fixed)
    _strict_idat(adaptive)
    assert one.shape == two.shape == (120, 240, 4)
    premultiplied = [p[:, :, :3] * p[:, :, 3:] / 255.0 for p in (one, two)]
    assert np.abs(premultiplied[0] - premultiplied[1]).mean() < 2.0
    assert np.abs(one[:, :, 3] - two[:, :, 3]).mean() < 2.0
    assert (one[:, :, 3] == 0).mean() > 0.3 and (two[:, :, 3] == 0).mean() > 0.3


def test_maps_drawn_by_many_threads_at_once_are_the_same() -> None:
    from concurrent.futures import ThreadPoolExecutor

    cases = [(loc, scale, updated) for loc, scale, updated in _world_cases() if scale == 1]
    alone = [render_world_map(loc, scale=s, updated=u) for loc, s, u in cases]
    with ThreadPoolExecutor(4) as pool:
        together = list(
            pool.map(lambda c: render_world_map(c[0], scale=c[1], updated=c[2]), cases * 4)
        )
    assert together == alone * 4
    style = ThumbnailStyle()
    one = render_thumbnail(_cities(), 99, style)
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda _: render_thumbnail(_cities(), 99, style), range(8))) == {one}


def test_the_renderer_version_covers_every_renderer_module() -> None:
    """A change in any module the renderer imports must redraw the stored images: the
    renderer's digest (``drawing.renderer_version``) reads all of them."""
    import ast
    from pathlib import Path

    from app.maps import drawing

    folder = Path(drawing.__file__).parent / "renderer"
    seen: set[str] = set()
    todo = ["render"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("app.maps.renderer."):
                    todo.append(node.module.removeprefix("app.maps.renderer."))
                elif node.module == "app.maps.renderer":
                    todo.extend(alias.name for alias in node.names)
    assert {f"{name}.py" for name in seen} <= set(drawing._RENDERER_FILES)
    version = drawing.renderer_version()
    assert len(version) == 12 and version == drawing.renderer_version()
