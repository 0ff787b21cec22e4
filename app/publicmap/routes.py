"""The public map page of a site: anyone for a public site, only its owner for a private one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import DbSession, MaybeAccount, get_ctx
from app.inputs import Text
from app.maps import service as maps
from app.sites import authz
from app.stats import service as stats
from app.templating import render

router = APIRouter(tags=["public map"], include_in_schema=False)


@router.get("/map/{key}", response_class=HTMLResponse, name="public_map")
def public_map(
    key: str,
    request: Request,
    session: DbSession,
    account: MaybeAccount,
    range_: Annotated[Text | None, Query(alias="range")] = None,
) -> HTMLResponse:
    # A private site answers 404 to everyone but its owner: as if it did not exist.
    scope = authz.viewable_site(session, account.id if account else None, key)
    summary = stats.public_summary(session, scope)
    world = maps.map_view(session, get_ctx(request).clock, scope, range_)
    response = render(request, "map.html", {"site": scope, "summary": summary, "world": world})
    if not scope.is_public:
        # The owner's preview of a private map must not linger in shared caches.
        response.headers["Cache-Control"] = "private, no-store"
    return response
