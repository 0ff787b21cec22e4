"""One batch of hits, from the queue to the database or the spool: the state machine
both writers run.

The SQLite writer thread and PostgreSQL's writer on the serving event loop differ only
in how they commit (a SQLAlchemy session; an async psycopg connection) and how they
reach the spool (directly; through the spool's own thread). What a batch goes through
is decided here, once, as a generator: it yields a :class:`Commit` or a
:class:`SpoolIt` step, the transport carries it out and sends back what happened.

Every spooled batch carries the id its commit claimed (or would have claimed): if a
commit's outcome is unknown (the connection broke during COMMIT), replaying the spooled
copy cannot add its drop counts twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Protocol

from app.capture.outage import Outage
from app.capture.repository import DropKey, Inserted, NewVisit

log = logging.getLogger("hitmap.ingest")


class Ack(StrEnum):
    COUNTED = "counted"  # committed, a new visit
    REPEAT = "repeat"  # committed earlier: the same visitor today
    SPOOLED = "spooled"  # fsynced locally; written when the database is back
    LOST = "lost"  # neither database nor disk took it (logged)
    GONE = "gone"  # its site was deleted since the hit was accepted: nothing to record
    QUEUED = "queued"  # set by a caller that stopped waiting; the writer still writes it


Waiter = asyncio.Future[Ack] | concurrent.futures.Future[Ack]


@dataclass(slots=True)
class Pending:
    visit: NewVisit
    waiter: Waiter | None


@dataclass(frozen=True, slots=True)
class Commit:
    visits: list[NewVisit]
    drops: Counter[DropKey]
    claim: str | None


@dataclass(frozen=True, slots=True)
class SpoolIt:
    batch: list[Pending]
    drops: Counter[DropKey]
    claim: str | None


class Failure(Enum):
    BAD_HIT = "bad_hit"  # a hit's own fault: a site deleted meanwhile, a value out of range
    UNAVAILABLE = "unavailable"  # unreachable, or too slow to answer
    REFUSED = "refused"  # read-only, missing grants, ...: the database, not the hit


@dataclass(frozen=True, slots=True)
class Failed:
    failure: Failure
    error: BaseException


Step = Commit | SpoolIt
Reply = Inserted | Failed | None


class Books(Protocol):
    """The writer's bookkeeping the state machine settles a batch with."""

    outage: Outage

    def claim_again(self, hits: int) -> None: ...

    def finished(self, hits: int) -> None: ...

    def committed(self, batch: list[Pending], inserted: Inserted) -> None: ...

    def lose(self, batch: list[Pending]) -> None: ...


def claim_id(drops: Counter[DropKey]) -> str | None:
    """Drop counts are not idempotent: their batch claims an id, reused if it is spooled."""
    return uuid.uuid4().hex if drops else None


def write_batch(
    books: Books, batch: list[Pending], drops: Counter[DropKey], *, spool_now: bool = False
) -> Generator[Step, Reply, None]:
    """``spool_now``: shutting down with the database too slow, what is left goes to disk."""
    try:
        if not batch and not drops:
            return
        claim = claim_id(drops)
        if spool_now or books.outage.down:
            yield SpoolIt(batch, drops, claim)
            return
        reply = yield Commit([p.visit for p in batch], drops, claim)
        if not isinstance(reply, Failed):
            assert reply is not None
            books.committed(batch, reply)
            return
        if reply.failure is not Failure.BAD_HIT:
            log.warning(
                "database unavailable; spooling a batch of %d hits"
                if reply.failure is Failure.UNAVAILABLE
                else "database refused a batch; spooling a batch of %d hits",
                len(batch),
                exc_info=reply.error,
                extra={"event": "database_unavailable", "hits": len(batch)},
            )
            books.outage.mark_down()
            yield SpoolIt(batch, drops, claim)
            return
        if len(batch) + len(drops) > 1:  # one bad hit must not take its batch with it
            for item in batch:
                books.claim_again(1)
                yield from write_batch(books, [item], Counter())
            for key, hits in drops.items():
                yield from write_batch(books, [], Counter({key: hits}))
        else:
            log.error("a hit could not be written and was dropped", exc_info=reply.error)
            books.lose(batch)
    finally:
        books.finished(len(batch))


def ack_of(visit: NewVisit, inserted: Inserted) -> Ack:
    if visit.key in inserted:
        return Ack.COUNTED
    if visit.scope.site_id in inserted.gone:
        return Ack.GONE
    return Ack.REPEAT


def is_settled(item: Pending) -> bool:
    return item.waiter is not None and item.waiter.done()
