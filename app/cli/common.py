"""What every command of ``hitmap`` shares: the settings, the context, the database URL shown."""

from __future__ import annotations

import sys

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from app.context import AppContext, build_context
from app.migrate import is_current
from app.settings import Settings, load_settings

DATE = click.DateTime(formats=["%Y-%m-%d"])


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def settings(**overrides: object) -> Settings:
    loaded = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    if loaded.database_url is None:
        loaded.ensure_data_dir()  # the SQLite file lives there
    return loaded


def context() -> AppContext:
    """The injected context (tests) or one built from the settings, on a migrated database."""
    root = click.get_current_context().find_root()
    if isinstance(root.obj, AppContext):
        return root.obj
    ctx = build_context(settings())
    if not is_current(ctx.db.engine):
        raise click.ClickException(
            f"the database {safe_url(ctx.settings.effective_database_url)} is not migrated "
            "to this version of Hitmap; run `hitmap migrate` first"
        )
    root.obj = ctx
    return ctx


def interactive() -> bool:
    return sys.stdin.isatty()


def revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ", ".join(heads) or None
