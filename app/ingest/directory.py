"""Every web process learns of a deleted site or a changed hostname within seconds.

The counter and the beacons keep each site by key in memory (``IngestService.sites``),
so that they answer without the database. Triggers (migration 0007) write one row
per deleted site and per added or removed hostname to ``site_changes``, whatever made
the change: the owner, account deletion cascading to its sites, an operator's SQL.
Each process polls the log once a second and drops those keys from its cache; the
next hit for a key reads it again (a deleted site's then answers 404).

PostgreSQL hands out ``seq`` when a row is inserted but rows become visible when their
transaction commits, which can be out of order: a seq below the highest one seen may
still appear. Such holes are remembered for ``HOLE_SECONDS`` and read again; a poll
reads from the oldest open hole, or else only rows after the highest seq seen. A
process that fell so far behind that rows it never saw were pruned reloads every site.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy.orm import Session

from app.db import Database
from app.sites import repository

POLL_SECONDS = 1.0
# A transaction that wrote a change commits within this long, or it was rolled back.
HOLE_SECONDS = 60.0
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
        self._holes: dict[int, float] = {}  # seqs below it not seen yet, and since when
        self._lock = threading.Lock()  # the poller and a request's background task

    def baseline(self, session: Session) -> None:
        """Changes up to now are already reflected in what this process is about to load."""
        with self._lock:
            self._high = repository.last_change(session)
            self._holes = {}

    def poll(self) -> int:
        """Drop changed sites from the caches; returns how many changes were new."""
        with self._lock:
            start = min(self._holes, default=self._high + 1) - 1
            with self._db.snapshot() as session:
                rows, newest = repository.changes_after(session, start, KEPT_CHANGES)
            new = [(seq, key) for seq, key in rows if seq > self._high or seq in self._holes]
            if self._high < newest - KEPT_CHANGES:
                # Changes this process never saw may have been pruned: start afresh.
                self._reload_all()
                self._high, self._holes = newest, {}
                return len(new)
            if new:
                self._forget({key for _, key in new})
            self._note_holes({seq for seq, _ in rows}, rows[-1][0] if rows else self._high)
            return len(new)

    def _note_holes(self, seen: set[int], top: int) -> None:
        now = time.monotonic()
        holes = {
            seq: since
            for seq, since in self._holes.items()
            if seq not in seen and now - since < HOLE_SECONDS
        }
        for seq in range(self._high + 1, top):
            if seq not in seen:
                holes[seq] = now
        self._holes = holes
        self._high = max(self._high, top)
