"""The owner's site page (drawn by ``app.sites.page``), with the dashboard's range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import CurrentAccount, DbSession, get_ctx
from app.inputs import Text
from app.sites import authz
from app.sites.page import render_site_page
from app.stats import service as stats

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/sites/{key}", response_class=HTMLResponse, name="site_page")
def site_page(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    range_: Annotated[Text | None, Query(alias="range")] = None,
) -> HTMLResponse:
    scope = authz.owned_site(session, account.id, key)
    return render_site_page(
        request, get_ctx(request), session, scope, range_=stats.parse_range(range_)
    )
