"""The heatmap job as a plain function of an :class:`AppContext`, for the nightly fan-out.

:func:`render_site_heatmaps` renders and stores the heatmaps the heatmap page
shows by default (the last 30 days, every listed page, every width bucket with
clicks) so that the page opens without rendering. It is idempotent: a heatmap
whose input has not changed is not rendered again, and running it twice stores
the same rows. It discards itself (returns quietly, with a log line) when the
site is gone, also when the site is deleted while it runs.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from app.context import AppContext
from app.heatmaps import repository, service
from app.heatmaps.schemas import DateRange, Preset, RenderedHeatmap
from app.settings import WidthBucket
from app.sites import authz
from app.sites.scope import SiteScope

log = logging.getLogger("hitmap.heatmaps.jobs")

DEFAULT_PRESET = Preset.MONTH
KEEP_RENDERS = dt.timedelta(days=8)  # renders not refreshed for this long are deleted


@dataclass(frozen=True, slots=True)
class HeatmapJobResult:
    site_id: int
    status: str  # "rendered", "unchanged" or "discarded"
    rendered: int = 0
    unchanged: int = 0
    pruned: int = 0


def _site_scope(ctx: AppContext, site_id: int) -> SiteScope | None:
    with ctx.db.session() as session:
        return authz.site_for_job(session, site_id)


def _discarded(site_id: int) -> HeatmapJobResult:
    log.info("site %s no longer exists; heatmap job discarded", site_id)
    return HeatmapJobResult(site_id, "discarded")


def _render_one(
    ctx: AppContext, scope: SiteScope, path: str, bucket: WidthBucket, days: DateRange
) -> RenderedHeatmap | None:
    """One heatmap in short transactions: no lock is held for the whole site."""
    args = (ctx.settings, ctx.clock.now(), scope, path, bucket, days)
    if ctx.db.dialect != "sqlite":
        with ctx.db.session() as session:
            return service.heatmap(session, *args)
    # SQLite has one write lock for the whole database: draw from a snapshot, so the
    # counter's writer is not held up, then store in a transaction of its own.
    with ctx.db.snapshot() as session:
        result, new = service.draw_heatmap(session, *args)
    if new is not None:
        with ctx.db.session() as session:
            service.store_heatmap(session, scope, new)
    return result


def render_site_heatmaps(
    ctx: AppContext,
    site_id: int,
    *,
    day: dt.date | None = None,
    scope: SiteScope | None = None,
) -> HeatmapJobResult:
    """Render the site's default-range heatmaps (30 days ending ``day``, default today, UTC).

    ``scope``: the site as the caller's job just found it (the nightly job's map part),
    sparing a lookup; a site deleted since is still noticed when storing fails.
    """
    scope = scope or _site_scope(ctx, site_id)
    if scope is None:
        return _discarded(site_id)
    last = day or ctx.clock.now().astimezone(dt.UTC).date()
    days = DateRange(last - dt.timedelta(days=DEFAULT_PRESET.days - 1), last, DEFAULT_PRESET)
    rendered = unchanged = 0
    try:
        # Most sites have no clicks: pruning and listing share one short transaction,
        # so such a site costs two statements.
        with ctx.db.session() as session:
            pruned = repository.delete_renders_before(
                session, scope, ctx.clock.now() - KEEP_RENDERS
            )
            pages = service.list_pages(session, scope, days)
        for page in pages:
            for bucket in ctx.settings.width_buckets:
                if not page.per_bucket.get(bucket.name):
                    continue
                result = _render_one(ctx, scope, page.path, bucket, days)
                if result is not None and result.fresh_render:
                    rendered += 1
                else:
                    unchanged += 1
    except IntegrityError:
        # The site was deleted while rendering (its renders' foreign key failed).
        if _site_scope(ctx, site_id) is None:
            return _discarded(site_id)
        raise
    log.info("site %s: %d heatmaps rendered, %d unchanged", site_id, rendered, unchanged)
    status = "rendered" if rendered else "unchanged"
    return HeatmapJobResult(site_id, status, rendered, unchanged, pruned)
