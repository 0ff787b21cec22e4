"""The `hitmap` command: serve, migrate and administer a self-hosted Hitmap.

Settings come from HITMAP_* variables, as for the server. Exit codes: 0 done,
1 the request was refused (unknown site, duplicate account, ...), 2 bad usage or
bad settings. Tests pass a ready AppContext as click's ``obj`` (``main(obj=ctx)``);
otherwise commands build one from the settings.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

import click
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app import __version__, serving
from app.accounts import service as accounts
from app.backup.commands import backup_command, restore_command
from app.clock import utc_today
from app.context import AppContext, build_context
from app.db import make_engine
from app.errors import DomainError
from app.inputs import check_day
from app.migrate import is_current, upgrade
from app.retention import service as retention
from app.settings import Settings, SettingsError, load_settings
from app.sites import authz
from app.sites import service as sites
from app.stats import service as stats

DATE = click.DateTime(formats=["%Y-%m-%d"])


class ConfigError(click.ClickException):
    """A bad HITMAP_* setting: the message says how to fix it."""

    exit_code = 2


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from exc
        except DomainError as exc:
            raise click.ClickException(exc.message) from exc
        except OperationalError as exc:
            first = str(exc.orig or exc).strip().splitlines()[0]
            raise click.ClickException(f"cannot use the database: {first}") from exc


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _settings(**overrides: object) -> Settings:
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    if settings.database_url is None:
        settings.ensure_data_dir()  # the SQLite file lives there
    return settings


def _context() -> AppContext:
    """The injected context (tests) or one built from the settings, on a migrated database."""
    root = click.get_current_context().find_root()
    if isinstance(root.obj, AppContext):
        return root.obj
    ctx = build_context(_settings())
    if not is_current(ctx.db.engine):
        raise click.ClickException(
            f"the database {_safe_url(ctx.settings.effective_database_url)} is not migrated "
            "to this version of Hitmap; run `hitmap migrate` first"
        )
    root.obj = ctx
    return ctx


def _interactive() -> bool:
    return sys.stdin.isatty()


def _revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ", ".join(heads) or None


@click.group("hitmap", cls=_Cli)
@click.version_option(__version__, prog_name="hitmap")
def main() -> None:
    """Hitmap: visitor maps for websites.

    Settings are HITMAP_* environment variables (HITMAP_DATA_DIR,
    HITMAP_DATABASE_URL, HITMAP_BASE_URL, ...). The default needs no server:
    SQLite and the secret key in ./hitmap-data, and the bundled GeoIP database.
    """
    from workers.procrastinate_app import install as install_job_queue

    install_job_queue()  # app.jobs defers through Procrastinate where its tables exist


@main.command()
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
    settings = _settings(host=host, port=port, workers=workers)
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
        where += f", database {_safe_url(settings.database_url)}"
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


@main.command()
def migrate() -> None:
    """Apply database migrations up to this version of Hitmap."""
    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    try:
        before = _revision(engine)
        upgrade(engine)
        after = _revision(engine)
        queue_installed = _apply_job_schema(engine)
    finally:
        engine.dispose()
    change = "already current" if before == after else f"was {before or 'empty'}"
    click.echo(f"database {_safe_url(settings.effective_database_url)}: {after} ({change})")
    if queue_installed:
        click.echo("job queue (Procrastinate) schema installed")


@main.group()
def account() -> None:
    """Manage accounts."""


@account.command("create")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input "
    "(automatic when standard input is not a terminal).",
)
def account_create(email: str, password_stdin: bool) -> None:
    """Create an account that can log in with EMAIL.

    The password is asked for twice, hidden, or read from standard input.
    """
    email = accounts.normalize_email(email)
    if password_stdin or not _interactive():
        line = sys.stdin.readline()
        if not line.strip():
            raise click.ClickException("no password on standard input")
        password = line.rstrip("\r\n")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt="Repeat the password"
        )
    ctx = _context()
    with ctx.db.session() as session:
        created = accounts.sign_up(session, ctx.clock, email, password)
    click.echo(f"created account {created.email}")


@main.group()
def site() -> None:
    """Manage sites."""


@site.command("add")
@click.option("--owner", required=True, metavar="EMAIL", help="Email of the owning account.")
@click.option("--domain", required=True, help="The site's host name, e.g. blog.example.org.")
@click.option("--name", help="Display name. Default: the domain.")
def site_add(owner: str, domain: str, name: str | None) -> None:
    """Register a site and print its key and the snippet to paste."""
    ctx = _context()
    with ctx.db.session() as session:
        owner_account = accounts.find_account(session, owner)
        scope = sites.create_site(
            session, ctx.clock, account_id=owner_account.id, domain=domain, name=name
        )
    snippet = sites.snippet(ctx.settings.base_url, scope)
    click.echo(f"site {scope.name} ({scope.domain}) for {owner_account.email}")
    click.echo(f"key: {scope.public_key}")
    click.echo("snippet, to paste into every page:")
    click.echo(snippet.counter_html)
    click.echo(snippet.script_html)


@site.command("retention", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.option("--days", metavar="N", help="Delete its visits and clicks older than N days.")
@click.option("--forever", is_flag=True, help="Keep its visits and clicks forever.")
@click.option("--default", "use_default", is_flag=True, help="Follow HITMAP_RETENTION_DAYS.")
def site_retention(key: str, days: str | None, forever: bool, use_default: bool) -> None:
    """Show, or set, how long the site with KEY keeps raw visits and clicks.

    The nightly run (HITMAP_NIGHTLY_AT) deletes older ones; totals, per-day and
    per-country counts and maps are kept. Without an option, prints the current rule.
    """
    given = [days is not None, forever, use_default]
    if sum(given) > 1:
        raise click.UsageError("give at most one of --days, --forever and --default")
    if days is not None:
        try:
            chosen: int | None = retention.parse_days(days)
        except DomainError as exc:
            raise click.BadParameter(exc.message, param_hint="--days") from exc
    else:
        chosen = retention.FOREVER if forever else None
    ctx = _context()
    with ctx.db.session() as session:
        scope = authz.site_for_admin(session, key)
        if any(given):
            retention.set_choice(session, scope, chosen)
        choice = retention.choice_of(session, scope)
    kept = retention.effective_days(choice, ctx.settings.retention_days)
    source = "the instance default, HITMAP_RETENTION_DAYS" if choice is None else "its own"
    rule = retention.describe(kept, ctx.settings.nightly_at)
    click.echo(f"{scope.name} ({scope.domain}): {rule} (rule: {source})")


# Site keys may start with "-": with no short options, such a KEY is not taken for one.
@main.command("stats", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API's stats answer.")
@click.option(
    "--from", "start", type=DATE, metavar="YYYY-MM-DD", help="First day. Default: --to - 29 days."
)
@click.option(
    "--to", "end", type=DATE, metavar="YYYY-MM-DD", help="Last day (UTC). Default: today."
)
def stats_command(
    key: str, as_json: bool, start: dt.datetime | None, end: dt.datetime | None
) -> None:
    """Visits of the site with KEY: totals, per day and per country.

    An operator's command: it reads any site, whoever owns it.
    """
    from app.api.schemas import StatsOut

    ctx = _context()
    last = check_day(end.date(), "--to") if end else utc_today(ctx.clock)
    first = check_day(start.date(), "--from") if start else last - dt.timedelta(days=29)
    with ctx.db.session() as session:
        scope = authz.site_for_admin(session, key)
        report = stats.report(session, scope, first, last)
    if as_json:
        data = StatsOut.of(scope, report, ctx.settings.base_url).to_json_dict()
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"{scope.name} ({scope.domain}), key {scope.public_key}")
    click.echo(f"{first} to {last}: {report.total} visits; all time: {report.all_time}")
    click.echo("\ndate        visits")
    for day, visits in report.per_day:
        click.echo(f"{day}  {visits:>6}")
    click.echo("\ncountry                         visits")
    for c in report.countries:
        click.echo(f"{c.code:<3} {c.name[:26]:<26}  {c.visits:>6}")
    if not report.countries:
        click.echo("(none)")
    if report.dropped:
        click.echo("\nnot counted                     hits")
        for d in report.dropped:
            click.echo(f"{d.label[:30]:<30}  {d.hits:>6}")


# --- maps: job worker and on-demand rendering (app/maps, workers/) ---------------------


def _apply_job_schema(engine: Engine) -> bool:
    """On PostgreSQL, install Procrastinate's schema if missing; True when installed now."""
    from workers.procrastinate_app import apply_schema

    return apply_schema(engine)


@main.command()
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

    ctx = _context()
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
        f"worker on {_safe_url(ctx.settings.effective_database_url)}; nightly maps at "
        f"{at:%H:%M} UTC"
    )
    run_worker(ctx, concurrency=concurrency, once=once, name=name, schedule=not once)


@main.command("render")
@click.option("--site", "key", metavar="KEY", help="The site to render.")
@click.option("--all", "all_sites", is_flag=True, help="Render every site.")
@click.option(
    "--range",
    "spans",
    multiple=True,
    type=click.Choice(["24h", "7d", "30d", "365d", "all"]),
    help="Only this map range (repeatable); also skips the thumbnail. Default: the "
    "thumbnail and all five ranges.",
)
@click.option("--force", is_flag=True, help="Redraw even images whose visits did not change.")
def render_command(key: str | None, all_sites: bool, spans: tuple[str, ...], force: bool) -> None:
    """Render counter thumbnails and world maps now, in this process.

    Images whose input did not change since their last render are skipped unless
    --force is given. Exit code 1 when a site is unknown or a render failed.
    """
    from app.maps import repository as map_repo
    from app.maps.service import SPANS
    from app.maps.tasks import render_site_job

    if bool(key) == all_sites:
        raise click.UsageError("give either --site KEY or --all")
    ctx = _context()
    with ctx.db.session() as session:
        if key:
            site_ids = [authz.site_for_admin(session, key).site_id]
        else:
            site_ids = map_repo.all_site_ids(session)
    wanted = list(spans) or [s.value for s in SPANS]
    counts = {"rendered": 0, "unchanged": 0, "discarded": 0}
    images = failed = 0
    with click.progressbar(site_ids, label="Rendering", show_pos=True, file=sys.stderr) as bar:
        for site_id in bar:
            try:
                result = render_site_job(
                    ctx, site_id, spans=wanted, thumbnail=not spans, force=force
                )
            except Exception as exc:  # one bad site must not stop the others
                failed += 1
                click.echo(f"\nsite {site_id}: render failed: {exc}", err=True)
                continue
            counts[result.status] += 1
            images += result.rendered
    click.echo(
        f"{len(site_ids)} site{'' if len(site_ids) == 1 else 's'}: "
        f"{counts['rendered']} redrawn ({images} images), "
        f"{counts['unchanged']} unchanged, {counts['discarded']} gone, {failed} failed"
    )
    if failed:
        sys.exit(1)


# --- backup and restore (app/backup) ---------------------------------------------------

main.add_command(backup_command)
main.add_command(restore_command)
