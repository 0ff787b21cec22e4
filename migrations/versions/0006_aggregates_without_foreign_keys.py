"""aggregates without foreign keys: the counter's batch no longer checks sites per row

Every new visit upserts a daily country row and up to three location rows in the
same statement as the visit; each inserted row's foreign key check (an index probe
and a KEY SHARE lock on the site) cost about a fifth of PostgreSQL's time per
batch (bench/README "Counter load"). The visit's own foreign key still guards the
statement: an aggregate row is only written for a visit that was inserted, so no
aggregate can name a missing site. Deleting a site or an account deletes its
aggregates explicitly (app/sites/repository.py, app/accounts/repository.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("daily_country_counts", "location_counts")


def upgrade() -> None:
    for table in TABLES:
        # On SQLite a batch rebuild of the child table (never of ``sites``, whose
        # rebuild would cascade-delete its children).
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_site_id_sites", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        # Aggregates of sites deleted in between would fail the constraint.
        orphans = f"DELETE FROM {table} WHERE site_id NOT IN (SELECT id FROM sites)"  # noqa: S608
        op.execute(sa.text(orphans))
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_site_id_sites", "sites", ["site_id"], ["id"], ondelete="CASCADE"
            )
