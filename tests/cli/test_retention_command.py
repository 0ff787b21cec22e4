"""`hitmap site retention KEY`: show or set a site's retention (context injected)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app import cli
from app.retention import service
from tests.factories import make_account, make_site


@pytest.fixture
def run(ctx):
    def invoke(*args: str):
        return CliRunner().invoke(cli.main, list(args), obj=ctx)

    return invoke


def _choice(ctx, scope):
    with ctx.db.session() as session:
        return service.choice_of(session, scope)


def test_show_and_set(ctx, run):
    ctx.settings.retention_days = 400
    site = make_site(ctx, make_account(ctx))
    key = site.public_key

    shown = run("site", "retention", key)
    assert shown.exit_code == 0, shown.output
    assert "older than 400 days are deleted every night at 03:00 UTC" in shown.stdout
    assert "rule: the instance default, HITMAP_RETENTION_DAYS" in shown.stdout

    days = run("site", "retention", key, "--days", "30")
    assert days.exit_code == 0, days.output
    assert "older than 30 days" in days.stdout and "rule: its own" in days.stdout
    assert _choice(ctx, site) == 30

    forever = run("site", "retention", key, "--forever")
    assert "Visits and clicks are kept forever." in forever.stdout
    assert _choice(ctx, site) == 0

    default = run("site", "retention", key, "--default")
    assert default.exit_code == 0 and _choice(ctx, site) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "keep visits and clicks at least 1 day"),
        (["--days", "-3"], "keep visits and clicks at least 1 day"),
        (["--days", "soon"], "'soon' is not a number of days"),
        (["--days", "99999"], "at most 3650 days"),
        (["--days", "5", "--forever"], "give at most one of --days, --forever and --default"),
    ],
)
def test_bad_values_exit_2_and_change_nothing(ctx, run, args, message):
    site = make_site(ctx, make_account(ctx))
    run("site", "retention", site.public_key, "--days", "12")

    result = run("site", "retention", site.public_key, *args)

    assert result.exit_code == 2
    assert message in result.stderr
    assert _choice(ctx, site) == 12


def test_unknown_site_exits_1(run):
    result = run("site", "retention", "A" * 22, "--days", "5")
    assert result.exit_code == 1 and "no such site" in result.stderr
