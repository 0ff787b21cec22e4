"""ingest under load: ids of applied spool records (exactly-once replay)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applied_spool_records",
        sa.Column("record_id", sa.String(length=32), nullable=False),
        sa.Column("applied_at", app.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_applied_spool_records")),
    )
    op.create_index(
        op.f("ix_applied_spool_records_applied_at"),
        "applied_spool_records",
        ["applied_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_applied_spool_records_applied_at"), table_name="applied_spool_records")
    op.drop_table("applied_spool_records")
