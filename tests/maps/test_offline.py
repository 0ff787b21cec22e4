"""Rendering never downloads: all Natural Earth data comes from the package.

A fresh Python process (so no base map, projected geometry or cartopy geometry cache
exists yet) blocks every socket connection and makes cartopy's downloader raise, then
builds every base map and renders a thumbnail and a large map.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import app.maps.renderer

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, socket, sys

attempts = []

def refuse(*args, **kwargs):
    attempts.append("socket")
    raise OSError("network access is blocked in this test")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse

import cartopy
import cartopy.io
import cartopy.io.shapereader as shapereader

def no_download(self, *args, **kwargs):
    attempts.append("download:" + type(self).__name__)
    raise RuntimeError("cartopy tried to download " + repr(args))

shapereader.NEShpDownloader.acquire_resource = no_download
cartopy.io.Downloader.acquire_resource = no_download

read = []
original = shapereader.natural_earth

def spy(*args, **kwargs):
    path = original(*args, **kwargs)
    read.append(str(path))
    return path

shapereader.natural_earth = spy
# Whatever was configured before, the renderer must point cartopy at its own files.
cartopy.config["pre_existing_data_dir"] = "/nonexistent"

from app.maps.renderer import render

render.warm_up()
locations = render.LocationCounts.from_rows(
    [(51.51, -0.13, 20, 12), (37.751, -97.822, 1000, 40), (-33.87, 151.21, 10, 3)]
)
thumb = render.render_thumbnail(locations, 55, render.ThumbnailStyle())
world = render.render_world_map(locations, scale=2, updated="today")
print(json.dumps({
    "attempts": attempts,
    "read": read,
    "pre_existing_data_dir": cartopy.config["pre_existing_data_dir"],
    "data_dir": cartopy.config["data_dir"],
    "png": [thumb[:8].hex(), world[:8].hex()],
    "sizes": [len(thumb), len(world)],
}))
"""


def test_renders_offline_from_vendored_files_without_any_download(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == []
    assert result["png"] == ["89504e470d0a1a0a"] * 2
    vendored = Path(app.maps.renderer.__file__).parent / "naturalearth"
    assert result["pre_existing_data_dir"] == str(vendored)
    assert "site-packages" not in result["data_dir"]
    # Every feature at both scales, and only 110m / 50m, read from the package.
    names = {Path(p).name for p in result["read"]}
    expected = {
        f"ne_{scale}_{name}.shp"
        for scale in ("110m", "50m")
        for name in ("land", "ocean", "lakes", "coastline", "admin_0_boundary_lines_land")
    }
    assert names == expected
    assert all(Path(p).is_relative_to(vendored) for p in result["read"])


def test_vendored_files_are_complete() -> None:
    folder = (
        Path(app.maps.renderer.__file__).parent / "naturalearth" / "shapefiles" / "natural_earth"
    )
    for scale in ("110m", "50m"):
        for category, name in [
            ("physical", "land"),
            ("physical", "ocean"),
            ("physical", "lakes"),
            ("physical", "coastline"),
            ("cultural", "admin_0_boundary_lines_land"),
        ]:
            for ext in ("shp", "shx", "dbf", "prj", "cpg"):
                assert (folder / category / f"ne_{scale}_{name}.{ext}").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"maps/renderer/naturalearth/**/*"' in pyproject  # shipped by a non-editable install
