"""maps: location aggregates, rendered images, thumbnail styles, nightly runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 16:00:00

Backfills ``location_counts`` from the visits already stored, so that maps of an
existing deployment are complete from the first render.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SiteId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["site_id"], ["sites.id"], name=op.f(f"fk_{table}_site_id_sites"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "location_counts",
        sa.Column("site_id", SiteId, nullable=False),
        sa.Column("grain", sa.String(length=1), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("place", sa.BigInteger(), nullable=False),
        sa.Column("visits", sa.BigInteger(), nullable=False),
        _site_fk("location_counts"),
        sa.PrimaryKeyConstraint(
            "site_id", "grain", "period", "place", name=op.f("pk_location_counts")
        ),
    )
    op.create_table(
        "rendered_images",
        sa.Column("site_id", SiteId, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("span", sa.String(length=8), nullable=False),
        sa.Column("variant", sa.String(length=8), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.Column("etag", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("visits", sa.BigInteger(), nullable=False),
        sa.Column("rendered_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("checked_at", app.models.UTCDateTime(timezone=True), nullable=False),
        _site_fk("rendered_images"),
        sa.PrimaryKeyConstraint(
            "site_id", "kind", "span", "variant", name=op.f("pk_rendered_images")
        ),
    )
    op.create_table(
        "map_styles",
        sa.Column("site_id", SiteId, nullable=False),
        sa.Column("size", sa.String(length=8), nullable=False),
        sa.Column("dot_color", sa.String(length=7), nullable=False),
        sa.Column("background", sa.String(length=12), nullable=False),
        sa.Column("show_count", sa.Boolean(), nullable=False),
        sa.Column("updated_at", app.models.UTCDateTime(timezone=True), nullable=False),
        _site_fk("map_styles"),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_map_styles")),
    )
    op.create_table(
        "map_nightly_runs",
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("started_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sites", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("night", name=op.f("pk_map_nightly_runs")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # PNGs are compressed already: no compression attempt when storing them.
        op.execute("ALTER TABLE rendered_images ALTER COLUMN png SET STORAGE EXTERNAL")
    _backfill_location_counts()


def _backfill_location_counts() -> None:
    from app.places import sql_place_key

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        month = "CAST(date_trunc('month', day) AS date)"
        epoch = "DATE '1970-01-01'"
    else:
        month = "date(day, 'start of month')"
        epoch = "'1970-01-01'"
    place = sql_place_key("latitude", "longitude", "accuracy_km", dialect)
    located = "FROM visits WHERE latitude IS NOT NULL AND longitude IS NOT NULL"
    for grain, period in (("d", "day"), ("m", month), ("a", epoch)):
        op.execute(
            "INSERT INTO location_counts (site_id, grain, period, place, visits) "
            f"SELECT site_id, '{grain}', {period}, {place}, COUNT(*) {located} "
            f"GROUP BY site_id, {period}, {place}"
        )


def downgrade() -> None:
    op.drop_table("map_nightly_runs")
    op.drop_table("map_styles")
    op.drop_table("rendered_images")
    op.drop_table("location_counts")
