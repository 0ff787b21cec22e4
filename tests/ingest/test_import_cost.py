"""The counter's process must not load the map renderer just by importing the counter.

The renderer (``app.maps.renderer``) pulls in matplotlib, cartopy, shapely and pyproj
(~150 ms and their memory); only drawing a map needs them. A fresh interpreter imports
the counter, the beacon and the web app and lists what came along.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("matplotlib", "cartopy", "shapely", "pyproj", "app.maps.renderer.")

SCRIPT = """
import json, sys
import {modules}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def loaded_by(modules: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(modules=modules, heavy=HEAVY)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "modules",
    [
        "app.ingest.service, app.ingest.routes, app.heatmaps.beacons",
        "app.maps.service, app.maps.routes, app.maps.schemas, app.publicmap.routes",
        "app.main, app.cli",
    ],
)
def test_importing_does_not_load_the_renderer(modules: str) -> None:
    assert loaded_by(modules) == []


def test_the_check_sees_the_renderer_when_it_is_imported() -> None:
    """The same probe reports the renderer once something does import it."""
    loaded = loaded_by("app.maps.renderer.render, app.maps.renderer.basemap")
    assert "app.maps.renderer.basemap" in loaded and "app.maps.renderer.world" in loaded
