"""Running Hitmap: ``hitmap serve``, ``hitmap migrate`` and ``hitmap worker``.

The entry point's side: the job engine (``workers/``) is imported here, inside the
commands that start it.
"""

from __future__ import annotations

import os

import click
import uvicorn
from sqlalchemy import Engine

from app import serving
from app.cli import common
from app.context import build_context
from app.db import make_engine
from app.migrate import upgrade


def _apply_job_schema(engine: Engine) -> bool:
    """On PostgreSQL, install Procrastinate's schema if missing; True when installed now."""
    from workers.procrastinate_app import apply_schema

    return apply_schema(engine)


@click.command()
@click.option("--host", help="Address to listen on. Default: HITMAP_HOST or 127.0.0.1.")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port to listen on. Default: HITMAP_PORT or 8000."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Server processes. Default: HITMAP_WORKERS or 1.",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Migrate the database, then serve the web app, counter and API."""
    settings = common.settings(host=host, port=port, workers=workers)
    settings.ensure_data_dir()
    from app.ops.logs import configure_logging
    from app.ops.metrics import use_worker_processes

    configure_logging(settings)  # text or JSON lines; each worker sets up the same
    use_worker_processes(settings)  # /metrics adds up every worker's figures
    ctx = build_context(settings)
    upgrade(ctx.db.engine)
    _apply_job_schema(ctx.db.engine)  # PostgreSQL: the job queue of `hitmap worker`
    ctx.db.engine.dispose()  # each worker process opens its own connections
    where = f"data in {settings.data_dir}"
    if settings.database_url:
        where += f", database {common.safe_url(settings.database_url)}"
    click.echo(f"Hitmap running at {settings.base_url}, {where}, {settings.workers} worker(s)")
    listen = f"http://{settings.host}:{settings.port}"
    if listen != settings.base_url:
        click.echo(f"(listening on {listen}; snippets use HITMAP_BASE_URL={settings.base_url})")
    # The workers read their settings from the environment, options included.
    os.environ.update(
        HITMAP_HOST=settings.host,
        HITMAP_PORT=str(settings.port),
        HITMAP_WORKERS=str(settings.workers),
    )
    uvicorn.run(
        "app.main:served_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        # httptools with a cap on the request head (431 past 32 KiB): app/serving.py.
        http=serving.PROTOCOL,
        loop="uvloop",
        # Visitor IPs must never reach a log: no access log, no WebSocket
        # handshake log, and no X-Forwarded-For rewriting behind the app's
        # own HITMAP_TRUSTED_PROXIES rule.
        access_log=False,
        ws="none",
        proxy_headers=False,
        server_header=False,
        # SIGTERM: stop accepting, finish requests, then the writer flushes (lifespan).
        timeout_graceful_shutdown=20,
        log_config=None,  # app.ops.logs configured logging, in this process and each worker
    )


@click.command()
def migrate() -> None:
    """Apply database migrations up to this version of Hitmap."""
    settings = common.settings()
    engine = make_engine(settings.effective_database_url)
    try:
        before = common.revision(engine)
        upgrade(engine)
        after = common.revision(engine)
        queue_installed = _apply_job_schema(engine)
    finally:
        engine.dispose()
    change = "already current" if before == after else f"was {before or 'empty'}"
    click.echo(f"database {common.safe_url(settings.effective_database_url)}: {after} ({change})")
    if queue_installed:
        click.echo("job queue (Procrastinate) schema installed")


@click.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Jobs run at once by this process. Drawing is CPU-bound (start a process per "
    "core), but a second job overlaps the database's writes: 10,000 sites on 2 cores took "
    "291 s with 2 and 331 s with 1 (bench/README.md).",
)
@click.option("--once", is_flag=True, help="Run the queued jobs, then exit (no nightly schedule).")
@click.option("--name", help="Worker name in logs and in the job table.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve this worker's Prometheus metrics (render times) on this port.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the metrics port; keep it private (no token is asked there).",
)
def worker(
    concurrency: int,
    once: bool,
    name: str | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run map jobs from the PostgreSQL job queue, and the nightly schedule.

    Start as many worker processes, on as many machines, as needed: they share the
    queue, and the nightly run (HITMAP_NIGHTLY_AT, UTC) is queued once per night
    however many run. With SQLite, `hitmap serve` runs the jobs itself.
    """
    from app.ops import metrics
    from app.ops.logs import configure_logging
    from workers.procrastinate_app import run_worker, schema_installed

    ctx = common.context()
    if ctx.db.dialect != "postgresql":
        raise click.ClickException(
            "hitmap worker needs PostgreSQL (HITMAP_DATABASE_URL); with SQLite, "
            "`hitmap serve` renders the maps itself"
        )
    if not schema_installed(ctx.db.engine):
        raise click.ClickException("the job queue is not installed; run `hitmap migrate` first")
    configure_logging(ctx.settings)
    if metrics_port is not None:
        try:
            metrics.serve_worker_metrics(metrics_host, metrics_port)
        except OSError as exc:
            raise click.ClickException(
                f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror}; "
                "pick a free port with --metrics-port"
            ) from exc
    at = ctx.settings.nightly_at
    click.echo(
        f"worker on {common.safe_url(ctx.settings.effective_database_url)}; nightly maps at "
        f"{at:%H:%M} UTC"
    )
    run_worker(ctx, concurrency=concurrency, once=once, name=name, schedule=not once)
