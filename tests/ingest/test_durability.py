"""The real server process: a database outage, kill -9, restart. Acknowledged hits all count.

`hitmap serve` runs as a subprocess (two worker processes, as in production) on
PostgreSQL reached through a proxy the test can cut, so the database becomes
unreachable without stopping the shared server. The long runs live in bench/load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.clock import SystemClock
from app.context import build_context
from app.db import Database, make_engine
from app.migrate import upgrade
from app.models import HeatmapClick, Visit
from app.settings import Settings
from tests.conftest import TEST_GEOIP, TEST_SECRET
from tests.databases import fresh_postgres
from tests.factories import make_account, make_site
from tests.live import free_port
from tests.tcp_proxy import CuttableProxy

HITMAP = Path(sys.executable).parent / "hitmap"
# The counter's budget while the database is gone: the spool's fsync, not a timeout.
OUTAGE_ANSWER_BUDGET_SECONDS = 0.5


class Served:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port = env, port
        self.log = log.open("ab")  # shown when the test fails
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(HITMAP), "serve"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/w.js", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("hitmap serve did not start")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)  # every worker, no goodbye
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def beacon(self, key: str, n: int) -> int:
        body = {
            "p": f"/post/{n}",
            "c": [
                {
                    "x": 10 + i,
                    "y": 20,
                    "w": 1400,
                    "h": 3000,
                    "v": 1400,
                    "r": 1,
                    "s": "#buy",
                    "ox": 0.5,
                    "oy": 0.5,
                }
                for i in range(5)
            ],
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/b/{key}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "text/plain", "Origin": "https://blog.example.org"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (http only)
            return response.status

    def hit(self, key: str, n: int) -> tuple[int, float]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/c/{key}.png",
            headers={
                "User-Agent": f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{n}.0",
                "X-Forwarded-For": "81.2.69.142",
                "Referer": "https://blog.example.org/post/1",
            },
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (http only)
            assert response.read().startswith(b"\x89PNG")
            return response.status, time.monotonic() - started


@pytest.fixture
def postgres_via_proxy(tmp_path):
    with fresh_postgres("hitmap_durable") as direct:
        engine = make_engine(direct)
        upgrade(engine)
        url = make_url(direct)
        proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
        try:
            yield engine, url.set(port=proxy.port).render_as_string(hide_password=False), proxy
        finally:
            proxy.close()
            engine.dispose()


def test_outage_then_kill_minus_9_loses_no_acknowledged_hit(postgres_via_proxy, tmp_path):
    engine, proxied_url, proxy = postgres_via_proxy
    settings = Settings(data_dir=tmp_path / "data", secret_key=TEST_SECRET, geoip_path=TEST_GEOIP)
    ctx = build_context(settings, db=Database(engine), clock=SystemClock())
    site = make_site(ctx, make_account(ctx))
    port = free_port()
    env = {
        **os.environ,
        "HITMAP_DATA_DIR": str(tmp_path / "data"),
        "HITMAP_DATABASE_URL": proxied_url,
        "HITMAP_SECRET_KEY": TEST_SECRET,
        "HITMAP_GEOIP_PATH": str(TEST_GEOIP),
        "HITMAP_TRUSTED_PROXIES": "127.0.0.1",
        "HITMAP_PORT": str(port),
        "HITMAP_WORKERS": "2",
    }
    log = tmp_path / "serve.log"
    server = Served(env, port, log)
    server.start()
    try:
        for n in range(10):  # the database is up: each answer follows its commit
            assert server.hit(site.public_key, n)[0] == 200
        assert _visits(engine, site) == 10

        assert server.beacon(site.public_key, 0) == 204
        proxy.cut()
        answers = [server.hit(site.public_key, n) for n in range(10, 30)]
        assert {server.beacon(site.public_key, n) for n in range(1, 11)} == {204}
        assert {status for status, _ in answers} == {200}
        assert max(seconds for _, seconds in answers) < OUTAGE_ANSWER_BUDGET_SECONDS
        assert _visits(engine, site) == 10  # acknowledged from the spool, not written yet

        server.kill()
        proxy.restore()
        server.start()  # a new process adopts the dead one's spool segments
        _wait_for(lambda: _visits(engine, site) == 30, seconds=20)
        _wait_for(lambda: _clicks(engine) == 55, seconds=5)  # 11 batches of 5 clicks
        assert server.hit(site.public_key, 5)[0] == 200  # a repeat: still 30
        time.sleep(1.5)  # one more replay cycle: nothing is applied twice
        assert _visits(engine, site) == 30
        assert not list((tmp_path / "data" / "spool").glob("spool-*.log"))
    except Exception:
        print(log.read_text(errors="replace")[-6000:])  # the server's side of the story
        raise
    finally:
        server.stop()
        server.log.close()


def _visits(engine, scope) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                select(func.count()).select_from(Visit).where(Visit.site_id == scope.site_id)
            )
        )


def _clicks(engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(HeatmapClick)))


def _wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)
