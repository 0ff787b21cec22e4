"""`hitmap serve` and `hitmap migrate` from settings alone, on a fresh SQLite data dir."""

from __future__ import annotations

import importlib
import json

import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from app import cli
from tests.conftest import TEST_GEOIP
from tests.factories import DEFAULT_PASSWORD, hit

COMMANDS = [
    [],
    ["serve"],
    ["migrate"],
    ["account"],
    ["account", "create"],
    ["site"],
    ["site", "add"],
    ["stats"],
    ["site", "retention"],
    ["backup"],
    ["restore"],
]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """Settings from the environment only, as a self-hoster runs the command."""
    for name in ("HITMAP_DATABASE_URL", "HITMAP_SECRET_KEY", "HITMAP_BASE_URL", "HITMAP_PORT"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "data"
    monkeypatch.setenv("HITMAP_DATA_DIR", str(path))
    return path


def _run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.main, list(args), input=input)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "hitmap")
def test_every_command_has_help(args):
    result = _run(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_migrate_creates_the_tables_in_a_fresh_sqlite_file(data_dir):
    result = _run("migrate")

    assert result.exit_code == 0, result.output
    assert "was empty" in result.stdout
    engine = create_engine(f"sqlite:///{data_dir / 'hitmap.sqlite3'}")
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"alembic_version", "accounts", "sites", "visits", "api_tokens"} <= tables
    again = _run("migrate")
    assert again.exit_code == 0 and "already current" in again.stdout


def test_admin_commands_ask_for_migrate_on_a_fresh_database(data_dir):
    result = _run("account", "create", "a@example.org", input=f"{DEFAULT_PASSWORD}\n")
    assert result.exit_code == 1
    assert "run `hitmap migrate` first" in result.stderr


@pytest.mark.parametrize("args", [["serve"], ["migrate"], ["stats", "A" * 22]])
def test_bad_setting_exits_2_with_the_fix(data_dir, monkeypatch, args):
    monkeypatch.setenv("HITMAP_BASE_URL", "ftp://x")
    result = _run(*args)
    assert result.exit_code == 2
    assert "HITMAP_BASE_URL must start with http:// or https://" in result.stderr
    assert "Traceback" not in result.output


def test_missing_geoip_file_exits_2(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HITMAP_GEOIP_PATH", str(tmp_path / "missing.mmdb"))
    result = _run("serve")
    assert result.exit_code == 2
    assert "set HITMAP_GEOIP_PATH" in result.stderr


@pytest.fixture
def served(data_dir, monkeypatch):
    """Run `hitmap serve` with uvicorn.run replaced: returns (app, uvicorn options, output)."""
    captured: dict = {}

    def fake_run(app, **options):
        captured.update(app=app, options=options)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    _restore_serve_environment(monkeypatch)
    monkeypatch.setenv("HITMAP_GEOIP_PATH", str(TEST_GEOIP))
    monkeypatch.setenv("HITMAP_TRUSTED_PROXIES", "127.0.0.1")
    result = _run("serve", "--port", "8765")
    assert result.exit_code == 0, result.output
    # Each worker process builds the app from the environment, as here.
    assert captured["options"]["factory"] is True
    module, name = captured["app"].split(":")
    app = getattr(importlib.import_module(module), name)()
    return app, captured["options"], result.stdout


def _restore_serve_environment(monkeypatch) -> None:
    """`serve` exports its options for the worker processes; undo that after the test."""
    for name in ("HITMAP_HOST", "HITMAP_PORT", "HITMAP_WORKERS"):
        monkeypatch.delenv(name, raising=False)


def test_serve_migrates_and_runs_without_a_server_or_access_log(data_dir, served):
    app, options, output = served

    assert (data_dir / "hitmap.sqlite3").is_file() and (data_dir / "secret_key").is_file()
    assert f"Hitmap running at http://127.0.0.1:8000, data in {data_dir}" in output
    assert options["host"] == "127.0.0.1" and options["port"] == 8765
    assert options["access_log"] is False  # the log would hold visitor IPs
    assert options["proxy_headers"] is False  # HITMAP_TRUSTED_PROXIES decides, not uvicorn
    assert options["ws"] == "none"
    assert options["workers"] == 1 and options["http"] == "app.serving:HeadCappedHttpToolsProtocol"
    with TestClient(app) as client:
        assert client.get("/", headers={"accept": "text/html"}).status_code == 200
        assert client.get("/docs").status_code == 200
        assert client.get(f"/c/{'A' * 22}.png").status_code == 404  # tables exist


def test_serve_app_and_cli_share_the_data(served):
    app, _options, _output = served
    assert _run("account", "create", "op@example.org", input=f"{DEFAULT_PASSWORD}\n").exit_code == 0
    added = _run("site", "add", "--owner", "op@example.org", "--domain", "blog.example.org")
    assert added.exit_code == 0, added.output
    (key,) = [line[5:] for line in added.stdout.splitlines() if line.startswith("key: ")]

    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        assert hit(client, key, ip="81.2.69.142").status_code == 200

    stats = _run("stats", key, "--json")
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.stdout)
    assert data["total"] == 1
    assert data["countries"] == [{"code": "GB", "name": "United Kingdom", "visits": 1}]


def test_serve_host_and_port_come_from_settings(data_dir, monkeypatch):
    captured: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: captured.update(options))
    _restore_serve_environment(monkeypatch)
    monkeypatch.setenv("HITMAP_PORT", "9123")
    monkeypatch.setenv("HITMAP_BASE_URL", "https://hits.example.com")
    result = _run("serve", "--host", "127.0.0.2")
    assert result.exit_code == 0, result.output
    assert (captured["host"], captured["port"]) == ("127.0.0.2", 9123)
    assert "Hitmap running at https://hits.example.com" in result.stdout


@pytest.mark.parametrize("option", ["--to", "--from"])
def test_stats_refuse_a_day_the_date_arithmetic_cannot_hold(data_dir, option):
    assert _run("migrate").exit_code == 0
    assert _run("account", "create", "op@example.org", input=f"{DEFAULT_PASSWORD}\n").exit_code == 0
    added = _run("site", "add", "--owner", "op@example.org", "--domain", "blog.example.org")
    (key,) = [line[5:] for line in added.stdout.splitlines() if line.startswith("key: ")]

    result = _run("stats", key, option, "0001-01-01")

    assert result.exit_code == 1
    assert f"{option}: use a day from 2000-01-01 to 9998-12-31" in result.output
