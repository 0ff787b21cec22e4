"""Heatmap renderer benchmark: prints figures; not a test.

    .venv/bin/python bench/heatmap_bench.py            # all figures (~1 minute)
    .venv/bin/python bench/heatmap_bench.py --out /tmp  # also write the PNGs there

For a 1280×4000 overlay it times app.heatmaps.render.render_heatmap (clicks → PNG bytes)
side by side with a plain reference (np.histogram2d + scipy.ndimage.gaussian_filter + a
matplotlib colormap + Pillow) on the same clicks, warm, median of several runs, and prints
the ratio. Then 10M clicks and a 30,000-px-tall document, each in a fresh interpreter so
that its peak memory (ru_maxrss) is its own. scipy is a dev extra, used only here.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.heatmaps import render  # noqa: E402
from app.heatmaps.gradient import STOPS  # noqa: E402
from app.heatmaps.render import HeatmapSpec, render_heatmap  # noqa: E402

WIDTH, HEIGHT = 1280, 4000
TARGETS = {10_000: 0.15, 1_000_000: 0.4}  # seconds, issue 4
ARTICLE_C = 10_000  # clicks/s, the 2006 article's C version
ARTICLE_IMAGEMAGICK = 2  # clicks/s, its ImageMagick approach


def realistic_clicks(
    n: int, width: int = WIDTH, height: int = HEIGHT, seed: int = 2006
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks on a long page: 85 % on ~120 buttons and links whose popularity follows a
    Zipf-like law (menu and call-to-action buttons take most), spread over each element's
    box; 15 % uniform noise (clicks on text, blank areas, misclicks)."""
    rng = np.random.default_rng(seed)
    elements = 120
    # Buttons and links: a nav bar at the top, then content further down.
    cx = rng.uniform(0.05, 0.95, elements) * width
    cy = np.concatenate([rng.uniform(20, 80, 12), rng.uniform(100, height - 50, elements - 12)])
    bw = rng.uniform(40, 220, elements)
    bh = rng.uniform(18, 48, elements)
    popularity = 1.0 / np.arange(1, elements + 1) ** 1.1
    popularity /= popularity.sum()
    on = int(n * 0.85)
    which = rng.choice(elements, on, p=popularity)
    x = cx[which] + bw[which] * (rng.random(on) - 0.5) + rng.normal(0, 2, on)
    y = cy[which] + bh[which] * (rng.random(on) - 0.5) + rng.normal(0, 2, on)
    off = n - on
    x = np.concatenate([x, rng.uniform(0, width, off)])
    y = np.concatenate([y, rng.uniform(0, height, off)])
    return x, y


def reference_png(x: np.ndarray, y: np.ndarray, spec: HeatmapSpec) -> bytes:
    """The plain way: full-resolution histogram, scipy blur, log scale, matplotlib colours."""
    from matplotlib.colors import LinearSegmentedColormap
    from scipy.ndimage import gaussian_filter

    cmap = LinearSegmentedColormap.from_list(
        "hitmap", [(p, tuple(c / 255 for c in rgb)) for p, rgb in STOPS]
    )
    counts, _, _ = np.histogram2d(
        y, x, bins=(spec.height, spec.width), range=((0, spec.height), (0, spec.width))
    )
    sigma = spec.radius / 2
    density = gaussian_filter(counts, sigma=sigma, truncate=3.0)
    level = np.log1p(density * (2 * np.pi * sigma**2))  # unit: one click's peak
    top = level.max() or 1.0
    rgba = cmap(level / top, bytes=True)  # (H, W, 4) uint8
    drawn = level > render.CUT  # ≈ density above CUT of one click's peak, as in ours
    rgba[..., 3] = np.where(drawn, (96 + 120 * level / top).astype(np.uint8), 0)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", compress_level=render.COMPRESS_LEVEL)
    return buf.getvalue()


def timed(fn: Callable[[], bytes], runs: int) -> tuple[float, bytes]:
    out = fn()  # warm: imports, caches, page faults
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def side_by_side(out_dir: Path | None) -> None:
    spec = HeatmapSpec(WIDTH, HEIGHT)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    print(f"## {WIDTH}×{HEIGHT} overlay, radius {spec.radius:g} (sigma {spec.radius / 2:g} px)")
    print(
        f"{'clicks':>10}  {'hitmap':>9}  {'target':>7}  {'':4}  {'reference':>9}  {'ratio':>6}"
        f"  {'clicks/s':>12}  {'× 2006 C':>9}  {'× ImageMagick':>13}  {'PNG':>8}  {'ref PNG':>8}"
    )
    for n, target in TARGETS.items():
        x, y = realistic_clicks(n)
        ours, png = timed(partial(render_heatmap, x, y, spec), runs=9)
        ref, ref_png = timed(partial(reference_png, x, y, spec), runs=3)
        rate = n / ours
        verdict = "ok" if ours <= target else "SLOW"
        print(
            f"{n:>10,}  {ours:>8.3f}s  {target:>6.2f}s  {verdict:4}  {ref:>8.3f}s  "
            f"{ref / ours:>5.1f}×  {rate:>12,.0f}  {rate / ARTICLE_C:>8,.0f}×  "
            f"{rate / ARTICLE_IMAGEMAGICK:>12,.0f}×  {len(png) / 1e6:>6.2f}MB  "
            f"{len(ref_png) / 1e6:>6.2f}MB"
        )
        if out_dir is not None:
            (out_dir / f"heatmap_{n}.png").write_bytes(png)
            (out_dir / f"heatmap_{n}_reference.png").write_bytes(ref_png)
    print(
        f"2006 article, for scale: C {ARTICLE_C:,} clicks/s; ImageMagick ~{ARTICLE_IMAGEMAGICK}"
        " clicks/s (1,000,000 clicks: 100 s and ~6 days)."
    )


def _proc_status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux). Unlike ru_maxrss, VmHWM starts afresh
    in an exec'd child instead of inheriting the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return False
    return True


def big_case(name: str) -> dict[str, object]:
    """Run in a child process: one render, its time and its memory."""
    n, width, height = {
        "10M clicks, 1280×4000": (10_000_000, WIDTH, HEIGHT),
        "10M clicks, 1280×30000": (10_000_000, WIDTH, 30_000),
        "100k clicks, 1280×30000": (100_000, WIDTH, 30_000),
    }[name]
    x, y = realistic_clicks(n, width, height)
    spec = HeatmapSpec(width, height)
    render_heatmap(x[:1000], y[:1000], HeatmapSpec(WIDTH, 500))  # warm the code paths
    reset = _reset_peak_rss()
    rss_before = _proc_status_mb("VmRSS")
    tracemalloc.start()
    start = time.perf_counter()
    png = render_heatmap(x, y, spec)
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _proc_status_mb("VmHWM")
    image = Image.open(io.BytesIO(png))
    return {
        "case": name,
        "seconds": seconds,
        "input_mb": (x.nbytes + y.nbytes) / 2**20,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak if reset else float("nan"),
        "numpy_peak_mb": traced / 2**20,
        "png_mb": len(png) / 1e6,
        "size": f"{image.size[0]}×{image.size[1]}",
        "scale": image.info.get("hitmap:scale"),
    }


def big_cases() -> None:
    print(
        "\n## Large inputs (each in a fresh process; RSS from /proc/self/status with the peak"
        " reset just before the render; numpy temporaries from tracemalloc)"
    )
    for name in ("10M clicks, 1280×4000", "10M clicks, 1280×30000", "100k clicks, 1280×30000"):
        done = subprocess.run(  # noqa: S603 - this very script, fixed arguments
            [sys.executable, __file__, "--case", name],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['case']:<24} {r['seconds']:6.3f}s  output {r['size']} (scale {r['scale']})"
            f"  PNG {r['png_mb']:.2f}MB  peak RSS {r['peak_rss_mb']:.0f}MB = before"
            f" {r['rss_before_mb']:.0f}MB (inputs {r['input_mb']:.0f}MB)"
            f" + render {r['peak_rss_mb'] - r['rss_before_mb']:.0f}MB;"
            f" numpy temporaries peak {r['numpy_peak_mb']:.0f}MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the benchmark PNGs to this folder")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(big_case(args.case)))
        return
    import PIL
    import scipy

    load = os.getloadavg()
    print(
        f"numpy {np.__version__}, Pillow {PIL.__version__}, scipy {scipy.__version__}; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} (the machine is shared)\n"
        f"PNG: indexed RGBA (PLTE + tRNS), compress_level={render.COMPRESS_LEVEL}; "
        "reference: truecolour RGBA at the same level\n"
    )
    side_by_side(args.out)
    big_cases()


if __name__ == "__main__":
    main()
