"""The counter endpoint: a thin HTTP shell around IngestService. It always answers an image."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.deps import get_ctx
from app.ingest.counter_image import etag_for
from app.ingest.service import HitRequest, Outcome
from widgets import widget_source

router = APIRouter(tags=["counter"])
WIDGET_SOURCE = widget_source()


# "no-cache" lets the browser keep the bytes but makes it ask us on every page
# view (answered 304 when unchanged), so every view reaches the counter and no
# visit can be lost to a cached image.
COUNTER_HEADERS = {
    "Cache-Control": "private, no-cache",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/c/{key}.png", include_in_schema=False)
def counter(key: str, request: Request) -> Response:
    headers = request.headers
    result = get_ctx(request).ingest.handle(
        HitRequest(
            key=key,
            peer_ip=request.client.host if request.client else None,
            forwarded_for=headers.get("x-forwarded-for"),
            user_agent=headers.get("user-agent", ""),
            referer=headers.get("referer"),
            purpose=_purpose(request),
        )
    )
    status = 404 if result.outcome is Outcome.UNKNOWN_SITE else 200
    etag = etag_for(result.image)
    response_headers = {**COUNTER_HEADERS, "ETag": etag}
    if status == 200 and headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=response_headers)
    return Response(
        result.image, status_code=status, media_type="image/png", headers=response_headers
    )


def _purpose(request: Request) -> str | None:
    h = request.headers
    values = [h.get("sec-purpose"), h.get("purpose"), h.get("x-purpose"), h.get("x-moz")]
    joined = " ".join(v for v in values if v).lower()
    return joined or None


@router.get("/w.js", include_in_schema=False)
def widget_script() -> Response:
    return Response(
        WIDGET_SOURCE,
        media_type="text/javascript",
        headers={
            "Cache-Control": "public, max-age=3600",
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )
