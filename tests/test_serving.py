"""`hitmap serve` caps the request head: a real server process, a real socket (both databases)."""

from __future__ import annotations

import select
import socket
import urllib.request

from app.db import make_engine
from app.migrate import upgrade
from app.serving import MAX_REQUEST_HEAD_BYTES
from tests.live import ServedProcess, free_port, own_database, serve_env


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (http only)
        return int(response.status)


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
        server = ServedProcess(
            serve_env(url, tmp_path / "data", port), port, tmp_path / "serve.log"
        )
        proc = server.proc
        try:
            answer = _send_huge_header(port, 8 * 1024 * 1024)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            # A large but ordinary head still passes, and the process serves on.
            big = "b" * (MAX_REQUEST_HEAD_BYTES // 2)
            assert _get(port, "/healthz", {"X-Big": big}) == 200
            assert _get(port, "/healthz") == 200
            assert proc.poll() is None
        finally:
            server.stop()
