"""Counter load harness: starts Hitmap, drives GET /c/{key}.png, verifies the database.

    .venv/bin/python -m bench.load.run                        # steady, PostgreSQL, 20 s
    .venv/bin/python -m bench.load.run --db sqlite            # steady on SQLite
    .venv/bin/python -m bench.load.run --mode burst           # 400 connections, twice
    .venv/bin/python -m bench.load.run --mode outage          # PostgreSQL down for 30 s
    .venv/bin/python -m bench.load.run --mode kill            # kill -9 mid-load
    .venv/bin/python -m bench.load.run --mode overload        # 1,500 connections
    .venv/bin/python -m bench.load.run --mode login-flood --db sqlite  # + 24 wrong logins

Database: --db postgresql (default) creates a throwaway database on the shared
server at 127.0.0.1:5432 (user postgres, trust; another admin DSN through
HITMAP_TEST_PG_ADMIN, see tests/databases.py) and drops it at the end; --db sqlite
uses a file in a temporary HITMAP_DATA_DIR. --mode outage always uses a private
throwaway cluster (bench/load/pgcluster.py: initdb as the postgres OS user, binaries
in HITMAP_PG_BIN, default /usr/lib/postgresql/15/bin) that it may stop and start;
the shared server is never stopped.

Needs `wrk` and `nginx` (Debian: apt-get install wrk nginx-light). Loopback only;
every phase is bounded in time, every poll of the database too. The request mix:
10,000 distinct visitor IP/user-agent pairs (X-Forwarded-For, trusted from
127.0.0.1), 100 sites, about 20 % repeat visits the same day. For the last
--drain seconds of each wrk phase every thread sends filler: repeats of hits it
has already sent (same cost, no new visit), so that every new visit has been
answered when wrk stops and the expected number of unique visits is exact.

Modes (each prints its figures and a verdict line; exit status 1 on failure):

  steady    --connections for --duration s; req/s, latency, errors, exact count,
            and the same load against nginx serving a 1x1 GIF (the ceiling).
  burst     idle, then --bursts bursts of --burst-connections for --duration s
            (default 8) with --phase s idle between; zero errors, exact count.
  outage    phases before (--phase s), during (--outage s, PostgreSQL stopped with
            pg_ctl stop -m fast just after it starts), after (PostgreSQL started
            again); --beacons of the requests are click beacons. Latency per phase;
            zero errors and non-200 counter answers; the count is polled until it
            equals the expected one (or stays unchanged 10 s, at most 90 s); rows in
            heatmap_clicks = clicks of the beacons answered 204.
  kill      bench/load/client.py drives --connections for --duration s; at 40 % the
            server's whole process group gets SIGKILL, `hitmap serve` restarts with
            the same settings. Unique visits among requests answered 200 <= stored
            <= unique visits among all requests written.
  overload  baseline (--connections, --phase s), then --overload-connections for
            --duration s (default 15) with the server's RSS sampled every second,
            then recovery (--connections, --phase s). Zero non-200 and socket
            errors (timeouts reported), RSS <= --max-rss-mb, hits shed (or p99 under
            1 s and no timeouts: not overloaded), recovery latency near the baseline, and
            expected - dropped(shed, budgets) - timeouts <= stored <= expected.
  login-flood  the steady load (--connections, --duration s, default 15) alone, then
            again with --flood (24) connections posting wrong logins without pause
            (bench/load/login_flood.py); the counter's p99 with the flood <= 1.5x
            its p99 alone, no 5xx, exact count.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path

from bench.common import HITMAP, PYTHON, REPO, database, free_port, make_sites, wait_ready

HERE = Path(__file__).parent
PAIRS = 10_000
SITES = 100
REPEAT_SHARE = 0.2
CLICKS_PER_BEACON = 5
WRK_TIMEOUT = 5
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel {v}) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
]
DEFAULT_DURATION = {
    "steady": 20,
    "burst": 8,
    "outage": 30,
    "kill": 20,
    "overload": 15,
    "login-flood": 15,
}

Hit = tuple[str, str, str, str]  # site key, client IP, user agent, referer
Line = tuple[str, ...]  # a request file line: ("H", *hit) or ("B", key, ip, ua, origin, body)


def public_ip(rng: random.Random) -> str:
    while True:
        a = rng.randint(1, 223)
        if a not in (10, 127, 100, 169, 172, 192, 198, 203):
            return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def request_list(sites: list[tuple[str, str]], size: int, seed: int = 7) -> list[Hit]:
    rng = random.Random(seed)
    pairs = [(public_ip(rng), rng.choice(UAS).format(v=rng.randint(90, 130))) for _ in range(PAIRS)]
    used: list[Hit] = []
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


def beacon_body(rng: random.Random) -> str:
    width, height = rng.choice([375, 1024, 1280, 1920]), rng.randint(2000, 9000)
    clicks = [
        {
            "x": rng.randint(0, width - 1),
            "y": rng.randint(0, height - 1),
            "w": width,
            "h": height,
            "v": width,
            "r": rng.choice([1, 2]),
            "s": rng.choice(["#buy", "nav>a.home", "body"]),
            "ox": round(rng.random(), 4),
            "oy": round(rng.random(), 4),
        }
        for _ in range(CLICKS_PER_BEACON)
    ]
    return json.dumps({"p": f"/posts/{rng.randint(1, 50)}", "c": clicks})


def with_beacons(
    hits: list[Hit], share: float, sites: list[tuple[str, str]], seed: int
) -> list[Line]:
    """The hits as request lines, with a ``share`` of click beacons mixed in."""
    lines: list[Line] = [("H", *hit) for hit in hits]
    if share <= 0:
        return lines
    rng = random.Random(seed)
    bodies = [beacon_body(rng) for _ in range(50)]
    out: list[Line] = []
    for line in lines:
        while rng.random() < share:
            key, domain = rng.choice(sites)
            ip, ua = public_ip(rng), rng.choice(UAS).format(v=100)
            out.append(("B", key, ip, ua, f"https://{domain}", rng.choice(bodies)))
        out.append(line)
    return out


def write_lines(path: Path, lines: Iterable[Line]) -> Path:
    path.write_text("".join("\t".join(line) + "\n" for line in lines))
    return path


def sent_triples(lines: list[Line], threads: list[dict]) -> set[tuple[str, str, str]]:
    """The (site, IP, UA) of every counter request a wrk phase sent."""
    n = len(threads)
    seen: set[tuple[str, str, str]] = set()
    for t in threads:
        mine = lines[t["tid"] :: n]
        count = len(mine) if t["wrapped"] else t["sent"]
        seen.update((x[1], x[2], x[3]) for x in mine[:count] if x[0] == "H")
    return seen


def db_counts(url: str) -> tuple[int, int, dict[str, int]]:
    """(visits, heatmap_clicks rows, dropped hits by reason)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            visits = int(conn.execute(text("SELECT count(*) FROM visits")).scalar_one())
            clicks = int(conn.execute(text("SELECT count(*) FROM heatmap_clicks")).scalar_one())
            drops = dict(
                conn.execute(
                    text("SELECT reason, sum(hits) FROM dropped_hits GROUP BY reason")
                ).all()
            )
    finally:
        engine.dispose()
    return visits, clicks, {k: int(v) for k, v in drops.items()}


def poll_counts(
    url: str, target: int, stable: float = 10, limit: float = 90, clicks_target: int | None = None
) -> tuple[int, int, dict[str, int], float]:
    """Poll until visits == target (and clicks == clicks_target, when given) or nothing
    changed for ``stable`` s (at most ``limit`` s). Replay writes the spool's records in
    order, one transaction each: the last visits may land before the last clicks."""
    started = time.monotonic()
    last, since = None, started
    while True:
        try:
            visits, clicks, drops = db_counts(url)
        except Exception as exc:  # the database may still be starting
            print(f"  (database not readable yet: {type(exc).__name__})")
            visits, clicks, drops = -1, -1, {}
        now = time.monotonic()
        if (visits, clicks) != last:
            last, since = (visits, clicks), now
        done = visits == target and clicks_target in (None, clicks)
        if done or now - since >= stable or now - started >= limit:
            return visits, clicks, drops, now - started
        time.sleep(1)


# --- processes -------------------------------------------------------------------------


def nofile_limit() -> int:
    """Raise this process's open-file limit as far as allowed; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    want = min(want, 65536)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return max(want, soft)


def session_processes(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:  # state ppid pgrp session ...
            pids.append(int(entry.name))
    return pids


def session_rss_mb(sid: int) -> float:
    """Resident memory of every process in the session (the server and its workers)."""
    total_kb = 0
    for pid in session_processes(sid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


class Server:
    """`hitmap serve` in its own session, so that one signal reaches every process."""

    def __init__(self, env: dict[str, str], base: str, log: Path) -> None:
        self.env, self.base, self.log = env, base, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> float:
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(HITMAP), "serve"],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_ready(self.base + "/", self.proc, timeout)
        return time.monotonic() - started

    @property
    def sid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while session_processes(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    | " + ln for ln in text[-lines:])


class RssSampler(threading.Thread):
    def __init__(self, sid: int) -> None:
        super().__init__(daemon=True)
        self.sid = sid
        self.samples: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append(session_rss_mb(self.sid))
            self.halt.wait(1.0)


# --- wrk -------------------------------------------------------------------------------


class Phase:
    """One wrk run over a slice of the request list."""

    def __init__(
        self, name: str, lines: list[Line], result: dict, connections: int, tracked: bool
    ) -> None:
        self.name, self.lines, self.result, self.connections = name, lines, result, connections
        self.tracked = tracked  # responses classified by hits.lua (HITMAP_WRK_RESPONSES)

    @property
    def seconds(self) -> float:
        return self.result["duration_us"] / 1e6

    @property
    def rate(self) -> float:
        return self.result["requests"] / max(self.seconds, 1e-9)

    @property
    def latency_ms(self) -> dict[str, float]:
        return {k: v / 1000 for k, v in self.result["latency_us"].items()}

    @property
    def counted_rate(self) -> tuple[float, float]:
        """(req/s, seconds) of the counted window: new requests, before the filler."""
        rate, spans = 0.0, []
        for t in self.result["threads"]:
            if t["first_us"] and t["switch_us"] > t["first_us"]:
                span = (t["switch_us"] - t["first_us"]) / 1e6
                rate += t["sent"] / span
                spans.append(span)
        return rate, (sum(spans) / len(spans) if spans else 0.0)

    def total(self, field: str) -> int:
        return sum(int(t.get(field, 0)) for t in self.result["threads"])

    @property
    def socket_errors(self) -> int:
        e = self.result["errors"]
        return e["connect"] + e["read"] + e["write"] + e["timeout"]

    @property
    def bad_answers(self) -> int:
        """Non-200 counter answers (and anything neither image nor beacon answer)."""
        if self.tracked:
            return self.total("hit_bad") + self.total("other")
        return self.result["errors"]["status"]

    def triples(self) -> set[tuple[str, str, str]]:
        return sent_triples(self.lines, self.result["threads"])

    def print(self) -> None:
        lat, e = self.latency_ms, self.result["errors"]
        print(
            f"  {self.name}: {self.connections} connections, {self.rate:,.0f} req/s "
            f"({self.result['requests']:,} in {self.seconds:.1f} s); latency ms p50 {lat['p50']:.1f} "
            f"p90 {lat['p90']:.1f} p99 {lat['p99']:.1f} max {lat['max']:.1f}"
        )
        counted, span = self.counted_rate
        print(
            f"    counted window: {self.total('sent'):,} new requests in {span:.1f} s "
            f"({counted:,.0f} req/s), then filler (repeats)"
        )
        extra = ""
        if self.tracked:
            extra = (
                f"; counter 200 {self.total('hit_ok'):,}, counter non-200 {self.total('hit_bad')}, "
                f"beacons 204 {self.total('beacon_ok'):,} / 503 {self.total('beacon_shed'):,}, "
                f"other {self.total('other')}"
            )
        print(
            f"    errors: connect {e['connect']} read {e['read']} write {e['write']} "
            f"timeout {e['timeout']} status>=400 {e['status']}{extra}"
        )


def wrk_command(
    url: str, threads: int, connections: int, duration: int, script: list[str] | None
) -> list[str]:
    cmd = ["wrk", "-t", str(min(threads, connections)), "-c", str(connections)]
    cmd += ["-d", f"{duration}s", "--timeout", f"{WRK_TIMEOUT}s"]
    return cmd + (["-s", *script[:1], url, "--", *script[1:]] if script else ["--latency", url])


def raise_nofile() -> None:  # preexec_fn for wrk and the client: as many sockets as allowed
    nofile_limit()


class Driver:
    """Runs wrk phases over consecutive slices of one request list."""

    def __init__(self, args: argparse.Namespace, base: str, tmp: Path, sites, hits) -> None:
        self.args, self.base, self.tmp, self.sites, self.hits = args, base, tmp, sites, hits
        self.offset = 0
        self.count = 0
        self.phases: list[Phase] = []

    def start(
        self, name: str, connections: int, duration: int, drain: int, beacons: float = 0.0
    ) -> Callable[[], Phase]:
        """Start a phase; the returned function waits for it and returns its Phase."""
        chunk = self.hits[self.offset : self.offset + 150_000]
        if len(chunk) < 150_000:
            chunk += self.hits[: 150_000 - len(chunk)]
        self.count += 1
        lines = with_beacons(chunk, beacons, self.sites, seed=self.count)
        threads = min(self.args.threads, connections)
        data = self.tmp / f"phase{self.count}.tsv"
        for tid in range(threads):  # hits.lua: thread tid reads lines[tid::threads]
            write_lines(Path(f"{data}.{tid}"), lines[tid::threads])
        script = [str(HERE / "hits.lua"), str(data), str(threads), str(duration), str(drain)]
        cmd = wrk_command(self.base, threads, connections, duration, script + [self.sites[0][0]])
        env = {**os.environ, "HITMAP_WRK_RESPONSES": "1" if beacons > 0 else "0"}
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            preexec_fn=raise_nofile,
        )  # fmt: skip

        def finish() -> Phase:
            out, err = proc.communicate(timeout=duration + 60)
            if proc.returncode != 0:
                raise SystemExit(f"wrk failed ({proc.returncode}): {err.strip()}")
            line = next(ln for ln in out.splitlines() if ln.startswith("HITMAP_RESULT "))
            result = json.loads(line.split(" ", 1)[1])
            phase = Phase(name, lines, result, connections, tracked=beacons > 0)
            # The next phase goes on after the last hit line this one sent.
            if any(t["wrapped"] for t in result["threads"]):
                last = len(lines)
            else:
                last = max(t["tid"] + threads * t["sent"] for t in result["threads"])
            consumed = sum(1 for ln in lines[:last] if ln[0] == "H")
            self.offset = (self.offset + consumed) % len(self.hits)
            self.phases.append(phase)
            phase.print()
            return phase

        return finish

    def run(self, name: str, connections: int, duration: int, drain: int, beacons=0.0) -> Phase:
        return self.start(name, connections, duration, drain, beacons)()

    def expected(self) -> int:
        seen: set[tuple[str, str, str]] = set()
        for phase in self.phases:
            seen |= phase.triples()
        return len(seen)


def nginx_ceiling(args: argparse.Namespace, tmp: Path, duration: int) -> float:
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
        cmd = wrk_command(
            f"http://127.0.0.1:{port}/c.gif", args.threads, args.connections, duration, None
        )
        raw = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        proc.terminate()
        proc.wait(10)
    rate = float(next(ln for ln in raw.splitlines() if ln.startswith("Requests/sec")).split()[1])
    p99 = next((ln.split()[1] for ln in raw.splitlines() if ln.strip().startswith("99%")), "?")
    print(f"  nginx 1x1 GIF ceiling ({args.connections} connections): {rate:,.0f} req/s, p99 {p99}")
    return rate


# --- modes -----------------------------------------------------------------------------


class Run:
    def __init__(self, args, url: str, server: Server, driver: Driver, tmp: Path) -> None:
        self.args, self.url, self.server, self.driver, self.tmp = args, url, server, driver, tmp
        self.failures: list[str] = []
        self.notes: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)

    def no_errors(self, phases: Iterable[Phase], allow_timeouts: bool = False) -> None:
        for p in phases:
            e = p.result["errors"]
            socket = e["connect"] + e["read"] + e["write"] + (0 if allow_timeouts else e["timeout"])
            self.check(socket == 0, f"{p.name}: {socket} socket errors/timeouts")
            self.check(p.bad_answers == 0, f"{p.name}: {p.bad_answers} non-200 answers")

    def drain_note(self, phases: Iterable[Phase], drain: int) -> None:
        slow = [p.name for p in phases if p.latency_ms["max"] >= drain * 1000]
        if slow:
            self.notes.append(
                f"max latency >= --drain in {', '.join(slow)}: the count may not be exact "
                "(raise --drain)"
            )

    def count_exact(
        self, expected: int, stable: float = 10, clicks: int | None = None
    ) -> tuple[int, int, dict]:
        visits, stored_clicks, drops, waited = poll_counts(
            self.url, expected, stable, clicks_target=clicks
        )
        verdict = "equal" if visits == expected else "MISMATCH"
        print(
            f"  unique visits: stored {visits:,}, expected {expected:,} "
            f"(polled {waited:.0f} s): {verdict}"
        )
        print(f"  dropped hits by reason: {drops}")
        self.check(visits == expected, f"stored visits {visits} != expected {expected}")
        return visits, stored_clicks, drops


def mode_steady(run: Run) -> None:
    a, d = run.args, run.driver
    phase = d.run("steady", a.connections, a.duration, a.drain)
    run.no_errors([phase])
    run.drain_note([phase], a.drain)
    run.count_exact(d.expected(), stable=5)
    if not a.skip_nginx:
        ceiling = nginx_ceiling(a, run.tmp, a.duration)
        counted = phase.counted_rate[0]
        print(
            f"  Hitmap / nginx ceiling: {counted / ceiling:.1%} (counted window), "
            f"{phase.rate / ceiling:.1%} (whole run with filler)"
        )


def mode_burst(run: Run) -> None:
    a, d = run.args, run.driver
    drain = max(a.drain, WRK_TIMEOUT)  # no counted request may still be in flight
    phases = []
    for i in range(a.bursts):
        time.sleep(a.phase)  # idle
        phases.append(d.run(f"burst {i + 1}", a.burst_connections, a.duration, drain))
    time.sleep(a.phase)
    run.no_errors(phases)
    run.drain_note(phases, drain)
    run.count_exact(d.expected(), stable=5)


def mode_outage(run: Run, cluster) -> None:
    a, d = run.args, run.driver
    side = max(a.phase, a.drain + 3)
    before = d.run("before", a.connections, side, a.drain, a.beacons)
    finish = d.start("during outage", a.connections, a.outage, a.drain, a.beacons)
    time.sleep(0.5)
    t0 = time.monotonic()
    cluster.stop()
    print(f"  (PostgreSQL stopped with pg_ctl stop -m fast in {time.monotonic() - t0:.1f} s)")
    during = finish()
    finish = d.start("after", a.connections, side, a.drain, a.beacons)
    time.sleep(0.5)
    cluster.start()
    print("  (PostgreSQL started again)")
    post = finish()
    phases = [before, during, post]
    run.no_errors(phases)
    run.drain_note(phases, a.drain)
    accepted = sum(p.total("beacon_ok") for p in phases)
    _, clicks, _ = run.count_exact(d.expected(), clicks=accepted * CLICKS_PER_BEACON)
    shed = sum(p.total("beacon_shed") for p in phases)
    print(
        f"  beacons: {accepted:,} answered 204 ({accepted * CLICKS_PER_BEACON:,} clicks), "
        f"{shed:,} answered 503; heatmap_clicks rows {clicks:,}"
    )
    run.check(
        clicks == accepted * CLICKS_PER_BEACON,
        f"heatmap_clicks {clicks} != clicks of 204 beacons {accepted * CLICKS_PER_BEACON}",
    )


def mode_kill(run: Run) -> None:
    a = run.args
    n = min(len(run.driver.hits), 200_000)
    hits = run.driver.hits[:n]
    data = write_lines(run.tmp / "kill.tsv", [("H", *h) for h in hits])
    outcomes_path = run.tmp / "outcomes.bin"
    port = run.server.base.rsplit(":", 1)[1]
    client = subprocess.Popen(
        [str(PYTHON), "-m", "bench.load.client", "--port", port, "--file", str(data)]
        + ["--connections", str(a.connections), "--duration", str(a.duration)]
        + ["--outcomes", str(outcomes_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=raise_nofile,
    )
    try:
        time.sleep(a.duration * 0.4)
        rss = session_rss_mb(run.server.sid)
        procs = len(session_processes(run.server.sid))
        run.server.kill9()
        print(
            f"  kill -9 of the server's session ({procs} processes, {rss:.0f} MB) "
            f"at {a.duration * 0.4:.0f} s"
        )
        took = run.server.start()
        print(f"  restarted `hitmap serve` (ready after {took:.1f} s)")
        out, _ = client.communicate(timeout=a.duration + 60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    summary = json.loads(out.strip().splitlines()[-1])
    outcomes = outcomes_path.read_bytes()
    acked: set[tuple[str, str, str]] = set()
    written: set[tuple[str, str, str]] = set()
    for hit, outcome in zip(hits, outcomes, strict=True):
        if outcome:
            written.add(hit[:3])
        if outcome == 2:
            acked.add(hit[:3])
    lat = summary["latency_ms"]
    counts = [outcomes.count(bytes([i])) for i in range(4)]
    print(
        f"  client: {summary['written']:,} requests written in {summary['seconds']:.1f} s, "
        f"200 {counts[2]:,}, unanswered {counts[1]:,}, other status {counts[3]:,} "
        f"{summary['statuses']}; errors {summary['errors']}"
    )
    print(
        f"  latency ms (answered): p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} max {lat['max']}"
    )
    visits, _, drops, waited = poll_counts(run.url, len(written))
    ok = len(acked) <= visits <= len(written)
    print(
        f"  unique visits: acknowledged {len(acked):,} <= stored {visits:,} <= written "
        f"{len(written):,} (polled {waited:.0f} s): {'holds' if ok else 'VIOLATED'}"
    )
    print(f"  dropped hits by reason: {drops}")
    run.check(ok, f"stored {visits} outside [{len(acked)}, {len(written)}]")
    run.check(counts[3] == 0, f"{counts[3]} non-200 answers")


def mode_overload(run: Run) -> None:
    a, d = run.args, run.driver
    drain = max(a.drain, WRK_TIMEOUT)  # no counted request may still be in flight
    baseline = d.run("baseline", a.connections, a.phase, a.drain)
    sampler = RssSampler(run.server.sid)
    sampler.start()
    over = d.run("overload", a.overload_connections, max(a.duration, drain + 4), drain)
    sampler.halt.set()
    sampler.join()
    recovery = d.run("recovery", a.connections, a.phase, a.drain)
    rss = sampler.samples or [0.0]
    print(
        f"  server RSS (all {len(session_processes(run.server.sid))} processes) during overload: "
        f"min {min(rss):.0f} MB, max {max(rss):.0f} MB ({len(rss)} samples)"
    )
    run.no_errors([baseline, recovery])
    run.no_errors([over], allow_timeouts=True)
    run.check(max(rss) <= a.max_rss_mb, f"RSS {max(rss):.0f} MB > {a.max_rss_mb} MB")
    expected = d.expected()
    visits, _, drops, waited = poll_counts(run.url, expected, stable=5)
    budget = sum(drops.get(r, 0) for r in ("shed", "ip_budget", "site_budget"))
    timeouts = sum(p.result["errors"]["timeout"] for p in d.phases)
    low = expected - budget - timeouts
    print(
        f"  shed {drops.get('shed', 0):,}, ip_budget {drops.get('ip_budget', 0):,}, "
        f"site_budget {drops.get('site_budget', 0):,}; timeouts {timeouts:,}"
    )
    ok = low <= visits <= expected
    print(
        f"  unique visits: {low:,} <= stored {visits:,} <= upper bound {expected:,} "
        f"(polled {waited:.0f} s): {'holds' if ok else 'VIOLATED'}"
    )
    run.check(ok, f"stored {visits} outside [{low}, {expected}]")
    p99 = over.latency_ms["p99"]
    over_timeouts = over.result["errors"]["timeout"]
    run.check(
        drops.get("shed", 0) > 0 or (p99 <= 1000 and over_timeouts == 0),
        f"no hit shed although overload p99 was {p99:.0f} ms with {over_timeouts} timeouts",
    )
    b, r = baseline.latency_ms, recovery.latency_ms
    limit = 3 * b["p99"] + 50
    print(
        f"  recovery p50 {r['p50']:.1f} / p99 {r['p99']:.1f} ms vs baseline "
        f"{b['p50']:.1f} / {b['p99']:.1f} ms (limit p99 {limit:.0f} ms)"
    )
    run.check(r["p99"] <= limit, f"recovery p99 {r['p99']:.0f} ms > {limit:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=list(DEFAULT_DURATION), default="steady")
    parser.add_argument(
        "--db",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="throwaway database (outage: always a private PostgreSQL cluster)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        help="seconds of the main load, max 120 (default: steady 20, burst 8 per burst, "
        "outage 30 = the outage, kill 20, overload 15, login-flood 15 per phase)",
    )
    parser.add_argument(
        "--drain",
        type=int,
        default=3,
        help="final seconds of each wrk phase with filler (repeats), more than the slowest "
        "answer (burst and overload: at least wrk's 5 s timeout)",
    )
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--requests", type=int, default=300_000, help="size of the request list")
    parser.add_argument("--phase", type=int, default=5, help="seconds of idle/side phases")
    parser.add_argument("--burst-connections", type=int, default=400)
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--outage", type=int, help="outage mode: seconds PostgreSQL is down")
    parser.add_argument(
        "--beacons", type=float, default=None, help="share of beacons (outage default 0.1)"
    )
    parser.add_argument("--overload-connections", type=int, default=1500)
    parser.add_argument("--max-rss-mb", type=float, default=1024, help="overload: RSS bound")
    parser.add_argument("--skip-nginx", action="store_true", help="steady: no nginx ceiling")
    parser.add_argument(
        "--flood", type=int, default=24, help="login-flood: parallel wrong-login connections"
    )
    args = parser.parse_args()
    args.duration = min(args.duration or DEFAULT_DURATION[args.mode], 120)
    args.outage = min(args.outage or args.duration, 120)
    if args.beacons is None:
        args.beacons = 0.1 if args.mode == "outage" else 0.0
    if args.mode == "outage" and args.db != "postgresql":
        raise SystemExit("--mode outage needs PostgreSQL (a private cluster is started)")
    needs_nginx = args.mode == "steady" and not args.skip_nginx
    for tool in ("wrk",) + (("nginx",) if needs_nginx else ()):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install wrk nginx-light")
    nofile = nofile_limit()
    if args.mode == "overload" and nofile < args.overload_connections + 100:
        raise SystemExit(f"open-file limit {nofile} too low for {args.overload_connections}")

    failures: list[str] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hitmap-load-")))
        cluster = None
        if args.mode == "outage":
            from bench.load.pgcluster import PrivateCluster

            cluster = stack.enter_context(PrivateCluster())
            url, where = cluster.url, f"private PostgreSQL cluster on port {cluster.port}"
        else:
            url = stack.enter_context(database(args.db, tmp))
            where = args.db
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "HITMAP_DATA_DIR": str(tmp),
            "HITMAP_DATABASE_URL": url,
            "HITMAP_TRUSTED_PROXIES": "127.0.0.1",
            "HITMAP_PORT": str(port),
            "HITMAP_BASE_URL": base,
        }
        subprocess.run([str(HITMAP), "migrate"], env=env, check=True, capture_output=True)
        sites = make_sites(env, SITES)
        hits = request_list(sites, args.requests)
        server = Server(env, base, tmp / "server.log")
        stack.callback(server.stop)
        server.start()
        conns = {"burst": args.burst_connections, "overload": args.overload_connections}
        print(
            f"Hitmap {args.mode} on {where}: {conns.get(args.mode, args.connections)} "
            f"connections, {args.threads} wrk threads, {args.duration} s"
        )
        run = Run(args, url, server, Driver(args, base, tmp, sites, hits), tmp)
        if args.mode == "steady":
            mode_steady(run)
        elif args.mode == "burst":
            mode_burst(run)
        elif args.mode == "outage":
            mode_outage(run, cluster)
        elif args.mode == "kill":
            mode_kill(run)
        elif args.mode == "login-flood":
            from bench.load.login_flood import mode_login_flood

            mode_login_flood(run)
        else:
            mode_overload(run)
        for note in run.notes:
            print(f"  note: {note}")
        failures = run.failures
        if failures:
            print("  server log (last lines):\n" + server.tail())
    print(f"VERDICT {args.mode}: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
