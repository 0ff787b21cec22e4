"""hostname scheme: the owner says which hostnames serve their pages over plain http

The heatmap page's "Open with overlay" link carries a token to the owner's page. It
was built from the origin a beacon last reported (any scheme, port or subdomain);
now it is built from the site's own listed hostname, over https unless the owner
marked that hostname as plain http (app/heatmaps/overlay.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN with a default: existing hostnames are https; no table rebuild.
    op.add_column(
        "site_hostnames",
        sa.Column("plain_http", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # Native DROP COLUMN (SQLite 3.35+), not a batch rebuild.
    op.drop_column("site_hostnames", "plain_http")
