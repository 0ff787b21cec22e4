"""Map images and the owner's thumbnail style.

* ``/map/{key}/{range}.png`` and ``/map/{key}/{range}@2x.png``: the public page's world
  maps, stored by the jobs, with ETag and Last-Modified (304 when unchanged). A
  private site's images are 404 to everyone but its owner, like its page.
* ``/sites/{key}/thumbnail.png``: the owner's preview of the counter thumbnail, redrawn
  first if the style or the visits changed (the counter itself would count the
  owner's view as a dropped hit, and shows a new style within a minute).
* ``POST /sites/{key}/map-style``: save the thumbnail style and have it redrawn.

Images that were never rendered are rendered in the request and stored (a new
site's first visitors see a map at once).
"""

from __future__ import annotations

import re
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.background import BackgroundTask

from app.deps import Csrf, CurrentAccount, DbSession, MaybeAccount, get_ctx
from app.errors import DomainError, NotFound
from app.inputs import FormText
from app.maps import repository as repo
from app.maps import service, styles, tasks
from app.maps.service import MAP, Span
from app.models import RenderedImage
from app.sites import authz
from app.sites.page import render_site_page, site_path
from app.sites.schemas import PageError, SiteForms
from app.templating import flash_url

router = APIRouter(tags=["maps"], include_in_schema=False)

_IMAGE_NAME = re.compile(r"(?P<span>24h|7d|30d|365d|all)(?:@(?P<variant>2x))?")
PUBLIC_IMAGE_CACHE = "public, max-age=300"
PRIVATE_IMAGE_CACHE = "private, no-cache"


def _not_modified(request: Request, image: RenderedImage | repo.ImageMeta) -> bool:
    sent = request.headers.get("if-none-match")
    if sent is not None:
        return image.etag in (tag.strip() for tag in sent.split(",")) or sent.strip() == "*"
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return image.rendered_at.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def _png_response(request: Request, image: RenderedImage, cache_control: str) -> Response:
    headers = {
        "ETag": image.etag,
        "Last-Modified": format_datetime(image.rendered_at, usegmt=True),
        "Cache-Control": cache_control,
    }
    if _not_modified(request, image):
        return Response(status_code=304, headers=headers)
    return Response(service.image_bytes(image), media_type="image/png", headers=headers)


@router.get("/map/{key}/{name}.png", name="map_image")
def map_image(
    key: str, name: str, request: Request, session: DbSession, account: MaybeAccount
) -> Response:
    # Authorisation first: a private site's images are 404 whatever the name.
    scope = authz.viewable_site(session, account.id if account else None, key)
    match = _IMAGE_NAME.fullmatch(name)
    if match is None:
        raise NotFound("no such map image; use e.g. 30d.png or 30d@2x.png")
    span, variant = Span(match["span"]), match["variant"] or "1x"
    image = service.ensure_image(session, get_ctx(request).clock, scope, MAP, span, variant)
    return _png_response(
        request, image, PUBLIC_IMAGE_CACHE if scope.is_public else PRIVATE_IMAGE_CACHE
    )


@router.get("/sites/{key}/thumbnail.png", name="site_thumbnail")
def site_thumbnail(
    key: str, request: Request, session: DbSession, account: CurrentAccount
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    image = service.current_thumbnail(session, get_ctx(request).clock, scope)
    return _png_response(request, image, PRIVATE_IMAGE_CACHE)


@router.post("/sites/{key}/map-style", dependencies=[Csrf], name="site_map_style")
def site_map_style(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    size: FormText = "",
    dot_color: FormText = "",
    background: FormText = "",
    show_count: FormText = "",
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    ctx = get_ctx(request)
    try:
        style = styles.parse_style(size, dot_color, background, show_count)
    except DomainError as exc:
        forms = SiteForms(error=PageError("map-style", exc.message))
        return render_site_page(request, ctx, session, scope, forms=forms, status_code=exc.status)
    if not styles.save_style(session, ctx.clock, scope, style):
        return RedirectResponse(
            flash_url(request, site_path(scope), "The counter style is unchanged."),
            status_code=303,
        )
    run_after_commit = tasks.request_render(ctx, session, scope.site_id, reason="style")
    return RedirectResponse(
        flash_url(
            request,
            site_path(scope),
            "Counter style saved. Your counter shows it within a minute.",
        ),
        status_code=303,
        background=BackgroundTask(run_after_commit) if run_after_commit else None,
    )
