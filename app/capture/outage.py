"""The database is down: know it, spool what it cannot take, replay it exactly once.

``Outage`` keeps the back-off state (after a failed write, writers go straight to
the spool for a moment instead of waiting on a dead connection), appends batches
to the fsynced :class:`~app.capture.spool.Spool`, and replays them from a thread
once the database answers. Each replayed record claims its id in the same
transaction that writes it, so a crash between that commit and the deletion of
the segment cannot apply it twice.

Spooled records hold what the database would hold (site ids, days, keyed visitor
hashes, coarse locations, click positions), never an IP address or a user agent.
Other features add record kinds with :meth:`Outage.register` (the heatmaps' click
batches), so there is one spool and one exactly-once rule.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from app.capture import repository
from app.capture.repository import DropKey, Inserted, NewVisit
from app.capture.spool import Spool, SpoolRecord
from app.clock import Clock
from app.db import Database
from app.ingest.geoip import Location
from app.ops import metrics
from app.sites import authz
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.ingest")

TRANSIENT = (OperationalError, InterfaceError, PoolTimeout)
RETRY_AFTER_SECONDS = (0.5, 1.0, 2.0, 4.0)
REPLAY_INTERVAL_SECONDS = 1.0

# Writes a spooled kind of record: (session, scopes of the sites still there, rows).
Applier = Callable[[Session, dict[int, SiteScope], list[Any]], None]
# Told about visits a replay inserted (and the batch they came in): the writer's memory.
Counted = Callable[[Inserted, list[NewVisit]], None]


class Outage:
    def __init__(self, db: Database, spool: Spool, clock: Clock, counted: Counted) -> None:
        self.db = db
        self.spool = spool
        self.clock = clock
        self.replayed_records = 0
        self._counted = counted
        self._appliers: dict[str, Applier] = {}
        self._failures = 0
        self._down_until = 0.0
        self._connection = threading.local()

    # --- is the database down? ---------------------------------------------------------

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def mark_down(self) -> None:
        delay = RETRY_AFTER_SECONDS[min(self._failures, len(RETRY_AFTER_SECONDS) - 1)]
        self._failures += 1
        self._down_until = time.monotonic() + delay

    def mark_up(self) -> None:
        self._failures = 0
        self._down_until = 0.0

    # --- spooling ----------------------------------------------------------------------

    def spool_batch(
        self, visits: Iterable[NewVisit], drops: Counter[DropKey], record_id: str | None = None
    ) -> None:
        """fsync a batch of hits to local disk. Raises OSError when the disk fails too.

        ``record_id``: the id the failed live write tried to claim, so that a commit
        whose outcome is unknown is not applied again by the replay."""
        self.spool.append(encode(visits, drops), record_id)

    def register(self, kind: str, apply: Applier) -> None:
        """Another kind of spooled record; each of its rows starts with its site's id."""
        self._appliers[kind] = apply

    def spool_records(
        self, kind: str, sites: Iterable[SiteScope], rows: list[Any], record_id: str | None = None
    ) -> None:
        """Make another feature's records durable until the database is back."""
        scopes = list(sites)
        extra = {kind: {"sites": sorted({s.site_id for s in scopes}), "rows": rows}}
        self.spool.append({"v": [], "d": [], "x": extra, "k": _keys(scopes)}, record_id)

    # --- replay ------------------------------------------------------------------------

    def run_replay(self, stopping: Callable[[], bool]) -> None:
        """The replay thread's loop: nothing may end it but the process stopping."""
        while not stopping():
            time.sleep(REPLAY_INTERVAL_SECONDS)
            try:
                self.replay_once()
            except Exception:
                log.exception("spool replay failed; will try again")

    def replay_once(self, *, now: bool = False) -> int:
        """Write what the spool holds if the database answers; returns records applied.

        ``now`` tries even while the last failure's back-off has not run out."""
        if (self.down and not now) or not self.spool.pending_segments():
            return 0
        applied = 0

        def apply(record: SpoolRecord) -> None:
            nonlocal applied
            self._apply(record)
            applied += 1

        def skip(error: Exception) -> bool:
            if isinstance(error, TRANSIENT):
                return False  # the database again: stop, try later
            log.error(
                "a spooled record could not be replayed (%s); its segment stays in the spool",
                type(error).__name__,
            )
            return True

        try:
            self.spool.replay(apply, skip)
        except TRANSIENT:
            log.warning("database still unavailable; spooled hits wait")
            self.mark_down()
        if applied:
            self.mark_up()
            self.replayed_records += applied
            log.info(
                "replayed %d spooled batches",
                applied,
                extra={"event": "spool_replayed", "records": applied},
            )
        return applied

    def _apply(self, record: SpoolRecord) -> None:
        data: dict[str, Any] = record.payload
        with self.db.kept_session(self._connection) as session:
            if not repository.claim_spool_record(session, record.record_id, self.clock.now()):
                return  # applied before a crash that kept the segment
            extra: dict[str, Any] = data.get("x", {})
            site_ids = {row[0] for row in data["v"]} | {row[0] for row in data["d"]}
            for kind in extra.values():
                site_ids.update(kind["sites"])
            # A site deleted meanwhile is simply missing here: its hits are discarded.
            scopes = _same_sites(authz.ingest_sites_by_id(session, site_ids), data.get("k"))
            visits, drops = decode(data, scopes)
            inserted = repository.insert_visits(session, visits)
            repository.add_drops(session, drops)
            for kind, records in extra.items():
                self._appliers[kind](session, scopes, records["rows"])
        if visits:
            metrics.HITS_REPLAYED.inc(len(visits))
        _count_discarded(data, scopes)
        self._counted(inserted, visits)


def _count_discarded(data: dict[str, Any], scopes: dict[int, SiteScope]) -> None:
    """Rows of sites deleted before the replay (not in ``dropped_hits``: its rows
    belong to a site)."""
    hits = sum(1 for row in data["v"] if row[0] not in scopes)
    if hits:
        metrics.SPOOLED_DISCARDED.labels("hits").inc(hits)
    for kind, records in data.get("x", {}).items():
        rows = sum(1 for row in records["rows"] if row[0] not in scopes)
        if rows:
            metrics.SPOOLED_DISCARDED.labels(kind).inc(rows)


# --- spool records -----------------------------------------------------------------


def encode(visits: Iterable[NewVisit], drops: Counter[DropKey]) -> dict[str, Any]:
    visits = list(visits)
    rows = [
        [v.scope.site_id, v.day.isoformat(), v.visitor_hash.hex(), *v.location.as_row()]
        for v in visits
    ]
    return {
        "v": rows,
        "d": [[k.scope.site_id, k.day.isoformat(), k.reason, n] for k, n in drops.items()],
        "k": _keys([v.scope for v in visits] + [k.scope for k in drops]),
    }


def _keys(scopes: Iterable[SiteScope]) -> dict[str, str]:
    """Each site's public key, by id: ids are what records name, keys are never reused."""
    return {str(s.site_id): s.public_key for s in scopes}


def _same_sites(scopes: dict[int, SiteScope], keys: dict[str, str] | None) -> dict[int, SiteScope]:
    """The sites a record was spooled for. SQLite gives a deleted site's id (when it
    was the newest) to the next site created: its hits must not count for that one.
    Records spooled before keys were written name none and keep every site."""
    if not keys:
        return scopes
    return {i: s for i, s in scopes.items() if keys.get(str(i), s.public_key) == s.public_key}


def decode(
    data: dict[str, Any], scopes: dict[int, SiteScope]
) -> tuple[list[NewVisit], Counter[DropKey]]:
    visits = [
        NewVisit(
            scopes[row[0]],
            dt.date.fromisoformat(row[1]),
            bytes.fromhex(row[2]),
            Location(*row[3:9]),
        )
        for row in data["v"]
        if row[0] in scopes
    ]
    drops: Counter[DropKey] = Counter()
    for site_id, day, reason, hits in data["d"]:
        if site_id in scopes:
            drops[DropKey(scopes[site_id], dt.date.fromisoformat(day), str(reason))] += int(hits)
    return visits, drops
