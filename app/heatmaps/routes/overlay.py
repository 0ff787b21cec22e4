"""The live overlay: ``GET /overlay.js`` and ``GET|OPTIONS /o/{key}/clicks``.

The data needs an overlay token of that very site and answers CORS only to pages on
the site's hostnames.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.deps import DbSession, get_ctx
from app.errors import NotFound
from app.heatmaps import overlay
from app.heatmaps.routes.params import PRIVATE, FromQuery, OptionalQuery, RangeQuery, ToQuery
from app.heatmaps.schemas import parse_range

router = APIRouter(tags=["heatmaps"], include_in_schema=False)
OVERLAY_SOURCE = (files("widgets") / "overlay.js").read_bytes()


@router.get("/overlay.js", name="overlay_script")
def overlay_script() -> Response:
    return Response(
        OVERLAY_SOURCE,
        media_type="text/javascript",
        headers={
            "Cache-Control": "public, max-age=300",
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@router.options("/o/{key}/clicks", name="overlay_preflight")
def overlay_preflight(key: str, request: Request) -> Response:
    """CORS preflight (the data request carries ``Authorization``): site origins only."""
    found = get_ctx(request).ingest.sites.get(key)
    origin = request.headers.get("origin")
    if found is None or not origin:
        raise NotFound("no such site")
    _, hostnames = found
    if overlay.page_origin(origin, hostnames) != origin.rstrip("/"):
        raise NotFound("no such site")
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET",
            "Access-Control-Allow-Headers": "Authorization",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )


@router.get("/o/{key}/clicks", name="overlay_clicks")
def overlay_clicks(
    key: str,
    request: Request,
    session: DbSession,
    path: OptionalQuery = None,
    range_: RangeQuery = None,
    first: FromQuery = None,
    last: ToQuery = None,
) -> Response:
    ctx = get_ctx(request)
    now = ctx.clock.now()
    scope = overlay.scope_for_token(session, now, key, _bearer(request))
    origin = request.headers.get("origin")
    allowed = overlay.allowed_origin(session, scope, origin)
    if origin and allowed is None:
        raise NotFound("no such site")
    days = parse_range(now.date(), range_, first, last)
    data = overlay.overlay_data(session, scope, path, days, ctx.settings.width_buckets)
    headers = {**PRIVATE, "Vary": "Origin"}
    if allowed:
        headers["Access-Control-Allow-Origin"] = allowed
    return JSONResponse(data, headers=headers)
