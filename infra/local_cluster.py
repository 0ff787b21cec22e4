"""infra/local-cluster: Hitmap's production topology on this machine, without containers.

nginx (TLS with a self-signed certificate, on free loopback ports) -> two ``hitmap serve``
processes -> this machine's PostgreSQL (a scratch database), and two ``hitmap worker``
processes sharing the job queue. Run through the ``infra/local-cluster`` wrapper:

    infra/local-cluster smoke   # start, check each step through nginx, stop; exit 0 = PASS
    infra/local-cluster up      # start and keep running until Ctrl-C or SIGTERM, then stop

Whatever happens (a failed step, an exception, SIGINT/SIGTERM/SIGHUP), everything it
started is stopped on the way out: its processes (each in a process group of its own),
the scratch database (dropped), the loopback address the smoke test's client used, the
temporary directory, and PostgreSQL itself if this script had to start it.
"""

# This script's job is starting programs (hitmap, nginx, openssl, ip, pg_ctlcluster) with
# arguments it builds itself; found on PATH as an operator would run them.
# ruff: noqa: S603, S607

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from widgets import widget_version

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "nginx"))
import render as nginx_render  # noqa: E402 - infra/nginx is a folder of scripts, not a package

DEFAULT_PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
WEB_PROCESSES = 2
WORKER_PROCESSES = 2
# The smoke test's client connects from an address of this network, added to `lo` for the
# run: the bundled GeoLite2-City places it in Sweden. A random host of the /24 per run, so
# two runs at once do not remove each other's address.
CLIENT_NETWORK = ipaddress.ip_network("89.160.20.0/24")
CLIENT_COUNTRY = "SE"
# What the client claims to be in its own X-Forwarded-For (Google DNS: the United States).
FORGED_ADDRESS = "8.8.8.8"
SITE_DOMAIN = "blog.example.org"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
MAP_SPANS = ("24h", "7d", "30d", "365d", "all")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class SmokeFailed(Exception):
    """A smoke step's check did not hold; the message says what was seen."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so that everything is stopped."""


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _hitmap_command() -> str:
    beside = Path(sys.executable).parent / "hitmap"  # the venv the wrapper chose
    found = str(beside) if beside.exists() else shutil.which("hitmap")
    if not found:
        raise SystemExit("hitmap is not installed: run `pip install -e .` in the venv first")
    return found


def _nginx_command() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        raise SystemExit("nginx is not installed: apt-get install nginx-light")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def is_root() -> bool:
    return os.geteuid() == 0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    {line}" for line in text[-lines:])

    def signal_group(self, sig: signal.Signals) -> None:
        # Each process leads a group of its own (start_new_session): the group id is its
        # pid, and the group holds exactly what it started (nginx's workers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass
class Cluster:
    pg_admin: str = DEFAULT_PG_ADMIN
    keep_dir: bool = False
    state_path: Path | None = None
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hitmap-cluster-")))
    procs: list[Proc] = field(default_factory=list)
    db_name: str | None = None
    started_postgres: str | None = None  # the cluster version this script started
    loopback: list[str] = field(default_factory=list)
    https_port: int = 0
    http_port: int = 0
    web_ports: list[int] = field(default_factory=list)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    # --- paths and settings -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def cert(self) -> Path:
        return self.dir / "tls" / "cert.pem"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def db_url(self) -> str:
        params = conninfo_to_dict(self.pg_admin)
        user = params.get("user") or "postgres"
        host = params.get("host") or "127.0.0.1"
        port = params.get("port") or "5432"
        return f"postgresql+psycopg://{user}@{host}:{port}/{self.db_name}"

    def env(self, **extra: str) -> dict[str, str]:
        """The children's environment: this one without any HITMAP_* the caller had set."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HITMAP_")}
        env.update(
            HITMAP_DATABASE_URL=self.db_url,
            HITMAP_SECRET_KEY=self.secret_key,
            HITMAP_PRODUCTION="true",
            # One data dir for both web processes: spool segments are flocked by their
            # writer, and a live process adopts the segments of one that died.
            HITMAP_DATA_DIR=str(self.dir / "data"),
            HITMAP_BASE_URL=self.base_url,
            HITMAP_TRUSTED_PROXIES="127.0.0.1",
            HITMAP_HOST="127.0.0.1",
            HITMAP_WORKERS="1",
        )
        env.update(extra)
        return env

    def connect(self) -> psycopg.Connection[Any]:
        conninfo = make_conninfo(self.pg_admin, dbname=self.db_name, connect_timeout=5)
        return psycopg.connect(conninfo, autocommit=True)

    def web(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("web")]

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("worker")]

    def write_state(self) -> None:
        """What was started, for whoever checks afterwards that all of it is gone (tests)."""
        if self.state_path is None:
            return
        state = {
            "dir": str(self.dir),
            "database": self.db_name,
            "pg_admin": self.pg_admin,
            "loopback": self.loopback,
            "ports": [p for p in (self.https_port, self.http_port, *self.web_ports) if p],
            "processes": [{"name": p.name, "pid": p.pid} for p in self.procs],
        }
        self.state_path.write_text(json.dumps(state, indent=2))

    # --- starting -----------------------------------------------------------------------

    def start(self, *, workers: bool = True, say: Callable[[str], None] = print) -> None:
        self.dir.chmod(0o711)  # nginx's workers (user nobody) reach their temp dirs inside
        self.logs.mkdir()
        self.https_port, self.http_port = free_port(), free_port()
        self.web_ports = [free_port() for _ in range(WEB_PROCESSES)]
        self.write_state()
        self._ensure_postgres(say)
        self._create_database()
        say(f"database {self.db_name} created")
        self._make_certificate()
        migrate = subprocess.run(
            [_hitmap_command(), "migrate"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if migrate.returncode != 0:
            raise SmokeFailed(f"hitmap migrate failed:\n{migrate.stdout}{migrate.stderr}")
        for n, port in enumerate(self.web_ports, 1):
            self._spawn(f"web-{n}", [_hitmap_command(), "serve", "--port", str(port)], port)
        for proc in self.procs:
            self._wait_ready(proc)
        say("web processes ready: " + ", ".join(f"{p.name} :{p.port}" for p in self.procs))
        self._start_nginx()
        say(f"nginx on https :{self.https_port} and http :{self.http_port}")
        if workers:
            self.start_workers()

    def start_workers(self, **env: str) -> None:
        for n in range(1, WORKER_PROCESSES + 1):
            name = f"worker-{n}"
            self._spawn(name, [_hitmap_command(), "worker", "--name", name], None, **env)

    def _spawn(self, name: str, argv: list[str], port: int | None, **env: str) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                env=self.env(**env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log, port)
        self.procs.append(proc)
        self.write_state()
        return proc

    def _wait_ready(self, proc: Proc) -> None:
        """200 from /readyz (database, migrations, GeoIP)."""
        assert proc.port is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not proc.alive():
                raise SmokeFailed(f"{proc.name} exited at start-up:\n{proc.tail()}")
            try:
                if _plain_get(proc.port, "/readyz") == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SmokeFailed(f"{proc.name} not ready after {START_TIMEOUT:.0f} s:\n{proc.tail()}")

    def _ensure_postgres(self, say: Callable[[str], None]) -> None:
        if _postgres_answers(self.pg_admin):
            return
        versions = sorted(os.listdir("/etc/postgresql"), key=_version_key)
        if not versions or not shutil.which("pg_ctlcluster"):
            raise SmokeFailed("PostgreSQL does not answer and no local cluster can be started")
        version = versions[-1]
        say(f"starting PostgreSQL {version} (stopped again at the end)")
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True
        )
        self.started_postgres = version
        deadline = time.monotonic() + START_TIMEOUT
        while not _postgres_answers(self.pg_admin):
            if time.monotonic() > deadline:
                raise SmokeFailed("PostgreSQL did not come up")
            time.sleep(0.3)

    def _create_database(self) -> None:
        self.db_name = f"hitmap_cluster_{secrets.token_hex(5)}"
        self.write_state()
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')

    def _make_certificate(self) -> None:
        (self.dir / "tls").mkdir()
        key = self.dir / "tls" / "key.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", str(key), "-out", str(self.cert),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        key.chmod(0o600)

    def _start_nginx(self) -> None:
        prefix = self.dir / "nginx"
        prefix.mkdir(mode=0o711)
        values = {
            "NGINX_UPSTREAM_SERVERS": " ".join(f"server 127.0.0.1:{p};" for p in self.web_ports),
            "NGINX_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "NGINX_HTTPS_LISTEN": f"127.0.0.1:{self.https_port}",
            "NGINX_SERVER_NAME": "localhost",
            "NGINX_TLS_CERT": str(self.cert),
            "NGINX_TLS_KEY": str(self.dir / "tls" / "key.pem"),
            "NGINX_ACCESS_LOG": str(self.logs / "nginx-access.log"),
            "HITMAP_BASE_URL": self.base_url,
        }
        conf = nginx_render.write_prefix(prefix, values)
        nginx = _nginx_command()
        base = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(self.logs / "nginx-error.log")]
        test = subprocess.run([*base, "-t"], capture_output=True, text=True, check=False)
        if test.returncode != 0:
            raise SmokeFailed(f"nginx -t refused the generated configuration:\n{test.stderr}")
        proc = self._spawn("nginx", [*base, "-g", "daemon off;"], self.https_port)
        deadline = time.monotonic() + START_TIMEOUT
        while not port_open(self.https_port):
            if not proc.alive() or time.monotonic() > deadline:
                errors = (self.logs / "nginx-error.log").read_text(errors="replace")
                raise SmokeFailed(f"nginx did not start:\n{proc.tail()}\n{errors}")
            time.sleep(0.05)

    # --- the smoke test's client address ---------------------------------------------

    def add_client_address(self) -> str:
        taken = subprocess.run(
            ["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True
        ).stdout
        hosts = list(CLIENT_NETWORK.hosts())
        for _ in range(50):
            candidate = str(hosts[secrets.randbelow(len(hosts))])
            if f" {candidate}/" not in taken:
                break
        else:
            raise SmokeFailed(f"no free address in {CLIENT_NETWORK} for the client")
        subprocess.run(["ip", "addr", "add", f"{candidate}/32", "dev", "lo"], check=True)
        self.loopback.append(candidate)
        self.write_state()
        return candidate

    # --- stopping -----------------------------------------------------------------------

    def stop(self, say: Callable[[str], None] = print) -> list[str]:
        """Stop and remove everything started; return what could not be (empty: all gone)."""
        problems: list[str] = []
        # All at once: SIGTERM lets uvicorn finish its requests and the writer flush its
        # hits, and a worker finish its job; none of that needs the others to stay up.
        for proc in reversed(self.procs):
            proc.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.alive() or proc.group_alive():
                say(f"{proc.name} (pid {proc.pid}) ignored SIGTERM; killing it")
                proc.signal_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(5)
            if proc.alive() or proc.group_alive():
                problems.append(f"{proc.name} (pid {proc.pid}) is still running")
        for address in self.loopback:
            done = subprocess.run(
                ["ip", "addr", "del", f"{address}/32", "dev", "lo"],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                problems.append(f"cannot remove {address} from lo: {done.stderr.strip()}")
        if self.db_name:
            try:
                with psycopg.connect(self.pg_admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            except psycopg.Error as exc:
                problems.append(f"cannot drop database {self.db_name}: {exc}")
        if self.started_postgres:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", self.started_postgres, "main",
                 "stop"],
                check=False,
            )  # fmt: skip
        if self.keep_dir:
            say(f"logs and configuration kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    def print_logs(self) -> None:
        for proc in self.procs:
            print(f"--- {proc.name} (pid {proc.pid}), last lines of {proc.log.name}:")
            print(proc.tail())
        errors = self.logs / "nginx-error.log"
        if errors.exists():
            print("--- nginx error log:")
            print(errors.read_text(errors="replace")[-3000:])


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _postgres_answers(pg_admin: str) -> bool:
    try:
        with psycopg.connect(make_conninfo(pg_admin, connect_timeout=2)):
            return True
    except psycopg.OperationalError:
        return False


def _plain_get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# --- an HTTPS client with cookies, optionally from a given source address ----------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Browser:
    """Just enough of a browser: cookies, forms with the page's CSRF token, no redirects."""

    def __init__(self, port: int, cafile: Path, source: str | None = None) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.source = (source, 0) if source else None
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=20, source_address=self.source
        )
        sent = {"Accept": "text/html", "User-Agent": BROWSER_UA, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            answer = Answer(response.status, response.msg, response.read())
        finally:
            conn.close()
        for line in answer.headers.get_all("Set-Cookie") or []:
            self.set_cookies.append(line)
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        return answer

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, headers=headers)

    def submit(self, page: str, action: str, fields: dict[str, str]) -> Answer:
        """Load the page, then post the form with its CSRF token, as a browser does."""
        loaded = self.get(page)
        _expect(loaded.status == 200, f"GET {page} answered {loaded.status}")
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', loaded.text)
        _expect(token is not None, f"{page} has no CSRF token")
        assert token is not None
        body = urllib.parse.urlencode({**fields, "csrf_token": token.group(1)}).encode()
        return self.request(
            "POST",
            action,
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailed(message)


def _wait(what: str, check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SmokeFailed(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.2)


# --- the smoke test -----------------------------------------------------------------------


@dataclass
class Smoke:
    cluster: Cluster
    steps: int = 0
    owner: Browser | None = None
    key: str = ""
    site_id: int = 0
    client_ip: str | None = None
    images: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """PASS/FAIL line per step; the step may append a detail to the yielded list."""
        started = time.monotonic()
        detail: list[str] = []
        try:
            yield detail
        except Exception as exc:
            print(f"FAIL {name}: {exc}", flush=True)
            raise
        self.steps += 1
        extra = f": {'; '.join(detail)}" if detail else ""
        print(f"PASS {name} ({time.monotonic() - started:.1f} s){extra}", flush=True)

    def browser(self, source: str | None = None) -> Browser:
        return Browser(self.cluster.https_port, self.cluster.cert, source)

    def run(self) -> None:
        c = self.cluster
        with self.step("plain http redirects to https") as detail:
            insecure = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=5)
            insecure.request("GET", "/sites?x=1")
            response = insecure.getresponse()
            response.read()
            insecure.close()
            location = response.getheader("Location")
            _expect(response.status == 301, f"status {response.status}")
            _expect(location == f"{c.base_url}/sites?x=1", f"Location {location}")
            detail.append(f"301 -> {location}")

        with self.step("sign up through nginx (form with CSRF token)") as detail:
            self.owner = owner = self.browser()
            email = f"smoke-{secrets.token_hex(4)}@example.org"
            password = secrets.token_urlsafe(16)
            answer = owner.submit(
                "/signup",
                "/signup",
                {"email": email, "password": password, "password_confirm": password},
            )
            _expect(answer.status == 303, f"sign-up answered {answer.status}: {answer.text[:300]}")
            _expect(answer.header("Location") == "/sites", f"to {answer.header('Location')}")
            session = [s for s in owner.set_cookies if s.startswith("hitmap_session=")]
            _expect(bool(session), f"no session cookie in {owner.set_cookies}")
            _expect("secure" in session[-1].lower(), "the session cookie is not Secure")
            detail.append(email)

        with self.step("register a site") as detail:
            answer = owner.submit(
                "/sites/new", "/sites", {"domain": SITE_DOMAIN, "name": "Smoke test"}
            )
            _expect(answer.status == 303, f"answered {answer.status}: {answer.text[:300]}")
            found = re.match(r"/sites/([^/?#]+)", answer.header("Location"))
            _expect(found is not None, f"redirected to {answer.header('Location')}")
            assert found is not None
            self.key = found.group(1)
            with c.connect() as conn:
                row = conn.execute("SELECT id FROM sites WHERE public_key = %s", (self.key,))
                site = row.fetchone()
            _expect(site is not None, "the site is not in the database")
            assert site is not None
            self.site_id = int(site[0])
            detail.append(f"key {self.key}")

        self.start_workers()
        self.counter_hit()
        self.workers_render_night()
        self.style_change_rendered_by_worker()
        self.public_map_page()

        with self.step("/w.js: the loader an hour, the widget it names a year") as detail:
            anyone = self.browser()
            loader = anyone.get("/w.js")
            widget_path = f"/w/{widget_version()}.js"
            _expect(loader.status == 200, f"/w.js answered {loader.status}")
            _expect(widget_path.encode() in loader.body, f"the loader does not name {widget_path}")
            widget = anyone.get(widget_path, **{"Accept-Encoding": "gzip"})
            direct = _direct_get(c.web_ports[0], widget_path)
            _expect(widget.status == 200, f"{widget_path} answered {widget.status}")
            cache = widget.header("Cache-Control")
            _expect(cache == "public, max-age=31536000, immutable", f"widget: {cache!r}")
            _expect(widget.header("Content-Encoding") == "gzip", "the widget is not gzipped")
            _expect(gzip.decompress(widget.body) == direct.body, "not the app's widget")
            loader_cache = loader.header("Cache-Control")
            _expect(loader_cache == "public, max-age=3600", f"loader: {loader_cache!r}")
            detail.append(f"loader {loader_cache!r}, widget {cache!r}")

        with self.step("/metrics is not reachable through nginx") as detail:
            source = self.client_ip
            answer = self.browser(source).get("/metrics")
            _expect(answer.status == 403, f"answered {answer.status}")
            detail.append(f"403 for {source or '127.0.0.1'}")

        with self.step("one web process stops: nginx keeps serving") as detail:
            web = next(p for p in c.procs if p.name == f"web-{WEB_PROCESSES}")
            web.signal_group(signal.SIGTERM)
            web.popen.wait(STOP_TIMEOUT)
            statuses = [self.browser().get(f"/map/{self.key}").status for _ in range(6)]
            _expect(statuses == [200] * 6, f"answers {statuses}")
            detail.append(f"{web.name} stopped, 6 of 6 pages answered")

    def counter_hit(self) -> None:
        c = self.cluster
        root = is_root()
        title = (
            "counter hit: the client's address reaches GeoIP through nginx"
            if root
            else "counter hit (not root: from 127.0.0.1, no country)"
        )
        with self.step(title) as detail:
            if root:
                self.client_ip = c.add_client_address()
            visitor = self.browser(self.client_ip)
            answer = visitor.request(
                "GET",
                f"/c/{self.key}.png",
                headers={
                    "Accept": "image/avif,image/webp,*/*",
                    "Referer": f"https://{SITE_DOMAIN}/post/1",
                    # A forgery nginx must not pass on: Hitmap would believe it.
                    "X-Forwarded-For": FORGED_ADDRESS,
                },
            )
            _expect(answer.status == 200, f"counter answered {answer.status}")
            _expect(answer.body.startswith(b"\x89PNG"), "the counter is not a PNG")
            stats = subprocess.run(
                [_hitmap_command(), "stats", self.key, "--json"],
                env=c.env(),
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            report = json.loads(stats.stdout)
            countries = {entry["code"]: entry["visits"] for entry in report["countries"]}
            _expect(report["total"] == 1, f"{report['total']} visits recorded, not 1")
            _expect("US" not in countries, "the forged X-Forwarded-For was believed")
            if root:
                _expect(countries == {CLIENT_COUNTRY: 1}, f"countries {countries}")
                detail.append(f"from {self.client_ip}: 1 visit in {CLIENT_COUNTRY}")
            else:
                detail.append(f"1 visit, countries {countries}")
            detail.append(f"forged X-Forwarded-For {FORGED_ADDRESS} ignored")

    def _images(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(kind, span) -> (etag, fingerprint) of the site's stored 1x images."""
        with self.cluster.connect() as conn:
            rows = conn.execute(
                "SELECT kind, span, etag, fingerprint FROM rendered_images "
                "WHERE site_id = %s AND variant = '1x'",
                (self.site_id,),
            ).fetchall()
        return {(kind, span): (etag, fp) for kind, span, etag, fp in rows}

    def start_workers(self) -> None:
        # Started once the site exists, so that the night's run has a site to draw; they
        # boot (imports, base maps) while the counter is being checked.
        with self.step(f"start {WORKER_PROCESSES} workers, the night scheduled now") as detail:
            _expect(not self._images(), "images exist before any worker ran")
            # Each worker's periodic deferrer queues a night that began less than 12 hours
            # ago at start-up: all of them try, and only one may.
            at = f"{dt.datetime.now(dt.UTC):%H:%M}"
            self.cluster.start_workers(HITMAP_NIGHTLY_AT=at)
            pids = ", ".join(str(p.pid) for p in self.cluster.workers())
            detail.append(f"HITMAP_NIGHTLY_AT={at} (UTC), pids {pids}")

    def workers_render_night(self) -> None:
        c = self.cluster
        with self.step(f"{WORKER_PROCESSES} workers: the night is queued once") as detail:
            wanted = {("thumbnail", "all")} | {("map", span) for span in MAP_SPANS}

            def rendered() -> bool:
                for proc in c.workers():
                    if not proc.alive():
                        raise SmokeFailed(f"{proc.name} exited:\n{proc.tail()}")
                return wanted <= set(self._images())

            _wait("thumbnail and five maps rendered by a worker", rendered, 45)
            self.images = self._images()
            with c.connect() as conn:
                nights = conn.execute("SELECT count(*) FROM map_nightly_runs").fetchone()
                defers = conn.execute(
                    "SELECT count(*) FROM procrastinate_periodic_defers WHERE task_name = %s",
                    ("hitmap.maps.nightly",),
                ).fetchone()
            _expect(nights == (1,), f"nights claimed: {nights}")
            _expect(defers == (1,), f"nightly jobs deferred: {defers}")
            detail.append(f"night claimed once, 6 images by {self._renderer()}")

    def _renderer(self) -> str:
        names = [
            p.name
            for p in self.cluster.workers()
            if "images rendered" in p.log.read_text("utf-8", "replace")
        ]
        return " and ".join(names) or "a worker"

    def style_change_rendered_by_worker(self) -> None:
        with self.step("a counter style change is drawn by a worker") as detail:
            assert self.owner is not None
            before = self.images[("thumbnail", "all")]
            answer = self.owner.submit(
                f"/sites/{self.key}",
                f"/sites/{self.key}/map-style",
                {"size": "medium", "dot_color": "#1d4ed8", "background": "dark", "show_count": "1"},
            )
            _expect(answer.status == 303, f"style form answered {answer.status}")

            def redrawn() -> bool:
                return self._images().get(("thumbnail", "all"), before) != before

            _wait("new thumbnail", redrawn, 30)
            self.images = self._images()
            detail.append(f"thumbnail {before[0]} -> {self.images[('thumbnail', 'all')][0]}")

    def public_map_page(self) -> None:
        with self.step("public map page and its image through nginx (gzip)") as detail:
            anyone = self.browser()
            page = anyone.get(f"/map/{self.key}", **{"Accept-Encoding": "gzip"})
            _expect(page.status == 200, f"map page answered {page.status}")
            _expect(page.header("Content-Encoding") == "gzip", "the page is not gzipped")
            _expect("accept-encoding" in page.header("Vary").lower(), "no Vary: Accept-Encoding")
            html = gzip.decompress(page.body).decode()
            image_path = f"/map/{self.key}/all.png"
            _expect(image_path in html, f"{image_path} not on the page")
            image = anyone.get(image_path, Accept="image/png")
            _expect(image.status == 200, f"image answered {image.status}")
            _expect(image.body.startswith(b"\x89PNG"), "not a PNG")
            stored = self.images[("map", "all")][0]
            _expect(image.header("ETag") == stored, f"ETag {image.header('ETag')} != {stored}")
            detail.append(
                f"{len(page.body)} of {len(html)} bytes gzipped; "
                f"all.png {len(image.body)} bytes, the worker's render"
            )


def _direct_get(port: int, path: str) -> Answer:
    """A web process's own answer, bypassing nginx."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return Answer(response.status, response.msg, response.read())
    finally:
        conn.close()


def _check_gone(cluster: Cluster) -> list[str]:
    """Independent of stop()'s own account: is anything it started still around?"""
    left = []
    for port in (cluster.https_port, cluster.http_port, *cluster.web_ports):
        if port and port_open(port):
            left.append(f"port {port} still answers")
    if cluster.db_name:
        try:
            with psycopg.connect(cluster.pg_admin, autocommit=True) as conn:
                found = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (cluster.db_name,)
                ).fetchone()
            if found:
                left.append(f"database {cluster.db_name} still exists")
        except psycopg.OperationalError:
            pass  # PostgreSQL was stopped again: so is the database
    shown = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True
    )
    for address in cluster.loopback:
        if f" {address}/" in shown.stdout:
            left.append(f"{address} still on lo")
    return left


def run_smoke(args: argparse.Namespace) -> int:
    started = time.monotonic()
    cluster = Cluster(args.pg_admin, keep_dir=args.keep, state_path=args.state)
    smoke = Smoke(cluster)
    ok = False
    try:
        with smoke.step("start nginx, two web processes, PostgreSQL database") as detail:
            cluster.start(workers=False, say=lambda line: None)
            detail.append(
                f"https :{cluster.https_port} -> web :{', :'.join(map(str, cluster.web_ports))}"
            )
        smoke.run()
        ok = True
    except (Exception, KeyboardInterrupt, Interrupted) as exc:
        if not isinstance(exc, SmokeFailed):
            print(f"FAIL {type(exc).__name__}: {exc}", flush=True)
        cluster.print_logs()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up must not be cut short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        problems = cluster.stop(say=lambda line: print(f"  {line}"))
        problems += _check_gone(cluster)
        if problems:
            ok = False
            print("FAIL stop everything: " + "; ".join(problems), flush=True)
        else:
            print("PASS stop everything: processes, ports, database, address, files", flush=True)
    took = time.monotonic() - started
    verdict = "PASS" if ok else "FAIL"
    print(f"{verdict} local-cluster smoke: {smoke.steps} steps in {took:.1f} s", flush=True)
    return 0 if ok else 1


def run_up(args: argparse.Namespace) -> int:
    cluster = Cluster(args.pg_admin, keep_dir=args.keep, state_path=args.state)
    try:
        cluster.start(workers=True)
        print(
            f"""
Hitmap cluster running (process {os.getpid()}):
  {cluster.base_url}   sign up here; certificate (self-signed): {cluster.cert}
  http://127.0.0.1:{cluster.http_port}   redirects to https
  web:      {", ".join(f"127.0.0.1:{p.port} (pid {p.pid})" for p in cluster.web())}
  workers:  {", ".join(f"pid {p.pid}" for p in cluster.workers())}
  database: {cluster.db_name} (dropped on stop); logs: {cluster.logs}
  e.g. curl --cacert {cluster.cert} {cluster.base_url}/readyz

Stop with Ctrl-C, or `kill {os.getpid()}`: everything above is stopped and removed.""",
            flush=True,
        )
        while all(p.alive() for p in cluster.procs):
            time.sleep(1)
        dead = [p for p in cluster.procs if not p.alive()]
        print(f"{dead[0].name} exited; stopping the cluster", flush=True)
        cluster.print_logs()
        return 1
    except (KeyboardInterrupt, Interrupted):
        print("\nstopping", flush=True)
        return 0
    except SmokeFailed as exc:
        print(f"cannot start the cluster: {exc}", flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        problems = cluster.stop() + _check_gone(cluster)
        print("stopped" if not problems else "left behind: " + "; ".join(problems), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="infra/local-cluster",
        description="nginx -> two `hitmap serve` -> PostgreSQL, and two `hitmap worker`, "
        "on this machine; everything started is stopped on exit.",
    )
    parser.add_argument("mode", choices=["smoke", "up"], help="smoke: check and stop; up: run")
    parser.add_argument(
        "--pg-admin",
        default=DEFAULT_PG_ADMIN,
        help=f"libpq connection string of a role that may create databases ({DEFAULT_PG_ADMIN})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and configuration")
    parser.add_argument("--state", type=Path, help="write what was started to this JSON file")
    args = parser.parse_args(argv)
    # Ctrl-C as KeyboardInterrupt even when started in the background (where a shell
    # would have it ignored); SIGTERM and SIGHUP unwind the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    return run_smoke(args) if args.mode == "smoke" else run_up(args)


if __name__ == "__main__":
    sys.exit(main())
