"""A small HTTP/1.1 keep-alive load client that knows which request got which answer.

    .venv/bin/python -m bench.load.client --port 8000 --file requests.tsv \\
        --connections 50 --duration 20 --outcomes outcomes.bin

wrk cannot say which request a response belonged to; the kill -9 mode of the load
harness needs exactly that. Raw asyncio streams, N connections; connection i sends
lines i, i+N, i+2N, ... of the request file one after the other (no pipelining), so
every answer belongs to the request just written. Per request it records one byte in
the outcomes file:

    0  never written (not reached, or the connection could not be opened)
    1  written, no complete answer (connection reset or closed, timeout)
    2  answered 200 (or 204 for a beacon)
    3  answered with any other status

A connection that fails is reopened (every 50 ms while the server is down) and goes
on with its next request; nothing is retried. It stops at the deadline after the
answer in flight, or when its share of the file is done. One JSON summary line goes
to stdout. Request file lines, tab-separated (as for hits.lua):

    H  key  client-ip  user-agent  referer
    B  key  client-ip  user-agent  origin  body      (a click beacon, POST /b/{key})

This client is for correctness, not throughput: it is not measured against wrk and
must not be used for req/s figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

NOT_SENT, NO_ANSWER, OK, OTHER = 0, 1, 2, 3


def build_request(host: str, fields: list[str]) -> bytes:
    kind, key, ip, ua, ref = fields[:5]
    if kind == "B":
        body = fields[5].encode()
        head = (
            f"POST /b/{key} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {ip}\r\n"
            f"User-Agent: {ua}\r\nOrigin: {ref}\r\nContent-Type: text/plain;charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body
    return (
        f"GET /c/{key}.png HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {ip}\r\n"
        f"User-Agent: {ua}\r\nReferer: {ref}\r\n\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return (status, connection may be reused)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get(b"connection", b"").lower() != b"close"
    if status in (204, 304) or 100 <= status < 200:
        return status, keep
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        keep = False
    return status, keep


class Tally:
    def __init__(self, size: int) -> None:
        self.outcomes = bytearray(size)
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []


async def connection(
    index: int,
    stride: int,
    requests: list[bytes],
    port: int,
    deadline: float,
    timeout: float,
    tally: Tally,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    i = index
    while i < len(requests) and time.monotonic() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), timeout
                )
            except (TimeoutError, OSError) as exc:
                tally.errors[f"connect {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        started = time.perf_counter()
        tally.outcomes[i] = NO_ANSWER
        try:
            writer.write(requests[i])
            await writer.drain()
            status, keep = await asyncio.wait_for(read_response(reader), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.errors[type(exc).__name__] += 1
            writer.close()
            writer = None
            i += stride
            continue
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[str(status)] += 1
        tally.outcomes[i] = OK if status in (200, 204) else OTHER
        if not keep:
            writer.close()
            writer = None
        i += stride
    if writer is not None:
        writer.close()


async def drive(
    port: int, requests: list[bytes], connections: int, duration: float, timeout: float
) -> tuple[Tally, float]:
    tally = Tally(len(requests))
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(
        *(
            connection(c, connections, requests, port, deadline, timeout, tally)
            for c in range(connections)
        )
    )
    return tally, time.monotonic() - started


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="server on 127.0.0.1:PORT")
    parser.add_argument("--file", type=Path, required=True, help="request lines (see above)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20, help="seconds (max 300)")
    parser.add_argument("--timeout", type=float, default=10, help="seconds per answer")
    parser.add_argument("--outcomes", type=Path, help="write one outcome byte per request")
    args = parser.parse_args()
    host = f"127.0.0.1:{args.port}"
    requests = [
        build_request(host, line.split("\t")) for line in args.file.read_text().splitlines() if line
    ]
    tally, elapsed = asyncio.run(
        drive(args.port, requests, args.connections, min(args.duration, 300), args.timeout)
    )
    if args.outcomes:
        args.outcomes.write_bytes(bytes(tally.outcomes))
    lat = sorted(tally.latencies)
    summary = {
        "seconds": round(elapsed, 3),
        "written": sum(1 for o in tally.outcomes if o != NOT_SENT),
        "answered": len(lat),
        "statuses": dict(tally.statuses),
        "errors": dict(tally.errors),
        "latency_ms": {
            name: round(percentile(lat, share) * 1000, 2)
            for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
    }
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
