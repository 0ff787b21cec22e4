"""The schema claims of infra/SCALING.md, checked on the migrated database (SQLite and
PostgreSQL), so that the scale-out plan cannot silently become false.

Each test states one claim. The known exceptions are listed exactly: fixing one (or
adding another) fails the test, and then SCALING.md's section on the schema must be
brought up to date together with the list.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, inspect

from app.models import Base

# The tables SCALING.md talks about; anything else in the database (alembic_version,
# Procrastinate's queue) is not Hitmap's data.
TABLES = sorted(Base.metadata.tables)

# SCALING.md, "What the schema already allows": the only tenant table without site_id
# leading its primary key (a surrogate id: SQLite auto-increments only a lone INTEGER
# key), and the only unique key on a tenant table without site_id.
SURROGATE_KEYED = {"heatmap_clicks": ["id"]}
UNIQUE_WITHOUT_SITE = {("heatmap_clicks", ("id",)), ("heatmap_overlay_tokens", ("token_hash",))}
# Raw, per-day tables a day-partitioned layout would split; their keys must hold `day`.
DAY_TABLES = {"visits", "daily_country_counts", "dropped_hits"}
# Tables whose rows are written per day but whose key lacks `day` (SCALING.md).
DAY_COLUMN_NOT_IN_KEY = {"heatmap_clicks"}


@pytest.fixture(scope="module")
def schema(engine: Engine) -> dict[str, dict[str, Any]]:
    inspector = inspect(engine)
    out: dict[str, dict[str, Any]] = {}
    for table in TABLES:
        unique = [tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)]
        unique += [
            tuple(i["column_names"]) for i in inspector.get_indexes(table) if i.get("unique")
        ]
        out[table] = {
            "columns": [c["name"] for c in inspector.get_columns(table)],
            "pk": list(inspector.get_pk_constraint(table)["constrained_columns"]),
            "unique": set(unique),
            "indexes": [list(i["column_names"]) for i in inspector.get_indexes(table)],
            "fks": inspector.get_foreign_keys(table),
        }
    return out


def tenant_tables(schema: dict[str, dict[str, Any]]) -> list[str]:
    return [t for t, s in schema.items() if "site_id" in s["columns"]]


def test_every_tenant_table_is_keyed_by_site_first(schema):
    """Citus (distribution by site_id) needs the distribution column in every primary key."""
    tenants = tenant_tables(schema)
    assert "visits" in tenants and "location_counts" in tenants
    others = {t: schema[t]["pk"] for t in tenants if schema[t]["pk"][0] != "site_id"}
    assert others == SURROGATE_KEYED


def test_unique_keys_of_tenant_tables_hold_site_id(schema):
    """Citus refuses a unique constraint or index without the distribution column."""
    found = {
        (t, key)
        for t in tenant_tables(schema)
        for key in schema[t]["unique"] | {tuple(schema[t]["pk"])}
        if "site_id" not in key
    }
    assert found == UNIQUE_WITHOUT_SITE


def test_every_index_of_a_tenant_table_leads_with_site_id(schema):
    """Each tenant query is one index range per site: a shard (or a site's slice) answers it."""
    leading = {
        (t, tuple(columns))
        for t in tenant_tables(schema)
        for columns in schema[t]["indexes"]
        if columns[0] != "site_id"
    }
    assert leading == {("heatmap_overlay_tokens", ("token_hash",))}


def test_per_day_tables_carry_day_in_their_key(schema):
    """Declarative partitioning by day needs `day` in the primary key and unique keys."""
    for table in DAY_TABLES:
        assert schema[table]["pk"][:2] == ["site_id", "day"], table
    assert schema["visits"]["pk"] == ["site_id", "day", "visitor_hash"]
    lacking = {
        t
        for t, s in schema.items()
        if "day" in s["columns"] and "site_id" in s["columns"] and "day" not in s["pk"]
    }
    assert lacking == DAY_COLUMN_NOT_IN_KEY


AGGREGATES_WITHOUT_FK = {"daily_country_counts", "location_counts"}


def test_no_foreign_key_points_at_the_large_tables(schema):
    """Partitioned or distributed tables that nothing references move freely: every
    foreign key points at accounts or sites (candidates for Citus reference tables)."""
    referred = {
        (fk["referred_table"], tuple(fk["referred_columns"]))
        for s in schema.values()
        for fk in s["fks"]
    }
    assert referred == {("accounts", ("id",)), ("sites", ("id",))}
    for table in tenant_tables(schema):
        fks = schema[table]["fks"]
        targets = {(fk["referred_table"], tuple(fk["constrained_columns"])) for fk in fks}
        # The aggregates have none at all (migration 0006: a check per counted row).
        expected = set() if table in AGGREGATES_WITHOUT_FK else {("sites", ("site_id",))}
        assert targets == expected, table


def test_rendered_images_live_in_the_database(schema):
    """SCALING.md: map and heatmap PNGs are bytea rows today (object storage is a step)."""
    assert "png" in schema["rendered_images"]["columns"]
    assert "png" in schema["heatmap_renders"]["columns"]
