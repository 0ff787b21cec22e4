"""Group commit: batches, duplicates across batches, failures retried without double counting."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import shutil

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.capture import repository
from app.capture.batches import Ack
from app.capture.repository import DropKey, NewVisit
from app.capture.spool import Spool
from app.capture.writer import HitWriter
from app.clock import FixedClock
from app.context import build_context
from app.db import Database, make_engine
from app.ingest.geoip import Location
from app.migrate import upgrade
from app.models import DailyCountryCount, DroppedHits, LocationCount, Visit
from app.sites import service as sites_service
from tests.conftest import START
from tests.factories import make_account, make_site
from tests.live import own_database

DAY = START.date()
LONDON = Location("GB", "England", "London", 51.51, -0.09, 10)


def _visit(scope, n: int, location: Location = LONDON) -> NewVisit:
    return NewVisit(scope, DAY, n.to_bytes(16, "big"), location)


def _count(ctx, model, scope, column=None):
    with ctx.db.session() as session:
        if column is None:
            stmt = select(func.count()).select_from(model)
        else:
            stmt = select(func.coalesce(func.sum(column), 0))
        return session.scalar(stmt.where(model.site_id == scope.site_id))


def _writer(ctx, tmp_path) -> HitWriter:
    return HitWriter(ctx.db, Spool(tmp_path / "spool"), ctx.clock)


def _submit(writer: HitWriter, visit: NewVisit) -> concurrent.futures.Future[Ack]:
    waiter: concurrent.futures.Future[Ack] = concurrent.futures.Future()
    writer.submit(visit, waiter)
    return waiter


def test_duplicates_within_and_across_batches_count_once(ctx, tmp_path):
    site = make_site(ctx, make_account(ctx))
    writer = _writer(ctx, tmp_path)
    first = [_submit(writer, _visit(site, n)) for n in (1, 2, 1)]
    assert [f.result() for f in first] == [Ack.COUNTED, Ack.COUNTED, Ack.REPEAT]
    second = [_submit(writer, _visit(site, n)) for n in (2, 3)]
    assert [f.result() for f in second] == [Ack.REPEAT, Ack.COUNTED]
    assert _count(ctx, Visit, site) == 3
    assert _count(ctx, DailyCountryCount, site, DailyCountryCount.visits) == 3
    all_time = select(func.sum(LocationCount.visits)).where(
        LocationCount.site_id == site.site_id, LocationCount.grain == "a"
    )
    with ctx.db.session() as session:
        assert session.scalar(all_time) == 3
    assert _visit(site, 1).key in writer.known


def test_one_batch_of_many_aggregates_per_key(ctx, tmp_path):
    site = make_site(ctx, make_account(ctx))
    visits = [_visit(site, n) for n in range(1, 301)]
    with ctx.db.session() as session:
        inserted = repository.insert_visits(session, visits)
    assert len(inserted) == 300
    with ctx.db.session() as session:
        rows = session.execute(
            select(DailyCountryCount.country_code, DailyCountryCount.visits).where(
                DailyCountryCount.site_id == site.site_id
            )
        ).all()
    assert rows == [("GB", 300)]


def test_failed_commit_is_spooled_then_replayed_exactly_once(ctx, tmp_path, monkeypatch):
    site = make_site(ctx, make_account(ctx))
    writer = _writer(ctx, tmp_path)
    real_add_drops = repository.add_drops

    def fail_after_the_inserts(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("connection lost mid-transaction"))

    # The visits were inserted, then the transaction failed: nothing may stay counted.
    monkeypatch.setattr(repository, "add_drops", fail_after_the_inserts)
    acks = [_submit(writer, _visit(site, n)) for n in (1, 2)]
    writer.count_drop(DropKey(site, DAY, "bot"), 3)
    assert [a.result() for a in acks] == [Ack.SPOOLED, Ack.SPOOLED]
    assert _count(ctx, Visit, site) == 0
    monkeypatch.setattr(repository, "add_drops", real_add_drops)

    # A crash after the commit but before the segment was deleted: the copy comes back.
    saved = tmp_path / "saved"
    shutil.copytree(tmp_path / "spool", saved)
    assert writer.replay_once(now=True) == 3  # two visits and the drop count, one by one
    for segment in saved.glob("spool-*.log"):
        shutil.copy(segment, tmp_path / "spool" / segment.name)
    assert writer.replay_once(now=True) == 3  # read again, but every record was claimed
    assert _count(ctx, Visit, site) == 2
    assert _count(ctx, DailyCountryCount, site, DailyCountryCount.visits) == 2
    assert _count(ctx, DroppedHits, site, DroppedHits.hits) == 3
    assert not list((tmp_path / "spool").glob("spool-*.log"))


def test_a_hit_for_a_deleted_site_does_not_take_its_batch_down(ctx, tmp_path):
    account = make_account(ctx)
    kept, gone = make_site(ctx, account), make_site(ctx, account, domain="gone.example.org")
    with ctx.db.session() as session:
        sites_service.delete_site(session, gone)
    writer = _writer(ctx, tmp_path)
    # Queue both before the writer sees them, so they share one batch.
    acks = [_submit_queued(writer, v) for v in (_visit(kept, 1), _visit(gone, 2), _visit(kept, 3))]
    writer._write(writer.take_batch(), writer.take_drops())
    # The batch statement checks each hit's site against its key: the deleted site's
    # hit lands nowhere, without a foreign-key error or a lost-hit log line.
    assert [a.result() for a in acks] == [Ack.COUNTED, Ack.GONE, Ack.COUNTED]
    assert _count(ctx, Visit, kept) == 2


def _submit_queued(writer: HitWriter, visit: NewVisit) -> concurrent.futures.Future[Ack]:
    waiter: concurrent.futures.Future[Ack] = concurrent.futures.Future()
    writer._queue.append(writer_item(visit, waiter))
    writer._by_site[visit.scope.site_id] += 1
    return waiter


def writer_item(visit, waiter):
    from app.capture.batches import Pending

    return Pending(visit, waiter)


def test_spooled_hits_of_a_site_deleted_meanwhile_are_discarded(ctx, tmp_path, monkeypatch):
    site = make_site(ctx, make_account(ctx))
    writer = _writer(ctx, tmp_path)
    writer.outage.mark_down()  # the database just failed: straight to the spool
    assert _submit(writer, _visit(site, 1)).result() == Ack.SPOOLED
    with ctx.db.session() as session:
        sites_service.delete_site(session, site)
    assert writer.replay_once(now=True) == 1
    assert not list((tmp_path / "spool").glob("spool-*.log"))


@pytest.fixture
def own_ctx(database_url, tmp_path, settings):
    """A context on a database of its own: the writer thread needs real connections."""
    with own_database(database_url, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        yield build_context(settings, db=Database(engine), clock=FixedClock(START))
        engine.dispose()


def test_concurrent_hits_share_one_transaction_and_stop_flushes(own_ctx, tmp_path):
    site = make_site(own_ctx, make_account(own_ctx))
    writer = HitWriter(own_ctx.db, Spool(tmp_path / "spool2"), own_ctx.clock)
    queued = [_submit_queued(writer, _visit(site, n)) for n in range(1, 201)]
    writer.start()  # finds 200 hits waiting: one batch
    assert {a.result(timeout=10) for a in queued} == {Ack.COUNTED}
    assert writer.stats.batches == 1 and writer.stats.largest_batch == 200
    # Hits still queued when the process is told to stop (SIGTERM) are written first.
    late = [writer._queue.append(writer_item(_visit(site, n), None)) for n in range(201, 251)]
    writer.stop()
    assert len(late) == 50
    assert _count(own_ctx, Visit, site) == 250
    assert writer.pending == 0


def test_day_boundary_keeps_visits_apart(ctx, tmp_path):
    site = make_site(ctx, make_account(ctx))
    writer = _writer(ctx, tmp_path)
    today = _visit(site, 1)
    tomorrow = NewVisit(site, DAY + dt.timedelta(days=1), today.visitor_hash, LONDON)
    assert _submit(writer, today).result() == Ack.COUNTED
    assert _submit(writer, tomorrow).result() == Ack.COUNTED


def test_on_the_event_loop_hits_share_a_batch_and_stop_flushes(own_ctx, tmp_path):
    """PostgreSQL: the writer runs as a task on the serving loop (no GIL ping-pong)."""
    if own_ctx.db.dialect != "postgresql":
        pytest.skip("the event-loop writer is PostgreSQL's; SQLite keeps the thread")
    site = make_site(own_ctx, make_account(own_ctx))
    writer = HitWriter(own_ctx.db, Spool(tmp_path / "spool3"), own_ctx.clock)

    async def scenario() -> tuple[set[Ack], list[Ack]]:
        writer.start_on_loop(own_ctx.db.psycopg_conninfo())
        loop = asyncio.get_running_loop()
        waiters = []
        for n in range(1, 101):
            waiter = loop.create_future()
            writer.submit(_visit(site, n), waiter)
            waiters.append(waiter)
        first = set(await asyncio.gather(*waiters))
        again = loop.create_future()
        writer.submit(_visit(site, 1), again)
        late = [writer.submit(_visit(site, n), None) for n in range(101, 121)]
        assert len(late) == 20
        await writer.stop_on_loop()  # SIGTERM: the queued 20 are written first
        return first, [again.result()]

    first, again = asyncio.run(scenario())
    assert first == {Ack.COUNTED} and again == [Ack.REPEAT]
    assert writer.stats.batches < 100  # grouped, not one transaction per hit
    assert _count(own_ctx, Visit, site) == 120


def test_a_database_that_refuses_writes_gets_the_batch_spooled_not_lost(ctx, tmp_path, monkeypatch):
    """Read-only after a failover, missing grants: not one bad hit, so not one by one."""
    from sqlalchemy.exc import InternalError

    site = make_site(ctx, make_account(ctx))
    writer = _writer(ctx, tmp_path)

    def read_only(*args, **kwargs):
        raise InternalError(
            "INSERT", {}, Exception("cannot execute INSERT in a read-only transaction")
        )

    monkeypatch.setattr(repository, "insert_visits", read_only)
    assert _submit(writer, _visit(site, 1)).result() == Ack.SPOOLED
    assert writer.database_down and writer.stats.lost_hits == 0


def test_drop_counts_claim_their_batch_so_an_unknown_commit_is_not_added_twice(ctx, tmp_path):
    site = make_site(ctx, make_account(ctx))
    writer = _writer(ctx, tmp_path)
    writer.count_drop(DropKey(site, DAY, "bot"), 4)
    from app.models import AppliedSpoolRecord

    with ctx.db.session() as session:
        (claim,) = session.scalars(select(AppliedSpoolRecord.record_id)).all()
    # The connection broke during COMMIT, after the server committed: the writer spooled
    # the same batch under the same id. Replaying it must add nothing.
    from collections import Counter

    writer.outage.spool_batch([], Counter({DropKey(site, DAY, "bot"): 4}), claim)
    assert writer.replay_once(now=True) == 1
    assert _count(ctx, DroppedHits, site, DroppedHits.hits) == 4


def test_housekeeping_forgets_claims_after_a_month(ctx):
    from app.models import AppliedSpoolRecord

    with ctx.db.session() as session:
        repository.claim_spool_record(session, "a" * 32, START - dt.timedelta(days=31))
        repository.claim_spool_record(session, "b" * 32, START - dt.timedelta(days=1))
    assert ctx.ingest.forget_old_claims() == 1
    with ctx.db.session() as session:
        assert session.scalars(select(AppliedSpoolRecord.record_id)).all() == ["b" * 32]


def test_two_processes_writers_count_each_visit_once(own_ctx, tmp_path):
    """Several web processes share one database: the primary key decides, not memory."""
    site = make_site(own_ctx, make_account(own_ctx))
    first = HitWriter(own_ctx.db, Spool(tmp_path / "a"), own_ctx.clock)
    second = HitWriter(own_ctx.db, Spool(tmp_path / "b"), own_ctx.clock)
    # Overlapping visitors, queued on both before either writes: they race for real.
    one = [_submit_queued(first, _visit(site, n)) for n in range(1, 151)]
    two = [_submit_queued(second, _visit(site, n)) for n in range(101, 251)]
    first.start()
    second.start()
    acks = [a.result(timeout=20) for a in one + two]
    first.stop()
    second.stop()
    assert acks.count(Ack.COUNTED) == 250 and acks.count(Ack.REPEAT) == 50
    assert _count(own_ctx, Visit, site) == 250
    assert _count(own_ctx, DailyCountryCount, site, DailyCountryCount.visits) == 250
