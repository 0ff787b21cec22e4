"""/metrics adds up every worker process of `hitmap serve --workers N`.

One test runs processes that only count (prometheus_client's multiprocess files,
fast); the other runs the real server with two workers on both databases.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

from app.context import build_context
from app.db import Database, make_engine
from app.migrate import upgrade
from app.settings import Settings
from tests.conftest import TEST_GEOIP, TEST_SECRET
from tests.factories import make_account, make_site
from tests.live import ServedProcess, free_port, own_database, serve_env
from tests.ops.helpers import parse, value

WORKER = """
import os
from app.ops import metrics
assert metrics.MULTIPROCESS
metrics.HITS_RECORDED.inc({hits})
metrics.hits_dropped({{"shed": 2}})
metrics.WRITER_QUEUE.set(7)  # then dies without a goodbye, as kill -9 would
print(os.getpid())
"""
SCRAPER = """
from pathlib import Path
from app.ops import metrics
from app.ops.spool_stats import SpoolStats
print(metrics.exposition(SpoolStats(Path({spool!r})))[0].decode())
"""


def _python(code: str, metrics_dir: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_process_counts_and_a_dead_ones_queue_leaves_the_sum(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    pids = [_python(WORKER.format(hits=hits), metrics_dir).strip() for hits in (3, 4)]
    assert all((metrics_dir / f"gauge_livesum_{pid}.db").exists() for pid in pids)
    samples = parse(_python(SCRAPER.format(spool=str(tmp_path / "spool")), metrics_dir))
    assert value(samples, "hitmap_hits_recorded_total") == 7
    assert value(samples, "hitmap_hits_dropped_total", reason="shed") == 4
    assert value(samples, "hitmap_writer_queue_depth") == 0  # both writers are gone
    assert not any((metrics_dir / f"gauge_livesum_{pid}.db").exists() for pid in pids)
    assert all((metrics_dir / f"counter_{pid}.db").exists() for pid in pids)  # totals stay


def _worker_pids(metrics_dir: Path) -> list[int]:
    """The serving processes: each made its metric files when it imported the app."""
    return sorted(int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("counter_*.db"))


def _recorded_per_worker(metrics_dir: Path) -> dict[int, float]:
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        for key, count, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == "hitmap_hits_recorded_total":
                counts[int(path.stem.rsplit("_", 1)[1])] = count
    return counts


@contextlib.contextmanager
def _paused(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _events(log: Path) -> list[str | None]:
    lines = log.read_text(errors="replace").splitlines()
    return [json.loads(line).get("event") for line in lines if line.startswith("{")]


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_two_workers_one_sum(database_url, tmp_path):
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        data = tmp_path / "data"
        settings = Settings(data_dir=data, secret_key=TEST_SECRET, geoip_path=TEST_GEOIP)
        ctx = build_context(settings, db=Database(engine))
        site = make_site(ctx, make_account(ctx))
        engine.dispose()
        port = free_port()
        env = serve_env(url, data, port, HITMAP_WORKERS="2", HITMAP_LOG_FORMAT="json")
        server = ServedProcess(env, port, tmp_path / "serve.log")
        metrics_dir = data / "metrics" / f"serve-{socket.gethostname()}-{port}"
        try:
            _wait_for(lambda: _events(server.log).count("worker_ready") == 2)
            workers = _worker_pids(metrics_dir)
            assert len(workers) == 2
            # A paused worker accepts nothing: the hits go to the other one.
            for n, busy in enumerate(workers):
                with _paused(next(pid for pid in workers if pid != busy)):
                    for i in range(10):
                        _hit(server, site.public_key, 10 * n + i)
            assert _recorded_per_worker(metrics_dir) == {workers[0]: 10, workers[1]: 10}
            for pid in workers:  # whichever worker answers, it shows everyone's hits
                with _paused(pid):
                    samples = parse(server.get("/metrics").decode())
                assert value(samples, "hitmap_hits_recorded_total") == 20
                assert value(samples, "hitmap_visits_new_total") == 20
                assert value(samples, "hitmap_writer_queue_depth") == 0
            assert json.loads(server.get("/readyz"))["status"] == "ready"
        finally:
            server.stop()
        # Each worker said goodbye: no queue depth of a dead process is left behind.
        assert not list(metrics_dir.glob("gauge_livesum_*.db"))
        log = server.log.read_text()
        assert "203.0.113." not in log and "Firefox/" not in log
        assert _events(server.log).count("worker_stopped") == 2


def _hit(server: ServedProcess, key: str, n: int) -> None:
    body = server.get(
        f"/c/{key}.png",
        headers={
            "User-Agent": f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{n}.0",
            "X-Forwarded-For": f"203.0.113.{n % 250 + 1}",
            "Referer": "https://blog.example.org/post/1",
        },
    )
    assert body.startswith(b"\x89PNG")
