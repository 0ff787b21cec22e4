"""The site directory: key → site and hostnames, in memory, for the counter and the beacons.

Both answer without the database: :class:`SiteDirectory` keeps each site by key in a
:class:`~app.capture.cache.RefreshingCache` (misses too, served stale while the
database is down), loads every site at start-up, and forgets a key as soon as this
process learns that its site was deleted or its hostnames changed.

Every web process learns of such a change within seconds. Triggers (migration 0007) write one row
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

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.capture.cache import RefreshingCache
from app.db import Database
from app.errors import NotFound
from app.sites import authz, repository
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.ingest")

# A site's name and options are read again after this long. Deletions and hostname
# changes reach every process within a second or two (``SiteChanges``).
SITE_CACHE_SECONDS = 30.0

POLL_SECONDS = 1.0
# A transaction that wrote a change commits within this long, or it was rolled back.
HOLE_SECONDS = 60.0
# The log keeps this many changes (hourly housekeeping), and a poll reads at most this many.
KEPT_CHANGES = 10_000


SiteEntry = tuple[SiteScope, frozenset[str]] | None


class SiteDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db
        # The hot paths read this cache directly (``peek``): no hop in between.
        self.cache: RefreshingCache[str, SiteEntry] = RefreshingCache(
            self._load_site, SITE_CACHE_SECONDS, name="site", errors=(SQLAlchemyError,)
        )
        self.changes = SiteChanges(db, self.forget, self._reload)

    def _load_site(self, key: str) -> SiteEntry:
        with self._db.session() as session:
            try:
                return authz.ingest_site(session, key)
            except NotFound:
                return None

    def warm_up(self) -> list[SiteScope]:
        """Every site, and the change log from the same snapshot on (at start-up).

        A process that has never seen a site cannot count it while the database is
        down; after this, only sites created during the outage are unknown."""
        entries = self._load_all(baseline=True)
        return [scope for scope, _ in entries.values()]

    def site_changed(self, key: str | None = None) -> None:
        """This process changed a site: forget it at once (a request's background task).

        Deletions and hostname changes are also in the change log, which every other
        process polls; a changed name or privacy is not, and waits SITE_CACHE_SECONDS."""
        if key is not None:
            self.cache.invalidate(key)
        try:
            self.changes.poll()
        except SQLAlchemyError:
            log.warning("could not read the site change log; the poller will")

    async def watch(self, interval: float = POLL_SECONDS) -> None:
        """Poll the site change log for as long as the process serves."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            # While the database is down, cached sites keep counting, as they should.
            with suppress(SQLAlchemyError):
                await loop.run_in_executor(None, self.changes.poll)

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.cache.invalidate(key)

    def _reload(self) -> None:
        self._load_all(baseline=False)

    def _load_all(self, *, baseline: bool) -> dict[str, tuple[SiteScope, frozenset[str]]]:
        """Every site into the cache, and none that is gone; ``baseline``: the change log
        is read from the same snapshot on (at start-up)."""
        with self._db.snapshot() as session:
            if baseline:
                self.changes.baseline(session)
            entries = authz.all_ingest_sites(session)
        for key in self.cache.cached_keys():
            if key not in entries:
                self.cache.invalidate(key)
        for key, entry in entries.items():
            self.cache.put(key, entry)
        return entries


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
