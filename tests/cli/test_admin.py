"""`hitmap account`, `hitmap site` and `hitmap stats` on the test database (context injected)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app import cli
from app.accounts import service as accounts
from app.cli import common
from app.sites import authz
from app.sites import service as sites
from tests.api.helpers import bearer, token_for
from tests.factories import DEFAULT_PASSWORD, hit, make_account, make_site

LONDON, MILTON = "81.2.69.142", "216.160.83.56"


@pytest.fixture
def run(ctx):
    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(cli.main, list(args), obj=ctx, input=input)

    return invoke


def _can_log_in(ctx, email: str, password: str) -> bool:
    try:
        accounts.authenticate(
            ctx.db,
            ctx.clock,
            ctx.login_policy,
            ctx.secret,
            email=email,
            password=password,
            client_ip="127.0.0.1",
        )
    except Exception:
        return False
    return True


# --- account create -----------------------------------------------------------


def test_account_create_reads_the_password_from_stdin(ctx, run):
    result = run("account", "create", "Admin@Example.org", input=f"{DEFAULT_PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert "created account admin@example.org" in result.stdout
    assert DEFAULT_PASSWORD not in result.output
    assert _can_log_in(ctx, "admin@example.org", DEFAULT_PASSWORD)


def test_account_create_with_password_stdin_flag_keeps_inner_spaces(ctx, run):
    password = "  spaced out password  "
    result = run("account", "create", "a@example.org", "--password-stdin", input=password + "\r\n")
    assert result.exit_code == 0, result.output
    assert _can_log_in(ctx, "a@example.org", password)


def test_account_create_prompts_twice_on_a_terminal(ctx, run, monkeypatch):
    monkeypatch.setattr(common, "interactive", lambda: True)
    result = run("account", "create", "b@example.org", input=f"{DEFAULT_PASSWORD}\n" * 2)
    assert result.exit_code == 0, result.output
    assert "Repeat the password" in result.output
    assert DEFAULT_PASSWORD not in result.output
    assert _can_log_in(ctx, "b@example.org", DEFAULT_PASSWORD)


def test_duplicate_email_exits_1(ctx, run):
    make_account(ctx, "taken@example.org")
    result = run("account", "create", "TAKEN@example.org", input=f"{DEFAULT_PASSWORD}\n")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("c@example.org", "short\n", "at least"),
        ("not-an-email", f"{DEFAULT_PASSWORD}\n", "valid email"),
        ("d@example.org", "", "no password on standard input"),
    ],
)
def test_bad_account_input_exits_1(ctx, run, email, password, message):
    result = run("account", "create", email, input=password)
    assert result.exit_code == 1
    assert message in result.stderr


# --- site add -----------------------------------------------------------------


def test_site_add_prints_the_key_and_the_snippet(ctx, run):
    owner = make_account(ctx, "owner@example.org")
    result = run("site", "add", "--owner", "owner@example.org", "--domain", "blog.example.org")

    assert result.exit_code == 0, result.output
    (key,) = [
        line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("key: ")
    ]
    with ctx.db.session() as session:
        (scope,) = authz.owned_sites(session, owner.id)
    assert key == scope.public_key and scope.domain == "blog.example.org"
    lines = result.stdout.splitlines()
    assert f'<img src="http://hitmap.test/c/{key}.png"' in result.stdout
    assert any(line.startswith("<a href=") and line.endswith("</a>") for line in lines)
    assert f'<script async src="http://hitmap.test/w.js" data-site="{key}"></script>' in lines


def test_site_add_with_name(ctx, run):
    owner = make_account(ctx)
    result = run("site", "add", "--owner", owner.email, "--domain", "x.example.org", "--name", "X")
    assert result.exit_code == 0, result.output
    with ctx.db.session() as session:
        (scope,) = authz.owned_sites(session, owner.id)
    assert scope.name == "X"


def test_the_command_line_refuses_control_characters_too(ctx, run):
    owner = make_account(ctx)
    result = run(
        "site", "add", "--owner", owner.email, "--domain", "x.example.org", "--name", "evil\x1b[31m"
    )
    assert result.exit_code == 1
    assert "control character (U+001B)" in result.output
    with ctx.db.session() as session:
        assert authz.owned_sites(session, owner.id) == []
    created = run("account", "create", "new\x00@example.org", input="a long enough password\n" * 2)
    assert created.exit_code == 1 and "control character (U+0000)" in created.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--owner", "nobody@example.org", "--domain", "a.example.org"], "no account"),
        (["--owner", "OWNER", "--domain", "not a domain"], "not a valid domain"),
    ],
)
def test_site_add_errors_exit_1(ctx, run, args, message):
    owner = make_account(ctx)
    args = [owner.email if a == "OWNER" else a for a in args]
    result = run("site", "add", *args)
    assert result.exit_code == 1
    assert message in result.stderr


def test_site_add_needs_owner_and_domain(run):
    result = run("site", "add", "--domain", "a.example.org")
    assert result.exit_code == 2
    assert "--owner" in result.stderr


# --- stats --------------------------------------------------------------------


@pytest.fixture
def visited(ctx, client, clock):
    """A site with two visits on 2026-11-22 (GB, US) and one on 2026-11-23 (GB)."""
    account = make_account(ctx)
    site = make_site(ctx, account, name="Blog")
    hit(client, site.public_key, ip=LONDON)
    hit(client, site.public_key, ip=MILTON)
    hit(client, site.public_key, ip=MILTON, ua="Googlebot/2.1")
    clock.advance(days=1)
    hit(client, site.public_key, ip=LONDON)
    return account, site


def test_stats_text(run, visited):
    _account, site = visited
    result = run("stats", site.public_key, "--from", "2026-11-21", "--to", "2026-11-23")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Blog (blog.example.org), key {site.public_key}" in out
    assert "2026-11-21 to 2026-11-23: 3 visits; all time: 3" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["2026-11-21", "0"] in lines
    assert ["2026-11-22", "2"] in lines
    assert ["2026-11-23", "1"] in lines
    assert ["GB", "United", "Kingdom", "2"] in lines
    assert ["US", "United", "States", "1"] in lines
    assert "Bot" in out or "bot" in out


def test_stats_json_is_the_api_answer(ctx, client, run, visited):
    account, site = visited
    params = {"from": "2026-11-21", "to": "2026-11-23"}
    result = run("stats", site.public_key, "--json", "--from", "2026-11-21", "--to", "2026-11-23")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 3 and data["all_time"] == 3
    assert data["per_day"][1:] == [
        {"date": "2026-11-22", "visits": 2},
        {"date": "2026-11-23", "visits": 1},
    ]
    assert data["countries"][0] == {"code": "GB", "name": "United Kingdom", "visits": 2}
    api = client.get(
        f"/api/v1/sites/{site.public_key}/stats",
        params=params,
        headers=bearer(token_for(ctx, account)),
    )
    assert data == api.json()


def test_stats_default_range_is_30_days_to_today(run, visited):
    _account, site = visited  # the clock now stands on 2026-11-23
    result = run("stats", site.public_key, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads(result.stdout)
    assert (data["from"], data["to"], len(data["per_day"])) == ("2026-10-25", "2026-11-23", 30)


def test_stats_takes_a_key_that_starts_with_a_dash(ctx, run, monkeypatch):
    monkeypatch.setattr(sites, "new_site_key", lambda: "-hJx0123456789abcdefgh")
    site = make_site(ctx, make_account(ctx))
    assert site.public_key.startswith("-h")
    for args in [(site.public_key, "--json"), ("--json", site.public_key)]:
        result = run("stats", *args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["site"]["key"] == site.public_key


def test_stats_reads_any_accounts_site(ctx, run):
    site = make_site(ctx, make_account(ctx))  # the operator owns no account here
    assert run("stats", site.public_key).exit_code == 0


@pytest.mark.parametrize("key", ["A" * 22, "not-a-key"])
def test_stats_unknown_key_exits_1(run, key):
    result = run("stats", key)
    assert result.exit_code == 1
    assert "no such site" in result.stderr


def test_stats_from_after_to_exits_1(ctx, run):
    site = make_site(ctx, make_account(ctx))
    result = run("stats", site.public_key, "--from", "2026-11-22", "--to", "2026-11-01")
    assert result.exit_code == 1
    assert "after the end date" in result.stderr


def test_stats_bad_date_is_a_usage_error(ctx, run):
    site = make_site(ctx, make_account(ctx))
    result = run("stats", site.public_key, "--from", "22.11.2026")
    assert result.exit_code == 2
    assert "--from" in result.stderr
