"""infra/local-cluster smoke: the whole topology on this machine, checked through nginx,
then nothing of it left behind.

Runs as root only: the smoke test's client connects from a public address (placed by
GeoIP) that the script adds to `lo` for the run. scripts/test runs as root and installs
nginx and openssl, so this test runs in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import psycopg
import pytest

from tests.databases import PG_ADMIN_DSN
from tests.infra.helpers import INFRA

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="adds an address to lo: needs root"),
    pytest.mark.skipif(
        shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"),
        reason="nginx is not installed (scripts/test installs nginx-light)",
    ),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

STEPS = (
    "PASS start nginx, two web processes, PostgreSQL database",
    "PASS plain http redirects to https",
    "PASS sign up through nginx",
    "PASS register a site",
    "PASS start 2 workers",
    "PASS counter hit: the client's address reaches GeoIP through nginx",
    "PASS 2 workers: the night is queued once",
    "PASS a counter style change is drawn by a worker",
    "PASS public map page and its image through nginx (gzip)",
    "PASS /w.js: the loader an hour, the widget it names a year",
    "PASS /metrics is not reachable through nginx",
    "PASS one web process stops: nginx keeps serving",
    "PASS stop everything",
)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)  # the process group: the process and anything it started
    except ProcessLookupError:
        return False
    return True


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_smoke_runs_the_topology_and_leaves_nothing_behind(tmp_path):
    state_file = tmp_path / "state.json"
    started = time.monotonic()
    run = subprocess.run(
        [
            str(INFRA / "local-cluster"), "smoke",
            "--state", str(state_file), "--pg-admin", PG_ADMIN_DSN,
        ],
        env={**os.environ, "HITMAP_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    took = time.monotonic() - started
    print(run.stdout, run.stderr, f"took {took:.1f} s", sep="\n")  # shown when it fails
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    for step in STEPS:
        assert [line for line in lines if line.startswith(step)], f"missing: {step}"
    geo = next(line for line in lines if "reaches GeoIP" in line)
    assert "1 visit in SE" in geo and "8.8.8.8 ignored" in geo
    assert lines[-1].startswith(f"PASS local-cluster smoke: {len(STEPS) - 1} steps")

    state = json.loads(state_file.read_text())
    names = sorted(p["name"] for p in state["processes"])
    assert names == ["nginx", "web-1", "web-2", "worker-1", "worker-2"]
    assert [p["pid"] for p in state["processes"] if _alive(p["pid"])] == []
    assert len(state["ports"]) == 4
    assert [port for port in state["ports"] if _answers(port)] == []
    assert state["database"].startswith("hitmap_cluster_")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = %s", (state["database"],)
        ).fetchall()
    assert left == []
    assert len(state["loopback"]) == 1
    on_lo = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout
    assert f" {state['loopback'][0]}/" not in on_lo
    assert not os.path.exists(state["dir"])
