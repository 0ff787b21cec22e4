"""Bytes on disk per visit and per click row, PostgreSQL and SQLite: prints figures; not a test.

    .venv/bin/python bench/storage.py                                  # ~2.5 min
    .venv/bin/python bench/storage.py --sites 1850 --clicks 0 --no-sqlite   # small sites
    .venv/bin/python bench/storage.py --visits 50000 --clicks 20000 --no-sqlite

A throwaway PostgreSQL database (tests/databases.py: the server at 127.0.0.1:5432,
dropped at the end, also on failure or Ctrl-C) and a temporary SQLite file are
migrated with the project's migrations (app/migrate.py); sites are created through
the services. Then the same data goes into both through the production code:

* visits: ``app.capture.repository.insert_visits`` in batches of ``--batch``, one
  transaction each, day after day with all sites interleaved, as the counter's writer
  sends them (on PostgreSQL that function runs the writer's very statement,
  ``_VISITS_BATCH_SQL``, which also upserts ``daily_country_counts`` and the day,
  month and all-time rows of ``location_counts``). Each visit is a random public IPv4
  address and a browser user agent, located with the bundled GeoIP database
  (``GeoLocator``, as the pipeline does) and hashed with ``visitor_hash`` under a
  random salt per day. Visits per site follow a log-normal share (sigma 1.6, as in
  the nightly benchmark: a few large sites, many small ones), days are uniform.
* clicks: what ``BeaconService._store`` writes per beacon: the batch's claim in
  ``applied_spool_records``, the clicks through ``app.heatmaps.repository.
  insert_clicks``, and ``note_page`` when the page's (origin, day) changed. Pages per
  site with Zipf popularity, realistic paths and selectors, viewports of phones,
  tablets and desktops (width bucket as the validation assigns it), offsets rounded
  as the validation rounds them.

PostgreSQL figures are taken after ``VACUUM ANALYZE`` (the steady state: the pages
keep the free space that the aggregates' upserts left) and again after ``VACUUM
FULL`` (compacted, the lower bound), from ``pg_relation_size`` (heap),
``pg_indexes_size`` and ``pg_total_relation_size`` (the rest is TOAST and the
free-space and visibility maps). SQLite figures come from its ``dbstat`` table and
the file's size after a WAL checkpoint.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, text  # noqa: E402

from app.accounts import service as accounts  # noqa: E402
from app.capture import repository as ingest  # noqa: E402
from app.clock import FixedClock  # noqa: E402
from app.db import Database  # noqa: E402
from app.heatmaps import repository as heatmaps  # noqa: E402
from app.heatmaps.schemas import Click, bucket_for  # noqa: E402
from app.ingest.geoip import GeoLocator, Location  # noqa: E402
from app.ingest.salts import visitor_hash  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.sites import service as sites_service  # noqa: E402
from app.sites.scope import SiteScope  # noqa: E402
from tests.databases import fresh_postgres  # noqa: E402

LAST_DAY = dt.date(2026, 11, 22)
NOW = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]
# (viewport width, device pixel ratio, share): phones, tablets, laptops, desktops.
VIEWPORTS = [
    (360, 3.0, 0.12),
    (375, 2.0, 0.08),
    (390, 3.0, 0.14),
    (414, 2.0, 0.06),
    (768, 2.0, 0.04),
    (1024, 2.0, 0.04),
    (1280, 1.0, 0.08),
    (1366, 1.0, 0.1),
    (1440, 2.0, 0.1),
    (1536, 1.25, 0.08),
    (1920, 1.0, 0.16),
]
# Selectors the widget makes: an element's #id, else up to 8 levels of tag.class or
# tag:nth-of-type(n) below the nearest ancestor with an id.
SELECTOR_PARTS = [
    "header",
    "nav",
    "main",
    "article",
    "section:nth-of-type(2)",
    "div.content",
    "div.card:nth-of-type(3)",
    "ul.menu",
    "li:nth-of-type(4)",
    "p:nth-of-type(2)",
    "figure",
    "footer",
]
SELECTOR_ENDS = ["a", "a.btn", "button.primary", "img", "span.label", "a.more", "input"]
IDS = ["#buy", "#signup", "#search", "#menu-toggle", "#cookie-ok", "#logo", "#comments"]
SLUG_WORDS = [
    "how",
    "to",
    "build",
    "small",
    "fast",
    "web",
    "pages",
    "with",
    "less",
    "javascript",
    "and",
    "more",
    "care",
    "for",
    "visitors",
    "maps",
    "privacy",
    "counters",
    "weekly",
    "notes",
    "travel",
    "recipes",
    "garden",
    "release",
    "changelog",
    "guide",
]


# --- the workload, generated once, written into both databases --------------------------


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    site: int  # index into the sites list
    day: dt.date
    ip: str
    user_agent: str
    location: Location


@dataclass(frozen=True, slots=True)
class PlannedBeacon:
    site: int
    day: dt.date
    path: str
    origin: str
    clicks: tuple[Click, ...]


def public_ip(rng: random.Random) -> str:
    """A random IPv4 address outside the private, loopback and documentation blocks."""
    while True:
        a = rng.randint(1, 223)
        if a not in (10, 100, 127, 169, 172, 192, 198, 203):
            return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def site_shares(sites: int, rng: np.random.Generator) -> np.ndarray:
    weights = rng.lognormal(0.0, 1.6, size=sites)
    return weights / weights.sum()


def plan_visits(
    total: int, shares: np.ndarray, days: list[dt.date], geo: GeoLocator, seed: int
) -> list[list[PlannedVisit]]:
    """Visits per day, every site's visits of a day shuffled together (arrival order)."""
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    per_site_day = rng.multinomial(total, np.repeat(shares / len(days), len(days)))
    per_site_day = per_site_day.reshape(len(shares), len(days))
    plan: list[list[PlannedVisit]] = []
    for d, day in enumerate(days):
        sites = np.repeat(np.arange(len(shares)), per_site_day[:, d])
        rng.shuffle(sites)
        today = []
        for site in sites.tolist():
            ip = public_ip(pyrng)
            ua = pyrng.choice(UAS).format(v=pyrng.randint(90, 130))
            today.append(PlannedVisit(site, day, ip, ua, geo.lookup(ip)))
        plan.append(today)
    return plan


def _slug(rng: random.Random) -> str:
    return "-".join(rng.choice(SLUG_WORDS) for _ in range(rng.randint(2, 6)))


def _selector(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return rng.choice(IDS)
    parts = [rng.choice(SELECTOR_PARTS) for _ in range(rng.randint(1, 6))]
    start = rng.choice(IDS) if rng.random() < 0.3 else "body"
    return ">".join([start, *parts, rng.choice(SELECTOR_ENDS)])


def plan_beacons(
    total_clicks: int,
    per_beacon: int,
    shares: np.ndarray,
    days: list[dt.date],
    domains: list[str],
    settings: Settings,
    seed: int,
) -> list[PlannedBeacon]:
    """Beacons of ``per_beacon`` clicks (the last one smaller), in arrival order."""
    rng = random.Random(seed)
    site_rng = np.random.default_rng(seed)
    pages: dict[int, list[tuple[str, int, list[str]]]] = {}
    page_weights = [1.0 / rank**1.1 for rank in range(1, 61)]
    view_weights = [share for _, _, share in VIEWPORTS]
    beacons: list[PlannedBeacon] = []
    remaining = total_clicks
    sites = site_rng.choice(len(shares), size=total_clicks // per_beacon + 1, p=shares).tolist()
    for site in sites:
        if remaining <= 0:
            break
        if site not in pages:  # 60 pages: path, desktop height, clickable elements
            pages[site] = [("/", rng.randint(1500, 4000), [_selector(rng) for _ in range(40)])]
            for _ in range(59):
                path = f"/{rng.choice(['blog', 'posts', 'docs', 'notes'])}/{rng.randint(2019, 2026)}/{_slug(rng)}"
                pages[site].append(
                    (path, rng.randint(2000, 9000), [_selector(rng) for _ in range(40)])
                )
        path, desktop_height, selectors = rng.choices(pages[site], weights=page_weights)[0]
        width, dpr, _ = rng.choices(VIEWPORTS, weights=view_weights)[0]
        height = round(desktop_height * (1280 / width) ** 0.6)
        bucket = bucket_for(width, settings.width_buckets).name
        n = min(per_beacon, remaining)
        remaining -= n
        clicks = tuple(
            Click(
                x=rng.randint(0, width - 1),
                y=rng.randint(0, height - 1),
                doc_width=width,
                doc_height=height,
                viewport_width=width,
                dpr=dpr,
                selector=(sel := rng.choice(selectors)),
                offset_x=round(rng.random(), 4) if sel else None,
                offset_y=round(rng.random(), 4) if sel else None,
                bucket=bucket,
            )
            for _ in range(n)
        )
        beacons.append(
            PlannedBeacon(site, rng.choice(days), path, f"https://{domains[site]}", clicks)
        )
    beacons.sort(key=lambda b: b.day)  # arrival order: day after day, sites interleaved
    return beacons


# --- writing through the production code ----------------------------------------------


def make_sites(db: Database, count: int) -> list[SiteScope]:
    clock = FixedClock(NOW - dt.timedelta(days=60))
    with db.session() as session:
        owner = accounts.sign_up(session, clock, "storage@example.org", "storage bench 123")
        return [
            sites_service.create_site(
                session, clock, account_id=owner.id, domain=f"site{i}.example.org"
            )
            for i in range(count)
        ]


def write_visits(
    db: Database, scopes: list[SiteScope], plan: list[list[PlannedVisit]], batch: int
) -> None:
    for today in plan:
        if not today:
            continue
        salt = secrets.token_bytes(32)
        for start in range(0, len(today), batch):
            visits = [
                ingest.NewVisit(
                    scope=scopes[v.site],
                    day=v.day,
                    visitor_hash=visitor_hash(salt, scopes[v.site].site_id, v.ip, v.user_agent),
                    location=v.location,
                )
                for v in today[start : start + batch]
            ]
            with db.session() as session:
                ingest.insert_visits(session, visits)


def write_beacons(
    db: Database, scopes: list[SiteScope], beacons: Sequence[PlannedBeacon], per_tx: int
) -> None:
    """BeaconService._store per beacon; ``per_tx`` beacons share a transaction only to
    keep the run short (the rows written are the same)."""
    noted: dict[tuple[int, str], tuple[str, dt.date]] = {}
    for start in range(0, len(beacons), per_tx):
        with db.session() as session:
            for b in beacons[start : start + per_tx]:
                scope = scopes[b.site]
                ingest.claim_spool_record(session, uuid.uuid4().hex, NOW)
                heatmaps.insert_clicks(session, scope, b.day, b.path, b.clicks)
                if noted.get((b.site, b.path)) != (b.origin, b.day):
                    heatmaps.note_page(session, scope, b.path, b.origin, b.day)
                    noted[(b.site, b.path)] = (b.origin, b.day)


# --- measuring -------------------------------------------------------------------------

VISIT_TABLES = ("visits", "daily_country_counts", "location_counts")
CLICK_TABLES = ("heatmap_clicks", "applied_spool_records", "heatmap_pages")


@dataclass(frozen=True, slots=True)
class TableSize:
    rows: int
    heap: int
    indexes: int
    total: int

    @property
    def rest(self) -> int:
        return self.total - self.heap - self.indexes


def pg_sizes(engine: Engine, tables: Sequence[str]) -> dict[str, TableSize]:
    out = {}
    with engine.connect() as conn:
        for table in tables:
            rows = conn.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608 (our names)
            heap, indexes, total = conn.execute(
                text(
                    "SELECT pg_relation_size(CAST(:t AS regclass)), "
                    "pg_indexes_size(CAST(:t AS regclass)), "
                    "pg_total_relation_size(CAST(:t AS regclass))"
                ),
                {"t": table},
            ).one()
            out[table] = TableSize(int(rows or 0), int(heap), int(indexes), int(total))
    return out


def pg_index_sizes(engine: Engine, table: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid) "
                "FROM pg_index i WHERE i.indrelid = CAST(:t AS regclass) ORDER BY 1"
            ),
            {"t": table},
        )
        return {name: int(size) for name, size in rows}


def wal_position(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(text("SELECT pg_current_wal_lsn()")))


def wal_since(engine: Engine, lsn: str) -> int:
    with engine.connect() as conn:
        diff = conn.scalar(
            text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(:lsn AS pg_lsn))"),
            {"lsn": lsn},
        )
        return int(diff or 0)


def pg_vacuum(engine: Engine, tables: Sequence[str], full: bool) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            conn.exec_driver_sql(f"VACUUM {'FULL ' if full else ''}ANALYZE {table}")


def grain_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT grain, count(*) FROM location_counts GROUP BY grain"))
        return {g: int(n) for g, n in rows}


def sqlite_sizes(path: Path, tables: Sequence[str]) -> dict[str, TableSize]:
    """Per table from ``dbstat``: its own b-tree (heap) and its indexes' b-trees."""
    out = {}
    with closing(sqlite3.connect(path)) as conn:
        for table in tables:
            (rows,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            (heap,) = conn.execute(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = ?", (table,)
            ).fetchone()
            (indexes,) = conn.execute(
                "SELECT coalesce(sum(d.pgsize), 0) FROM dbstat d JOIN sqlite_master m "
                "ON m.name = d.name WHERE m.type = 'index' AND m.tbl_name = ?",
                (table,),
            ).fetchone()
            out[table] = TableSize(rows, heap, indexes, heap + indexes)
    return out


def sqlite_file_bytes(db: Database, path: Path) -> int:
    """The file's size once the WAL is checkpointed into it (no other connection open)."""
    db.engine.dispose()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


# --- printing --------------------------------------------------------------------------


def _b(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


def print_table(
    title: str, sizes: dict[str, TableSize], per: int, per_name: str, extra: str = ""
) -> None:
    print(f"\n{title}")
    if per == 0:
        print("  nothing written")
        return
    head = f"{'table':<24}{'rows':>10}{'heap':>12}{'indexes':>12}{'TOAST+maps':>12}{'total':>12}"
    print(f"{head}{'rows/' + per_name:>12}{'B/' + per_name:>10}")
    total = 0
    for name, s in sizes.items():
        total += s.total
        print(
            f"{name:<24}{s.rows:>10,}{_b(s.heap):>12}{_b(s.indexes):>12}{_b(s.rest):>12}"
            f"{_b(s.total):>12}{s.rows / per:>12.3f}{s.total / per:>10.1f}"
        )
    print(f"{'= one ' + per_name + extra:<82}{'':>12}{total / per:>10.1f}")


# --- the runs ---------------------------------------------------------------------------


@dataclass
class Plan:
    visits: list[list[PlannedVisit]]
    beacons: list[PlannedBeacon]
    sites: int

    @property
    def visit_count(self) -> int:
        return sum(len(day) for day in self.visits)

    @property
    def click_count(self) -> int:
        return sum(len(b.clicks) for b in self.beacons)


def run_postgresql(plan: Plan, args: argparse.Namespace) -> None:
    with fresh_postgres("hitmap_storage") as url:
        db = Database.from_url(url)
        try:
            upgrade(db.engine)
            scopes = make_sites(db, plan.sites)
            lsn = wal_position(db.engine)
            started = time.perf_counter()
            write_visits(db, scopes, plan.visits, args.batch)
            visits_s = time.perf_counter() - started
            visits_wal, lsn = wal_since(db.engine, lsn), wal_position(db.engine)
            started = time.perf_counter()
            write_beacons(db, scopes, plan.beacons, args.beacons_per_transaction)
            clicks_s = time.perf_counter() - started
            clicks_wal = wal_since(db.engine, lsn)
            with db.engine.connect() as conn:
                version = conn.scalar(text("SHOW server_version"))
            print(
                f"\nPostgreSQL {version}: visits written in {visits_s:.1f} s, "
                f"clicks in {clicks_s:.1f} s"
            )
            print(
                f"  WAL of the whole server meanwhile (shared: other databases' writes count "
                f"too, so an upper bound): {_b(visits_wal)} for the visits "
                f"({visits_wal / plan.visit_count:.0f} B/visit), {_b(clicks_wal)} for the "
                f"clicks ({clicks_wal / max(plan.click_count, 1):.0f} B/click)"
            )
            tables = VISIT_TABLES + CLICK_TABLES
            pg_vacuum(db.engine, tables, full=False)
            report_postgresql(db.engine, plan, args, "after VACUUM ANALYZE (steady state)")
            pg_vacuum(db.engine, tables, full=True)
            report_postgresql(db.engine, plan, args, "after VACUUM FULL (compacted)")
        finally:
            db.engine.dispose()


def report_postgresql(engine: Engine, plan: Plan, args: argparse.Namespace, when: str) -> None:
    visits = pg_sizes(engine, VISIT_TABLES)
    clicks = pg_sizes(engine, CLICK_TABLES)
    stored = visits["visits"].rows
    grains = grain_rows(engine)
    print_table(
        f"PostgreSQL, {when}: per visit ({stored:,} stored)",
        visits,
        stored,
        "visit",
        ", with its aggregates",
    )
    print(
        "  location_counts rows per visit by grain: "
        + ", ".join(f"{g} {grains.get(g, 0) / stored:.3f}" for g in ("d", "m", "a"))
    )
    indexes = pg_index_sizes(engine, "visits")
    print(
        "  visits indexes: "
        + ", ".join(
            f"{name} {_b(size)} ({size / stored:.1f} B/visit)" for name, size in indexes.items()
        )
    )
    heap = visits["visits"]
    print(
        f"  visits alone: heap {heap.heap / stored:.1f} + indexes {heap.indexes / stored:.1f} "
        f"+ TOAST/maps {heap.rest / stored:.1f} = {heap.total / stored:.1f} B/visit"
    )
    n_clicks = clicks["heatmap_clicks"].rows
    print_table(
        f"PostgreSQL, {when}: per click ({n_clicks:,} clicks in {len(plan.beacons):,} beacons "
        f"of {args.clicks_per_beacon})",
        clicks,
        n_clicks,
        "click",
        ", with its beacon's claim and page",
    )


def run_sqlite(plan: Plan, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hitmap-storage-") as tmp:
        path = Path(tmp) / "hitmap.sqlite3"
        db = Database.from_url(f"sqlite:///{path}")
        try:
            upgrade(db.engine)
            scopes = make_sites(db, plan.sites)
            empty = sqlite_file_bytes(db, path)
            started = time.perf_counter()
            write_visits(db, scopes, plan.visits, args.batch)
            visits_s = time.perf_counter() - started
            after_visits = sqlite_file_bytes(db, path)
            started = time.perf_counter()
            write_beacons(db, scopes, plan.beacons, args.beacons_per_transaction)
            clicks_s = time.perf_counter() - started
            after_clicks = sqlite_file_bytes(db, path)
            db.engine.dispose()
            visits = sqlite_sizes(path, VISIT_TABLES)
            clicks = sqlite_sizes(path, CLICK_TABLES)
            with closing(sqlite3.connect(path)) as conn:
                (version,) = conn.execute("SELECT sqlite_version()").fetchone()
                (page,) = conn.execute("PRAGMA page_size").fetchone()
                (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        finally:
            db.engine.dispose()
    stored, n_clicks = visits["visits"].rows, clicks["heatmap_clicks"].rows
    print(
        f"\nSQLite {version} (page {page} B, {free} free pages): visits written in "
        f"{visits_s:.1f} s, clicks in {clicks_s:.1f} s"
    )
    print_table(
        "SQLite, b-trees from dbstat (table b-tree as heap): per visit",
        visits,
        stored,
        "visit",
        ", with its aggregates",
    )
    print_table(
        "SQLite, per click", clicks, n_clicks, "click", ", with its beacon's claim and page"
    )
    print(
        f"  file: {_b(empty)} migrated and empty, +{_b(after_visits - empty)} for the visits "
        f"({(after_visits - empty) / stored:.1f} B/visit), +{_b(after_clicks - after_visits)} "
        f"for the clicks ({(after_clicks - after_visits) / max(n_clicks, 1):.1f} B/click)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=200_000)
    parser.add_argument("--clicks", type=int, default=50_000)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--days", type=int, default=30, help="days of visits and clicks")
    parser.add_argument("--batch", type=int, default=50, help="visits per writer batch")
    parser.add_argument("--clicks-per-beacon", type=int, default=5)
    parser.add_argument("--beacons-per-transaction", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()

    settings = Settings(secret_key=secrets.token_urlsafe(48), data_dir=Path(tempfile.gettempdir()))
    days = [LAST_DAY - dt.timedelta(days=i) for i in range(args.days - 1, -1, -1)]
    domains = [f"site{i}.example.org" for i in range(args.sites)]
    shares = site_shares(args.sites, np.random.default_rng(args.seed))
    started = time.perf_counter()
    geo = GeoLocator(settings.geoip_path)
    try:
        plan = Plan(
            plan_visits(args.visits, shares, days, geo, args.seed),
            plan_beacons(
                args.clicks, args.clicks_per_beacon, shares, days, domains, settings, args.seed
            ),
            args.sites,
        )
        located = [v.location for day in plan.visits for v in day]
    finally:
        geo.close()
    with_point = sum(loc.latitude is not None for loc in located)
    with_city = sum(loc.city is not None for loc in located)
    places = len({(loc.latitude, loc.longitude, loc.accuracy_km) for loc in located})
    biggest = np.sort(shares)[::-1]
    print(
        f"{plan.visit_count:,} visits of {args.sites} sites over {args.days} days "
        f"({days[0]} .. {days[-1]}), batches of {args.batch}; largest sites "
        f"{', '.join(f'{s:.0%}' for s in biggest[:3])} of the visits, median site "
        f"{np.median(shares):.2%}"
    )
    print(
        f"GeoIP ({settings.geoip_path.name}): {with_point / len(located):.0%} of visits "
        f"with coordinates, {with_city / len(located):.0%} with a city, {places:,} distinct "
        f"places; {plan.click_count:,} clicks in {len(plan.beacons):,} beacons; "
        f"planned in {time.perf_counter() - started:.1f} s"
    )
    if not args.no_postgresql:
        run_postgresql(plan, args)
    if not args.no_sqlite:
        run_sqlite(plan, args)


if __name__ == "__main__":
    main()
