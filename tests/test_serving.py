"""`hitmap serve` caps the request head: a real server process, a real socket (both databases)."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.db import make_engine
from app.migrate import upgrade
from app.serving import MAX_REQUEST_HEAD_BYTES
from tests.conftest import TEST_GEOIP, TEST_SECRET
from tests.live import free_port, own_database

ROOT = Path(__file__).resolve().parent.parent
SERVE = "from app.cli import main; main()"


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (http only)
        return int(response.status)


def _serve(url: str, data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HITMAP_DATA_DIR": str(data),
        "HITMAP_DATABASE_URL": url,
        "HITMAP_SECRET_KEY": TEST_SECRET,
        "HITMAP_GEOIP_PATH": str(TEST_GEOIP),
        "HITMAP_PORT": str(port),
        "HITMAP_WORKERS": "1",
    }
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, "serve"],
            cwd=ROOT,  # this checkout's app package
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _get(port, "/healthz")
            return proc
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("hitmap serve did not start:\n" + log.read_text(errors="replace"))


def _send_huge_header(port: int, size: int) -> bytes:
    """Send a request whose one header is ``size`` bytes, in pieces; return what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        piece = b"a" * 4096
        sent = 0
        try:
            while sent < size and not select.select([sock], [], [], 0)[0]:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        assert sent < size, f"the whole header was accepted; answer {answer[:100]!r}"
        return answer


def test_an_oversized_request_head_is_refused_and_the_server_keeps_serving(database_url, tmp_path):
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        port = free_port()
        proc = _serve(url, tmp_path / "data", port, tmp_path / "serve.log")
        try:
            answer = _send_huge_header(port, 8 * 1024 * 1024)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            # A large but ordinary head still passes, and the process serves on.
            big = "b" * (MAX_REQUEST_HEAD_BYTES // 2)
            assert _get(port, "/healthz", {"X-Big": big}) == 200
            assert _get(port, "/healthz") == 200
            assert proc.poll() is None
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
