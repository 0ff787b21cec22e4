"""The heatmap renderer: placement, transparency, scaling, colours, input hygiene, memory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.heatmaps.gradient import LUT
from app.heatmaps.render import HeatmapSpec, heatmap_array, render_heatmap

ROOT = Path(__file__).resolve().parents[2]
VISIBLE = 96  # alpha (of 255) that reads clearly over a page


def _cluster(rng: np.random.Generator, cx: float, cy: float, n: int, spread: float = 3.0):
    return rng.normal(cx, spread, n), rng.normal(cy, spread, n)


def _hottest(rgba: np.ndarray) -> tuple[float, float]:
    """Centroid (x, y) of the most opaque pixels (alpha rises with intensity; the top of the
    scale is a small saturated disc)."""
    alpha = rgba[..., 3]
    ys, xs = np.nonzero(alpha == alpha.max())
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5


def _nearest_hottest(rgba: np.ndarray, x: float, y: float) -> float:
    """Distance from (x, y) to the nearest of the most opaque pixels' centres."""
    alpha = rgba[..., 3]
    ys, xs = np.nonzero(alpha == alpha.max())
    return float(np.hypot(xs + 0.5 - x, ys + 0.5 - y).min())


def _level(pixel: np.ndarray) -> int:
    """The gradient index whose colour a pixel is."""
    return int(np.abs(LUT.astype(int) - pixel.astype(int)).sum(axis=1).argmin())


def test_lut_is_transparent_at_zero_and_rises_blue_to_red() -> None:
    assert tuple(LUT[0]) == (0, 0, 0, 0)
    alpha = LUT[:, 3].astype(int)
    assert (np.diff(alpha) >= 0).all()
    assert alpha[1:].min() > 0
    r, g, b = (LUT[:, c].astype(int) for c in range(3))
    assert b[1] > max(r[1], g[1])  # blue
    assert g[110] > max(r[110], b[110])  # green
    assert r[180] > 200 and g[180] > 200 and b[180] < 60  # yellow
    assert r[255] > 200 and g[255] < 60 and b[255] < 60  # red


@pytest.mark.parametrize(
    ("cx", "cy"), [(400.0, 700.0), (401.3, 702.7), (37.0, 1990.0), (1270.5, 12.2)]
)
def test_hottest_pixel_is_where_the_clicks_were(cx: float, cy: float) -> None:
    rng = np.random.default_rng(1)
    x, y = _cluster(rng, cx, cy, 300)
    # A cooler cluster and some noise elsewhere must not move the hot spot.
    x2, y2 = _cluster(rng, 900, 1000, 40)
    x = np.concatenate([x, x2, rng.uniform(0, 1280, 50)])
    y = np.concatenate([y, y2, rng.uniform(0, 2000, 50)])
    rgba = heatmap_array(x, y, HeatmapSpec(1280, 2000))
    assert rgba.shape == (2000, 1280, 4) and rgba.dtype == np.uint8
    assert _nearest_hottest(rgba, cx, cy) <= 3
    hx, hy = _hottest(rgba)
    # At the page's edge the saturated disc is cut off, which pulls its centroid inwards.
    slack = 4 if 30 < cx < 1250 and 30 < cy < 1970 else 12
    assert abs(hx - cx) <= slack and abs(hy - cy) <= slack, (hx, hy)
    hot = rgba[int(cy), min(int(cx), 1279)]
    assert hot[0] > 200 and hot[2] < 60  # red


def test_a_single_click_is_visible_and_centred() -> None:
    rgba = heatmap_array(np.array([333.0]), np.array([222.0]), HeatmapSpec(800, 600))
    hx, hy = _hottest(rgba)
    assert abs(hx - 333) <= 3 and abs(hy - 222) <= 3
    assert rgba[222, 333, 3] >= VISIBLE


def test_far_from_any_click_is_exactly_transparent() -> None:
    rng = np.random.default_rng(2)
    spec = HeatmapSpec(1280, 3000, radius=24)
    x, y = _cluster(rng, 300, 400, 5000, spread=10)
    x, y = np.concatenate([x, [1000.0]]), np.concatenate([y, [2500.0]])
    rgba = heatmap_array(x, y, spec)
    # Kernel reach: 3 sigma (sigma = radius / 2) plus half a coarse cell plus the spread.
    yy, xx = np.mgrid[0:3000, 0:1280]
    near = ((xx - 300) ** 2 + (yy - 400) ** 2 < (36 + 4 + 60) ** 2) | (
        (xx - 1000) ** 2 + (yy - 2500) ** 2 < (36 + 4) ** 2
    )
    assert (rgba[~near] == 0).all()
    assert rgba[~near].size > 0.9 * rgba.size
    assert rgba[400, 300, 3] > 0 and rgba[2500, 1000, 3] > 0


def test_sparse_and_dense_clusters_are_both_visible() -> None:
    rng = np.random.default_rng(3)
    xd, yd = _cluster(rng, 200, 300, 5000)
    xs, ys = _cluster(rng, 900, 1500, 5)
    x, y = np.concatenate([xd, xs]), np.concatenate([yd, ys])
    rgba = heatmap_array(x, y, HeatmapSpec(1280, 2000))
    dense = rgba[290:311, 190:211].reshape(-1, 4)
    sparse = rgba[1490:1511, 890:911].reshape(-1, 4)
    # Divide-by-max would leave the sparse cluster at 5 / 5000 of the top: invisible.
    assert sparse[:, 3].max() >= VISIBLE
    assert dense[:, 3].max() >= VISIBLE
    s = sparse[sparse[:, 3].argmax()].astype(int)
    d = dense[dense[:, 3].argmax()].astype(int)
    assert s[:3].sum() > 0 and d[:3].sum() > 0  # coloured, not black
    assert s[2] > s[0]  # the sparse one is cool (blue side)…
    assert d[0] > 200 and d[2] < 60  # …and the dense one red


def test_colour_goes_from_blue_to_red_with_the_number_of_clicks() -> None:
    counts = [1, 4, 16, 64, 256, 2048]
    centres = [100.0 + 200 * i for i in range(len(counts))]
    x = np.concatenate([np.full(c, cx) for c, cx in zip(counts, centres, strict=True)])
    y = np.full(x.size, 150.0)
    rgba = heatmap_array(x, y, HeatmapSpec(1280, 300)).astype(int)
    peaks = [rgba[150, int(cx)] for cx in centres]
    levels = [_level(p) for p in peaks]
    assert levels == sorted(levels) and len(set(levels)) == len(levels), levels
    coolest, hottest = peaks[0], peaks[-1]
    assert coolest[2] > max(coolest[0], coolest[1])  # blue
    assert hottest[0] > 200 and hottest[1] < 60 and hottest[2] < 60  # red
    assert [p[3] for p in peaks] == sorted(p[3] for p in peaks)
    assert coolest[3] >= VISIBLE


def test_no_clicks_gives_a_transparent_image_of_the_right_size() -> None:
    spec = HeatmapSpec(1280, 900)
    empty = np.array([], dtype=np.float64)
    rgba = heatmap_array(empty, empty, spec)
    assert rgba.shape == (900, 1280, 4)
    assert not rgba.any()
    image = Image.open(io.BytesIO(render_heatmap(empty, empty, spec)))
    assert image.format == "PNG" and image.size == (1280, 900)
    assert not np.asarray(image.convert("RGBA")).any()


def test_png_decodes_to_the_array_with_its_metadata() -> None:
    rng = np.random.default_rng(4)
    x, y = _cluster(rng, 500, 500, 200, spread=30)
    spec = HeatmapSpec(1024, 1000)
    png = render_heatmap(x, y, spec)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png))
    assert image.size == (1024, 1000)
    assert np.array_equal(np.asarray(image.convert("RGBA")), heatmap_array(x, y, spec))
    assert image.info["hitmap:scale"] == "1"
    assert image.info["hitmap:source-size"] == "1024x1000"
    assert image.info["hitmap:size"] == "1024x1000"
    assert image.info["hitmap:clicks"] == "200"


def test_out_of_range_and_non_finite_points_are_ignored() -> None:
    spec = HeatmapSpec(640, 480)
    good_x, good_y = np.array([100.0, 300.5]), np.array([100.0, 200.0])
    bad_x = np.array([-0.01, 640.0, 1e9, 10.0, 10.0, np.nan, np.inf, -np.inf, 5.0])
    bad_y = np.array([10.0, 10.0, 10.0, -3.0, 480.0, 10.0, 10.0, 10.0, np.nan])
    expected = heatmap_array(good_x, good_y, spec)
    got = heatmap_array(np.concatenate([bad_x, good_x]), np.concatenate([bad_y, good_y]), spec)
    assert np.array_equal(got, expected)
    png = render_heatmap(np.concatenate([bad_x, good_x]), np.concatenate([bad_y, good_y]), spec)
    assert Image.open(io.BytesIO(png)).info["hitmap:clicks"] == "2"
    # Integer and float32 input work the same.
    assert np.array_equal(
        heatmap_array(np.array([100, 300]), np.array([100, 200]), spec),
        heatmap_array(np.array([100, 300], np.float32), np.array([100, 200], np.float32), spec),
    )


def test_weights_count_like_repeated_clicks_and_bad_weights_are_rejected() -> None:
    spec = HeatmapSpec(400, 300)
    repeated = heatmap_array(np.array([50.0, 50, 50, 200]), np.array([60.0, 60, 60, 100]), spec)
    weighted = heatmap_array(
        np.array([50.0, 200]), np.array([60.0, 100]), spec, weights=np.array([3.0, 1.0])
    )
    assert np.abs(repeated.astype(int) - weighted.astype(int)).max() <= 1
    x, y = np.array([1.0, 2.0]), np.array([1.0, 2.0])
    for bad in ([1.0, np.nan], [1.0, np.inf], [1.0, -1.0]):
        with pytest.raises(ValueError, match="weights"):
            heatmap_array(x, y, spec, weights=np.array(bad))
    with pytest.raises(ValueError, match="same length"):
        heatmap_array(x, np.array([1.0]), spec)
    with pytest.raises(ValueError, match="same length"):
        heatmap_array(x, y, spec, weights=np.array([1.0]))
    with pytest.raises(ValueError, match="numeric"):
        heatmap_array(np.array(["a", "b"]), y, spec)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0, "height": 10},
        {"width": 10, "height": -1},
        {"width": 10, "height": 10, "radius": 0.0},
        {"width": 10, "height": 10, "radius": float("nan")},
        {"width": 10, "height": 10, "max_pixels": 0},
        {"width": 10.5, "height": 10},
    ],
)
def test_bad_specs_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="HeatmapSpec"):
        HeatmapSpec(**kwargs)  # type: ignore[arg-type]


def test_tall_documents_are_downsampled_to_max_pixels_and_say_so() -> None:
    spec = HeatmapSpec(1280, 30_000)
    out_w, out_h = spec.output_size
    assert out_w * out_h <= spec.max_pixels
    assert out_w * out_h > 0.99 * spec.max_pixels
    assert abs(out_w / 1280 - out_h / 30_000) < 0.001  # aspect ratio kept
    assert spec.scale == out_w / 1280
    assert HeatmapSpec(1280, 4000).output_size == (1280, 4000)
    assert HeatmapSpec(1280, 4000).scale == 1.0

    rng = np.random.default_rng(5)
    x, y = _cluster(rng, 640, 20_000, 500, spread=6)
    png = render_heatmap(x, y, spec)
    image = Image.open(io.BytesIO(png))
    assert image.size == (out_w, out_h)
    assert image.info["hitmap:source-size"] == "1280x30000"
    assert image.info["hitmap:size"] == f"{out_w}x{out_h}"
    assert float(image.info["hitmap:scale"]) == pytest.approx(spec.scale, rel=1e-5)
    hx, hy = _hottest(np.asarray(image.convert("RGBA")))
    assert abs(hx - 640 * spec.scale) <= 2 and abs(hy - 20_000 * spec.scale) <= 2

    # Degenerate shapes stay within the budget too.
    thin = HeatmapSpec(1, 10**9, max_pixels=1000)
    assert thin.output_size[0] * thin.output_size[1] <= 1000


def test_ten_million_clicks_on_a_30000_px_document_in_bounded_memory() -> None:
    """In a fresh interpreter, so the memory figures are this render's, not the suite's:
    VmHWM (peak RSS, reset just before the render) and tracemalloc (numpy temporaries)."""
    script = textwrap.dedent(
        """
        import io, json, time, tracemalloc
        from pathlib import Path
        import numpy as np
        from PIL import Image
        from app.heatmaps.render import HeatmapSpec, render_heatmap

        def status_mb(field):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024

        rng = np.random.default_rng(0)
        n = 10_000_000
        x = rng.uniform(0, 1280, n)
        y = rng.uniform(0, 30_000, n)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
            reset = True
        except OSError:
            reset = False  # then the peak includes making the input: still bounded
        before = status_mb("VmRSS")
        tracemalloc.start()
        start = time.perf_counter()
        png = render_heatmap(x, y, HeatmapSpec(1280, 30_000))
        seconds = time.perf_counter() - start
        traced = tracemalloc.get_traced_memory()[1]
        peak = status_mb("VmHWM")
        image = Image.open(io.BytesIO(png))
        print(json.dumps({
            "before_mb": before, "peak_mb": peak, "traced": traced, "seconds": seconds,
            "reset": reset,
            "size": list(image.size),
            "text": {k: v for k, v in image.info.items() if k.startswith("hitmap:")},
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["peak_mb"] < 600, report  # the whole process, its 160 MB of input included
    if report["reset"]:
        assert report["peak_mb"] - report["before_mb"] < 300, report  # what the render added
    assert report["traced"] < 200 * 2**20, report  # numpy temporaries: chunked, not per click
    spec = HeatmapSpec(1280, 30_000)
    assert report["size"] == list(spec.output_size)
    assert report["text"]["hitmap:clicks"] == "10000000"
    assert report["text"]["hitmap:source-size"] == "1280x30000"
