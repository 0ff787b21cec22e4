"""Check that an installed Hitmap carries its data and that its native libraries load.

The image build (infra/Dockerfile) runs this as the unprivileged user, and
tests/infra/test_dockerfile.py runs it against a wheel built from the Docker build
context, so a file left out of the package, or a shared library the slim runtime image
lacks, fails the build instead of the first request. It never touches the network:
every socket connection is refused before anything is loaded.

Usage: ``python infra/check_install.py`` (exit 0: all good; 1: what failed is printed).
"""

from __future__ import annotations

import socket
import sys
import tempfile
from collections.abc import Callable
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _refuse_network(*args: object, **kwargs: object) -> None:
    raise OSError("check_install.py: network access is not allowed (the image must work offline)")


def _block_network() -> None:
    # Patching the class catches every library that opens sockets through Python.
    socket.socket.connect = _refuse_network  # type: ignore[method-assign]
    socket.socket.connect_ex = _refuse_network  # type: ignore[method-assign,assignment]
    socket.create_connection = _refuse_network  # type: ignore[assignment]


def _count(folder: Traversable, suffix: str) -> int:
    return sum(1 for entry in folder.iterdir() if entry.name.endswith(suffix))


def check_package_files() -> str:
    """Templates, static files, widget scripts and migrations are package data."""
    found = {
        "app/templates/*.html": _count(files("app") / "templates", ".html"),
        "app/static/*.css": _count(files("app") / "static", ".css"),
        "widgets/*.js": _count(files("widgets"), ".js"),
        "migrations/versions/*.py": _count(files("migrations") / "versions", ".py"),
        "migrations/script.py.mako": int((files("migrations") / "script.py.mako").is_file()),
    }
    missing = [name for name, n in found.items() if n == 0]
    if missing:
        raise AssertionError(f"not in the installed package: {', '.join(missing)}")
    return ", ".join(f"{n} {name}" for name, n in found.items())


def check_geoip() -> str:
    """The bundled GeoLite2 database is the default and answers a lookup."""
    from app.ingest.geoip import GeoLocator
    from app.settings import Settings

    path = Settings().geoip_path
    locator = GeoLocator(path)
    try:
        location = locator.lookup("8.8.8.8")
        if not locator.is_loaded() or not location.is_known:
            raise AssertionError(f"{path} does not locate 8.8.8.8")
    finally:
        locator.close()
    return f"{path} ({location.country_code})"


def check_natural_earth() -> str:
    """cartopy + shapely (GEOS) + pyproj (PROJ) read and project the vendored shapefiles."""
    from app.maps.renderer import natural_earth

    counts = []
    for scale in ("110m", "50m"):
        features = natural_earth.projected_features(scale)
        empty = [name for name, geometries in features.items() if not geometries]
        if empty:
            raise AssertionError(f"Natural Earth {scale}: no geometry in {', '.join(empty)}")
        counts.append(f"{scale}: {sum(len(g) for g in features.values())} geometries")
    return f"{natural_earth.DATA_DIR}: " + ", ".join(counts)


def check_render() -> str:
    """matplotlib and Pillow draw a counter thumbnail."""
    from app.maps.renderer import render

    locations = render.LocationCounts.from_rows([(51.51, -0.13, 20, 12), (-33.87, 151.21, 10, 3)])
    png = render.render_thumbnail(locations, locations.total, render.ThumbnailStyle())
    if not png.startswith(PNG_SIGNATURE):
        raise AssertionError("the thumbnail is not a PNG")
    return f"thumbnail PNG, {len(png)} bytes"


def check_database_drivers() -> str:
    """psycopg's bundled libpq loads, and the migrations apply (SQLite, in a temp folder)."""
    import psycopg
    from sqlalchemy import inspect

    from app.db import make_engine
    from app.migrate import is_current, upgrade

    libpq = psycopg.pq.version()
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'check.sqlite3'}")
        try:
            upgrade(engine)
            if not is_current(engine):
                raise AssertionError("migrations did not reach the head revision")
            tables = len(inspect(engine).get_table_names())
        finally:
            engine.dispose()
    return f"libpq {libpq}, migrations applied ({tables} tables)"


def check_server_libraries() -> str:
    """What `hitmap serve` asks uvicorn for (httptools, uvloop) and password hashing."""
    import argon2
    import httptools
    import uvloop

    argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("check")
    return f"httptools {httptools.__version__}, uvloop {uvloop.__version__}, argon2"


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("package files", check_package_files),
    ("GeoIP", check_geoip),
    ("Natural Earth", check_natural_earth),
    ("map rendering", check_render),
    ("database", check_database_drivers),
    ("server", check_server_libraries),
]


def main() -> int:
    _block_network()
    import app

    print(f"hitmap {app.__version__} from {Path(app.__file__).parent}")
    failed = 0
    for name, check in CHECKS:
        try:
            detail = check()
        except Exception as exc:  # report every failing check, not only the first
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
        else:
            print(f"ok   {name}: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
