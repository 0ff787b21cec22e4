"""Budgets that keep one client or one site from taking the counter from everyone else.

The click beacon uses the same buckets, charged per click (``app/heatmaps/budgets.py``).

Both live in process memory and shed, never queue: a shed hit still gets its
image, uncounted, and its reason is counted. The database still decides what
a visit is; budgets only decide what this process has time for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol


class TokenBuckets:
    """Per-key token buckets: ``rate`` per second, at most ``burst`` at once.

    Bounded: past ``max_keys`` the table starts over (everyone's bucket full
    again), which errs on the side of counting.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 200_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def take(self, key: Hashable, now: float | None = None, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket, or none when it holds fewer.

        ``now`` in seconds, from any source that does not jump: a clock stepped
        back only pauses the refill.
        """
        now = time.monotonic() if now is None else now
        entry = self._buckets.get(key)
        if entry is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()
            tokens = self.burst
        else:
            tokens, last = entry
            if now > last:
                tokens = min(self.burst, tokens + (now - last) * self.rate)
            else:
                now = last
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - cost, now)
        return True


class LoadGauge(Protocol):
    """What the shedder needs to know of the writer's backlog."""

    @property
    def pending(self) -> int: ...

    def pending_for(self, site_id: int) -> int: ...


class LoopLag:
    """How late the event loop runs a timer: the time a new request waits for the CPU.

    Beyond capacity requests queue in the loop, whatever the database does; the lag
    says so before the memory or the latency of every visitor grows without bound.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.lag = 0.0

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval)
            late = time.monotonic() - started - self.interval
            # Rises at once, decays over a few ticks: one quick tick is no all-clear.
            self.lag = late if late > self.lag else 0.7 * self.lag + 0.3 * late


@dataclass(frozen=True, slots=True)
class Backlog:
    """Shed when the backlog is full or the event loop is too late; past half full, no
    site may hold more than a quarter of the backlog.

    The last rule is the per-site budget: a flood on one site (many clients) fills at
    most a quarter of the backlog, and the other sites keep being counted.
    """

    max_pending: int
    max_loop_lag: float = 0.25

    def verdict(self, gauge: LoadGauge, site_id: int, loop_lag: float = 0.0) -> str | None:
        if loop_lag > self.max_loop_lag:
            return "shed"
        pending = gauge.pending
        if pending < self.max_pending // 2:
            return None
        if pending >= self.max_pending:
            return "shed"
        if gauge.pending_for(site_id) >= self.max_pending // 4:
            return "site_budget"
        return None
