"""PostgreSQL: the hit writer's batches, written from the serving event loop.

A writer *thread* had to win the GIL back from the busy event loop after every
round trip, which made each batch several times slower than its SQL; here the
batch is one statement on an async psycopg connection (autocommit: one round
trip), and waiters on the same loop are settled directly. The queue and the
bookkeeping are :class:`~app.capture.writer.HitWriter`'s, what a batch goes
through is :func:`~app.capture.batches.write_batch`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection

from app.capture import repository
from app.capture.batches import Commit, Failed, Failure, Pending, write_batch
from app.capture.repository import DropKey, Inserted, NewVisit

if TYPE_CHECKING:  # the writer owns this transport; only its type is needed here
    from app.capture.writer import HitWriter

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
        """The batch's state machine (``batches.write_batch``), carried out on the loop."""
        w = self.writer
        loop = asyncio.get_running_loop()
        steps = write_batch(w, batch, drops)
        try:
            step = next(steps)
            while True:
                if isinstance(step, Commit):
                    step = steps.send(await self._try_commit(step))
                else:  # fsyncs run on the spool's thread, never on the serving loop
                    await loop.run_in_executor(
                        w.spooler, w.spool_batch, step.batch, step.drops, step.claim
                    )
                    step = steps.send(None)
        except StopIteration:
            pass
        finally:
            steps.close()

    async def _try_commit(self, step: Commit) -> Inserted | Failed:
        try:
            # Past the deadline the batch goes to disk: the answer must not wait on a
            # database that hangs (a replayed visit cannot count twice).
            return await asyncio.wait_for(
                self._commit(step.visits, step.drops, step.claim), COMMIT_DEADLINE_SECONDS
            )
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            return Failed(Failure.BAD_HIT, exc)
        except (*ASYNC_TRANSIENT, TimeoutError) as exc:
            return Failed(Failure.UNAVAILABLE, exc)
        except psycopg.Error as exc:  # read-only, missing grants, ...
            return Failed(Failure.REFUSED, exc)

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
