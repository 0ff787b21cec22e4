"""The operator's commands: ``hitmap account``, ``hitmap site`` and ``hitmap stats``."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from app.accounts import service as accounts
from app.cli import common
from app.clock import utc_today
from app.errors import DomainError
from app.inputs import check_day
from app.retention import service as retention
from app.sites import authz
from app.sites import service as sites
from app.stats import service as stats


@click.group()
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
    if password_stdin or not common.interactive():
        line = sys.stdin.readline()
        if not line.strip():
            raise click.ClickException("no password on standard input")
        password = line.rstrip("\r\n")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt="Repeat the password"
        )
    ctx = common.context()
    with ctx.db.session() as session:
        created = accounts.sign_up(session, ctx.clock, email, password)
    click.echo(f"created account {created.email}")


@click.group()
def site() -> None:
    """Manage sites."""


@site.command("add")
@click.option("--owner", required=True, metavar="EMAIL", help="Email of the owning account.")
@click.option("--domain", required=True, help="The site's host name, e.g. blog.example.org.")
@click.option("--name", help="Display name. Default: the domain.")
def site_add(owner: str, domain: str, name: str | None) -> None:
    """Register a site and print its key and the snippet to paste."""
    ctx = common.context()
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
    ctx = common.context()
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
@click.command("stats", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API's stats answer.")
@click.option(
    "--from",
    "start",
    type=common.DATE,
    metavar="YYYY-MM-DD",
    help="First day. Default: --to - 29 days.",
)
@click.option(
    "--to", "end", type=common.DATE, metavar="YYYY-MM-DD", help="Last day (UTC). Default: today."
)
def stats_command(
    key: str, as_json: bool, start: dt.datetime | None, end: dt.datetime | None
) -> None:
    """Visits of the site with KEY: totals, per day and per country.

    An operator's command: it reads any site, whoever owns it.
    """
    from app.api.schemas import StatsOut

    ctx = common.context()
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
