"""``POST /b/{key}``: the widget's batch of clicks (``text/plain`` JSON, no CORS preflight).

The route reads the body (at most ``MAX_BODY_BYTES``), hands the batch to
``BeaconService.handle`` in the thread pool and turns the verdict's reason into the
answer: 204 when stored or deliberately not recorded (Do Not Track honoured, shed over a
budget), 400 with a short reason when anything in the batch is invalid or it comes from a
page on a foreign host (nothing is stored), 404 for an unknown key and for a request that
names no page at all (no ``Origin``, no ``Referer``): a stranger; 503 when neither the
database nor the spool took it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from app.deps import get_ctx
from app.heatmaps.beacons import BeaconRequest
from app.heatmaps.validation import MAX_BODY_BYTES, Reason

router = APIRouter(tags=["heatmaps"], include_in_schema=False)

BEACON_HEADERS = {"Cache-Control": "no-store"}
# A batch not recorded on purpose (privacy, shed) gets the empty answer a stored one gets.
BEACON_STATUS = {
    Reason.ACCEPTED: 204,
    Reason.NOT_TRACKED: 204,
    Reason.SHED: 204,
    Reason.UNKNOWN_SITE: 404,
    Reason.REJECTED: 400,
    Reason.UNAVAILABLE: 503,
}


async def _read_body(request: Request, limit: int) -> tuple[bytes, bool]:
    """The body, or (b"", True) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
    return b"".join(chunks), False


@router.post("/b/{key}", name="beacon")
async def beacon(key: str, request: Request) -> Response:
    body, too_large = await _read_body(request, MAX_BODY_BYTES)
    h = request.headers
    verdict = await run_in_threadpool(
        get_ctx(request).beacons.handle,
        BeaconRequest(
            key=key,
            body=body,
            body_too_large=too_large,
            origin=h.get("origin"),
            referer=h.get("referer"),
            dnt=h.get("dnt"),
            gpc=h.get("sec-gpc"),
            peer_ip=request.client.host if request.client else None,
            # Every X-Forwarded-For header, joined as the counter does.
            forwarded_for=", ".join(h.getlist("x-forwarded-for")) or None,
        ),
    )
    status = BEACON_STATUS[verdict.reason]
    if status == 204:
        return Response(status_code=204, headers=BEACON_HEADERS)
    return JSONResponse({"detail": verdict.detail}, status_code=status, headers=BEACON_HEADERS)
