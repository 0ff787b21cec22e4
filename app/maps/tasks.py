"""The map jobs as plain functions of an :class:`AppContext`.

Both job engines call these and nothing else: Procrastinate workers on PostgreSQL
(``workers/procrastinate_app.py``) and the in-process scheduler of ``hitmap serve``
on SQLite (``workers/scheduler.py``). Every job is idempotent: it carries a site
id and ranges, renders only images whose input changed, and discards itself
(returns quietly, with a log line) when the site is gone.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.context import AppContext
from app.maps import repository as repo
from app.maps import service
from app.maps.service import SPANS, Span
from app.sites import authz
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.maps.jobs")

# Rendering of one site is serialised: a style change's job that starts while the
# nightly job draws the old style waits and then draws the new one. Across
# processes, PostgreSQL's row lock on the site does it (authz.site_for_job(lock=True)).
_SITE_LOCKS = tuple(threading.Lock() for _ in range(64))

# A night missed by more than this (the service was down) is not caught up late.
MAX_DELAY = dt.timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class JobResult:
    site_id: int
    status: str  # "rendered", "unchanged" or "discarded"
    rendered: int = 0
    skipped: int = 0
    scope: SiteScope | None = None  # the site as the job found it (None: discarded)


def render_site_job(
    ctx: AppContext,
    site_id: int,
    *,
    spans: Iterable[Span | str] = SPANS,
    thumbnail: bool = True,
    force: bool = False,
) -> JobResult:
    """Render a site's thumbnail and range maps that changed; store them."""
    wanted = [Span(s) for s in spans]
    draw = functools.partial(
        service.draw_site, clock=ctx.clock, spans=wanted, thumbnail=thumbnail, force=force
    )
    try:
        with _SITE_LOCKS[site_id % len(_SITE_LOCKS)]:
            if ctx.db.dialect == "sqlite":
                # SQLite has one write lock for the whole database: drawing under it would
                # hold up the counter's writer for as long as a render takes. Read from
                # a snapshot, draw, then store in a short transaction.
                with ctx.db.snapshot() as session:
                    scope = authz.site_for_job(session, site_id)
                    if scope is None:
                        return _discarded(site_id)
                    drawn = draw(session, scope=scope)
                with ctx.db.session() as session:
                    service.store_drawn(session, scope, drawn)
            else:
                with ctx.db.session() as session:
                    repo.relax_durability(session)
                    scope = authz.site_for_job(session, site_id, lock=True)
                    if scope is None:
                        return _discarded(site_id)
                    drawn = draw(session, scope=scope)
                    service.store_drawn(session, scope, drawn)
        report = drawn.report
    except IntegrityError:
        # SQLite has no row lock: the site may have been deleted while drawing.
        with ctx.db.session() as session:
            if authz.site_for_job(session, site_id) is None:
                return _discarded(site_id)
        raise
    if service.THUMBNAIL_KEY in report.rendered:
        ctx.ingest.images.invalidate(site_id)
    status = "rendered" if report.rendered else "unchanged"
    log.info(
        "site %s: %d images rendered, %d unchanged",
        site_id,
        len(report.rendered),
        len(report.skipped),
    )
    return JobResult(site_id, status, len(report.rendered), len(report.skipped), scope)


def nightly_site_job(ctx: AppContext, site_id: int) -> JobResult:
    """One site's nightly work: its maps and thumbnail, then its page heatmaps."""
    from app.heatmaps.tasks import render_site_heatmaps

    result = render_site_job(ctx, site_id)
    if result.scope is not None:
        render_site_heatmaps(ctx, site_id, scope=result.scope)
    return result


def _discarded(site_id: int) -> JobResult:
    log.info("site %s no longer exists; render job discarded", site_id)
    return JobResult(site_id, "discarded")


# --- the nightly schedule ------------------------------------------------------------


def scheduled_before(now: dt.datetime, at: dt.time) -> dt.datetime:
    """The latest nightly start (UTC time ``at`` on some day) at or before ``now``."""
    now = now.astimezone(dt.UTC)
    today = dt.datetime.combine(now.date(), at, tzinfo=dt.UTC)
    return today if today <= now else today - dt.timedelta(days=1)


def scheduled_after(now: dt.datetime, at: dt.time) -> dt.datetime:
    return scheduled_before(now, at) + dt.timedelta(days=1)


def due_night(now: dt.datetime, at: dt.time) -> dt.date | None:
    """The night whose run is due at ``now`` (named by the UTC date of its start),
    or None when the last start is more than MAX_DELAY ago."""
    start = scheduled_before(now, at)
    return start.date() if now - start <= MAX_DELAY else None


def cron_for(at: dt.time) -> str:
    """The cron line of the nightly run (Procrastinate's periodic task; UTC)."""
    return f"{at.minute} {at.hour} * * *"


def claim_night(ctx: AppContext, night: dt.date) -> list[int] | None:
    """The ids of all sites if this caller starts the night; None if it was started."""
    with ctx.db.session() as session:
        if not repo.claim_night(session, night, ctx.clock.now()):
            return None
        return repo.all_site_ids(session)


@dataclass(frozen=True, slots=True)
class NightReport:
    night: dt.date
    sites: int
    rendered: int
    unchanged: int
    discarded: int
    failed: int


def run_night_in_process(
    ctx: AppContext,
    night: dt.date,
    *,
    progress: Callable[[JobResult], None] | None = None,
) -> NightReport | None:
    """The embedded engine: claim the night, then render every site here, one by one.
    None when the night was already claimed (by this or another process)."""
    site_ids = claim_night(ctx, night)
    if site_ids is None:
        return None
    log.info("nightly maps for %s: %d sites", night, len(site_ids))
    counts = {"rendered": 0, "unchanged": 0, "discarded": 0, "failed": 0}
    for site_id in site_ids:
        try:
            result = nightly_site_job(ctx, site_id)
        except Exception:
            log.exception("nightly render of site %s failed; next night retries", site_id)
            counts["failed"] += 1
            continue
        counts[result.status] += 1
        if progress is not None:
            progress(result)
    with ctx.db.session() as session:
        repo.finish_night(session, night, len(site_ids), ctx.clock.now())
    return NightReport(night, len(site_ids), **counts)


# --- asking for a render from a request ----------------------------------------------


def job_queue_ready(session: Session) -> bool:
    """PostgreSQL with Procrastinate's schema (``hitmap migrate`` installs it)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    found = session.scalar(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"))
    return bool(found)


def request_render(
    ctx: AppContext,
    session: Session,
    site_id: int,
    *,
    spans: Sequence[Span] = (),
    thumbnail: bool = True,
    reason: str,
) -> Callable[[], object] | None:
    """Have a site's images redrawn soon.

    On PostgreSQL the job is deferred in the caller's transaction (it exists if and
    only if the change commits) and a worker picks it up at once. Otherwise the
    caller gets a function to run in-process after its commit (a response's
    background task).
    """
    if job_queue_ready(session):
        from workers.procrastinate_app import defer_renders

        defer_renders(session, [site_id], spans=spans, thumbnail=thumbnail, reason=reason)
        return None
    return functools.partial(render_site_job, ctx, site_id, spans=spans, thumbnail=thumbnail)
