"""Prometheus metrics: what the counter, the spool, the beacons and the renderers did.

Labels are reasons, results and kinds, never a site key or anything of a visitor
(cardinality, and privacy). The counter's hot path adds nothing per hit: visits
are counted when their batch commits (``len(batch)``), drops when the writer takes
them for its next batch (one ``inc`` per reason), the queue depth once per batch.

``hitmap serve --workers N`` (N > 1) runs N processes on one port; each writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess
mode, set by :func:`use_worker_processes` before the workers start) and whichever
worker answers ``/metrics`` adds them all up.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import time
from collections import Counter as Tally
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)

from app.heatmaps.budgets import ShedReason
from app.ingest.pipeline import DropReason
from app.ops.spool_stats import SpoolCollector, SpoolStats
from app.settings import Settings

# Chosen by prometheus_client when it was first imported, from the environment.
MULTIPROCESS: bool = bool(getattr(values.ValueClass, "_multiprocess", False))
MULTIPROC_DIR: str | None = os.environ.get("PROMETHEUS_MULTIPROC_DIR") if MULTIPROCESS else None

HITS_RECORDED = Counter(
    "hitmap_hits_recorded",
    "Counter hits written to the database by a committed batch (new visits and repeats "
    "the process did not remember).",
)
VISITS_NEW = Counter(
    "hitmap_visits_new",
    "New unique visits stored (live batches and spool replays).",
)
HITS_DROPPED = Counter(
    "hitmap_hits_dropped",
    "Counter hits answered but not counted, by reason (shed reasons included).",
    ["reason"],
)
HITS_SPOOLED = Counter(
    "hitmap_hits_spooled",
    "Counter hits fsynced to the local spool because the database did not take them.",
)
HITS_REPLAYED = Counter(
    "hitmap_hits_replayed",
    "Spooled counter hits written to the database once it was back.",
)
HITS_LOST = Counter(
    "hitmap_hits_lost",
    "Counter hits neither the database nor the spool took (each one is also logged).",
)
SPOOLED_DISCARDED = Counter(
    "hitmap_spooled_discarded",
    "Spooled records of sites deleted before their replay, discarded: counter hits "
    "(kind=hits) and click batches (kind=clicks).",
    ["kind"],
)
BEACON_BATCHES = Counter(
    "hitmap_beacon_batches",
    "Click beacon batches by result: accepted, rejected (400), unknown_site (404), "
    "not_tracked (Do Not Track honoured), shed (over a click budget), unavailable "
    "(neither stored nor spooled).",
    ["result"],
)
BEACON_CLICKS = Counter("hitmap_beacon_clicks_accepted", "Clicks in accepted beacon batches.")
BEACON_CLICKS_SHED = Counter(
    "hitmap_beacon_clicks_shed",
    "Clicks of valid beacon batches shed over a budget, by reason: clicks_ip_budget (one "
    "client address), clicks_site_budget (one site).",
    ["reason"],
)
WRITER_QUEUE = Gauge(
    "hitmap_writer_queue_depth",
    "Counter hits queued for the hit writer, not yet in a batch (all processes).",
    multiprocess_mode="livesum",
)
RENDER_SECONDS = Histogram(
    "hitmap_render_seconds",
    "Time to draw one image, by kind (thumbnail, map, heatmap) and date range.",
    ["kind", "range"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Bound children: the writer's batch path skips the labels() lookup.
DROPPED_BY_REASON = {reason.value: HITS_DROPPED.labels(reason.value) for reason in DropReason}
BEACON_RESULTS = {
    result: BEACON_BATCHES.labels(result)
    for result in ("accepted", "rejected", "unknown_site", "not_tracked", "shed", "unavailable")
}
SHED_BY_REASON = {reason.value: BEACON_CLICKS_SHED.labels(reason.value) for reason in ShedReason}
RENDER_KINDS = frozenset({"thumbnail", "map", "heatmap"})
RENDER_RANGES = frozenset({"24h", "7d", "30d", "365d", "all"})


# --- what the app calls -------------------------------------------------------------


def hits_dropped(by_reason: Tally[str]) -> None:
    for reason, hits in by_reason.items():
        child = DROPPED_BY_REASON.get(reason)
        if child is not None:
            child.inc(hits)


def beacon_refused(reason: str) -> None:
    """A batch not stored, by its ``app.heatmaps.validation.Reason``."""
    BEACON_RESULTS[reason].inc()


def beacon_accepted(clicks: int) -> None:
    BEACON_RESULTS["accepted"].inc()
    BEACON_CLICKS.inc(clicks)


def beacon_shed(reason: str, clicks: int) -> None:
    BEACON_RESULTS["shed"].inc()
    SHED_BY_REASON[reason].inc(clicks)


def observe_render(kind: str, span: str, seconds: float) -> None:
    """One rendered image. ``kind``: thumbnail, map or heatmap; ``span``: 24h, 7d,
    30d, 365d or all. Anything else is recorded as "other", so that a caller cannot
    grow the number of series (custom date ranges, say)."""
    RENDER_SECONDS.labels(
        kind if kind in RENDER_KINDS else "other", span if span in RENDER_RANGES else "other"
    ).observe(seconds)


@contextmanager
def timed_render(kind: str, span: str) -> Iterator[None]:
    """``with timed_render("map", "30d"): png = draw(...)`` records the time taken
    (only when the block succeeds: a failed render is not a render time)."""
    started = time.perf_counter()
    yield
    observe_render(kind, span, time.perf_counter() - started)


# --- the exposition -----------------------------------------------------------------


def exposition(spool: SpoolStats) -> tuple[bytes, str]:
    """The text format for a scrape: every worker's metrics and the spool, measured now."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROC_DIR is not None:
        _forget_dead_workers(MULTIPROC_DIR)
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    else:
        registry.register(REGISTRY)  # this process's metrics, and its process_* figures
    registry.register(SpoolCollector(spool))
    return generate_latest(registry), CONTENT_TYPE_LATEST


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def _forget_dead_workers(directory: str) -> None:
    """A worker killed without a goodbye (kill -9) keeps its gauge files: drop its
    queue depth from the sum. Its counters stay: they are totals of what it did."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.search(path)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- serving ------------------------------------------------------------------------


def metrics_dir(settings: Settings) -> Path:
    # The host's name too: containers or machines may share one data dir (a volume),
    # and each `hitmap serve` must own its files (process ids repeat across hosts).
    return settings.data_dir / "metrics" / f"serve-{socket.gethostname()}-{settings.port}"


def use_worker_processes(settings: Settings) -> Path | None:
    """Before `hitmap serve` starts more than one worker: a fresh directory for their
    metric files (last run's counts are gone: a restart resets counters, which
    Prometheus expects), named in the environment the workers inherit."""
    if settings.workers <= 1:
        return None
    directory = metrics_dir(settings)
    with suppress(FileNotFoundError):
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def process_exit() -> None:
    """A worker stops: its queue depth leaves the sum (its counters stay)."""
    if MULTIPROC_DIR is not None:
        multiprocess.mark_process_dead(os.getpid(), MULTIPROC_DIR)


def serve_worker_metrics(host: str, port: int) -> None:
    """Expose this process's metrics on ``host:port`` in a thread of their own: a job
    worker (``hitmap worker``) has no web server, and its render times are its news.
    Raises OSError when the address cannot be bound."""
    start_http_server(port, addr=host, registry=REGISTRY)
