"""Pieces shared by the load benchmarks: ports, throwaway databases, sites, readiness."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HITMAP = REPO / ".venv" / "bin" / "hitmap"
PYTHON = REPO / ".venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(kind: str, data_dir: Path) -> Iterator[str]:
    """A throwaway database of ``kind`` ("sqlite" in ``data_dir``, or "postgresql")."""
    if kind == "sqlite":
        yield f"sqlite:///{data_dir / 'hitmap.sqlite3'}"
        return
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.databases import fresh_postgres

    with fresh_postgres("hitmap_bench") as url:
        yield url


def make_sites(env: dict[str, str], count: int) -> list[tuple[str, str]]:
    """An account and ``count`` sites, created through the services: (key, domain)."""
    code = (
        "import json\n"
        "from app.context import build_context\n"
        "from app.settings import load_settings\n"
        "from app.accounts import service as a\n"
        "from app.sites import service as s\n"
        "ctx = build_context(load_settings())\n"
        "out = []\n"
        "with ctx.db.session() as db:\n"
        "    acc = a.sign_up(db, ctx.clock, 'bench@example.org', 'bench password 123')\n"
        f"    for i in range({count}):\n"
        "        sc = s.create_site(db, ctx.clock, account_id=acc.id, domain=f'site{i}.example.org')\n"
        "        out.append((sc.public_key, sc.domain))\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [str(PYTHON), "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return [(k, d) for k, d in json.loads(result.stdout.strip().splitlines()[-1])]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} not ready after {timeout}s")
