"""One state machine for a batch: every spooled batch carries the id its commit claimed.

A batch with drop counts claims an id in the transaction that writes it; if that commit
fails (or its outcome is unknown), the batch is spooled under the same id, so a replay
cannot add its drop counts twice. Each path to the spool is checked on each transport
it exists on: the writer thread (SQLite, and every writer not started) and PostgreSQL's
writer on the event loop (whose deadlines only it has).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import psycopg
import pytest
from sqlalchemy.exc import InternalError, OperationalError

from app.capture import batches, loop_writer, repository, writer
from app.capture.repository import DropKey, NewVisit
from app.capture.spool import Spool
from app.capture.writer import HitWriter
from app.clock import FixedClock
from app.context import build_context
from app.db import Database, make_engine
from app.ingest.geoip import Location
from app.migrate import upgrade
from tests.conftest import START
from tests.factories import make_account, make_site
from tests.live import own_database

DAY = START.date()
LONDON = Location("GB", "England", "London", 51.51, -0.09, 10)


@pytest.fixture
def issued(monkeypatch) -> list[str]:
    """The ids the state machine hands out to batches with drop counts."""
    ids: list[str] = []
    real = batches.claim_id

    def recording(drops: Counter[DropKey]) -> str | None:
        claim = real(drops)
        if claim is not None:
            ids.append(claim)
        return claim

    monkeypatch.setattr(batches, "claim_id", recording)
    return ids


@pytest.fixture
def attempted(monkeypatch) -> list[str]:
    """The ids a commit (live, or a replay of the spool) tried to claim in the database."""
    ids: list[str] = []
    real, real_async = repository.claim_spool_record, repository.claim_spool_record_async

    def claim(session, record_id, now):
        ids.append(record_id)
        return real(session, record_id, now)

    async def claim_async(conn, record_id, now):
        ids.append(record_id)
        return await real_async(conn, record_id, now)

    monkeypatch.setattr(repository, "claim_spool_record", claim)
    monkeypatch.setattr(repository, "claim_spool_record_async", claim_async)
    return ids


class RecordingSpool(Spool):
    """Notes each record's id as it is appended (a replay may empty the spool later)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.appended: list[str] = []

    def append(self, payload, record_id=None):
        record_id = super().append(payload, record_id)
        self.appended.append(record_id)
        return record_id


def _spooled_ids(spool: Spool) -> list[str]:
    assert isinstance(spool, RecordingSpool)
    return spool.appended


# --- the writer thread (and a writer not started) --------------------------------------


def _thread_write_failing(ctx, tmp_path, monkeypatch, error: Exception) -> HitWriter:
    site = make_site(ctx, make_account(ctx))
    hits = HitWriter(ctx.db, RecordingSpool(tmp_path / "spool"), ctx.clock)

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(repository, "add_drops", failing)  # after the claim and the inserts
    hits.count_drop(DropKey(site, DAY, "bot"), 3)  # not started: written at once
    assert hits.database_down and hits.stats.lost_hits == 0
    return hits


def test_thread_transient_failure_spools_under_the_claimed_id(
    ctx, tmp_path, monkeypatch, issued, attempted
):
    error = OperationalError("INSERT", {}, Exception("server closed the connection"))
    hits = _thread_write_failing(ctx, tmp_path, monkeypatch, error)
    assert len(issued) == 1 and set(attempted) == set(issued)
    assert _spooled_ids(hits.spool) == issued


def test_thread_refused_batch_spools_under_the_claimed_id(
    ctx, tmp_path, monkeypatch, issued, attempted
):
    """Read-only after a failover, missing grants: the thread writer used to drop the id."""
    error = InternalError("INSERT", {}, Exception("cannot execute INSERT in a read-only txn"))
    hits = _thread_write_failing(ctx, tmp_path, monkeypatch, error)
    assert len(issued) == 1 and set(attempted) == set(issued)
    assert _spooled_ids(hits.spool) == issued


def test_thread_batch_during_an_outage_spools_under_its_claim(ctx, tmp_path, issued, attempted):
    site = make_site(ctx, make_account(ctx))
    hits = HitWriter(ctx.db, RecordingSpool(tmp_path / "spool"), ctx.clock)
    hits.outage.mark_down()
    hits.count_drop(DropKey(site, DAY, "bot"), 2)
    assert attempted == [] and len(issued) == 1
    assert _spooled_ids(hits.spool) == issued


# --- PostgreSQL: the writer on the event loop -------------------------------------------


@pytest.fixture
def pg_ctx(database_url, tmp_path, settings):
    if not database_url.startswith("postgresql"):
        pytest.skip("the event-loop writer is PostgreSQL's; SQLite keeps the thread")
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        yield build_context(settings, db=Database(engine), clock=FixedClock(START))
        engine.dispose()


def _on_loop(ctx, tmp_path, scenario) -> HitWriter:
    hits = HitWriter(ctx.db, RecordingSpool(tmp_path / "loop-spool"), ctx.clock)
    site = make_site(ctx, make_account(ctx))

    async def run() -> None:
        hits.start_on_loop(ctx.db.psycopg_conninfo())
        await scenario(hits, site)
        await hits.stop_on_loop()

    asyncio.run(run())
    return hits


async def _drops_spooled(hits: HitWriter, site) -> None:
    hits.count_drop(DropKey(site, DAY, "bot"), 3)
    for _ in range(200):  # until the batch is settled one way or the other
        await asyncio.sleep(0.02)
        if hits.stats.spooled_hits or _spooled_ids(hits.spool):
            return


def _failing_async(monkeypatch, error: BaseException) -> None:
    async def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(repository, "add_drops_async", failing)


def test_loop_transient_failure_spools_under_the_claimed_id(
    pg_ctx, tmp_path, monkeypatch, issued, attempted
):
    _failing_async(monkeypatch, psycopg.OperationalError("server closed the connection"))
    hits = _on_loop(pg_ctx, tmp_path, _drops_spooled)
    assert len(issued) == 1 and set(attempted) == set(issued)
    assert _spooled_ids(hits.spool) == issued


def test_loop_refused_batch_spools_under_the_claimed_id(
    pg_ctx, tmp_path, monkeypatch, issued, attempted
):
    _failing_async(monkeypatch, psycopg.errors.ReadOnlySqlTransaction("read-only"))
    hits = _on_loop(pg_ctx, tmp_path, _drops_spooled)
    assert len(issued) == 1 and set(attempted) == set(issued)
    assert _spooled_ids(hits.spool) == issued


def test_loop_stalled_commit_spools_under_the_claimed_id(
    pg_ctx, tmp_path, monkeypatch, issued, attempted
):
    async def stalling(*args, **kwargs):
        await asyncio.sleep(30)

    monkeypatch.setattr(repository, "add_drops_async", stalling)
    monkeypatch.setattr(loop_writer, "COMMIT_DEADLINE_SECONDS", 0.2)
    hits = _on_loop(pg_ctx, tmp_path, _drops_spooled)
    assert len(issued) == 1 and set(attempted) == set(issued)
    assert _spooled_ids(hits.spool) == issued


def test_loop_shutdown_spools_what_is_left_under_its_claim(
    pg_ctx, tmp_path, monkeypatch, issued, attempted
):
    """The database hangs at SIGTERM: batches still queued go to disk with their claim."""

    async def hanging(*args, **kwargs):
        await asyncio.sleep(30)

    monkeypatch.setattr(repository, "insert_visits_async", hanging)
    monkeypatch.setattr(loop_writer, "COMMIT_DEADLINE_SECONDS", 30.0)
    monkeypatch.setattr(writer, "STOP_DEADLINE_SECONDS", 0.3)

    async def scenario(hits: HitWriter, site) -> None:
        hits.submit(NewVisit(site, DAY, (1).to_bytes(16, "big"), LONDON), None)
        await asyncio.sleep(0.1)  # that batch (no drop counts) now hangs in its commit
        hits.count_drop(DropKey(site, DAY, "bot"), 2)  # queued behind it

    hits = _on_loop(pg_ctx, tmp_path, scenario)
    assert len(issued) == 1 and set(attempted) <= set(issued)  # a replay may claim it
    assert _spooled_ids(hits.spool) == issued
