"""Hourly housekeeping that every deployment needs, even the embedded one.

Salts are also rotated on the first hit of a new day; this job makes sure a
quiet instance still deletes them 48 hours after their day began.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app.accounts import service as accounts
from app.context import AppContext

log = logging.getLogger("hitmap.housekeeping")

INTERVAL_SECONDS = 3600.0


def rotate_salts(ctx: AppContext) -> int:
    removed = ctx.ingest.rotate_salts()
    if removed:
        log.info("deleted %d expired visitor-hash salts", removed)
    return removed


def forget_old_claims(ctx: AppContext) -> int:
    return ctx.ingest.forget_old_claims()


def prune_site_changes(ctx: AppContext) -> int:
    return ctx.ingest.prune_site_changes()


def forget_expired_login_attempts(ctx: AppContext) -> int:
    return accounts.forget_expired_attempts(ctx.db, ctx.clock, ctx.login_policy)


async def run_forever(ctx: AppContext, interval: float = INTERVAL_SECONDS) -> None:
    while True:
        try:
            await run_in_threadpool(rotate_salts, ctx)
            await run_in_threadpool(forget_old_claims, ctx)
            await run_in_threadpool(prune_site_changes, ctx)
            await run_in_threadpool(forget_expired_login_attempts, ctx)
        except SQLAlchemyError:
            log.exception("housekeeping failed; will retry")
        await asyncio.sleep(interval)
