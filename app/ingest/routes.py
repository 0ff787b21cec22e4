"""The counter endpoint, a thin shell around IngestService that always answers an image.

``GET /c/{key}.png`` is served by :class:`CounterEndpoint`, plain ASGI in front of
FastAPI: the busiest URL of the service skips routing, dependency injection and
the HTML middleware, and builds its answer from bytes cached per site.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.ingest.images import NEUTRAL, CounterImage
from app.ingest.service import HitRequest, HitResult, IngestService, Outcome
from widgets import loader_source, widget_source, widget_version

log = logging.getLogger("hitmap.ingest")
router = APIRouter(tags=["counter"])
WIDGET_SOURCE = widget_source()

# "no-cache" lets the browser keep the bytes but makes it ask us on every page
# view (answered 304 when unchanged), so every view reaches the counter and no
# visit can be lost to a cached image.
COUNTER_HEADERS = [
    (b"content-type", b"image/png"),
    (b"cache-control", b"private, no-cache"),
    (b"cross-origin-resource-policy", b"cross-origin"),
    (b"x-content-type-options", b"nosniff"),
]
PURPOSE_HEADERS = {b"sec-purpose", b"purpose", b"x-purpose", b"x-moz"}


class CounterEndpoint:
    """ASGI middleware that answers ``GET /c/{key}.png`` and passes everything else on.

    ``HEAD`` gets the same status and headers as ``GET`` and no body; it counts nothing
    (link checkers and proxies send it, no page view does).
    """

    def __init__(self, app: ASGIApp, ingest: IngestService) -> None:
        self.app = app
        self.ingest = ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not path.startswith("/c/")
            or not path.endswith(".png")
        ):
            await self.app(scope, receive, send)
            return
        request, if_none_match = _read(scope, path[3:-4])
        head = scope["method"] == "HEAD"
        try:
            if head:
                result = await self.ingest.look_async(request.key)
            else:
                result = await self.ingest.handle_async(request)
        except Exception:
            # Never break a customer's page: answer the neutral image whatever went wrong.
            log.exception("counter failed; answered the neutral image")
            result = HitResult(Outcome.NOT_RECORDED, NEUTRAL)
        await _answer(send, result, if_none_match, head=head)


def _read(scope: Scope, key: str) -> tuple[HitRequest, bytes | None]:
    user_agent = ""
    referer = forwarded_for = None
    if_none_match: bytes | None = None
    purposes = []
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
        elif name == b"referer":
            referer = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            part = value.decode("latin-1")
            forwarded_for = part if forwarded_for is None else f"{forwarded_for}, {part}"
        elif name == b"if-none-match":
            if_none_match = value
        elif name in PURPOSE_HEADERS:
            purposes.append(value.decode("latin-1"))
    client = scope.get("client")
    request = HitRequest(
        key=key,
        peer_ip=client[0] if client else None,
        forwarded_for=forwarded_for,
        user_agent=user_agent,
        referer=referer,
        purpose=" ".join(purposes).lower() or None,
    )
    return request, if_none_match


async def _answer(
    send: Send, result: HitResult, if_none_match: bytes | None, *, head: bool = False
) -> None:
    image: CounterImage = result.image
    etag = image.etag.encode()
    status = 404 if result.outcome is Outcome.UNKNOWN_SITE else 200
    if status == 200 and if_none_match == etag:
        status, body = 304, b""
    else:
        body = image.png
    headers = [
        *COUNTER_HEADERS,
        (b"etag", etag),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


# Snippets name /w.js, the loader: pasted snippets never change, so an hour's cache lets
# a new release reach every page. The widget itself is /w/<digest>.js, whose bytes never
# change: a year, immutable. An older digest (a loader cached before a release) gets
# the current widget for an hour rather than a 404.
CACHE_LOADER = "public, max-age=3600"
CACHE_WIDGET = "public, max-age=31536000, immutable"
_SCRIPT_HEADERS = {"Cross-Origin-Resource-Policy": "cross-origin"}


@router.get("/w.js", include_in_schema=False)
def widget_loader() -> Response:
    return Response(
        loader_source(),
        media_type="text/javascript",
        headers={"Cache-Control": CACHE_LOADER, **_SCRIPT_HEADERS},
    )


@router.get("/w/{version}.js", include_in_schema=False)
def widget_script(version: str) -> Response:
    current = version == widget_version()
    return Response(
        WIDGET_SOURCE,
        media_type="text/javascript",
        headers={"Cache-Control": CACHE_WIDGET if current else CACHE_LOADER, **_SCRIPT_HEADERS},
    )
