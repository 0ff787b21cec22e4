"""A small read-through cache that serves stale values rather than wait for the database.

The counter must answer in milliseconds even while the database is slow or down,
so a value past its time-to-live is still served while one background thread
reloads it (stale-while-revalidate), and a failed reload keeps the old value
(stale-if-error). Only a key never seen before has to wait for a load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger("hitmap.ingest")

K = TypeVar("K")
V = TypeVar("V")

# One shared, tiny pool: refreshes are rare (one per key per TTL) and must not pile up.
_refresher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hitmap-cache-refresh")


class RefreshingCache(Generic[K, V]):
    def __init__(
        self,
        load: Callable[[K], V],
        ttl: float,
        *,
        name: str,
        max_entries: int = 200_000,
        errors: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._name = name
        self._max_entries = max_entries
        self._errors = errors
        self._entries: dict[K, tuple[float, V]] = {}
        self._refreshing: set[K] = set()
        self._lock = threading.Lock()
        # Counts invalidations: a load that began before one may have read what was
        # just deleted, so it is returned to its caller but not kept.
        self._epoch = 0

    def get(self, key: K) -> V:
        """The value, loading it when missing or expired; a failed reload serves the stale one."""
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self._ttl:
            return entry[1]
        try:
            return self._reload(key)
        except self._errors:
            if entry is None:
                raise
            return entry[1]

    def peek(self, key: K) -> tuple[bool, V | None]:
        """(known, value) without ever waiting; an expired value is served and refreshed behind."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if time.monotonic() - entry[0] >= self._ttl:
            self._refresh_in_background(key)
        return True, entry[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._put(key, value)

    def _put(self, key: K, value: V) -> None:  # holding the lock
        if len(self._entries) >= self._max_entries and key not in self._entries:
            # Remembered misses go first (a flood of made-up keys must not push out
            # the warmed sites); only then everything, which costs one load per key.
            self._entries = {k: e for k, e in self._entries.items() if e[1] is not None}
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
        self._entries[key] = (time.monotonic(), value)

    def expire(
        self, key: K, *, older_than: float = 0.0, unless: Callable[[V], bool] | None = None
    ) -> None:
        """Mark a value due for refresh (still served meanwhile) if it is older than that."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry[0] < older_than:
                return
            if unless is not None and unless(entry[1]):
                return
            self._entries[key] = (entry[0] - self._ttl, entry[1])

    def cached_keys(self) -> list[K]:
        with self._lock:
            return list(self._entries)

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.pop(key, None)

    def _reload(self, key: K) -> V:
        epoch = self._epoch
        value = self._load(key)
        with self._lock:
            if self._epoch == epoch:
                self._put(key, value)
        return value

    def _refresh_in_background(self, key: K) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
        try:
            _refresher.submit(self._background_reload, key)
        except RuntimeError:  # interpreter shutting down
            with self._lock:
                self._refreshing.discard(key)

    def _background_reload(self, key: K) -> None:
        try:
            self._reload(key)
        except self._errors:
            # Keep serving the stale value; push its age so the next try waits a TTL.
            log.warning("%s cache: reload failed; serving the stale value", self._name)
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries[key] = (time.monotonic(), entry[1])
        finally:
            with self._lock:
                self._refreshing.discard(key)
