"""Every web process learns of a deleted site or a changed hostname within seconds.

The counter and the beacons keep each site by key in memory (``IngestService.sites``),
so that they answer without the database. Triggers (migration 0007) write one row
per deleted site and per added or removed hostname to ``site_changes``, whatever made
the change: the owner, account deletion cascading to its sites, an operator's SQL.
Each process polls the log once a second and drops those keys from its cache; the
next hit for a key reads it again (a deleted site's then answers 404).

PostgreSQL hands out ``seq`` when a row is inserted but rows become visible when their
transaction commits, which can be out of order; so each poll reads the last
``LOOKBACK`` seqs again and skips those it has seen. A process that fell so far
behind that rows it never saw were pruned reloads every site instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from sqlalchemy.orm import Session

from app.db import Database
from app.sites import repository

POLL_SECONDS = 1.0
LOOKBACK = 1_000
# The log keeps this many changes (hourly housekeeping), and a poll reads at most this many.
KEPT_CHANGES = 10_000


class SiteChanges:
    def __init__(
        self,
        db: Database,
        forget: Callable[[Iterable[str]], None],
        reload_all: Callable[[], None],
    ) -> None:
        self._db = db
        self._forget = forget
        self._reload_all = reload_all
        self._high = 0  # the highest seq seen
        self._seen: set[int] = set()  # seqs seen within LOOKBACK of it
        self._lock = threading.Lock()  # the poller and a request's background task

    def baseline(self, session: Session) -> None:
        """Changes up to now are already reflected in what this process is about to load."""
        with self._lock:
            self._high = repository.last_change(session)
            rows, _ = repository.changes_after(session, self._high - LOOKBACK, LOOKBACK)
            self._seen = {seq for seq, _ in rows}

    def poll(self) -> int:
        """Drop changed sites from the caches; returns how many changes were new."""
        with self._lock:
            with self._db.snapshot() as session:
                rows, oldest = repository.changes_after(
                    session, self._high - LOOKBACK, KEPT_CHANGES + LOOKBACK
                )
            new = [(seq, key) for seq, key in rows if seq not in self._seen]
            if oldest > self._high + 1:
                self._reload_all()  # changes this process never saw were pruned
            elif new:
                self._forget({key for _, key in new})
            if rows:
                self._high = max(self._high, rows[-1][0])
            self._seen = {seq for seq, _ in rows if seq > self._high - LOOKBACK}
            return len(new)
