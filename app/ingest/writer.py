"""Group commit: one writer thread turns many concurrent hits into one transaction.

A hit counts as recorded when its batch has committed, or, while the database is
unreachable, when its batch has been fsynced to the local spool; only then is
its waiter settled and the counter's answer sent. Spooled batches are replayed
by a second thread once the database answers again, each exactly once: the
batch's record id is claimed in the same transaction that writes it.

Duplicates are decided by the database (the visits table's primary key), never
by process memory, so any number of processes on any number of machines count
correctly. ``known`` only remembers visits already committed, to answer their
repeats without a write.

On PostgreSQL the writer is a task on the serving event loop (``start_on_loop``)
talking to the database through an async psycopg connection: a writer *thread*
had to win the GIL back from the busy event loop after every round trip, which
made each batch several times slower than its SQL. SQLite keeps the thread
(its writes are in-process). Without either (tests, one-off commands) every
submit is written at once in the caller's thread.

Other records (the heatmaps' click batches) use the same spool and replay through
:meth:`register` and :meth:`spool_records`: one spool, one exactly-once rule.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import AsyncConnection
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from app.clock import Clock
from app.db import Database
from app.ingest import repository
from app.ingest.outage import TRANSIENT, Outage
from app.ingest.repository import DropKey, NewVisit, VisitKey
from app.ingest.spool import Spool

log = logging.getLogger("hitmap.ingest")

ASYNC_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)
BAD_HIT = (IntegrityError, DataError)  # errors of one hit, not of the database
KNOWN_VISITS_MAX = 300_000
COMMIT_DEADLINE_SECONDS = 1.5  # under the answer's ACK_TIMEOUT (2 s): spooled, not queued
STOP_DEADLINE_SECONDS = 15.0


class Ack(StrEnum):
    COUNTED = "counted"  # committed, a new visit
    REPEAT = "repeat"  # committed earlier: the same visitor today
    SPOOLED = "spooled"  # fsynced locally; written when the database is back
    LOST = "lost"  # neither database nor disk took it (logged)
    QUEUED = "queued"  # set by a caller that stopped waiting; the writer still writes it


Waiter = asyncio.Future[Ack] | concurrent.futures.Future[Ack]


@dataclass(slots=True)
class _Pending:
    visit: NewVisit
    waiter: Waiter | None


@dataclass
class WriterStats:
    batches: int = 0
    committed_hits: int = 0
    spooled_hits: int = 0
    lost_hits: int = 0
    largest_batch: int = 0


class HitWriter:
    def __init__(
        self,
        db: Database,
        spool: Spool,
        clock: Clock,
        *,
        on_counted: Callable[[int, int], None] = lambda site_id, n: None,
        max_batch: int = 2000,
    ) -> None:
        self.db = db
        self.clock = clock
        self.max_batch = max_batch
        self.stats = WriterStats()
        self.known: dict[VisitKey, None] = {}
        self._on_counted = on_counted
        self._queue: deque[_Pending] = deque()
        self._in_flight = 0
        self._by_site: Counter[int] = Counter()
        self._drops: Counter[DropKey] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._connection = threading.local()  # the SQLite writer thread keeps its own
        self.outage = Outage(db, spool, clock, self._counted)
        # fsyncs get a thread of their own: never behind lookups waiting on a dead database
        self._spooler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hitmap-spool")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._async_wake: asyncio.Event | None = None
        self._aconn: AsyncConnection[Any] | None = None

    # --- what the request path calls -------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._threads) or self._task is not None

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    def pending_for(self, site_id: int) -> int:
        return self._by_site.get(site_id, 0)

    def submit(self, visit: NewVisit, waiter: Waiter | None) -> None:
        item = _Pending(visit, waiter)
        with self._lock:
            self._by_site[visit.scope.site_id] += 1
        if not self.running:
            self._in_flight += 1
            self._write([item], Counter())
            return
        self._queue.append(item)
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._async_wake is None:
            self._wake.set()
        elif threading.get_ident() == self._loop_thread:
            self._async_wake.set()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._async_wake.set)

    def count_drop(self, key: DropKey, hits: int = 1) -> None:
        """Dropped or shed hits ride along with the next batch (at most a second later)."""
        with self._lock:
            self._drops[key] += hits
        if not self.running:
            self._write([], self._take_drops())

    @property
    def database_down(self) -> bool:
        """A write failed moments ago: callers may go straight to the spool."""
        return self.outage.down

    @property
    def spool(self) -> Spool:
        return self.outage.spool

    def replay_once(self, *, now: bool = False) -> int:
        return self.outage.replay_once(now=now)

    # --- the writer thread ---------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        for target, name in ((self._run, "hitmap-writer"), (self._replay, "hitmap-replay")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        """Write (or spool) everything pending, then stop: SIGTERM loses nothing."""
        if not self.running:
            return
        self._stopping = True
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        self.outage.spool.close()

    # --- PostgreSQL: the writer as a task on the serving event loop --------------------

    def start_on_loop(self, conninfo: str) -> None:
        """Write from the running event loop (call from it); replay stays a thread."""
        if self.running:
            return
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._async_wake = asyncio.Event()
        self._task = self._loop.create_task(self._run_on_loop(conninfo))
        thread = threading.Thread(
            target=self.outage.run_replay,
            args=(lambda: self._stopping,),
            name="hitmap-replay",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    async def stop_on_loop(self) -> None:
        """Write (or spool) everything pending, then stop: SIGTERM loses nothing."""
        if self._task is None:
            return
        self._stopping = True
        assert self._async_wake is not None
        self._async_wake.set()
        try:
            await asyncio.wait_for(self._task, STOP_DEADLINE_SECONDS)
        except TimeoutError:  # the database hangs: what is left goes to disk
            log.warning("database too slow at shutdown; spooling %d hits", len(self._queue))
        while self._queue or self._drops:
            batch = self._take_batch()
            self._spool(batch, self._take_drops())
            self._in_flight -= len(batch)
        self._task = None
        loop = asyncio.get_running_loop()
        for thread in self._threads:
            await loop.run_in_executor(None, thread.join, 20.0)
        self._threads = []
        self.outage.spool.close()

    async def _run_on_loop(self, conninfo: str) -> None:
        wake = self._async_wake
        assert wake is not None
        try:
            while True:
                if not self._queue and not self._drops:
                    if self._stopping:
                        return
                    wake.clear()
                    with suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), 1.0)
                    continue
                batch = self._take_batch()
                try:
                    await self._write_on_loop(conninfo, batch, self._take_drops())
                except Exception:  # a bug must not stop the writer: the next batch goes on
                    log.exception("hit writer failed on a batch of %d hits", len(batch))
                    self._settle([(p, Ack.LOST) for p in batch if not _settled(p)])
                    self.stats.lost_hits += len(batch)
        finally:
            if self._aconn is not None:
                await self._aconn.close()
                self._aconn = None

    async def _write_on_loop(
        self, conninfo: str, batch: list[_Pending], drops: Counter[DropKey]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.outage.down:
                await loop.run_in_executor(self._spooler, self._spool, batch, drops)
                return
            visits = [p.visit for p in batch]
            claim = _claim_id(drops)
            try:
                # Past the deadline the batch goes to disk: the answer must not wait on a
                # database that hangs (a replayed visit cannot count twice).
                inserted = await asyncio.wait_for(
                    self._commit_on_loop(conninfo, visits, drops, claim), COMMIT_DEADLINE_SECONDS
                )
            except (psycopg.IntegrityError, psycopg.DataError):
                if len(batch) + len(drops) > 1:  # see _write: one bad hit, not the batch
                    for item in batch:
                        self._in_flight += 1
                        await self._write_on_loop(conninfo, [item], Counter())
                    for key, hits in drops.items():
                        await self._write_on_loop(conninfo, [], Counter({key: hits}))
                else:
                    log.exception("a hit could not be written and was dropped")
                    self.stats.lost_hits += len(batch)
                    self._settle([(p, Ack.LOST) for p in batch])
                return
            except (psycopg.Error, TimeoutError) as exc:
                # Unreachable, read-only, missing grants, too slow: the database, not the hit.
                log.warning(
                    "database unavailable (%s); spooling a batch of %d hits",
                    type(exc).__name__,
                    len(batch),
                )
                self.outage.mark_down()
                await loop.run_in_executor(self._spooler, self._spool, batch, drops, claim)
                return
            self._committed(batch, inserted)
        finally:
            self._in_flight -= len(batch)

    async def _commit_on_loop(
        self, conninfo: str, visits: list[NewVisit], drops: Counter[DropKey], claim: str | None
    ) -> set[VisitKey]:
        reused = self._aconn is not None and not self._aconn.closed
        try:
            return await self._commit_once(conninfo, visits, drops, claim)
        except ASYNC_TRANSIENT:
            if not reused:
                raise
            # The kept connection died while idle (a database restart): one more try on
            # a fresh one before calling the database down.
            return await self._commit_once(conninfo, visits, drops, claim)

    async def _commit_once(
        self, conninfo: str, visits: list[NewVisit], drops: Counter[DropKey], claim: str | None
    ) -> set[VisitKey]:
        if self._aconn is None or self._aconn.closed:
            self._aconn = await AsyncConnection.connect(conninfo, autocommit=True)
        conn = self._aconn
        try:
            if drops:
                assert claim is not None
                async with conn.transaction():
                    await repository.claim_spool_record_async(conn, claim, self.clock.now())
                    inserted = await repository.insert_visits_async(conn, visits)
                    await repository.add_drops_async(conn, drops)
            else:  # one statement, atomic on its own: a single round trip
                inserted = await repository.insert_visits_async(conn, visits)
        except BaseException:
            self._aconn = None
            with suppress(Exception):
                await conn.close()
            raise
        self._counted(inserted, visits)
        return inserted

    # --- the writer thread (SQLite) ----------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while self._queue or self._drops:
                batch = self._take_batch()
                try:
                    self._write(batch, self._take_drops())
                except Exception:  # a bug must not stop the writer: the next batch goes on
                    log.exception("hit writer failed on a batch of %d hits", len(batch))
                    self._settle([(p, Ack.LOST) for p in batch if not _settled(p)])
                    self.stats.lost_hits += len(batch)
            if self._stopping and not self._queue and not self._drops:
                return

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        queue = self._queue
        while queue and len(batch) < self.max_batch:
            batch.append(queue.popleft())
        self._in_flight += len(batch)
        return batch

    def _take_drops(self) -> Counter[DropKey]:
        with self._lock:
            drops, self._drops = self._drops, Counter()
        return drops

    def _write(self, batch: list[_Pending], drops: Counter[DropKey]) -> None:
        try:
            if not batch and not drops:
                return
            if self.outage.down:
                self._spool(batch, drops)
                return
            claim = _claim_id(drops)
            try:
                inserted = self._commit_retrying([p.visit for p in batch], drops, claim)
            except TRANSIENT:
                log.warning(
                    "database unavailable; spooling a batch of %d hits", len(batch), exc_info=True
                )
                self.outage.mark_down()
                self._spool(batch, drops, claim)
                return
            except SQLAlchemyError as exc:
                if not isinstance(exc, BAD_HIT):  # read-only, grants, ...: the database
                    log.warning("database refused a batch (%s); spooling it", type(exc).__name__)
                    self.outage.mark_down()
                    self._spool(batch, drops)
                    return
                # A site deleted meanwhile (foreign key) or a value out of range.
                # Retry one by one so one bad hit cannot take its whole batch with it.
                if len(batch) + len(drops) > 1:
                    self._write_one_by_one(batch, drops)
                else:
                    log.exception("a hit could not be written and was dropped")
                    self._settle([(p, Ack.LOST) for p in batch])
                    self.stats.lost_hits += len(batch)
                return
            self._committed(batch, inserted)
        finally:
            self._in_flight -= len(batch)

    def _committed(self, batch: list[_Pending], inserted: set[VisitKey]) -> None:
        self.outage.mark_up()
        self.stats.batches += 1
        self.stats.committed_hits += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self._settle([(p, Ack.COUNTED if p.visit.key in inserted else Ack.REPEAT) for p in batch])

    def _write_one_by_one(self, batch: list[_Pending], drops: Counter[DropKey]) -> None:
        for item in batch:
            self._in_flight += 1
            self._write([item], Counter())
        for key, hits in drops.items():
            self._write([], Counter({key: hits}))

    def _commit_retrying(
        self, visits: list[NewVisit], drops: Counter[DropKey], claim: str | None
    ) -> set[VisitKey]:
        try:
            return self._commit(visits, drops, claim)
        except TRANSIENT:
            # The kept connection may have died while idle (a database restart): one
            # more try on a fresh connection before calling the database down.
            return self._commit(visits, drops, claim)

    def _commit(
        self, visits: list[NewVisit], drops: Counter[DropKey], claim: str | None
    ) -> set[VisitKey]:
        with self.db.kept_session(self._connection) as session:
            if claim is not None:
                repository.claim_spool_record(session, claim, self.clock.now())
            inserted = repository.insert_visits(session, visits)
            repository.add_drops(session, drops)
        self._counted(inserted, visits)
        return inserted

    def _counted(self, inserted: set[VisitKey], visits: list[NewVisit]) -> None:
        known = self.known
        if len(known) > KNOWN_VISITS_MAX:
            known.clear()
        for visit in visits:
            known[visit.key] = None
        per_site = Counter(site_id for site_id, _, _ in inserted)
        for site_id, n in per_site.items():
            self._on_counted(site_id, n)

    def _spool(
        self, batch: list[_Pending], drops: Counter[DropKey], record_id: str | None = None
    ) -> None:
        try:
            self.outage.spool_batch((p.visit for p in batch), drops, record_id)
        except OSError:
            log.exception("spool write failed: %d hits lost", len(batch))
            self.stats.lost_hits += len(batch)
            self._settle([(p, Ack.LOST) for p in batch])
            return
        self.stats.spooled_hits += len(batch)
        self._settle([(p, Ack.SPOOLED) for p in batch])

    def _replay(self) -> None:
        self.outage.run_replay(lambda: self._stopping)

    def _settle(self, outcomes: list[tuple[_Pending, Ack]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Ack], Ack]]]
        by_loop = defaultdict(list)
        with self._lock:
            for item, _ in outcomes:
                site_id = item.visit.scope.site_id
                left = self._by_site[site_id] - 1
                if left > 0:
                    self._by_site[site_id] = left
                else:
                    del self._by_site[site_id]
        for item, ack in outcomes:
            waiter = item.waiter
            if waiter is None:
                continue
            if isinstance(waiter, asyncio.Future):
                by_loop[waiter.get_loop()].append((waiter, ack))
            elif not waiter.done():
                waiter.set_result(ack)
        for loop, settled in by_loop.items():
            if loop is self._loop and threading.get_ident() == self._loop_thread:
                _resolve(settled)
                continue
            # One wake-up per batch and event loop, not one per hit.
            with suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, settled)

    # --- outage: spool and replay ------------------------------------------------------


def _claim_id(drops: Counter[DropKey]) -> str | None:
    """Drop counts are not idempotent: their batch claims an id, reused if it is spooled."""
    return uuid.uuid4().hex if drops else None


def _settled(item: _Pending) -> bool:
    return item.waiter is not None and item.waiter.done()


def _resolve(settled: list[tuple[asyncio.Future[Ack], Ack]]) -> None:
    for future, ack in settled:
        if not future.done():
            future.set_result(ack)
