"""Benchmark of the nightly map run (app/maps/tasks.py + workers/): prints figures; not a test.

    .venv/bin/python bench/nightly_bench.py                     # 200 sites, ~1 min
    .venv/bin/python bench/nightly_bench.py --sites 1000,10000  # how it grows; ~15 min
    .venv/bin/python bench/nightly_bench.py --no-nightly        # only the per-site part

Each size gets a throwaway PostgreSQL database (tests/databases.py) with the schema
and Procrastinate's queue, N sites and their map aggregates (``location_counts`` at
day, month and all-time grains, and ``daily_country_counts``), written with COPY.
Visits per site and day follow a log-normal rate (default median 1/day, sigma 1.6:
most sites are small, a few get hundreds a day); each site is 30 days to 2 years old;
places come from the renderer benchmark's catalogue (cities by population, jittered
GeoIP points, 30 % country centroids). Then, with the clock injected:

1. a cold night: no image exists; ``app.jobs.nightly.fan_out`` queues one job per site (what the
   periodic nightly task does), and two ``hitmap worker``-style processes (spawned,
   warmed up, then started together) drain the queue: a thumbnail and five range maps
   (1x; 2x maps are drawn on first request) per site;
2. the next night: the sites that had visitors in between (about 1 - e^-rate of them)
   have new visits; the others are checked and skipped.

Then, in this process, per-site figures by size (10 … 1,000,000 visits): the map
query per range on PostgreSQL, query → PNG of the large map, and a whole site job.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import multiprocessing as mp
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from app.clock import FixedClock  # noqa: E402
from app.context import AppContext, build_context  # noqa: E402
from app.db import Database, make_engine  # noqa: E402
from app.jobs import nightly as nightly_runner  # noqa: E402
from app.maps import drawing, service  # noqa: E402
from app.maps import repository as repo  # noqa: E402
from app.maps import tasks as map_tasks  # noqa: E402
from app.maps.renderer.render import LocationCounts, render_world_map, warm_up  # noqa: E402
from app.maps.service import SPANS, Span  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.places import place_key  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.sites import authz  # noqa: E402
from bench.maps_bench import CENTROIDS, CITIES  # noqa: E402
from tests.databases import fresh_postgres  # noqa: E402
from workers import procrastinate_app as engine_app  # noqa: E402

UTC = dt.UTC
NIGHT_AT = dt.time(3, 0)
NIGHT_ONE = dt.datetime(2026, 11, 23, 3, 0, 30, tzinfo=UTC)
NIGHT_TWO = NIGHT_ONE + dt.timedelta(days=1)
EPOCH = dt.date(1970, 1, 1)


# --- synthetic data ------------------------------------------------------------------


class Places:
    """A catalogue of GeoIP-like places with the probability of a visit from each."""

    def __init__(self, towns: int = 20_000, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        cities = np.array(CITIES)
        pop = cities[:, 2]
        per_city = np.maximum(np.round(towns * pop / pop.sum()), 1).astype(np.int64)
        city_of = np.repeat(np.arange(len(cities)), per_city)
        rank = np.concatenate([np.arange(1, k + 1) for k in per_city]).astype(np.float64)
        dist = np.where(rank == 1, 0.0, rng.exponential(0.6, size=city_of.size))
        angle = rng.uniform(0, 2 * np.pi, size=city_of.size)
        lat = cities[city_of, 0] + dist * np.sin(angle)
        lon = cities[city_of, 1] + dist * np.cos(angle) / np.cos(np.radians(cities[city_of, 0]))
        zipf = 1.0 / rank**1.1
        share = zipf / np.bincount(city_of, weights=zipf)[city_of] * (pop / pop.sum())[city_of]
        cent = np.array(CENTROIDS)
        self.lat = np.concatenate([np.round(np.clip(lat, -89.99, 89.99), 2), cent[:, 0]])
        self.lon = np.concatenate([np.round((lon + 180.0) % 360.0 - 180.0, 2), cent[:, 1]])
        acc = rng.choice(np.array([5, 10, 20, 50, 100, 200]), size=city_of.size)
        self.acc = np.concatenate([acc, np.full(len(cent), 1000)]).astype(np.int64)
        self.p = np.concatenate([0.7 * share / share.sum(), 0.3 * cent[:, 2] / cent[:, 2].sum()])
        # daily_country_counts only needs some country per place
        country = np.concatenate([city_of % 600, np.full(len(cent), 601)])
        # Places that round to the same (lat, lon, accuracy) are one database row.
        keys = np.stack([self.lat, self.lon, self.acc.astype(np.float64)], axis=1)
        distinct, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        self.lat, self.lon = distinct[:, 0], distinct[:, 1]
        self.acc = distinct[:, 2].astype(np.int64)
        self.p = np.bincount(inverse.ravel(), weights=self.p)
        self.country = country[first]
        self.key = np.array(
            [
                place_key(la, lo, int(a))
                for la, lo, a in zip(self.lat, self.lon, self.acc, strict=True)
            ],
            dtype=np.int64,
        )

    def __len__(self) -> int:
        return int(self.p.size)


def _code(n: int) -> str:
    return chr(65 + n // 26 % 26) + chr(65 + n % 26)


class Writer:
    """Aggregated rows of many sites, then COPY into PostgreSQL."""

    def __init__(self) -> None:
        self.places: list[tuple] = []
        self.countries: list[tuple] = []

    def add_site_visits(
        self, site_id: int, places: Places, days: np.ndarray, where: np.ndarray
    ) -> None:
        """One visit per (days[i], where[i]); ``days`` are dates as day numbers."""
        if days.size == 0:
            return
        n = len(places)
        for grain, key_day in (
            ("d", days),
            ("m", _month_starts(days)),
            ("a", np.full(days.size, EPOCH.toordinal())),
        ):
            keys, counts = np.unique(key_day * n + where, return_counts=True)
            for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
                day, place = divmod(key, n)
                self.places.append(
                    (
                        site_id,
                        grain,
                        dt.date.fromordinal(day),
                        int(places.key[place]),
                        count,
                    )
                )
        keys, counts = np.unique(days * 1000 + places.country[where], return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            day, country = divmod(key, 1000)
            self.countries.append((site_id, dt.date.fromordinal(day), _code(country), count))

    def copy(self, db: Database) -> int:
        with db.engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur:
                with cur.copy(
                    "COPY location_counts (site_id, grain, period, place, visits) FROM STDIN"
                ) as copy:
                    for row in self.places:
                        copy.write_row(row)
                with cur.copy(
                    "COPY daily_country_counts (site_id, day, country_code, visits) FROM STDIN"
                ) as copy:
                    for row in self.countries:
                        copy.write_row(row)
        written = len(self.places) + len(self.countries)
        self.places.clear()
        self.countries.clear()
        return written


def _month_starts(days: np.ndarray) -> np.ndarray:
    dates = [dt.date.fromordinal(d) for d in np.unique(days).tolist()]
    first = {d.toordinal(): d.replace(day=1).toordinal() for d in dates}
    return np.vectorize(first.__getitem__, otypes=[np.int64])(days)


def make_sites(db: Database, count: int) -> list[int]:
    now = NIGHT_ONE - dt.timedelta(days=800)
    with db.engine.begin() as conn:
        account = conn.scalar(
            text(
                "INSERT INTO accounts (email, password_hash, created_at) "
                "VALUES (:e, 'x', :t) RETURNING id"
            ),
            {"e": f"bench-{secrets.token_hex(4)}@example.org", "t": now},
        )
        rows = [
            {"a": account, "k": secrets.token_urlsafe(16)[:22], "n": f"site {i}", "t": now}
            for i in range(count)
        ]
        conn.execute(
            text(
                "INSERT INTO sites (account_id, public_key, name, domain, is_public, created_at) "
                "VALUES (:a, :k, :n, 'bench.example.org', true, :t)"
            ),
            rows,
        )
        return list(conn.scalars(text("SELECT id FROM sites ORDER BY id")))


def fill_history(
    db: Database, places: Places, site_ids: list[int], rates: np.ndarray, seed: int
) -> int:
    """Each site: 30 days to 2 years of visits at its daily rate, up to NIGHT_ONE's day."""
    rng = np.random.default_rng(seed)
    last = NIGHT_ONE.date().toordinal()
    writer, written, visits = Writer(), 0, 0
    for site_id, rate in zip(site_ids, rates.tolist(), strict=True):
        age = int(rng.integers(30, 730))
        total = int(rng.poisson(rate * age))
        visits += total
        days = last - rng.integers(0, age, size=total)
        where = rng.choice(len(places), size=total, p=places.p)
        writer.add_site_visits(site_id, places, days, where)
        if len(writer.places) > 200_000:
            written += writer.copy(db)
    written += writer.copy(db)
    return visits


def add_day(
    db: Database, places: Places, site_ids: list[int], rates: np.ndarray, day: dt.date, seed: int
) -> tuple[int, int]:
    """One more day of visits; returns (sites with visitors, visits). Upserts, as ingest does."""
    rng = np.random.default_rng(seed)
    writer, active, visits = Writer(), 0, 0
    for site_id, rate in zip(site_ids, rates.tolist(), strict=True):
        total = int(rng.poisson(rate))
        if total:
            active += 1
            visits += total
            where = rng.choice(len(places), size=total, p=places.p)
            writer.add_site_visits(site_id, places, np.full(total, day.toordinal()), where)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE lc (LIKE location_counts) ON COMMIT DROP"))
        conn.execute(text("CREATE TEMP TABLE dc (LIKE daily_country_counts) ON COMMIT DROP"))
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            with cur.copy("COPY lc FROM STDIN") as copy:
                for row in writer.places:
                    copy.write_row(row)
            with cur.copy("COPY dc FROM STDIN") as copy:
                for row in writer.countries:
                    copy.write_row(row)
        conn.execute(
            text(
                "INSERT INTO location_counts SELECT * FROM lc ON CONFLICT (site_id, grain, "
                "period, place) DO UPDATE SET visits = "
                "location_counts.visits + excluded.visits"
            )
        )
        conn.execute(
            text(
                "INSERT INTO daily_country_counts SELECT * FROM dc ON CONFLICT (site_id, day, "
                "country_code) DO UPDATE SET visits = daily_country_counts.visits + "
                "excluded.visits"
            )
        )
    return active, visits


# --- the nightly run -------------------------------------------------------------------


def _settings(url: str, data_dir: str) -> Settings:
    return Settings(database_url=url, secret_key=secrets.token_urlsafe(48), data_dir=Path(data_dir))


def _context(url: str, data_dir: str, now: dt.datetime) -> AppContext:
    return build_context(_settings(url, data_dir), clock=FixedClock(now))


def _pin_renderer_version() -> None:
    """Images are redrawn when the renderer's source changes; a benchmark run on a
    working copy under edit must not see that between its two nights."""
    drawing.renderer_version.cache_clear()
    drawing.renderer_version = lambda: "bench"  # type: ignore[assignment]


def _worker_process(  # noqa: ANN001
    url: str, data_dir: str, now: float, name: str, concurrency: int, ready, go
) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    _pin_renderer_version()
    ctx = _context(url, data_dir, dt.datetime.fromtimestamp(now, UTC))
    warm_up()
    ready.wait()  # imported and base maps drawn
    go.wait()  # the night's jobs are queued
    engine_app.run_worker(ctx, once=True, schedule=False, name=name, concurrency=concurrency)


def run_night(
    url: str, data_dir: str, now: dt.datetime, workers: int, concurrency: int
) -> tuple[float, float, float, int]:
    """(fan-out s, warm-up s, drain s, jobs queued): one night, ``workers`` processes."""
    ctx = _context(url, data_dir, now)
    spawn = mp.get_context("spawn")
    ready, go = spawn.Barrier(workers + 1), spawn.Barrier(workers + 1)
    procs = [
        spawn.Process(
            target=_worker_process,
            args=(url, data_dir, now.timestamp(), f"bench-{i}", concurrency, ready, go),
        )
        for i in range(workers)
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    ready.wait()  # every worker imported the app and drew its base maps
    t1 = time.perf_counter()
    queued = nightly_runner.fan_out(ctx, map_tasks.NIGHT, now.date(), engine_app.QUEUE) or 0
    t2 = time.perf_counter()
    go.wait()
    for p in procs:
        p.join()
    t3 = time.perf_counter()
    if any(p.exitcode for p in procs):
        raise SystemExit("a worker process failed")
    left = engine_app.job_counts(ctx.db.engine)
    if left.get("todo") or left.get("failed"):
        raise SystemExit(f"jobs left behind: {left}")
    ctx.db.engine.dispose()
    return t2 - t1, t1 - t0, t3 - t2, queued


def nightly(
    n_sites: int,
    workers: int,
    concurrency: int,
    median: float,
    sigma: float,
    places: Places,
    nights: int,
) -> dict:
    with fresh_postgres("hitmap_bench") as url, tempfile.TemporaryDirectory() as data_dir:
        engine = make_engine(url)
        upgrade(engine)
        engine_app.apply_schema(engine)
        db = Database(engine)
        rng = np.random.default_rng(n_sites)
        site_ids = make_sites(db, n_sites)
        rates = np.minimum(rng.lognormal(np.log(median), sigma, size=n_sites), 3000.0)
        t = time.perf_counter()
        visits = fill_history(db, places, site_ids, rates, seed=1)
        with engine.connect() as conn:
            rows = conn.scalar(text("SELECT count(*) FROM location_counts"))
            conn.execute(text("ANALYZE"))
        setup = time.perf_counter() - t

        fan1, warm1, drain1, queued1 = run_night(url, data_dir, NIGHT_ONE, workers, concurrency)
        with engine.connect() as conn:
            images, size = conn.execute(
                text(
                    "SELECT count(*), pg_total_relation_size('rendered_images') "
                    "FROM rendered_images"
                )
            ).one()
        warm = None
        if nights > 1:
            active, new_visits = add_day(db, places, site_ids, rates, NIGHT_ONE.date(), seed=2)
            fan2, warm2, drain2, queued2 = run_night(url, data_dir, NIGHT_TWO, workers, concurrency)
            with engine.connect() as conn:
                redrawn = conn.scalar(
                    text("SELECT count(*) FROM rendered_images WHERE rendered_at = :t"),
                    {"t": NIGHT_TWO},
                )
            warm = (fan2, drain2, warm2, queued2, active, new_visits, redrawn)
        engine.dispose()
    return {
        "load": os.getloadavg()[1],
        "sites": n_sites,
        "visits": visits,
        "rows": rows,
        "setup": setup,
        "cold": (fan1, drain1, warm1, queued1, images, size),
        "warm": warm,
    }


# --- per site ---------------------------------------------------------------------------


def _median(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def per_site(sizes: list[int], places: Places, compare_raw: bool) -> None:
    from app.maps.tasks import render_site_job

    with fresh_postgres("hitmap_bench") as url, tempfile.TemporaryDirectory() as data_dir:
        engine = make_engine(url)
        upgrade(engine)
        ctx = _context(url, data_dir, NIGHT_ONE)
        site_ids = make_sites(ctx.db, len(sizes))
        rng = np.random.default_rng(7)
        last = NIGHT_ONE.date().toordinal()
        writer = Writer()
        raw_visits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for site_id, size in zip(site_ids, sizes, strict=True):
            days = last - rng.integers(0, 365, size=size)  # a year-old site
            where = rng.choice(len(places), size=size, p=places.p)
            writer.add_site_visits(site_id, places, days, where)
            writer.copy(ctx.db)
            raw_visits[site_id] = (days, where)
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
        warm_up()
        print()
        print("Per site, warm, median of 5 (PostgreSQL on this machine, this process):")
        header = "visits      rows(all)  " + "  ".join(f"q {s.value:>4}" for s in SPANS)
        print(f"{header}   query→PNG(all)   whole job (thumbnail + 5 maps)")
        for site_id, size in zip(site_ids, sizes, strict=True):
            with ctx.db.session() as session:
                scope = authz.site_for_job(session, site_id)
                assert scope is not None
                today = NIGHT_ONE.date()
                cells, rows_all = [], 0
                for span in SPANS:
                    win = service.window(span, today)
                    seconds = _median(
                        lambda win=win, scope=scope: repo.locations(session, scope, win), 5
                    )
                    cells.append(f"{seconds * 1000:6.1f}")
                    if span is Span.ALL:
                        rows_all = len(repo.locations(session, scope, win))

                def query_to_png(scope=scope, today=today) -> bytes:
                    rows = repo.locations(session, scope, service.window(Span.ALL, today))
                    return render_world_map(LocationCounts.from_rows(rows))

                png_s = _median(query_to_png, 5)
            job_s = _median(lambda site_id=site_id: render_site_job(ctx, site_id, force=True), 3)
            print(
                f"{size:>9,}  {rows_all:>9,}  "
                + "  ".join(f"{c} ms" for c in cells)
                + f"   {png_s * 1000:8.1f} ms   {job_s * 1000:8.1f} ms"
            )
        _explain(ctx, site_ids[-1], sizes[-1])
        if compare_raw:
            site_id, size = site_ids[-1], sizes[-1]
            days, where = raw_visits[site_id]
            _raw_compare(ctx, site_id, size, days, where, places)
        engine.dispose()


def _explain(ctx: AppContext, site_id: int, size: int) -> None:
    """Server-side time of each range's query for the largest site (EXPLAIN ANALYZE)."""
    from sqlalchemy.dialects import postgresql

    cells = []
    with ctx.db.session() as session:
        scope = authz.site_for_job(session, site_id)
        assert scope is not None
        for span in SPANS:
            stmt = repo.place_counts_query(scope, service.window(span, NIGHT_ONE.date()))
            sql = str(
                stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            )
            times = []
            for _ in range(5):
                plan = session.execute(text("EXPLAIN (ANALYZE) " + sql)).scalars().all()
                times.append(float(plan[-1].split(":")[1].split()[0]))
            cells.append(f"{span.value} {statistics.median(times):.2f} ms")
    print(f"server-side execution, {size:,} visits (EXPLAIN ANALYZE, median): " + ", ".join(cells))


def _raw_compare(
    ctx: AppContext, site_id: int, size: int, days: np.ndarray, where: np.ndarray, places: Places
) -> None:
    """The same all-time map input straight from raw visits (what the aggregate avoids)."""
    buf = io.StringIO()
    for i, (day, place) in enumerate(zip(days.tolist(), where.tolist(), strict=True)):
        buf.write(
            f"{site_id}\t{dt.date.fromordinal(day)}\t\\\\x{i:032x}\t{places.lat[place]}\t"
            f"{places.lon[place]}\t{places.acc[place]}\n"
        )
    with ctx.db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cur,
            cur.copy(
                "COPY visits (site_id, day, visitor_hash, latitude, longitude, accuracy_km) FROM STDIN"
            ) as copy,
        ):
            copy.write(buf.getvalue())
        conn.execute(text("ANALYZE visits"))
    query = text(
        "SELECT latitude, longitude, accuracy_km, count(*) FROM visits WHERE site_id = :s "
        "AND latitude IS NOT NULL GROUP BY latitude, longitude, accuracy_km"
    )
    with ctx.db.engine.connect() as conn:
        seconds = _median(lambda: conn.execute(query, {"s": site_id}).all(), 3)
    print(f"the same all-time input from {size:,} raw visits (GROUP BY): {seconds * 1000:.0f} ms")


# --- report ----------------------------------------------------------------------------


def report(results: list[dict], workers: int, concurrency: int) -> None:
    print()
    print(
        f"Nightly run, {workers} worker processes x {concurrency} jobs at once "
        "(spawned, warmed up before the clock starts):"
    )
    print(
        "sites    visits        agg rows   | cold night: fan-out  drain   images   "
        "stored     | next night: active  fan-out  drain  redrawn"
    )
    for r in results:
        fan1, drain1, warm1, queued1, images, size = r["cold"]
        if r["warm"] is None:
            print(
                f"{r['sites']:>6,}  {r['visits']:>11,}  {r['rows']:>11,}   |  "
                f"{fan1:6.1f} s {drain1:6.1f} s  {images:>7,}  {size / 2**20:7.0f} MB   |  (not run)"
            )
            continue
        fan2, drain2, warm2, queued2, active, new_visits, redrawn = r["warm"]
        print(
            f"{r['sites']:>6,}  {r['visits']:>11,}  {r['rows']:>11,}   |  "
            f"{fan1:6.1f} s {drain1:6.1f} s  {images:>7,}  {size / 2**20:7.0f} MB   |  "
            f"{active:>6,}      {fan2:5.1f} s {drain2:6.1f} s  {redrawn:>6,}"
        )
    for r in results:
        fan1, drain1, warm1, *_ = r["cold"]
        per = (fan1 + drain1) / r["sites"] * 1000
        print(
            f"{r['sites']:,} sites (load average during the run {r['load']:.1f}): "
            f"{per:.1f} ms per site cold "
            f"(x 10,000 = {per * 10:.0f} s); worker start-up {warm1:.1f} s; data set-up "
            f"{r['setup']:.0f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="200", help="comma-separated site counts (200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    # Two jobs per worker (`hitmap worker --concurrency 2`): at 10,000 sites the night
    # also waits on PostgreSQL's writes, which a second job overlaps (cold 291 s with 2,
    # 331 s with 1); at 2,000 sites, CPU-bound, one is a little faster (20.5 / 22.7 ms).
    parser.add_argument("--concurrency", type=int, default=2, help="jobs per worker (2)")
    parser.add_argument("--rate-median", type=float, default=1.0, help="visits/day, median")
    parser.add_argument("--rate-sigma", type=float, default=1.6, help="log-normal sigma")
    parser.add_argument(
        "--per-site", default="10,1000,100000,1000000", help="visits of the per-site sizes"
    )
    parser.add_argument("--no-nightly", action="store_true", help="only the per-site figures")
    parser.add_argument("--nights", type=int, choices=(1, 2), default=2, help="cold only: 1")
    parser.add_argument(
        "--compare-raw", action="store_true", help="also time the largest site from raw visits"
    )
    args = parser.parse_args()
    _pin_renderer_version()
    places = Places()
    results = []
    if not args.no_nightly:
        for n in (int(s) for s in args.sites.split(",")):
            print(f"nightly run over {n:,} sites ...", flush=True)
            results.append(
                nightly(
                    n,
                    args.workers,
                    args.concurrency,
                    args.rate_median,
                    args.rate_sigma,
                    places,
                    args.nights,
                )
            )
        report(results, args.workers, args.concurrency)
    sizes = [int(s) for s in args.per_site.split(",") if s]
    if sizes:
        per_site(sizes, places, args.compare_raw)


if __name__ == "__main__":
    main()
