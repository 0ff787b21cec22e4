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
submit is written at once in the caller's thread. Either way, what a batch goes
through (commit, spool, one by one) is :func:`app.capture.batches.write_batch`.

Other records (the heatmaps' click batches) use the same spool and replay through
``Outage.register`` and ``Outage.spool_records``: one spool, one exactly-once rule.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from app.capture import repository
from app.capture.batches import (
    Ack,
    Commit,
    Failed,
    Failure,
    Pending,
    Waiter,
    ack_of,
    is_settled,
    write_batch,
)
from app.capture.loop_writer import LoopWriter
from app.capture.outage import TRANSIENT, Outage
from app.capture.repository import DropKey, Inserted, NewVisit, VisitKey
from app.capture.spool import Spool
from app.clock import Clock
from app.db import Database
from app.ops import metrics

log = logging.getLogger("hitmap.ingest")

BAD_HIT = (IntegrityError, DataError)  # errors of one hit, not of the database
KNOWN_VISITS_MAX = 300_000
STOP_DEADLINE_SECONDS = 15.0


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
        on_gone: Callable[[set[str]], None] = lambda keys: None,
        max_batch: int = 2000,
    ) -> None:
        self.db = db
        self.clock = clock
        self.max_batch = max_batch
        self.stats = WriterStats()
        self.known: dict[VisitKey, None] = {}
        self._on_counted = on_counted
        self._on_gone = on_gone
        self._queue: deque[Pending] = deque()
        self._in_flight = 0
        self._by_site: Counter[int] = Counter()
        self._drops: Counter[DropKey] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._connection = threading.local()  # the SQLite writer thread keeps its own
        self.outage = Outage(db, spool, clock, self.counted)
        # fsyncs get a thread of their own: never behind lookups waiting on a dead database
        self.spooler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hitmap-spool")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self.wake_event: asyncio.Event | None = None

    # --- what the request path calls -------------------------------------------------

    @property
    def has_work(self) -> bool:
        return bool(self._queue or self._drops)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def finished(self, hits: int) -> None:
        """A batch taken with :meth:`take_batch` is settled, one way or the other."""
        self._in_flight -= hits

    def claim_again(self, hits: int) -> None:
        """Hits of a batch being retried one by one are in flight again."""
        self._in_flight += hits

    @property
    def running(self) -> bool:
        return bool(self._threads) or self._task is not None

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    def pending_for(self, site_id: int) -> int:
        return self._by_site.get(site_id, 0)

    def submit(self, visit: NewVisit, waiter: Waiter | None) -> None:
        item = Pending(visit, waiter)
        with self._lock:
            self._by_site[visit.scope.site_id] += 1
        if not self.running:
            self._in_flight += 1
            self._write([item], Counter())
            return
        self._queue.append(item)
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self.wake_event is None:
            self._wake.set()
        elif threading.get_ident() == self._loop_thread:
            self.wake_event.set()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self.wake_event.set)

    def count_drop(self, key: DropKey, hits: int = 1) -> None:
        """Dropped or shed hits ride along with the next batch (at most a second later)."""
        with self._lock:
            self._drops[key] += hits
        if not self.running:
            self._write([], self.take_drops())

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
        self.wake_event = asyncio.Event()
        self._task = self._loop.create_task(LoopWriter(self, conninfo).run())
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
        assert self.wake_event is not None
        self.wake_event.set()
        try:
            await asyncio.wait_for(self._task, STOP_DEADLINE_SECONDS)
        except TimeoutError:  # the database hangs: what is left goes to disk
            log.warning("database too slow at shutdown; spooling %d hits", len(self._queue))
        while self._queue or self._drops:
            self._write(self.take_batch(), self.take_drops(), spool_now=True)
        self._task = None
        loop = asyncio.get_running_loop()
        for thread in self._threads:
            await loop.run_in_executor(None, thread.join, 20.0)
        self._threads = []
        self.outage.spool.close()

    # --- the writer thread (SQLite) ----------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while self._queue or self._drops:
                batch = self.take_batch()
                try:
                    self._write(batch, self.take_drops())
                except Exception:  # a bug must not stop the writer: the next batch goes on
                    log.exception("hit writer failed on a batch of %d hits", len(batch))
                    self.lose(batch)
            self.report_depth()
            if self._stopping and not self._queue and not self._drops:
                return

    def take_batch(self) -> list[Pending]:
        batch: list[Pending] = []
        queue = self._queue
        while queue and len(batch) < self.max_batch:
            batch.append(queue.popleft())
        self._in_flight += len(batch)
        self.report_depth()
        return batch

    def report_depth(self) -> None:
        """The queue-depth gauge (hits not yet in a batch), per batch and when idle."""
        metrics.WRITER_QUEUE.set(len(self._queue))

    def take_drops(self) -> Counter[DropKey]:
        with self._lock:
            drops, self._drops = self._drops, Counter()
        if drops:  # counted here, once per batch, rather than on every dropped hit
            by_reason: Counter[str] = Counter()
            for key, hits in drops.items():
                by_reason[key.reason] += hits
            metrics.hits_dropped(by_reason)
        return drops

    def _write(
        self, batch: list[Pending], drops: Counter[DropKey], *, spool_now: bool = False
    ) -> None:
        """The batch's state machine (``batches.write_batch``), carried out in this thread."""
        steps = write_batch(self, batch, drops, spool_now=spool_now)
        try:
            step = next(steps)
            while True:
                if isinstance(step, Commit):
                    step = steps.send(self._try_commit(step))
                else:
                    self.spool_batch(step.batch, step.drops, step.claim)
                    step = steps.send(None)
        except StopIteration:
            pass
        finally:
            steps.close()

    def _try_commit(self, step: Commit) -> Inserted | Failed:
        try:
            return self._commit_retrying(step.visits, step.drops, step.claim)
        except TRANSIENT as exc:
            return Failed(Failure.UNAVAILABLE, exc)
        except SQLAlchemyError as exc:
            bad_hit = isinstance(exc, BAD_HIT)
            return Failed(Failure.BAD_HIT if bad_hit else Failure.REFUSED, exc)

    def committed(self, batch: list[Pending], inserted: Inserted) -> None:
        self.outage.mark_up()
        self.stats.batches += 1
        self.stats.committed_hits += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        metrics.HITS_RECORDED.inc(len(batch))
        self.settle([(p, ack_of(p.visit, inserted)) for p in batch])

    def _commit_retrying(
        self, visits: list[NewVisit], drops: Counter[DropKey], claim: str | None
    ) -> Inserted:
        try:
            return self._commit(visits, drops, claim)
        except TRANSIENT:
            # The kept connection may have died while idle (a database restart): one
            # more try on a fresh connection before calling the database down.
            return self._commit(visits, drops, claim)

    def _commit(
        self, visits: list[NewVisit], drops: Counter[DropKey], claim: str | None
    ) -> Inserted:
        with self.db.kept_session(self._connection) as session:
            if claim is not None:
                repository.claim_spool_record(session, claim, self.clock.now())
            inserted = repository.insert_visits(session, visits)
            repository.add_drops(session, drops)
        self.counted(inserted, visits)
        return inserted

    def counted(self, inserted: Inserted, visits: list[NewVisit]) -> None:
        known = self.known
        if len(known) > KNOWN_VISITS_MAX:
            known.clear()
        gone = inserted.gone
        for visit in visits:
            if visit.scope.site_id not in gone:
                known[visit.key] = None
        if gone:
            self._on_gone({v.scope.public_key for v in visits if v.scope.site_id in gone})
        if inserted:
            metrics.VISITS_NEW.inc(len(inserted))
        per_site = Counter(site_id for site_id, _, _ in inserted)
        for site_id, n in per_site.items():
            self._on_counted(site_id, n)

    def spool_batch(
        self, batch: list[Pending], drops: Counter[DropKey], record_id: str | None = None
    ) -> None:
        try:
            self.outage.spool_batch((p.visit for p in batch), drops, record_id)
        except OSError:
            log.exception(
                "spool write failed: %d hits lost",
                len(batch),
                extra={"event": "hits_lost", "hits": len(batch)},
            )
            self.lose(batch)
            return
        self.stats.spooled_hits += len(batch)
        if batch:
            metrics.HITS_SPOOLED.inc(len(batch))
        self.settle([(p, Ack.SPOOLED) for p in batch])

    def lose(self, batch: list[Pending]) -> None:
        """Neither the database nor the disk took these hits (the caller logged why)."""
        self.stats.lost_hits += len(batch)
        if batch:
            metrics.HITS_LOST.inc(len(batch))
        self.settle([(p, Ack.LOST) for p in batch if not is_settled(p)])

    def _replay(self) -> None:
        self.outage.run_replay(lambda: self._stopping)

    def settle(self, outcomes: list[tuple[Pending, Ack]]) -> None:
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


def _resolve(settled: list[tuple[asyncio.Future[Ack], Ack]]) -> None:
    for future, ack in settled:
        if not future.done():
            future.set_result(ack)
