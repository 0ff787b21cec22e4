"""heatmaps: click beacons, pages, recording options, overlay tokens, rendered heatmaps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 16:00:00

Branches from 0001 beside 0002 (maps); ``app.migrate`` upgrades to all heads.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heatmap_clicks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("x", sa.Integer(), nullable=False),
        sa.Column("y", sa.Integer(), nullable=False),
        sa.Column("doc_width", sa.Integer(), nullable=False),
        sa.Column("doc_height", sa.Integer(), nullable=False),
        sa.Column("viewport_width", sa.Integer(), nullable=False),
        sa.Column("dpr", sa.Float(), nullable=False),
        sa.Column("selector", sa.String(length=256), nullable=True),
        sa.Column("offset_x", sa.Float(), nullable=True),
        sa.Column("offset_y", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_heatmap_clicks_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heatmap_clicks")),
    )
    with op.batch_alter_table("heatmap_clicks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_heatmap_clicks_site_day", ["site_id", "day", "path"], unique=False
        )
        batch_op.create_index(
            "ix_heatmap_clicks_site_page", ["site_id", "path", "bucket", "day"], unique=False
        )

    op.create_table(
        "heatmap_options",
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("keep_query", sa.Boolean(), nullable=False),
        sa.Column("honour_dnt", sa.Boolean(), nullable=False),
        sa.Column("updated_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_heatmap_options_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_heatmap_options")),
    )
    op.create_table(
        "heatmap_overlay_tokens",
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", app.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_heatmap_overlay_tokens_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", "token_hash", name=op.f("pk_heatmap_overlay_tokens")),
    )
    with op.batch_alter_table("heatmap_overlay_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_heatmap_overlay_tokens_hash", ["token_hash"], unique=True)

    op.create_table(
        "heatmap_pages",
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("origin", sa.String(length=300), nullable=False),
        sa.Column("last_seen", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_heatmap_pages_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", "path", name=op.f("pk_heatmap_pages")),
    )
    op.create_table(
        "heatmap_renders",
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.Column("last_click_id", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("radius", sa.Float(), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.Column("rendered_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_heatmap_renders_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "site_id", "path", "bucket", "first_day", "last_day", name=op.f("pk_heatmap_renders")
        ),
    )


def downgrade() -> None:
    op.drop_table("heatmap_renders")
    op.drop_table("heatmap_pages")
    with op.batch_alter_table("heatmap_overlay_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_heatmap_overlay_tokens_hash")

    op.drop_table("heatmap_overlay_tokens")
    op.drop_table("heatmap_options")
    with op.batch_alter_table("heatmap_clicks", schema=None) as batch_op:
        batch_op.drop_index("ix_heatmap_clicks_site_page")
        batch_op.drop_index("ix_heatmap_clicks_site_day")

    op.drop_table("heatmap_clicks")
