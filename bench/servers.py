"""Which ASGI server, and how many workers, for the counter endpoint on this 2-core machine.

A framework-free stand-in for the counter's hot path, served by uvicorn (httptools + uvloop)
and by granian (ASGI, and RSGI), with 1 and 2 workers, loaded by ``wrk -t2 -c50`` over
loopback keep-alive on the same machine. Two handler variants:

* ``plain``: read the request headers, answer a ~700-byte PNG.
* ``batched``: the same, but first ``await`` a future that a writer thread resolves in
  batches every ~2 ms through ``loop.call_soon_threadsafe`` (a group-commit writer that
  acknowledges many hits at once), which is the real shape of the hot path.

Run: ``.venv/bin/python -m bench.servers`` (about 3 minutes on an idle machine; before each
run it waits up to ``--quiet-wait`` s for the machine to go idle, so at most ~17 minutes;
``--duration``, ``--repeat``, ``--only`` change that). wrk and the server share the 2 cores,
so single runs swing by +-25%: compare medians of ``--repeat 3``, rows whose "other" is ~0%. ``--checks`` instead answers the lifecycle questions: does SIGTERM
run lifespan shutdown in every worker, are workers killed with -9 restarted, does the
factory see settings from the environment, what is ``scope["client"]``, is a ``server``
header sent.

The apps are built by factories, configured through environment variables as a real
deployment would be: ``BENCH_VARIANT`` (plain|batched) and ``BENCH_MARK_DIR`` (where each
worker writes ``startup-PID`` / ``shutdown-PID`` marker files).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, free_port, wait_ready

# ---------------------------------------------------------------- the response


def _png(size: int = 700) -> bytes:
    """A valid PNG of about ``size`` bytes (an incompressible 12x12 RGB image, padded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rng = random.Random(0)
    rows = b"".join(b"\x00" + rng.randbytes(12 * 3) for _ in range(12))
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12, 12, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(rows, 9))
    tail = chunk(b"IEND", b"")
    pad = size - len(head) - len(idat) - len(tail) - 12
    text = chunk(b"tEXt", b"Comment\x00" + b"x" * max(0, pad - 8)) if pad > 8 else b""
    return head + idat + text + tail


PNG = _png()
ETAG = ('"' + hashlib.blake2b(PNG, digest_size=8).hexdigest() + '"').encode()
HEADERS = [
    (b"content-type", b"image/png"),
    (b"content-length", str(len(PNG)).encode()),
    (b"cache-control", b"private, no-cache"),
    (b"etag", ETAG),
]
WANTED = (b"user-agent", b"referer", b"x-forwarded-for")


def read_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str, str, str]:
    """What the counter handler looks up, the way it would: one pass over the raw headers."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in WANTED:
            found[name] = value
    return (
        found.get(b"user-agent", b"").decode("latin-1"),
        found.get(b"referer", b"").decode("latin-1"),
        found.get(b"x-forwarded-for", b"").decode("latin-1"),
    )


# ---------------------------------------------------------------- the writer thread


class BatchWriter:
    """A stand-in group-commit writer: collects hits, acknowledges them every ``interval`` s.

    Each hit comes with the future its handler awaits; one ``call_soon_threadsafe`` per loop
    per batch resolves every future of that batch.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.lock = threading.Lock()
        self.pending: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], tuple]] = []
        self.written = 0
        self.batches = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-writer", daemon=True)
        self.thread.start()

    def submit(self, loop: asyncio.AbstractEventLoop, hit: tuple) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = loop.create_future()
        with self.lock:
            self.pending.append((loop, fut, hit))
        return fut

    def _flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
        if not batch:
            return
        # A real writer would INSERT the hits here, in one transaction.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for loop, fut, _hit in batch:
            by_loop.setdefault(loop, []).append(fut)
        for loop, futs in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve_all, futs)
        self.written += len(batch)
        self.batches += 1

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self._flush()
        self._flush()

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


def _resolve_all(futs: list[asyncio.Future[None]]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result(None)


# ---------------------------------------------------------------- the apps

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Worker:
    """What one worker process holds: its writer (batched variant) and its marker files."""

    def __init__(self) -> None:
        self.variant = os.environ.get("BENCH_VARIANT", "plain")
        self.mark_dir = os.environ.get("BENCH_MARK_DIR")
        self.writer: BatchWriter | None = None
        self.stopped = False

    def start(self) -> None:
        if self.variant == "batched" and self.writer is None:
            self.writer = BatchWriter()
        self._mark("startup", {"variant": self.variant})

    def stop(self) -> None:
        self.stopped = True
        written = batches = 0
        if self.writer is not None:
            self.writer.close()
            written, batches = self.writer.written, self.writer.batches
            self.writer = None
        self._mark("shutdown", {"written": written, "batches": batches})

    def _mark(self, what: str, data: dict[str, Any]) -> None:
        if self.mark_dir:
            path = Path(self.mark_dir) / f"{what}-{os.getpid()}"
            path.write_text(json.dumps(data))

    async def hit(self, headers: tuple[str, str, str], client: object) -> None:
        if self.variant != "batched":
            return
        if self.stopped:  # lifespan shutdown has run: this hit would be lost
            self._mark("late", {})
            return
        if self.writer is None:  # no lifespan (or not yet): start lazily
            self.writer = BatchWriter()
        await self.writer.submit(asyncio.get_running_loop(), (*headers, client))


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """ASGI app factory: ``bench.servers:create_app`` with the server's factory flag."""
    worker = _Worker()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/scope":
                body = json.dumps(
                    {"client": scope.get("client"), "pid": os.getpid(), "variant": worker.variant}
                ).encode()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": body})
                return
            if scope["path"] == "/slow":  # in flight when SIGTERM comes (--checks)
                await asyncio.sleep(2)
            await worker.hit(read_headers(scope["headers"]), scope.get("client"))
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": PNG})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    worker.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    worker.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


class RSGIApp:
    """The same endpoint on granian's RSGI interface (its native one)."""

    def __init__(self) -> None:
        self.worker = _Worker()
        self.headers = [(k.decode(), v.decode()) for k, v in HEADERS if k != b"content-length"]

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.worker.start()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.worker.stop()

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.path == "/scope":
            body = json.dumps({"client": scope.client, "pid": os.getpid()}).encode()
            proto.response_bytes(200, [], body)
            return
        if scope.path == "/slow":
            await asyncio.sleep(2)
        h = scope.headers
        headers = (h.get("user-agent", ""), h.get("referer", ""), h.get("x-forwarded-for", ""))
        await self.worker.hit(headers, scope.client)
        proto.response_bytes(200, self.headers, PNG)


def create_rsgi_app() -> RSGIApp:
    return RSGIApp()


# ---------------------------------------------------------------- the servers

UVICORN = [str(PYTHON), "-m", "uvicorn", "--factory", "--host", "127.0.0.1"]
UVICORN_OPTS = ["--http", "httptools", "--loop", "uvloop", "--no-access-log", "--no-server-header"]
UVICORN_OPTS += ["--log-level", "warning"]
GRANIAN = [str(PYTHON), "-m", "granian", "--factory", "--host", "127.0.0.1"]
GRANIAN_OPTS = ["--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
GRANIAN_OPTS += ["--respawn-failed-workers", "--respawn-interval", "1"]


def server_command(name: str, port: int) -> list[str]:
    """``name``: uvicorn-wN, granian-asgi-wN[-rtM], granian-rsgi-wN."""
    parts = name.split("-")
    workers = next(int(p[1:]) for p in parts if p.startswith("w"))
    if parts[0] == "uvicorn":
        return UVICORN + UVICORN_OPTS + [
            "--port", str(port), "--workers", str(workers), "bench.servers:create_app",
        ]  # fmt: skip
    interface = parts[1]
    target = "bench.servers:create_app" if interface == "asgi" else "bench.servers:create_rsgi_app"
    cmd = GRANIAN + GRANIAN_OPTS + ["--interface", interface, "--port", str(port)]
    cmd += ["--workers", str(workers)]
    for p in parts:
        if p.startswith("rt"):
            cmd += ["--runtime-threads", p[2:]]
    return [*cmd, target]


CONFIGS = [
    "uvicorn-w1",
    "uvicorn-w2",
    "granian-asgi-w1",
    "granian-asgi-w2",
    "granian-asgi-w1-rt2",
    "granian-rsgi-w1",
    "granian-rsgi-w2",
]
VARIANTS = ["plain", "batched"]


def start_server(
    name: str, variant: str, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "BENCH_VARIANT": variant, **(extra_env or {})}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(server_command(name, port), cwd=REPO, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    wait_ready(url + "scope", proc)
    return proc, url


def stop_server(proc: subprocess.Popen, timeout: float = 15) -> float:
    """SIGTERM the server, wait for it; SIGKILL its group past ``timeout``. Returns seconds taken."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.monotonic() - t0


# ---------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, duration: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True, timeout=duration + 30,
    ).stdout  # fmt: skip
    result: dict[str, Any] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.MULTILINE)
        result[f"p{pct}"] = _ms(m.group(1)) if m else float("nan")
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = ", ".join(
        s for s in (errors and errors.group(1), non2xx and f"non-2xx {non2xx.group(1)}") if s
    )
    return result


def _busy_ticks() -> int:
    """CPU ticks spent in user and system mode on all cores (irq/softirq left out)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[0] + fields[1] + fields[2]  # user, nice, system


def _tree_ticks(pid: int) -> int:
    """CPU ticks of ``pid`` and its live descendants (utime + stime)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
        todo += _children(p)
    return total


def _idle_share(seconds: float = 1.0) -> float:
    t0, b0 = time.monotonic(), _busy_ticks()
    time.sleep(seconds)
    used = (_busy_ticks() - b0) / os.sysconf("SC_CLK_TCK")
    return 1 - used / ((time.monotonic() - t0) * (os.cpu_count() or 1))


def wait_quiet(max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) for the machine to be 85% idle; returns the idle share seen."""
    deadline = time.monotonic() + max_wait
    idle = _idle_share()
    while idle < 0.85 and time.monotonic() < deadline:
        idle = _idle_share(2.0)
    return idle


def measure(name: str, variant: str, duration: int) -> dict[str, Any]:
    """One wrk run against a fresh server; also the CPU the server, wrk and others used."""
    proc, url = start_server(name, variant)
    try:
        time.sleep(0.5)  # let every worker come up, not just the first
        hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
        t0, busy0, srv0 = time.monotonic(), _busy_ticks(), _tree_ticks(proc.pid)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = run_wrk(url, duration)
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy, srv = _busy_ticks() - busy0, _tree_ticks(proc.pid) - srv0
        elapsed = time.monotonic() - t0
    finally:
        stop_server(proc)
    wrk_s = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    r["server_cpu"] = srv / hz / elapsed  # in cores
    r["wrk_cpu"] = wrk_s / elapsed
    r["other_cpu"] = max(0.0, (busy / hz - srv / hz - wrk_s) / (elapsed * cores))
    return r


def bench(
    configs: list[str], variants: list[str], duration: int, repeat: int, quiet_wait: float
) -> None:
    print(f"wrk -t2 -c50 -d{duration}s --latency, loopback keep-alive, {os.cpu_count()} cores")
    print("srv/wrk: cores used by the server and by wrk; other: share of the machine used by")
    print("anything else during the run (above a few % the row is disturbed)")
    print("wrk and the server share the cores: take medians of several rounds (--repeat)")
    head = f"{'config':<20} {'variant':<8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
    print(f"{head}   srv  wrk other  req/s/srv-core  notes")
    for _ in range(repeat):
        for variant in variants:
            for name in configs:
                if quiet_wait:
                    wait_quiet(quiet_wait)
                r = measure(name, variant, duration)
                print(
                    f"{name:<20} {variant:<8} {r['rps']:>7.0f} {r['p50']:>7.2f} {r['p99']:>7.2f}"
                    f"  {r['server_cpu']:>4.2f} {r['wrk_cpu']:>4.2f} {r['other_cpu']:>4.0%}"
                    f"  {r['rps'] / max(r['server_cpu'], 0.01):>14.0f}  {r['errors']}",
                    flush=True,
                )


# ---------------------------------------------------------------- lifecycle checks


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _serving_workers(pid: int, mark_dir: Path) -> list[int]:
    """Descendants of ``pid`` that ran lifespan startup (the workers, not helpers)."""
    started = {int(p.name.split("-")[1]) for p in mark_dir.glob("startup-*")}
    seen, todo = [], [pid]
    while todo:
        for c in _children(todo.pop()):
            seen.append(c)
            todo.append(c)
    return [p for p in seen if p in started]


def check(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp)
        proc, url = start_server(name, "batched", {"BENCH_MARK_DIR": tmp})
        slow: dict[str, Any] = {}

        def get_slow() -> None:
            try:
                with urllib.request.urlopen(url + "slow", timeout=10) as resp:
                    slow["status"] = resp.status
            except OSError as e:
                slow["error"] = repr(e)

        getter = threading.Thread(target=get_slow, daemon=True)
        victim = None
        try:
            deadline = time.monotonic() + 10
            while len(_serving_workers(proc.pid, marks)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            workers = _serving_workers(proc.pid, marks)
            with urllib.request.urlopen(url + "scope", timeout=5) as resp:
                scope = json.loads(resp.read())
            with urllib.request.urlopen(url, timeout=5) as resp:
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
            print(f"{name}: workers {workers}; scope {scope}; response headers {sorted(hdrs)}")
            # Kill one worker with -9: is it replaced?
            victim = workers[0] if workers else None
            if victim:
                os.kill(victim, signal.SIGKILL)
                deadline = time.monotonic() + 12
                after: list[int] = []
                while time.monotonic() < deadline:
                    time.sleep(0.5)
                    after = _serving_workers(proc.pid, marks)
                    if len(after) >= len(workers) and victim not in after:
                        break
                took = 12 - max(0.0, deadline - time.monotonic())
                print(f"  kill -9 {victim}: workers now {after} (after {took:.1f}s)")
                for _ in range(20):  # some hits for the new worker to flush
                    urllib.request.urlopen(url, timeout=5).read()
            # A request in flight when SIGTERM comes: answered? its hit before lifespan shutdown?
            getter.start()
            time.sleep(0.5)
        finally:
            took = stop_server(proc)
        getter.join(timeout=15)
        late = [p.name for p in marks.glob("late-*")]
        print(f"  request in flight at SIGTERM: {slow}; hits after lifespan shutdown: {late}")
        started = sorted(int(p.name.split("-")[1]) for p in marks.glob("startup-*"))
        stopped = {int(p.name.split("-")[1]): json.loads(p.read_text()) for p in marks.glob("shutdown-*")}  # fmt: skip
        print(f"  SIGTERM: exit {proc.returncode} in {took:.1f}s; lifespan startup in {started}")
        for pid in started:
            what = stopped.get(pid, "NO shutdown (killed -9)" if pid == victim else "NO shutdown")
            print(f"    worker {pid}: {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per run")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over every config")
    parser.add_argument("--only", nargs="*", default=CONFIGS, help=f"configs, of {CONFIGS}")
    parser.add_argument("--variant", nargs="*", default=VARIANTS, choices=VARIANTS)
    parser.add_argument(
        "--quiet-wait", type=float, default=60, help="max seconds to wait for an idle machine"
    )
    parser.add_argument("--checks", action="store_true", help="lifecycle checks instead")
    args = parser.parse_args()
    if args.checks:
        for name in ("uvicorn-w2", "granian-asgi-w2", "granian-rsgi-w2"):
            check(name)
        return
    bench(args.only, args.variant, args.duration, args.repeat, args.quiet_wait)


if __name__ == "__main__":
    sys.exit(main())
