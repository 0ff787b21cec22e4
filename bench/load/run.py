"""Counter load benchmark: starts Hitmap, drives it with wrk, verifies the database count.

    .venv/bin/python -m bench.load.run --db postgresql --duration 20
    .venv/bin/python -m bench.load.run --db sqlite

Needs `wrk` and `nginx` (Debian: apt-get install wrk nginx-light). Loopback only;
every run is bounded by --duration. The request mix: 10,000 distinct visitor
IP/user-agent pairs, 100 sites, about 20% repeat visits the same day. Before the
end each wrk thread switches to uncounted filler requests, so that every counted
request has been answered when wrk stops and the expected number of unique
visits is exact. The run prints req/s, latency percentiles, errors, the count
check, and the same load against nginx serving a 1x1 GIF (the ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import HITMAP, database, free_port, make_sites, wait_ready

HERE = Path(__file__).parent
PAIRS = 10_000
SITES = 100
REPEAT_SHARE = 0.2
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel {v}) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
]


def public_ip(rng: random.Random) -> str:
    while True:
        a = rng.randint(1, 223)
        if a not in (10, 127, 100, 169, 172, 192, 198, 203):
            return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def request_list(
    sites: list[tuple[str, str]], size: int, seed: int = 7
) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    pairs = [(public_ip(rng), rng.choice(UAS).format(v=rng.randint(90, 130))) for _ in range(PAIRS)]
    used: list[tuple[str, str, str, str]] = []
    out = []
    for _ in range(size):
        if used and rng.random() < REPEAT_SHARE:
            triple = rng.choice(used)
        else:
            key, domain = rng.choice(sites)
            ip, ua = rng.choice(pairs)
            triple = (key, ip, ua, f"https://{domain}/posts/{rng.randint(1, 50)}")
            used.append(triple)
        out.append(triple)
    return out


def expected_unique(reqs: list[tuple[str, str, str, str]], threads: list[dict]) -> int:
    n = len(threads)
    seen: set[tuple[str, str, str]] = set()
    for t in threads:
        mine = reqs[t["tid"] :: n]
        count = len(mine) if t["wrapped"] else t["sent"]
        seen.update((k, ip, ua) for k, ip, ua, _ in mine[:count])
    return len(seen)


def stored_visits(url: str) -> tuple[int, dict[str, int]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        visits = int(conn.execute(text("SELECT count(*) FROM visits")).scalar_one())
        drops = dict(
            conn.execute(text("SELECT reason, sum(hits) FROM dropped_hits GROUP BY reason")).all()
        )
    engine.dispose()
    return visits, {k: int(v) for k, v in drops.items()}


def run_wrk(
    url: str, args: argparse.Namespace, script: Path | None, script_args: list[str]
) -> dict:
    cmd = [
        "wrk",
        "-t",
        str(args.threads),
        "-c",
        str(args.connections),
        "-d",
        f"{args.duration}s",
        "--timeout",
        "5s",
    ]
    if script:
        cmd += ["-s", str(script), url, "--", *script_args]
    else:
        cmd += ["--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if script:
        line = next(ln for ln in out.splitlines() if ln.startswith("HITMAP_RESULT "))
        return json.loads(line.split(" ", 1)[1])
    return {"raw": out}


def nginx_ceiling(args: argparse.Namespace, tmp: Path) -> float:
    port = free_port()
    root = tmp / "nginx"
    (root / "www").mkdir(parents=True)
    # nginx workers run as an unprivileged user: they must be able to read the files.
    for d in (tmp, root, root / "www"):
        d.chmod(0o755)
    gif = bytes.fromhex(
        "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
    )
    (root / "www" / "c.gif").write_bytes(gif)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""daemon off; worker_processes auto; pid {root}/nginx.pid; error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log {root}/access.log; client_body_temp_path {root}; proxy_temp_path {root};
  fastcgi_temp_path {root}; uwsgi_temp_path {root}; scgi_temp_path {root};
  server {{ listen 127.0.0.1:{port}; root {root}/www;
    location = /c.gif {{ default_type image/gif; add_header Cache-Control "private, no-cache"; }} }} }}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/c.gif", proc)
        raw = run_wrk(f"http://127.0.0.1:{port}/c.gif", args, None, [])["raw"]
    finally:
        proc.terminate()
        proc.wait(10)
    rate = float(next(ln for ln in raw.splitlines() if ln.startswith("Requests/sec")).split()[1])
    p99 = next((ln.split()[1] for ln in raw.splitlines() if ln.strip().startswith("99%")), "?")
    print(f"nginx 1x1 GIF ceiling: {rate:,.0f} req/s, p99 {p99}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load (max 120)")
    parser.add_argument("--drain", type=int, default=2, help="final seconds of uncounted filler")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=300_000, help="size of the request list")
    parser.add_argument("--skip-nginx", action="store_true")
    args = parser.parse_args()
    args.duration = min(args.duration, 120)
    for tool in ("wrk",) + (() if args.skip_nginx else ("nginx",)):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install wrk nginx-light")

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hitmap-load-")))
        url = stack.enter_context(database(args.db, tmp))
        port = free_port()
        env = {
            **os.environ,
            "HITMAP_DATA_DIR": str(tmp),
            "HITMAP_DATABASE_URL": url,
            "HITMAP_TRUSTED_PROXIES": "127.0.0.1",
            "HITMAP_PORT": str(port),
            "HITMAP_BASE_URL": f"http://127.0.0.1:{port}",
        }
        subprocess.run([str(HITMAP), "migrate"], env=env, check=True, capture_output=True)
        sites = make_sites(env, SITES)
        reqs = request_list(sites, args.requests)
        data = tmp / "requests.tsv"
        data.write_text("".join(f"{k}\t{ip}\t{ua}\t{ref}\n" for k, ip, ua, ref in reqs))
        server = subprocess.Popen(
            [str(HITMAP), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        stack.callback(lambda: (server.terminate(), server.wait(20)))
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/", server)
        print(
            f"Hitmap on {args.db}: {args.connections} connections, {args.threads} wrk threads, {args.duration}s"
        )
        result = run_wrk(
            base,
            args,
            HERE / "hits.lua",
            [str(data), str(args.threads), str(args.duration), str(args.drain), sites[0][0]],
        )
        time.sleep(1.0)
        visits, drops = stored_visits(url)
        expected = expected_unique(reqs, result["threads"])
        seconds = result["duration_us"] / 1e6
        lat = {k: v / 1000 for k, v in result["latency_us"].items()}
        errors = sum(result["errors"].values())
        rate = result["requests"] / seconds
        print(
            f"  {rate:,.0f} req/s ({result['requests']:,} requests in {seconds:.1f}s), errors {errors} {result['errors']}"
        )
        print(
            f"  latency ms: p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  "
            f"p99.9 {lat['p999']:.2f}  max {lat['max']:.2f}"
        )
        counted = sum(t["sent"] for t in result["threads"])
        verdict = "OK" if visits == expected else "MISMATCH"
        print(
            f"  unique visits: stored {visits:,}, expected {expected:,} from {counted:,} counted requests: {verdict}"
        )
        print(f"  dropped by reason: {drops}")
        if not args.skip_nginx:
            ceiling = nginx_ceiling(args, tmp)
            print(f"  Hitmap / nginx ceiling: {rate / ceiling:.1%}")
        if verdict != "OK" or errors:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
