"""The `hitmap` command: serve, migrate and administer a self-hosted Hitmap.

Settings come from HITMAP_* variables, as for the server. Exit codes: 0 done,
1 the request was refused (unknown site, duplicate account, ...), 2 bad usage or
bad settings. Tests pass a ready AppContext as click's ``obj`` (``main(obj=ctx)``);
otherwise commands build one from the settings.

The commands live beside this group: ``server.py`` (serve, migrate, worker),
``admin.py`` (account, site, stats), ``render.py``, with what they share in
``common.py``; backup and restore come from ``app.backup.commands``.
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.exc import OperationalError

from app import __version__
from app.backup.commands import backup_command, restore_command
from app.cli.admin import account, site, stats_command
from app.cli.render import render_command
from app.cli.server import migrate, serve, worker
from app.errors import DomainError
from app.settings import SettingsError


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


for command in (
    serve,
    migrate,
    account,
    site,
    stats_command,
    worker,
    render_command,
    backup_command,
    restore_command,
):
    main.add_command(command)
