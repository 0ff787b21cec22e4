"""A flood of parallel wrong logins, and the load harness's mode that measures what it
does to the counter.

    .venv/bin/python -m bench.load.login_flood --port 8000 --concurrency 24 --duration 15

Each of --concurrency connections (keep-alive, raw asyncio like bench/load/client.py)
posts the login form again and again, without pause, with a wrong password for an
email that has no account, from an address given in X-Forwarded-For (the harness
trusts 127.0.0.1). Emails and addresses are drawn from large pools, so the throttle
rarely stops an attempt before its password check: every attempt costs the server a
full argon2 check, the most a flood can cost it. The CSRF cookie and token come from
one GET /login first. One JSON summary line goes to stdout: attempts, answers by
status, socket errors, latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
import urllib.request
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from bench.load.client import percentile, read_response

if TYPE_CHECKING:
    from bench.load.run import Run

ADDRESSES = 10_000
EMAILS = 5_000


def login_form(port: int) -> tuple[str, str]:
    """(CSRF cookie, form token) from the login page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as page:
        cookies = page.headers.get_all("set-cookie") or []
        html = page.read().decode()
    cookie = next(c.split(";", 1)[0] for c in cookies if c.startswith("hitmap_csrf="))
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    if match is None:
        raise SystemExit("the login page has no CSRF token")
    return cookie, match.group(1)


def login_request(host: str, cookie: str, token: str, email: str, ip: str) -> bytes:
    body = urlencode({"email": email, "password": "not the password 123", "csrf_token": token})
    return (
        f"POST /login HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {ip}\r\n"
        f"Cookie: {cookie}\r\nAccept: text/html\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        f"\r\n{body}"
    ).encode()


async def flood(port: int, concurrency: int, duration: float, timeout: float) -> dict:
    cookie, token = login_form(port)
    host = f"127.0.0.1:{port}"
    rng = random.Random(11)
    addresses = [
        f"{rng.randint(1, 99)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        for _ in range(ADDRESSES)
    ]
    emails = [f"guess{i}@flood.example.org" for i in range(EMAILS)]
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + duration

    async def connection(seed: int) -> None:
        pick = random.Random(seed)
        writer: asyncio.StreamWriter | None = None
        reader: asyncio.StreamReader | None = None
        while time.monotonic() < deadline:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError as exc:
                    errors[f"connect {type(exc).__name__}"] += 1
                    await asyncio.sleep(0.05)
                    continue
            assert reader is not None
            request = login_request(
                host, cookie, token, pick.choice(emails), pick.choice(addresses)
            )
            started = time.perf_counter()
            try:
                writer.write(request)
                await writer.drain()
                status, keep = await asyncio.wait_for(read_response(reader), timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[type(exc).__name__] += 1
                writer.close()
                writer = None
                continue
            latencies.append(time.perf_counter() - started)
            statuses[str(status)] += 1
            if not keep:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(connection(i) for i in range(concurrency)))
    lat = sorted(latencies)
    return {
        "seconds": round(time.monotonic() - started, 3),
        "attempts": len(lat),
        "statuses": dict(statuses),
        "errors": dict(errors),
        "latency_ms": {
            name: round(percentile(lat, share) * 1000, 1)
            for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
    }


# --- the harness's mode ----------------------------------------------------------------

P99_RATIO_LIMIT = 1.5


def mode_login_flood(run: Run) -> None:
    """The steady counter load alone, then the same with --flood parallel wrong logins
    (each phase --duration s); the counter's p99 with the flood must stay within 1.5x
    of its p99 without."""
    import subprocess

    from bench.common import PYTHON, REPO

    a, d = run.args, run.driver
    alone = d.run("counter alone", a.connections, a.duration, a.drain)
    port = run.server.base.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "bench.load.login_flood", "--port", port]
        + ["--concurrency", str(a.flood), "--duration", str(a.duration + 2)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # the flood is under way before the counter is measured again
        flooded = d.run("counter + login flood", a.connections, a.duration, a.drain)
        out, _ = proc.communicate(timeout=a.duration + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = json.loads(out.strip().splitlines()[-1])
    lat = summary["latency_ms"]
    print(
        f"  login flood: {a.flood} connections, {summary['attempts']:,} attempts in "
        f"{summary['seconds']:.1f} s ({summary['attempts'] / max(summary['seconds'], 1e-9):,.1f}/s), "
        f"answers {summary['statuses']}, errors {summary['errors']}; latency ms p50 "
        f"{lat['p50']} p90 {lat['p90']} p99 {lat['p99']} max {lat['max']}"
    )
    run.no_errors([alone, flooded])
    run.drain_note([alone, flooded], a.drain)
    run.count_exact(d.expected(), stable=5)
    server_errors = sum(n for s, n in summary["statuses"].items() if s.startswith("5"))
    run.check(server_errors == 0, f"login flood: {server_errors} answers 5xx")
    run.check(not summary["errors"], f"login flood: socket errors {summary['errors']}")
    run.check(summary["attempts"] > 0, "login flood: no attempt answered")
    before, during = alone.latency_ms["p99"], flooded.latency_ms["p99"]
    ratio = during / max(before, 1e-9)
    print(
        f"  counter p99: {before:.1f} ms alone, {during:.1f} ms with the login flood "
        f"({ratio:.2f}x, limit {P99_RATIO_LIMIT}x)"
    )
    run.check(
        ratio <= P99_RATIO_LIMIT,
        f"counter p99 with the login flood {during:.1f} ms > {P99_RATIO_LIMIT} x {before:.1f} ms",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="server on 127.0.0.1:PORT")
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--duration", type=float, default=15, help="seconds (max 300)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per answer")
    args = parser.parse_args()
    summary = asyncio.run(flood(args.port, args.concurrency, min(args.duration, 300), args.timeout))
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
