"""Click beacon benchmark: accepted clicks per second on loopback, and nothing lost.

    .venv/bin/python bench/beacon_bench.py                  # PostgreSQL, 15 s
    .venv/bin/python bench/beacon_bench.py --db sqlite --duration 10

Starts `hitmap serve` (one uvicorn process, as shipped) on a throwaway database,
registers a few sites, then drives ``POST /b/{key}`` from this process with a
bounded number of concurrent asyncio/httpx clients, each sending the widget's
batches (text/plain JSON, the site's Origin) back to back until the time is up.
Each batch names one of ``--addresses`` visitor addresses in X-Forwarded-For
(the server trusts 127.0.0.1 as its proxy), so that the click budgets see many
visitors; ``--addresses 0`` sends none: a flood from one address, mostly shed.
It prints batches/s, clicks/s, latency percentiles and errors, then counts the
rows in ``heatmap_clicks``: it must equal the clicks of all batches answered 204
less those the server shed over budget (answered 204 too; read from /metrics).
The load generator shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import HITMAP, database, free_port, make_sites, wait_ready  # noqa: E402

SELECTORS = ["#buy", "#signup", "body>main>ul.links>li:nth-of-type(3)", "nav>a.home", "body"]
WIDTHS = [375, 414, 800, 1024, 1280, 1440, 1920]
PATHS = [f"/posts/{i}" for i in range(1, 41)] + ["/", "/pricing", "/about"]


def make_batch(rng: random.Random, size: int) -> bytes:
    width = rng.choice(WIDTHS)
    height = rng.randint(2000, 9000)
    clicks = []
    for _ in range(size):
        clicks.append(
            {
                "x": rng.randint(0, width - 1),
                "y": rng.randint(0, height - 1),
                "w": width,
                "h": height,
                "v": width,
                "r": rng.choice([1, 2, 3]),
                "s": rng.choice(SELECTORS),
                "ox": round(rng.random(), 4),
                "oy": round(rng.random(), 4),
            }
        )
    return json.dumps({"p": rng.choice(PATHS), "c": clicks}).encode()


class Tally:
    def __init__(self) -> None:
        self.batches = 0
        self.clicks = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []


async def client_loop(
    client: httpx.AsyncClient,
    base: str,
    sites: list[tuple[str, str]],
    deadline: float,
    size: int,
    seed: int,
    tally: Tally,
    addresses: int,
) -> None:
    rng = random.Random(seed)
    bodies = [make_batch(rng, size) for _ in range(50)]
    while time.monotonic() < deadline:
        key, domain = rng.choice(sites)
        body = rng.choice(bodies)
        headers = {"content-type": "text/plain;charset=UTF-8", "origin": f"https://{domain}"}
        if addresses:
            n = rng.randrange(addresses)  # 198.18.0.0/15: the benchmarking range
            headers["x-forwarded-for"] = f"198.{18 + n // 65536 % 2}.{n // 256 % 256}.{n % 256}"
        started = time.perf_counter()
        try:
            response = await client.post(f"{base}/b/{key}", content=body, headers=headers)
        except httpx.HTTPError as exc:
            name = type(exc).__name__
            tally.errors[name] = tally.errors.get(name, 0) + 1
            continue
        tally.latencies.append(time.perf_counter() - started)
        if response.status_code == 204:
            tally.batches += 1
            tally.clicks += size
        else:
            name = f"HTTP {response.status_code}"
            tally.errors[name] = tally.errors.get(name, 0) + 1


async def drive(
    base: str,
    sites: list[tuple[str, str]],
    duration: float,
    concurrency: int,
    size: int,
    addresses: int,
) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        started = time.monotonic()
        deadline = started + duration
        await asyncio.gather(
            *(
                client_loop(client, base, sites, deadline, size, seed, tally, addresses)
                for seed in range(concurrency)
            )
        )
        elapsed = time.monotonic() - started
    return tally, elapsed


def stored_clicks(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        count = int(conn.execute(text("SELECT count(*) FROM heatmap_clicks")).scalar_one())
    engine.dispose()
    return count


def shed_clicks(base: str) -> dict[str, float]:
    """Clicks the server shed over budget so far, by reason (its /metrics, from loopback)."""
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(timeout=10) as client:
        text = client.get(f"{base}/metrics").text
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "hitmap_beacon_clicks_shed_total"
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--duration", type=float, default=15, help="seconds of load (max 120)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--batch", type=int, default=10, help="clicks per batch (1-50)")
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument(
        "--addresses",
        type=int,
        default=1000,
        help="visitor addresses sent in X-Forwarded-For (0: none, all from one address)",
    )
    args = parser.parse_args()
    args.duration = min(args.duration, 120)
    args.batch = max(1, min(args.batch, 50))

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hitmap-beacons-")))
        url = stack.enter_context(database(args.db, tmp))
        port = free_port()
        env = {
            **os.environ,
            "HITMAP_DATA_DIR": str(tmp),
            "HITMAP_DATABASE_URL": url,
            "HITMAP_PORT": str(port),
            "HITMAP_BASE_URL": f"http://127.0.0.1:{port}",
            "HITMAP_TRUSTED_PROXIES": "127.0.0.1",
        }
        subprocess.run([str(HITMAP), "migrate"], env=env, check=True, capture_output=True)
        sites = make_sites(env, args.sites)
        server = subprocess.Popen(
            [str(HITMAP), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        stack.callback(server.wait, 20)
        stack.callback(server.terminate)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/w.js", server)
        # Warm the site cache and the connection pool, then reset the table.
        asyncio.run(drive(base, sites, 1.0, 4, args.batch, args.addresses))
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM heatmap_clicks"))
        engine.dispose()

        print(
            f"Hitmap beacons on {args.db}: {args.concurrency} concurrent clients, "
            f"{args.batch} clicks per batch, {args.sites} sites, "
            f"{args.addresses or 'one'} visitor addresses, {args.duration:g} s"
        )
        shed_before = shed_clicks(base)
        tally, elapsed = asyncio.run(
            drive(base, sites, args.duration, args.concurrency, args.batch, args.addresses)
        )
        time.sleep(0.5)
        stored = stored_clicks(url)
        shed = {
            reason: int(n - shed_before.get(reason, 0)) for reason, n in shed_clicks(base).items()
        }

    lat = tally.latencies
    print(f"  batches answered 204: {tally.batches:,} ({tally.batches / elapsed:,.0f}/s)")
    print(f"  their clicks:  {tally.clicks:,} ({tally.clicks / elapsed:,.0f} clicks/s)")
    if lat:
        print(
            f"  latency: p50 {statistics.median(lat) * 1000:.1f} ms, "
            f"p90 {percentile(lat, 0.9) * 1000:.1f} ms, p99 {percentile(lat, 0.99) * 1000:.1f} ms"
        )
    print(f"  errors: {tally.errors or 'none'}")
    shed_total = sum(shed.values())
    print(f"  clicks shed over budget: {shed_total:,} {shed or ''}")
    expected = tally.clicks - shed_total
    verdict = "nothing lost" if stored == expected else "MISMATCH"
    print(f"  rows stored: {stored:,} = clicks answered 204 less shed {expected:,}: {verdict}")
    if stored != expected or tally.errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
