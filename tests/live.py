"""A real Hitmap server in a thread, and a second origin that serves test pages.

Browser tests cannot share the rolled-back test transaction (the server runs in
other threads), so each live server gets a database of its own, dropped after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import uvicorn

from app.clock import Clock, SystemClock
from app.context import AppContext, build_context
from app.db import Database, make_engine
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from tests.conftest import TEST_GEOIP, TEST_SECRET
from tests.databases import fresh_postgres


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def own_database(kind_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the same kind as ``kind_url``, for a server that runs in other threads."""
    if kind_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'live.sqlite3'}"
        return
    with fresh_postgres("hitmap_live") as url:
        yield url


class LiveServer:
    def __init__(self, ctx: AppContext, port: int) -> None:
        self.ctx = ctx
        self.port = port
        config = uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live Hitmap server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def live_hitmap(
    kind_url: str, tmp_path: Path, clock: Clock | None = None, host: str = "localhost"
) -> Iterator[LiveServer]:
    with own_database(kind_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        port = free_port()
        settings = Settings(
            data_dir=tmp_path / "data",
            secret_key=TEST_SECRET,
            geoip_path=TEST_GEOIP,
            base_url=f"http://{host}:{port}",
        )
        server = LiveServer(
            build_context(settings, db=Database(engine), clock=clock or SystemClock()), port
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()
            engine.dispose()


class PageServer:
    """A second origin (another port) serving HTML pages that embed the snippet."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = pages.get(self.path.split("?", 1)[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


ROOT = Path(__file__).resolve().parent.parent
# `hitmap serve` of this checkout (the venv's console script may point at another).
SERVE = ["-c", "from app.cli import main; main()", "serve"]


def serve_env(url: str, data: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a `hitmap serve` process on ``url`` for the tests."""
    return {
        **os.environ,
        "HITMAP_DATA_DIR": str(data),
        "HITMAP_DATABASE_URL": url,
        "HITMAP_SECRET_KEY": TEST_SECRET,
        "HITMAP_GEOIP_PATH": str(TEST_GEOIP),
        "HITMAP_TRUSTED_PROXIES": "127.0.0.1",
        "HITMAP_PORT": str(port),
        **extra,
    }


class ServedProcess:
    """A real `hitmap serve` process (its own session), ready when /healthz answers."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        with log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, *SERVE],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/healthz")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("hitmap serve did not start:\n" + log.read_text(errors="replace"))

    def get(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers=headers or {}
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (http only)
            return bytes(response.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
