"""Operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

:class:`OpsEndpoint` is plain ASGI in front of FastAPI, as the counter is: probes
and scrapes skip routing, sessions, CSRF and the HTML middleware, and are never
visits. ``/healthz`` says the process answers (no database); ``/readyz`` answers
200 only when the checks of :mod:`app.ops.service` pass, else 503 with what failed
and how to fix it. ``/metrics`` holds no per-site or per-visitor figure; it asks
for ``HITMAP_METRICS_TOKEN`` as a bearer token when one is set, and otherwise
answers only direct requests from this machine (loopback, not via a proxy).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__
from app.context import AppContext
from app.ops import metrics
from app.ops.service import ReadinessService
from app.ops.spool_stats import SpoolStats

PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
NO_STORE = {"Cache-Control": "no-store"}
# A request carrying one of these came through a proxy on someone else's behalf.
FORWARDED = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


class OpsEndpoint:
    """ASGI middleware that answers the three operations paths and passes the rest on."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.readiness = ReadinessService(ctx.db, ctx.geo)
        self.spool = SpoolStats(ctx.settings.spool_dir)
        self.token = ctx.settings.metrics_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = JSONResponse(
                {"detail": "method not allowed"}, 405, {"Allow": "GET, HEAD", **NO_STORE}
            )
        elif scope["path"] == "/healthz":
            response = JSONResponse({"status": "ok", "version": __version__}, headers=NO_STORE)
        elif scope["path"] == "/readyz":
            readiness = await self.readiness.check()
            response = JSONResponse(
                readiness.as_json(), 200 if readiness.ready else 503, headers=NO_STORE
            )
        else:
            response = await self._metrics(scope)
        await response(scope, receive, send)

    async def _metrics(self, scope: Scope) -> Response:
        refused = self._refusal(scope)
        if refused is not None:
            return refused
        loop = asyncio.get_running_loop()
        body, content_type = await loop.run_in_executor(None, metrics.exposition, self.spool)
        return Response(body, headers={"Content-Type": content_type, **NO_STORE})

    def _refusal(self, scope: Scope) -> Response | None:
        headers = dict(scope["headers"])
        if self.token is not None:
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(
                given.strip(), self.token.encode()
            ):
                return None
            return JSONResponse(
                {"detail": "give HITMAP_METRICS_TOKEN as 'Authorization: Bearer <token>'"},
                401,
                {"WWW-Authenticate": 'Bearer realm="hitmap metrics"', **NO_STORE},
            )
        if _is_local(scope) and not FORWARDED.intersection(headers):
            return None
        return JSONResponse(
            {
                "detail": "metrics answer only direct requests from this machine; set "
                "HITMAP_METRICS_TOKEN to scrape from elsewhere with a bearer token"
            },
            403,
            NO_STORE,
        )


def _is_local(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False
