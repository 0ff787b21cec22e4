"""The migration history is one line: a second head would make `hitmap migrate` ambiguous."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from app.migrate import alembic_config


def test_migrations_have_a_single_head():
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"several migration heads {heads}: set down_revision to merge them"


def test_migrated_database_is_current(engine):
    from app.migrate import is_current

    assert is_current(engine)
