"""``/sites/{key}/heatmaps…``: the owner's heatmap pages, downloads and forms.

Every one goes through ``authz.owned_site`` first (404 to anyone else); the query
parameters are those of ``params.py``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from app.deps import Csrf, CurrentAccount, DbSession, get_ctx
from app.errors import InvalidInput, NotFound
from app.heatmaps import overlay, service
from app.heatmaps.routes.params import PRIVATE, FromQuery, OptionalQuery, RangeQuery, ToQuery
from app.heatmaps.schemas import (
    BucketView,
    DateRange,
    Preset,
    RecordingOptions,
    bucket_label,
    parse_range,
)
from app.inputs import FormText, checkbox
from app.sites import authz
from app.sites.scope import SiteScope
from app.templating import flash_url, render

router = APIRouter(tags=["heatmaps"], include_in_schema=False)


def heatmaps_path(scope: SiteScope) -> str:
    return f"/sites/{scope.public_key}/heatmaps"


def _url(base: str, **params: str | None) -> str:
    query = urlencode({k.rstrip("_"): v for k, v in params.items() if v is not None})
    return f"{base}?{query}" if query else base


def _range_params(days: DateRange) -> dict[str, str | None]:
    q = days.query
    return {"range": q.get("range"), "from_": q.get("from"), "to": q.get("to")}


def _tabs(base: str, days: DateRange, **extra: str) -> list[dict[str, object]]:
    return [
        {
            "label": p.label,
            "href": _url(base, **extra, range=p.value),
            "current": days.preset is p,
        }
        for p in Preset
    ]


def _days(request: Request, range_: str | None, first: str | None, last: str | None) -> DateRange:
    return parse_range(get_ctx(request).clock.now().date(), range_, first, last)


def _overview(
    request: Request,
    session: Session,
    scope: SiteScope,
    days: DateRange,
    *,
    new_bookmarklet: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    ctx = get_ctx(request)
    base = heatmaps_path(scope)
    buckets = ctx.settings.width_buckets
    options = service.recording_options(session, scope)
    pages = service.list_pages(session, scope, days)
    response = render(
        request,
        "heatmaps.html",
        {
            "site": scope,
            "path": base,
            "site_path": f"/sites/{scope.public_key}",
            "days": days,
            "tabs": _tabs(base, days),
            "buckets": [{"name": b.name, "label": bucket_label(b, buckets)} for b in buckets],
            "pages": [
                {"row": p, "href": _url(f"{base}/page", path=p.path, **_range_params(days))}
                for p in pages
            ],
            "max_pages": service.MAX_PAGES,
            "options": options,
            "script_tag": service.script_tag(ctx.settings.base_url, scope, options),
            "tokens": overlay.active_tokens(session, ctx.clock.now(), scope),
            "new_bookmarklet": new_bookmarklet,
            "error": error,
        },
        status_code=status_code,
    )
    # The owner's pages, and the one that shows a new bookmarklet's token: never cached.
    response.headers.update(PRIVATE)
    return response


@router.get("/sites/{key}/heatmaps", response_class=HTMLResponse, name="heatmaps")
def heatmaps_page(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    range_: RangeQuery = None,
    first: FromQuery = None,
    last: ToQuery = None,
) -> HTMLResponse:
    scope = authz.owned_site(session, account.id, key)
    return _overview(request, session, scope, _days(request, range_, first, last))


@router.get("/sites/{key}/heatmaps/page", response_class=HTMLResponse, name="heatmap_page")
def heatmap_page(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    path: OptionalQuery = None,
    range_: RangeQuery = None,
    first: FromQuery = None,
    last: ToQuery = None,
) -> HTMLResponse:
    scope = authz.owned_site(session, account.id, key)
    page = service.check_path(path)
    return _page_view(request, session, scope, page, _days(request, range_, first, last))


def _page_view(
    request: Request,
    session: Session,
    scope: SiteScope,
    page: str,
    days: DateRange,
    *,
    live_url: str | None = None,
) -> HTMLResponse:
    ctx = get_ctx(request)
    base = heatmaps_path(scope)
    counts = service.bucket_counts(session, scope, page, days)
    buckets = ctx.settings.width_buckets
    views = []
    images = {}
    for b in buckets:
        q = {"path": page, "bucket": b.name, **_range_params(days)}
        if counts.get(b.name):
            # On demand: render now if missing or stale (stored for the image request).
            rendered = service.heatmap(session, ctx.settings, ctx.clock.now(), scope, page, b, days)
            if rendered is not None:
                images[b.name] = (rendered.width, rendered.height)
        views.append(
            BucketView(
                name=b.name,
                label=bucket_label(b, buckets),
                reference_width=b.reference_width,
                clicks=counts.get(b.name, 0),
                png_url=_url(f"{base}/heatmap.png", **q),
                download_url=_url(f"{base}/heatmap.png", **q, download="1"),
                csv_url=_url(f"{base}/clicks.csv", **q),
                json_url=_url(f"{base}/clicks.json", **q),
            )
        )
    everything = {"path": page, **_range_params(days)}
    response = render(
        request,
        "heatmaps_page.html",
        {
            "site": scope,
            "path": base,
            "page_path": page,
            "days": days,
            "tabs": _tabs(f"{base}/page", days, path=page),
            "views": views,
            "images": images,
            "total": sum(counts.values()),
            "csv_url": _url(f"{base}/clicks.csv", **everything),
            "json_url": _url(f"{base}/clicks.json", **everything),
            "back_url": _url(base, **_range_params(days)),
            "page_origin": service.page_origin(session, scope, page),
            "live_url": live_url,
        },
    )
    response.headers.update(PRIVATE)  # live_url carries an overlay token
    return response


@router.get("/sites/{key}/heatmaps/heatmap.png", name="heatmap_png")
def heatmap_png(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    path: OptionalQuery = None,
    bucket: OptionalQuery = None,
    range_: RangeQuery = None,
    first: FromQuery = None,
    last: ToQuery = None,
    download: OptionalQuery = None,
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    ctx = get_ctx(request)
    page = service.check_path(path)
    chosen = service.find_bucket(ctx.settings, bucket)
    days = _days(request, range_, first, last)
    rendered = service.heatmap(session, ctx.settings, ctx.clock.now(), scope, page, chosen, days)
    if rendered is None:
        raise NotFound("no clicks on this page at this width in that range")
    headers = {**PRIVATE, "X-Hitmap-Clicks": str(rendered.clicks)}
    if download:
        name = f"heatmap-{chosen.name}-{days.first}-{days.last}.png"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(rendered.png, media_type="image/png", headers=headers)


def _export(
    request: Request,
    session: Session,
    account_id: int,
    key: str,
    path: str | None,
    bucket: str | None,
    days_args: tuple[str | None, str | None, str | None],
    kind: str,
) -> StreamingResponse:
    scope = authz.owned_site(session, account_id, key)
    ctx = get_ctx(request)
    page = service.check_path(path)
    chosen = service.find_bucket(ctx.settings, bucket) if bucket else None
    days = _days(request, *days_args)
    name = f"clicks-{chosen.name if chosen else 'all'}-{days.first}-{days.last}.{kind}"
    headers = {**PRIVATE, "Content-Disposition": f'attachment; filename="{name}"'}
    if kind == "csv":
        body = service.export_csv(ctx.db, scope, page, chosen, days)
        return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)
    body = service.export_json(ctx.db, scope, page, chosen, days)
    return StreamingResponse(body, media_type="application/json", headers=headers)


@router.get("/sites/{key}/heatmaps/clicks.csv", name="heatmap_csv")
def heatmap_csv(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    path: OptionalQuery = None,
    bucket: OptionalQuery = None,
    range_: RangeQuery = None,
    first: FromQuery = None,
    last: ToQuery = None,
) -> StreamingResponse:
    return _export(request, session, account.id, key, path, bucket, (range_, first, last), "csv")


@router.get("/sites/{key}/heatmaps/clicks.json", name="heatmap_json")
def heatmap_json(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    path: OptionalQuery = None,
    bucket: OptionalQuery = None,
    range_: RangeQuery = None,
    first: FromQuery = None,
    last: ToQuery = None,
) -> StreamingResponse:
    return _export(request, session, account.id, key, path, bucket, (range_, first, last), "json")


@router.post("/sites/{key}/heatmaps/options", dependencies=[Csrf], name="heatmap_options")
def heatmap_options(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    keep_query: FormText = "",
    honour_dnt: FormText = "",
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    ctx = get_ctx(request)
    value = RecordingOptions(
        keep_query=checkbox(keep_query, "keep query"), honour_dnt=checkbox(honour_dnt, "honour dnt")
    )
    service.save_recording_options(session, ctx.clock.now(), scope, value)
    message = "Recording options saved."
    if value.keep_query:
        message += " Update the script tag on your pages to record query strings."
    # The beacon caches options for a few seconds; forget them once the change is committed.
    return RedirectResponse(
        flash_url(request, heatmaps_path(scope), message),
        status_code=303,
        background=BackgroundTask(ctx.beacons.forget_site, scope.site_id),
    )


@router.post("/sites/{key}/heatmaps/bookmarklet", dependencies=[Csrf], name="heatmap_bookmarklet")
def heatmap_bookmarklet(
    key: str, request: Request, session: DbSession, account: CurrentAccount
) -> HTMLResponse:
    """A new bookmarklet (the old one stops working), shown once on the page."""
    scope = authz.owned_site(session, account.id, key)
    ctx = get_ctx(request)
    token = overlay.create_bookmarklet_token(session, ctx.clock.now(), scope)
    code = overlay.bookmarklet(ctx.settings.base_url, scope, token)
    days = _days(request, None, None, None)
    return _overview(request, session, scope, days, new_bookmarklet=code)


@router.post("/sites/{key}/heatmaps/bookmarklet/revoke", dependencies=[Csrf], name="heatmap_revoke")
def heatmap_revoke(
    key: str, request: Request, session: DbSession, account: CurrentAccount
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    removed = overlay.revoke_tokens(session, scope)
    message = "Overlay access revoked: bookmarklets and open overlays can no longer load clicks."
    if not removed:
        message = "There was no overlay access to revoke."
    return RedirectResponse(flash_url(request, heatmaps_path(scope), message), status_code=303)


@router.post("/sites/{key}/heatmaps/live", dependencies=[Csrf], name="heatmap_live")
def heatmap_live(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    path: FormText = "",
) -> HTMLResponse:
    """A link to the page itself with the live overlay (a 10-minute token in the fragment).

    Shown as a link rather than a redirect: the pages' CSP (``form-action 'self'``)
    rightly stops a form from redirecting to another origin.
    """
    scope = authz.owned_site(session, account.id, key)
    ctx = get_ctx(request)
    page = service.check_path(path)
    origin = service.page_origin(session, scope, page)
    if origin is None:
        raise InvalidInput("this page has sent no clicks yet, so its address is not known")
    token = overlay.create_link_token(session, ctx.clock.now(), scope)
    link = overlay.overlay_link(overlay.link_origin(session, scope, origin), page, token)
    days = _days(request, None, None, None)
    return _page_view(request, session, scope, page, days, live_url=link)
