"""The FastAPI application: routers, the one domain-error handler, security headers."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from app import __version__
from app.context import AppContext
from app.deps import CSRF_COOKIE, LoginRequired
from app.errors import DomainError
from app.ops import metrics

log = logging.getLogger("hitmap")
STATIC_DIR = Path(__file__).parent / "static"


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get(
        "accept", ""
    )


def _error_response(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    from app.templating import render

    return render(request, "error.html", {"status": status, "message": message}, status)


@asynccontextmanager
async def _background(app: FastAPI) -> AsyncIterator[None]:
    """The hit writer's threads and the periodic jobs; on shutdown (SIGTERM) the
    writer commits, or spools, every hit still pending before the process exits."""
    from workers.housekeeping import run_forever
    from workers.scheduler import run_forever as run_nightly_maps

    ctx: AppContext = app.state.ctx
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, ctx.warm_up)
    except SQLAlchemyError:
        log.warning("database unavailable at start-up: sites are looked up on first hit")
    # Everything loaded so far lives as long as the process: keep the cyclic garbage
    # collector from walking it again and again under load (pauses show in the p99).
    gc.collect()
    gc.freeze()
    writer = ctx.ingest.writer
    if ctx.db.dialect == "postgresql":
        writer.start_on_loop(ctx.db.psycopg_conninfo())
    else:
        writer.start()
    task = asyncio.create_task(run_forever(ctx))
    maps_task = asyncio.create_task(run_nightly_maps(ctx))  # SQLite only
    lag_task = asyncio.create_task(ctx.ingest.loop_lag.run())  # the load shedder's gauge
    # Deleted sites and changed hostnames, from the change log every process polls.
    sites_task = asyncio.create_task(ctx.site_directory.watch())
    log.info("worker ready", extra={"event": "worker_ready", "database": ctx.db.dialect})
    try:
        yield
    finally:
        for running in (task, maps_task, lag_task, sites_task):
            running.cancel()
            with suppress(asyncio.CancelledError):
                await running
        if ctx.db.dialect == "postgresql":
            await writer.stop_on_loop()
        else:
            await loop.run_in_executor(None, writer.stop)
        metrics.process_exit()
        log.info("worker stopped", extra={"event": "worker_stopped"})


def create_app(ctx: AppContext, *, background_jobs: bool = False) -> FastAPI:
    """The web app. ``background_jobs`` runs the hit writer's threads and the periodic
    jobs in this process (``hitmap serve`` does; tests drive them themselves, and
    without the writer thread every hit is written before its answer)."""
    app = FastAPI(
        lifespan=_background if background_jobs else None,
        title="Hitmap",
        version=__version__,
        description="Visitor maps and click heatmaps. The JSON API lives under /api/v1 and "
        "takes a per-account bearer token (create one on your account page).",
        docs_url=None,  # app.api.docs serves /docs with local Swagger UI files
        redoc_url=None,
        redirect_slashes=False,  # app.redirects answers with relative URLs instead
    )
    app.state.ctx = ctx
    from workers.procrastinate_app import install as install_job_queue

    install_job_queue()  # app.jobs defers through Procrastinate where its tables exist

    _include_routers(app)
    _handle_errors(app)
    _add_headers(app, ctx)

    from app.ingest.routes import CounterEndpoint
    from app.ops.routes import OpsEndpoint
    from app.redirects import RelativeSlashRedirect

    app.add_middleware(RelativeSlashRedirect, router=app.router)
    # Outermost of our middleware: the counter skips routing and the HTML headers.
    app.add_middleware(CounterEndpoint, ingest=ctx.ingest)
    # Probes and scrapes too (no session, no CSRF, never a visit).
    app.add_middleware(OpsEndpoint, ctx=ctx)
    return app


def _include_routers(app: FastAPI) -> None:
    """Every feature's routes, in the order they are matched, and the static files."""
    from app.accounts.routes import router as accounts_router
    from app.api.routes import router as api_router
    from app.heatmaps.routes import router as heatmaps_router
    from app.ingest.routes import router as ingest_router
    from app.maps.routes import router as maps_router
    from app.publicmap.routes import router as publicmap_router
    from app.sites.routes import router as sites_router
    from app.stats.routes import router as stats_router

    for router in (
        ingest_router,
        accounts_router,
        sites_router,
        stats_router,
        publicmap_router,
        maps_router,
        heatmaps_router,
        api_router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _handle_errors(app: FastAPI) -> None:
    """One answer per kind of error: an HTML page, or JSON under ``/api/``."""

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.message}, status_code=401)
        return RedirectResponse(exc.login_url, status_code=303)

    @app.exception_handler(DomainError)
    async def _domain_error(request: Request, exc: DomainError) -> Response:
        return _error_response(request, exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            message = "Not found"
        response = _error_response(request, exc.status_code, message)
        response.headers.update(exc.headers or {})  # WWW-Authenticate, Allow, …
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/"):
            # Where, what and why; never the input itself, which may be anything the
            # client sent: a lone surrogate (no UTF-8 encoder takes it: a 500), or megabytes.
            errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
            return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "input"
        return _error_response(request, 400, f"{field}: {first.get('msg', 'invalid')}")


def _add_headers(app: FastAPI, ctx: AppContext) -> None:
    """A new CSRF cookie when a request made one, and the security headers of HTML pages."""

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        new_csrf = getattr(request.state, "new_csrf", None)
        if new_csrf:
            response.set_cookie(
                CSRF_COOKIE,
                new_csrf,
                httponly=True,
                samesite="lax",
                secure=ctx.settings.secure_cookies,
                path="/",
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
            )
        return response


def served_app() -> ASGIApp:
    """What each `hitmap serve` worker process runs, built from the HITMAP_* environment.

    The counter endpoint wraps the whole FastAPI app here, so its requests skip even
    FastAPI's outermost middleware; ``create_app`` also mounts it, for tests.
    """
    from app.context import build_context
    from app.ingest.routes import CounterEndpoint
    from app.ops.logs import configure_logging
    from app.settings import load_settings

    settings = load_settings()
    configure_logging(settings)
    ctx = build_context(settings)
    return CounterEndpoint(create_app(ctx, background_jobs=True), ctx.ingest)
