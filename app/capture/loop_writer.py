"""PostgreSQL: the hit writer's batches, written from the serving event loop.

A writer *thread* had to win the GIL back from the busy event loop after every
round trip, which made each batch several times slower than its SQL; here the
batch is one statement on an async psycopg connection (autocommit: one round
trip), and waiters on the same loop are settled directly. The queue, the
bookkeeping and the outage handling are :class:`~app.capture.writer.HitWriter`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from contextlib import suppress
from typing import Any

import psycopg
from psycopg import AsyncConnection

from app.capture import repository
from app.capture.repository import DropKey, Inserted, NewVisit
from app.capture.writer import HitWriter, Pending, claim_id

log = logging.getLogger("hitmap.ingest")

ASYNC_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)
COMMIT_DEADLINE_SECONDS = 1.5  # under the answer's ACK_TIMEOUT (2 s): spooled, not queued


class LoopWriter:
    def __init__(self, writer: HitWriter, conninfo: str) -> None:
        self.writer = writer
        self.conninfo = conninfo
        self._aconn: AsyncConnection[Any] | None = None

    async def run(self) -> None:
        w = self.writer
        wake = w.wake_event
        assert wake is not None
        try:
            while True:
                if not w.has_work:
                    w.report_depth()
                    if w.stopping:
                        return
                    wake.clear()
                    with suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), 1.0)
                    continue
                batch = w.take_batch()
                try:
                    await self._write(batch, w.take_drops())
                except Exception:  # a bug must not stop the writer: the next batch goes on
                    log.exception("hit writer failed on a batch of %d hits", len(batch))
                    w.lose(batch)
        finally:
            if self._aconn is not None:
                await self._aconn.close()
                self._aconn = None

    async def _write(self, batch: list[Pending], drops: Counter[DropKey]) -> None:
        w = self.writer
        loop = asyncio.get_running_loop()
        try:
            if w.outage.down:
                await loop.run_in_executor(w.spooler, w.spool_batch, batch, drops)
                return
            visits = [p.visit for p in batch]
            claim = claim_id(drops)
            try:
                # Past the deadline the batch goes to disk: the answer must not wait on a
                # database that hangs (a replayed visit cannot count twice).
                inserted = await asyncio.wait_for(
                    self._commit(visits, drops, claim), COMMIT_DEADLINE_SECONDS
                )
            except (psycopg.IntegrityError, psycopg.DataError):
                if len(batch) + len(drops) > 1:  # one bad hit must not take its batch with it
                    for item in batch:
                        w.claim_again(1)
                        await self._write([item], Counter())
                    for key, hits in drops.items():
                        await self._write([], Counter({key: hits}))
                else:
                    log.exception("a hit could not be written and was dropped")
                    w.lose(batch)
                return
            except (psycopg.Error, TimeoutError) as exc:
                # Unreachable, read-only, missing grants, too slow: the database, not the hit.
                log.warning(
                    "database unavailable (%s); spooling a batch of %d hits",
                    type(exc).__name__,
                    len(batch),
                    extra={"event": "database_unavailable", "hits": len(batch)},
                )
                w.outage.mark_down()
                await loop.run_in_executor(w.spooler, w.spool_batch, batch, drops, claim)
                return
            w.committed(batch, inserted)
        finally:
            w.finished(len(batch))

    async def _commit(
        self, visits: list[NewVisit], drops: Counter[DropKey], claim: str | None
    ) -> Inserted:
        reused = self._aconn is not None and not self._aconn.closed
        try:
            return await self._commit_once(visits, drops, claim)
        except ASYNC_TRANSIENT:
            if not reused:
                raise
            # The kept connection died while idle (a database restart): one more try on
            # a fresh one before calling the database down.
            return await self._commit_once(visits, drops, claim)

    async def _commit_once(
        self, visits: list[NewVisit], drops: Counter[DropKey], claim: str | None
    ) -> Inserted:
        w = self.writer
        if self._aconn is None or self._aconn.closed:
            self._aconn = await AsyncConnection.connect(self.conninfo, autocommit=True)
        conn = self._aconn
        try:
            if drops:
                assert claim is not None
                async with conn.transaction():
                    await repository.claim_spool_record_async(conn, claim, w.clock.now())
                    inserted = await repository.insert_visits_async(conn, visits)
                    await repository.add_drops_async(conn, drops)
            else:  # one statement, atomic on its own: a single round trip
                inserted = await repository.insert_visits_async(conn, visits)
        except BaseException:
            self._aconn = None
            with suppress(Exception):
                await conn.close()
            raise
        w.counted(inserted, visits)
        return inserted
