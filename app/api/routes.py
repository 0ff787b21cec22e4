"""The JSON API under /api/v1, authenticated by per-account bearer tokens.

Errors are JSON objects with a `detail`:

* 401 — no token, or an unknown or revoked one (with `WWW-Authenticate: Bearer`);
* 404 — a site key that is unknown or belongs to another account (never 403);
* 400 — a well-formed request that breaks a rule: a bad domain, `from` after
  `to`, a range over ten years; `detail` is a sentence;
* 422 — a request that does not match the schema: a missing field, a date
  that is not YYYY-MM-DD or outside 2000-01-01..9998-12-31, a control character
  in a text (app/inputs.py); `detail` lists each field's `loc`, `type` and `msg`
  (never the value sent).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from app.api import docs
from app.api.deps import ApiAccount, no_store
from app.api.schemas import CreatedSiteOut, ErrorOut, SiteCreate, SiteOut, SnippetOut, StatsOut
from app.clock import utc_today
from app.deps import Ctx, DbSession
from app.inputs import Day
from app.sites import authz
from app.sites import service as sites
from app.stats import service as stats

DEFAULT_DAYS = 30


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "The request breaks a rule; `detail` says which.",
        401: "Missing, unknown or revoked API token.",
        404: "No such site for this token's account.",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}


v1 = APIRouter(
    prefix="/api/v1",
    tags=["API v1"],
    dependencies=[Depends(no_store)],
    responses=_errors(401),
)


@v1.get("/sites", response_model=list[SiteOut], summary="List your sites")
def list_sites(ctx: Ctx, session: DbSession, account: ApiAccount) -> list[SiteOut]:
    """All sites of the token's account, oldest first."""
    base = ctx.settings.base_url
    return [SiteOut.of(scope, base) for scope in authz.owned_sites(session, account.id)]


@v1.post(
    "/sites",
    status_code=201,
    response_model=CreatedSiteOut,
    responses=_errors(400),
    summary="Register a site",
)
def create_site(
    body: SiteCreate, ctx: Ctx, session: DbSession, account: ApiAccount
) -> CreatedSiteOut:
    """Register a site and get the snippet to paste into its pages."""
    scope = sites.create_site(
        session, ctx.clock, account_id=account.id, domain=body.domain, name=body.name
    )
    base = ctx.settings.base_url
    return CreatedSiteOut(
        **SiteOut.of(scope, base).model_dump(),
        snippet=SnippetOut.of(sites.snippet(base, scope)),
    )


@v1.get(
    "/sites/{key}/stats",
    response_model=StatsOut,
    responses=_errors(400, 404),
    summary="Visits of a site",
)
def site_stats(
    key: str,
    ctx: Ctx,
    session: DbSession,
    account: ApiAccount,
    start: Annotated[
        Day | None,
        Query(alias="from", description="First day, YYYY-MM-DD (UTC). Default: `to` − 29 days."),
    ] = None,
    end: Annotated[
        Day | None, Query(alias="to", description="Last day, YYYY-MM-DD (UTC). Default: today.")
    ] = None,
) -> StatsOut:
    """Unique daily visits per day and per country in an inclusive date range."""
    scope = authz.owned_site(session, account.id, key)
    end = end or utc_today(ctx.clock)
    start = start or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    report = stats.report(session, scope, start, end)
    return StatsOut.of(scope, report, ctx.settings.base_url)


router = APIRouter()
router.include_router(v1)
router.include_router(docs.router)
