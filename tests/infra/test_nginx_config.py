"""infra/nginx: the rendered configuration passes `nginx -t`, and a running nginx treats
requests as Hitmap needs (the client's own address in X-Forwarded-For, whatever the client
wrote there; the widget's cache headers; no public /metrics; no addresses in the log).

Needs nginx and openssl (scripts/test installs both); any user can run them here: every
path lives under the test's temporary prefix and the ports are unprivileged.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from app.ingest.pipeline import client_ip_of
from tests.infra.helpers import load_infra_script
from tests.live import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [
    pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]


render = load_infra_script("nginx/render")  # infra/nginx/render.py


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _values(
    tmp_path: Path, certificate: tuple[Path, Path], upstreams: list[int], https: int, http: int
) -> dict[str, str]:
    cert, key = certificate
    return {
        "NGINX_UPSTREAM_SERVERS": " ".join(f"server 127.0.0.1:{p};" for p in upstreams),
        "NGINX_HTTP_LISTEN": f"127.0.0.1:{http}",
        "NGINX_HTTPS_LISTEN": f"127.0.0.1:{https}",
        "NGINX_SERVER_NAME": "localhost",
        "NGINX_TLS_CERT": str(cert),
        "NGINX_TLS_KEY": str(key),
        "NGINX_ACCESS_LOG": str(tmp_path / "access.log"),
        "HITMAP_BASE_URL": f"https://localhost:{https}",
    }


def _nginx(prefix: Path, *args: str) -> list[str]:
    return [
        NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
        "-e", str(prefix / "logs" / "error.log"), *args,
    ]  # fmt: skip


def _code(text: str) -> str:
    """The configuration without comments: what nginx reads."""
    return "\n".join(line.split("#", 1)[0].rstrip() for line in text.splitlines())


def _block(code: str, opening: str) -> str:
    """The body of the first block that starts with ``opening`` (locations do not nest)."""
    start = code.index(opening + " {")
    return code[start : code.index("}", start)]


# --- the rendered file ------------------------------------------------------------------


def test_rendered_configuration_passes_nginx_t(tmp_path, certificate):
    prefix = tmp_path / "nginx"
    values = _values(tmp_path, certificate, [18001, 18002], https=free_port(), http=free_port())
    conf = render.write_prefix(prefix, values)
    done = subprocess.run(_nginx(prefix, "-t"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    assert conf.read_text().count(str(prefix)) >= 7  # pid, error log, temp paths, include


def test_rendered_configuration_has_the_directives_hitmap_relies_on(tmp_path, certificate):
    values = _values(tmp_path, certificate, [18001, 18002], https=18443, http=18080)
    code = _code(render.render(values))
    assert "${" not in code

    upstream = _block(code, "upstream hitmap_web")
    assert "server 127.0.0.1:18001;" in upstream and "server 127.0.0.1:18002;" in upstream
    assert re.search(r"^\s*keepalive \d+;", upstream, re.M)
    assert "proxy_http_version 1.1;" in code
    assert 'proxy_set_header Connection "";' in code

    # nginx is the edge: the header is replaced, never appended to.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in code
    assert "$proxy_add_x_forwarded_for" not in code
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in code
    assert "proxy_set_header Host $host;" in code

    assert "listen 127.0.0.1:18443 ssl;" in code
    assert "return 301 https://localhost:18443$request_uri;" in code
    assert re.search(r"^\s*gzip on;", code, re.M)
    types = re.search(r"gzip_types([^;]+);", code)
    assert types is not None
    assert {"text/css", "application/javascript", "application/json"} <= set(types[1].split())

    for route in ("location /c/", "location /b/"):
        body = _block(code, route)
        assert "proxy_buffering off;" in body and "access_log off;" in body
    assert "proxy_request_buffering off;" in _block(code, "location /b/")
    assert re.search(r"^\s*large_client_header_buffers 4 8k;", code, re.M)
    assert "deny all;" in _block(code, "location = /metrics")
    assert "proxy_pass" not in _block(code, "location = /metrics")

    log_format = re.search(r"log_format hitmap_noip(.*?);", code, re.S)
    assert log_format is not None
    for leak in ("$remote_addr", "$http_x_forwarded_for", "$http_user_agent", "$request "):
        assert leak not in log_format[1]
    assert code.count("hitmap_noip") == 3  # defined, and used by both servers


def test_render_names_what_is_missing():
    with pytest.raises(render.RenderError, match="NGINX_TLS_CERT"):
        render.render({"NGINX_UPSTREAM_SERVERS": "server 127.0.0.1:1;"})
    with pytest.raises(render.RenderError, match="NGINX_SURPRISE"):
        render.render({}, template="listen ${NGINX_SURPRISE};")


# --- a running nginx in front of a recording upstream ----------------------------------


class Recorder(ThreadingHTTPServer):
    """Stands in for a web process: records what nginx sent, answers like Hitmap does."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[str, int], dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real server does

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                recorder.seen.append((self.path, self.client_address, dict(self.headers)))
                body = json.dumps({"path": self.path}).encode() * 40  # worth compressing
                self.send_response(200)
                if self.path.startswith("/w"):  # as the app answers: widget a year, loader an hour
                    self.send_header("Content-Type", "text/javascript")
                    year, hour = "public, max-age=31536000, immutable", "public, max-age=3600"
                    self.send_header("Cache-Control", year if self.path.startswith("/w/") else hour)
                else:
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@dataclass
class Proxied:
    https: int
    http: int
    upstream: Recorder
    access_log: Path
    cert: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https}"

    def client(self, source: str = "127.0.0.1") -> httpx.Client:
        """Connects from ``source``, trusting the test's self-signed certificate."""
        trust = ssl.create_default_context(cafile=str(self.cert))
        transport = httpx.HTTPTransport(local_address=source, verify=trust)
        return httpx.Client(transport=transport, timeout=5)


@pytest.fixture
def proxied(tmp_path, certificate) -> Iterator[Proxied]:
    upstream = Recorder()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    https, http = free_port(), free_port()
    prefix = tmp_path / "nginx"
    values = _values(tmp_path, certificate, [upstream.server_address[1]], https=https, http=http)
    render.write_prefix(prefix, values)
    nginx = subprocess.Popen(
        _nginx(prefix, "-g", "daemon off;"), stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{http}/", timeout=1)
                break
            except httpx.TransportError:
                assert nginx.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield Proxied(
            https, http, upstream, Path(values["NGINX_ACCESS_LOG"]), Path(values["NGINX_TLS_CERT"])
        )
    finally:
        nginx.terminate()
        nginx.wait(10)
        upstream.shutdown()
        upstream.server_close()


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.1"])
def test_a_forged_x_forwarded_for_never_reaches_hitmap(proxied, source):
    with proxied.client(source) as client:
        response = client.get(
            f"{proxied.url}/c/KEY.png", headers={"X-Forwarded-For": "8.8.8.8, 10.0.0.1"}
        )
    assert response.status_code == 200
    path, peer, headers = proxied.upstream.seen[-1]
    assert path == "/c/KEY.png"
    assert headers["X-Forwarded-For"] == source
    assert headers["X-Forwarded-Proto"] == "https"
    # What the counter concludes with nginx (the peer) as its one trusted proxy. A client
    # on the trusted address itself would win with an appended header: it does not here.
    trusted = (ipaddress.ip_network("127.0.0.1/32"),)
    assert client_ip_of(peer[0], headers["X-Forwarded-For"], trusted) == source


def test_upstream_connections_are_kept_alive(proxied):
    with proxied.client() as client:
        for _ in range(5):
            assert client.get(f"{proxied.url}/map/KEY").status_code == 200
    peers = {peer for _, peer, _ in proxied.upstream.seen}
    assert len(proxied.upstream.seen) == 5
    assert len(peers) == 1  # one upstream connection carried all five
    assert all("Connection" not in headers for _, _, headers in proxied.upstream.seen)


def test_http_redirects_to_the_base_url(proxied):
    response = httpx.get(f"http://127.0.0.1:{proxied.http}/sites?x=1", timeout=5)
    assert response.status_code == 301
    assert response.headers["location"] == f"https://localhost:{proxied.https}/sites?x=1"
    assert proxied.upstream.seen == []


def test_widget_cache_gzip_and_metrics(proxied):
    with proxied.client() as client:
        versioned = client.get(f"{proxied.url}/w/abc123.js")
        plain = client.get(f"{proxied.url}/w.js")
        page = client.get(f"{proxied.url}/sites", headers={"Accept-Encoding": "gzip"})
        metrics = client.get(f"{proxied.url}/metrics")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["content-encoding"] == "gzip"
    assert plain.headers["cache-control"] == "public, max-age=3600"  # the app's own
    assert plain.headers["content-encoding"] == "gzip"
    assert page.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in page.headers["vary"]
    assert page.text.startswith('{"path": "/sites"}')  # httpx undid the gzip
    assert metrics.status_code == 403
    assert "/metrics" not in [path for path, _, _ in proxied.upstream.seen]


def test_access_log_holds_no_address_and_skips_counter_and_beacon(proxied):
    with proxied.client("127.0.0.3") as client:
        client.get(f"{proxied.url}/c/KEY.png")
        client.get(f"{proxied.url}/b/KEY")
        client.get(f"{proxied.url}/map/KEY?range=7d", headers={"User-Agent": "Secret-Agent/1.0"})
    deadline = time.monotonic() + 5
    while "/map/KEY" not in proxied.access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # nginx writes the line after the response
    logged = proxied.access_log.read_text()
    assert "GET /map/KEY 200" in logged
    assert "127.0.0.3" not in logged and "Secret-Agent" not in logged
    assert "range=7d" not in logged
    assert "/c/KEY" not in logged and "/b/KEY" not in logged


def test_an_oversized_header_never_reaches_hitmap(proxied):
    with proxied.client() as client:
        refused = client.get(f"{proxied.url}/sites", headers={"X-Big": "a" * 64 * 1024})
        fine = client.get(f"{proxied.url}/sites", headers={"X-Big": "a" * 4 * 1024})
    assert refused.status_code == 400
    assert fine.status_code == 200
    assert [path for path, _, _ in proxied.upstream.seen] == ["/sites"]
