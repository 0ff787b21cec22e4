"""retention: per-site days of raw visits and clicks kept, and the nightly claim

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no constraint): on SQLite a batch rebuild of
    # ``sites`` would drop the table, and its ON DELETE CASCADE children with it.
    op.add_column("sites", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "retention_runs",
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("started_at", app.models.UTCDateTime(), nullable=False),
        sa.Column("finished_at", app.models.UTCDateTime(), nullable=True),
        sa.Column("sites", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("night", name=op.f("pk_retention_runs")),
    )


def downgrade() -> None:
    op.drop_table("retention_runs")
    # Native DROP COLUMN (SQLite 3.35+), not a batch rebuild, for the reason above.
    op.drop_column("sites", "retention_days")
