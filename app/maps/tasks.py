"""The map jobs as plain functions of an :class:`AppContext`.

Declared as a task by name (``RENDER``) and as nightly work (``NIGHTLY``, through the
shared nightly runner of ``app.jobs.nightly``); whichever job engine ``workers/``
provides runs these and nothing else. Every job is idempotent: it carries a site
id and ranges, renders only images whose input changed, and discards itself
(returns quietly, with a log line) when the site is gone.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.context import AppContext
from app.jobs import nightly
from app.jobs import service as jobs
from app.jobs.nightly import NightlyWork
from app.jobs.port import Job, Task
from app.maps import repository as repo
from app.maps import service
from app.maps.service import SPANS, Span
from app.models import MapNightlyRun
from app.sites import authz
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.maps.jobs")

# Rendering of one site is serialised: a style change's job that starts while the
# nightly job draws the old style waits and then draws the new one. Across
# processes, PostgreSQL's row lock on the site does it (authz.site_for_job(lock=True)).
_SITE_LOCKS = tuple(threading.Lock() for _ in range(64))

QUEUE = "maps"


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


# --- as jobs -----------------------------------------------------------------------


def render_site_task(
    ctx: AppContext, site_id: int, spans: list[str], thumbnail: bool = True, reason: str = ""
) -> JobResult:
    """The render job by name: the nightly one also draws the page heatmaps."""
    if reason == "nightly":
        return nightly_site_job(ctx, site_id)
    return render_site_job(ctx, site_id, spans=spans, thumbnail=thumbnail)


RENDER = Task("hitmap.maps.render_site", QUEUE, render_site_task)


def render_job(
    site_id: int, *, spans: Sequence[Span | str] = SPANS, thumbnail: bool = True, reason: str
) -> Job:
    """A site's render job; one waits per site and reason (queueing lock): a waiting
    job has not started, so it will see today's data anyway."""
    return Job(
        RENDER.name,
        {
            "site_id": site_id,
            "spans": [str(s) for s in spans],
            "thumbnail": thumbnail,
            "reason": reason,
        },
        queueing_lock=f"maps:{reason}:{site_id}",
    )


def _all_sites(session: Session, ctx: AppContext) -> list[int]:
    return repo.all_site_ids(session)


NIGHT = NightlyWork(
    "maps",
    MapNightlyRun,
    RENDER,
    _all_sites,
    lambda site_id, night: render_job(site_id, reason="nightly"),
)
NIGHTLY = nightly.periodic(NIGHT, name="hitmap.maps.nightly", periodic_id="nightly")


# --- asking for a render from a request ----------------------------------------------


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

    With a job queue the job is deferred in the caller's transaction (it exists if
    and only if the change commits) and a worker picks it up at once. Otherwise the
    caller gets a function to run in-process after its commit (a response's
    background task).
    """
    job = render_job(site_id, spans=spans, thumbnail=thumbnail, reason=reason)
    if jobs.enqueue_all(session, [job]) is not None:
        return None
    return functools.partial(render_site_task, ctx, **job.args)
