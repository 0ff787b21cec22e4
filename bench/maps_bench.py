"""Benchmark of the map renderer (app/maps): prints its figures; not a test.

    .venv/bin/python bench/maps_bench.py [--quick] [--out DIR]

Input is what the database query returns: distinct (lat, lon, accuracy) rows with their
visit counts, from a synthetic but realistic distribution — visits drawn from ~90 cities
weighted by population, jittered around each city (GeoIP city points rounded to 2
decimals, accuracy 5-200 km), plus ~30% of visits on GeoIP country centroids with a
1000 km accuracy radius (the US centroid alone takes half of those). See bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.maps.renderer import render as maps  # noqa: E402
from app.maps.renderer.natural_earth import configure_cartopy  # noqa: E402
from app.maps.renderer.png_pieces import PNG_COMPRESS_LEVEL, deflate, indexed_png, pixel_words  # noqa: E402
from app.maps.renderer.world import PNG_STRIP_ROWS, world_image, world_kit, world_palette  # noqa: E402

# (lat, lon, population in millions)
CITIES: tuple[tuple[float, float, float], ...] = (
    (35.68, 139.69, 37.4),
    (28.61, 77.21, 31.0),
    (31.23, 121.47, 27.1),
    (-23.55, -46.63, 22.0),
    (19.43, -99.13, 21.8),
    (30.04, 31.24, 20.9),
    (19.08, 72.88, 20.4),
    (39.90, 116.41, 20.5),
    (23.81, 90.41, 21.0),
    (34.69, 135.50, 19.2),
    (40.71, -74.01, 18.8),
    (24.86, 67.01, 16.1),
    (-34.60, -58.38, 15.0),
    (22.57, 88.36, 14.8),
    (41.01, 28.98, 15.2),
    (29.56, 106.55, 15.3),
    (6.52, 3.38, 14.4),
    (14.60, 120.98, 13.9),
    (22.54, 114.06, 12.4),
    (23.13, 113.26, 13.3),
    (-22.91, -43.17, 13.3),
    (-4.44, 15.27, 14.3),
    (34.05, -118.24, 12.5),
    (55.76, 37.62, 12.5),
    (39.34, 117.36, 13.6),
    (31.55, 74.34, 12.6),
    (12.97, 77.59, 12.3),
    (48.86, 2.35, 11.0),
    (-6.21, 106.85, 10.8),
    (13.08, 80.27, 11.0),
    (-12.05, -77.04, 10.7),
    (4.71, -74.07, 10.9),
    (13.76, 100.50, 10.5),
    (51.51, -0.13, 9.3),
    (17.39, 78.49, 10.0),
    (37.57, 126.98, 10.0),
    (41.88, -87.63, 8.9),
    (35.69, 51.39, 9.1),
    (3.14, 101.69, 8.0),
    (10.82, 106.63, 8.6),
    (22.32, 114.17, 7.5),
    (43.65, -79.38, 6.2),
    (40.42, -3.70, 6.6),
    (25.20, 55.27, 2.9),
    (-33.87, 151.21, 5.3),
    (-37.81, 144.96, 5.0),
    (1.35, 103.82, 5.8),
    (52.52, 13.40, 3.6),
    (41.90, 12.50, 4.3),
    (59.33, 18.07, 1.6),
    (52.37, 4.90, 1.1),
    (50.85, 4.35, 2.1),
    (48.21, 16.37, 1.9),
    (47.37, 8.54, 1.4),
    (50.08, 14.44, 1.3),
    (52.23, 21.01, 1.8),
    (59.91, 10.75, 1.0),
    (55.68, 12.57, 1.3),
    (60.17, 24.94, 1.3),
    (53.35, -6.26, 1.2),
    (38.72, -9.14, 2.9),
    (37.98, 23.73, 3.2),
    (45.46, 9.19, 3.1),
    (48.14, 11.58, 1.5),
    (50.11, 8.68, 0.8),
    (53.55, 9.99, 1.8),
    (45.76, 4.84, 1.7),
    (43.30, 5.37, 1.6),
    (53.48, -2.24, 2.7),
    (55.95, -3.19, 0.5),
    (47.61, -122.33, 4.0),
    (37.77, -122.42, 4.7),
    (32.78, -96.80, 7.6),
    (29.76, -95.37, 7.1),
    (25.76, -80.19, 6.2),
    (33.75, -84.39, 6.1),
    (42.36, -71.06, 4.9),
    (38.91, -77.04, 6.3),
    (39.95, -75.17, 6.2),
    (44.98, -93.27, 3.7),
    (39.74, -104.99, 3.0),
    (33.45, -112.07, 4.9),
    (45.50, -73.57, 4.3),
    (49.28, -123.12, 2.6),
    (-33.92, 18.42, 4.6),
    (-26.20, 28.05, 5.9),
    (-1.29, 36.82, 4.9),
    (9.03, 38.74, 5.0),
    (33.57, -7.59, 3.8),
    (36.75, 3.06, 2.8),
    (21.03, 105.85, 8.0),
    (-36.85, 174.76, 1.7),
    (64.15, -21.94, 0.2),
    (61.22, -149.90, 0.3),
    (21.31, -157.86, 1.0),
    (-17.71, 178.07, 0.2),
    (-18.14, 178.44, 0.2),
    (64.73, 177.51, 0.02),
    (-41.29, 174.78, 0.4),
    (-33.45, -70.67, 6.8),
)
# GeoIP country centroids (accuracy 1000 km) and their share of the approximate visits.
CENTROIDS: tuple[tuple[float, float, float], ...] = (
    (37.751, -97.822, 0.5),
    (51.2993, 9.491, 0.08),
    (46.0, 2.0, 0.06),
    (35.0, 105.0, 0.1),
    (20.0, 77.0, 0.08),
    (-10.0, -55.0, 0.06),
    (60.0, 100.0, 0.05),
    (36.0, 138.0, 0.04),
    (-27.0, 133.0, 0.03),
)


TYPICAL_VISITS = (30, 300, 3_000)  # a range of a typical site (median 1 visit a day)


def synthetic_locations(visits: int, seed: int = 0, towns: int = 70_000) -> maps.LocationCounts:
    """Aggregated (distinct lat, lon, accuracy → visits) rows for ``visits`` visits.

    GeoIP resolves to a finite set of places, so visits are spread over a catalogue of
    ``towns`` places: around each city (share of towns by population) with a
    heavy-tailed distance, each place with its own accuracy radius, rounded to 2
    decimals. Within a city the places get Zipf weights (the city itself first). 30% of
    the visits land on country centroids with a 1000 km accuracy radius.
    """
    rng = np.random.default_rng(seed)
    cities = np.array(CITIES)
    pop = cities[:, 2]
    per_city = np.maximum(np.round(towns * pop / pop.sum()), 1).astype(np.int64)
    city_of = np.repeat(np.arange(len(cities)), per_city)
    rank = np.concatenate([np.arange(1, k + 1) for k in per_city]).astype(np.float64)
    n = city_of.size
    dist = np.where(rank == 1, 0.0, rng.exponential(0.6, size=n))
    angle = rng.uniform(0, 2 * np.pi, size=n)
    lat = cities[city_of, 0] + dist * np.sin(angle)
    lon = cities[city_of, 1] + dist * np.cos(angle) / np.cos(np.radians(cities[city_of, 0]))
    lat = np.round(np.clip(lat, -89.99, 89.99), 2)
    lon = np.round((lon + 180.0) % 360.0 - 180.0, 2)
    acc = rng.choice(np.array([5.0, 10.0, 20.0, 50.0, 100.0, 200.0]), size=n)
    zipf = 1.0 / rank**1.1
    share = zipf / np.bincount(city_of, weights=zipf)[city_of]
    p = share * (pop / pop.sum())[city_of]
    approx_n = int(visits * 0.3)
    town_visits = rng.multinomial(visits - approx_n, p / p.sum())
    cent = np.array(CENTROIDS)
    cent_visits = rng.multinomial(approx_n, cent[:, 2] / cent[:, 2].sum())
    lat = np.concatenate([lat, cent[:, 0]])
    lon = np.concatenate([lon, cent[:, 1]])
    acc = np.concatenate([acc, np.full(len(cent), 1000.0)])
    counts = np.concatenate([town_visits, cent_visits])
    # Places that round to the same (lat, lon, accuracy) are one database row.
    rows = np.stack([lat, lon, acc], axis=1)[counts > 0]
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=counts[counts > 0]).astype(np.int64)
    return maps.LocationCounts(distinct[:, 0], distinct[:, 1], distinct[:, 2], summed)


def subsample(loc: maps.LocationCounts, rows: int, seed: int = 1) -> maps.LocationCounts:
    """``rows`` distinct locations picked from ``loc`` (counts kept)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(loc), size=min(rows, len(loc)), replace=False)
    return maps.LocationCounts(
        loc.lat[pick], loc.lon[pick], loc.accuracy_km[pick], loc.visits[pick]
    )


class Timing(NamedTuple):
    """Milliseconds: the median (the figure) and the best run (closest to an idle
    machine; this one is shared)."""

    median: float
    best: float

    def __format__(self, spec: str) -> str:
        return f"{format(self.median, spec)} (best {format(self.best, spec).strip()})"


def timed(fn: Callable[[], object], runs: int) -> Timing:
    """Wall time of ``runs`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times) * 1000.0, min(times) * 1000.0)


def naive_world_map(loc: maps.LocationCounts, visits_cap: int) -> bytes:
    """The naive approach: a fresh cartopy figure, every visit a scatter point."""
    configure_cartopy()
    import cartopy.crs as ccrs
    import cartopy.feature as cfeature
    from cartopy.mpl.geoaxes import GeoAxes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Expand the aggregated rows back into one point per visit (capped).
    reps = np.repeat(np.arange(len(loc)), loc.visits)[:visits_cap]
    fig = Figure(figsize=(12, 6), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1), projection=ccrs.Robinson())
    assert isinstance(ax, GeoAxes)
    ax.set_global()
    ax.add_feature(cfeature.OCEAN.with_scale("50m"), facecolor="#d5e3ef")
    ax.add_feature(cfeature.LAND.with_scale("50m"), facecolor="#f4f2ec")
    ax.add_feature(cfeature.LAKES.with_scale("50m"), facecolor="#d5e3ef")
    ax.add_feature(cfeature.BORDERS.with_scale("50m"), linewidth=0.3)
    ax.coastlines("50m", linewidth=0.4)
    if reps.size:
        ax.scatter(
            loc.lon[reps], loc.lat[reps], s=4, c="#e11d48", alpha=0.3, transform=ccrs.PlateCarree()
        )
    buf = io.BytesIO()
    canvas.print_png(buf)
    return buf.getvalue()


def seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, skip the naive run")
    parser.add_argument("--out", type=Path, help="write sample PNGs to this folder")
    args = parser.parse_args()
    runs = 5 if args.quick else 21
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")

    print(f"warm_up() in a cold process (every base map): {seconds(maps.warm_up):.2f} s")
    loc = synthetic_locations(1_000_000)
    approx = int((loc.accuracy_km >= 500).sum())
    print(f"1,000,000 visits -> {len(loc):,} distinct locations ({approx} approximate)")

    updated = "2026-11-22 03:00 UTC"
    world_ms = timed(lambda: maps.render_world_map(loc, updated=updated), runs)
    world_png = maps.render_world_map(loc, updated=updated)
    rgba = world_image(loc, 1, updated)  # what gets encoded, drawn whole
    image = rgba.convert("RGB")
    kit = world_kit(1)

    def encode_world(pixels: np.ndarray = np.asarray(rgba)) -> bytes:
        """Palette mapping + every strip compressed (a map with dots everywhere)."""
        raw = np.zeros((pixels.shape[0], pixels.shape[1] + 1), dtype=np.uint8)
        raw[:, 1:] = kit.lookup(pixel_words(pixels)).reshape(pixels.shape[:2])
        rows = PNG_STRIP_ROWS
        pieces = [deflate(raw[s : s + rows]) for s in range(0, raw.shape[0], rows)]
        return indexed_png(pixels.shape[1], pixels.shape[0], kit.palette, pieces)

    encode_ms = timed(encode_world, runs)
    print("\nLarge map, aggregated rows -> PNG bytes (median, warm):")
    print(
        f"  1200x600, 1,000,000 visits: {world_ms:6.1f} ms  ({len(world_png) / 1024:.0f} KiB; "
        f"palette mapping + PNG of the whole image would take {encode_ms:.1f} ms)"
    )
    typical = [synthetic_locations(v, seed=10 + i) for i, v in enumerate(TYPICAL_VISITS)]
    cells = []
    for site in typical:
        ms = timed(partial(maps.render_world_map, site), runs)
        kib = len(maps.render_world_map(site)) / 1024
        cells.append(f"{site.total:,} visits ({len(site)} rows) {ms:4.1f} ms, {kib:.0f} KiB")
    print("  typical nightly maps: " + "; ".join(cells))
    empty_ms = timed(lambda: maps.render_world_map(maps.LocationCounts.empty()), runs)
    print(f"  without visits: {empty_ms:4.1f} ms")
    hidpi_ms = timed(lambda: maps.render_world_map(loc, scale=2), max(3, runs // 3))
    print(f"  2400x1200 (scale=2), same data: {hidpi_ms:6.1f} ms")
    row_tuples = list(
        zip(
            loc.lat.tolist(),
            loc.lon.tolist(),
            [int(a) for a in loc.accuracy_km],
            loc.visits.tolist(),
            strict=True,
        )
    )
    rows_ms = timed(lambda: maps.LocationCounts.from_rows(row_tuples), runs)
    print(f"  LocationCounts.from_rows on those {len(row_tuples):,} tuples: {rows_ms:5.1f} ms")

    small_site = synthetic_locations(5_000, seed=3)
    style = maps.ThumbnailStyle()
    print("\nThumbnail (median, warm):")
    for size in maps.THUMBNAIL_SIZES:
        cells = []
        for background in maps.BACKGROUNDS:
            st = maps.ThumbnailStyle(size=size, background=background)
            ms = timed(partial(maps.render_thumbnail, loc, loc.total, st), runs)
            cells.append(f"{background} {ms:4.2f}")
        print(f"  {size:6} 1,000,000 visits: " + ", ".join(cells) + " ms")
    fewer = synthetic_locations(1_000_000, seed=4, towns=20_000)  # nightly_bench's catalogue
    ms = timed(lambda: maps.render_thumbnail(fewer, fewer.total, style), runs * 4)
    print(
        f"  small  1,000,000 visits over a 20,000-place catalogue ({len(fewer):,} rows): {ms:4.2f} ms"
    )
    ms = timed(lambda: maps.render_thumbnail(small_site, small_site.total, style), runs * 4)
    print(f"  small  5,000 visits ({len(small_site):,} rows): {ms:4.2f} ms")
    ms = timed(lambda: maps.render_thumbnail(maps.LocationCounts.empty(), 0, style), runs * 4)
    print(f"  small  no visits: {ms:4.2f} ms")

    print("\nGrowth with distinct locations (median, warm):")
    big = synthetic_locations(6_000_000, seed=2, towns=200_000)
    for rows in (1_000, 10_000, 100_000):
        sub = subsample(loc if rows < len(loc) else big, rows)
        w_ms = timed(partial(maps.render_world_map, sub), runs)
        t_ms = timed(partial(maps.render_thumbnail, sub, sub.total, style), runs)
        print(
            f"  {rows:>7,} rows ({sub.total:>9,} visits): world {w_ms:6.1f} ms, "
            f"small thumbnail {t_ms:5.2f} ms"
        )

    print("\nPNG encoding of the 1M-visit large map (adaptive palette = FASTOCTREE per image):")
    for mode, quantise in (("RGB", False), ("adaptive palette", True)):
        for level in (1, 3, 6):
            src = image.quantize(256, method=Image.Quantize.FASTOCTREE) if quantise else image

            def encode(
                src: Image.Image = src, level: int = level, quantise: bool = quantise
            ) -> int:
                pic = image.quantize(256, method=Image.Quantize.FASTOCTREE) if quantise else src
                buf = io.BytesIO()
                pic.save(buf, format="PNG", compress_level=level)
                return len(buf.getvalue())

            ms = timed(encode, max(5, runs // 2))
            print(f"  {mode:18} compress_level={level}: {ms:5.1f} ms, {encode() / 1024:.0f} KiB")
    level = PNG_COMPRESS_LEVEL

    def pillow_fixed() -> bytes:  # the previous renderer's encoding
        indexed = image.quantize(palette=world_palette(1), dither=Image.Dither.NONE)
        buf = io.BytesIO()
        indexed.save(buf, format="PNG", compress_level=level)
        return buf.getvalue()

    ms = timed(pillow_fixed, max(5, runs // 2))
    kib = len(pillow_fixed()) / 1024
    print(f"  fixed palette, Pillow's mapping + PNG, level {level}: {ms:5.1f} ms, {kib:.0f} KiB")
    ms = timed(encode_world, max(5, runs // 2))
    kib = len(encode_world()) / 1024
    print(
        f"  fixed palette, table mapping + {PNG_STRIP_ROWS}-row strips, level {level} "
        f"run-length, all strips: {ms:5.1f} ms, {kib:.0f} KiB"
    )
    print(
        "  (as used: only strips with dots are compressed per map, the others once per "
        "process at level 9: see the typical maps above)"
    )

    if not args.quick:
        n = 100_000
        cold = seconds(lambda: naive_world_map(loc, n))
        warm = statistics.median(seconds(lambda: naive_world_map(loc, n)) for _ in range(3))
        base = statistics.median(seconds(lambda: naive_world_map(loc, 0)) for _ in range(3))
        est = base + (warm - base) * loc.total / n
        full = seconds(lambda: naive_world_map(loc, loc.total))
        print(
            f"\nNaive: a fresh cartopy figure with every visit as a scatter point, {n:,} "
            f"visits: {cold:.2f} s (first, projecting the 50m features), {warm:.2f} s warm; "
            f"without points {base:.2f} s"
        )
        print(
            f"  1,000,000 visits: {full:.2f} s measured (warm), ~{est:.2f} s extrapolated from "
            f"the 100k run -> this renderer is ~{full * 1000 / world_ms.median:,.0f}x faster "
            f"(~{cold * 1000 / world_ms.median:,.0f}x against a cold naive run)"
        )

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "world.png").write_bytes(world_png)
        for size in maps.THUMBNAIL_SIZES:
            for background in maps.BACKGROUNDS:
                st = maps.ThumbnailStyle(size=size, background=background)
                png = maps.render_thumbnail(loc, loc.total, st)
                (args.out / f"thumb_{size}_{background}.png").write_bytes(png)
        print(f"\nsample PNGs written to {args.out}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
