"""ids never reused, and a change log of the site directory

SQLite gives an ``INTEGER PRIMARY KEY`` table's newest deleted id to the next row.
A deleted site's id then named another tenant's site while hits, beacons and jobs
that carried the old id were still on their way (issue 11). ``accounts`` and
``sites`` are rebuilt with ``AUTOINCREMENT``, whose ``sqlite_sequence`` never goes
back; PostgreSQL's sequences never did.

The rebuild drops the old tables. With foreign keys on, that DROP would delete every
child row through ON DELETE CASCADE, so ``app.migrate.upgrade`` turns them off before
its transaction (SQLite ignores the pragma inside one) and runs ``PRAGMA
foreign_key_check`` before committing; this migration refuses to run otherwise.

``site_changes`` gets a row, from triggers, for every deleted site and every added or
removed hostname: each web process polls it once a second and drops those keys from
its site cache, so a deleted site's key stops counting everywhere within seconds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

REBUILT = ("accounts", "sites")
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_TRIGGERS = (
    """CREATE TRIGGER site_changes_site_deleted AFTER DELETE ON sites
    BEGIN INSERT INTO site_changes (public_key) VALUES (old.public_key); END""",
    """CREATE TRIGGER site_changes_hostname_added AFTER INSERT ON site_hostnames
    BEGIN INSERT INTO site_changes (public_key)
          SELECT public_key FROM sites WHERE id = new.site_id; END""",
    """CREATE TRIGGER site_changes_hostname_removed AFTER DELETE ON site_hostnames
    BEGIN INSERT INTO site_changes (public_key)
          SELECT public_key FROM sites WHERE id = old.site_id; END""",
)
POSTGRES_TRIGGERS = (
    """CREATE FUNCTION site_changes_note() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'sites' THEN
            INSERT INTO site_changes (public_key) VALUES (OLD.public_key);
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO site_changes (public_key)
            SELECT public_key FROM sites WHERE id = OLD.site_id;
        ELSE
            INSERT INTO site_changes (public_key)
            SELECT public_key FROM sites WHERE id = NEW.site_id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER site_changes_site_deleted AFTER DELETE ON sites
    FOR EACH ROW EXECUTE FUNCTION site_changes_note()""",
    """CREATE TRIGGER site_changes_hostname_changed AFTER INSERT OR DELETE ON site_hostnames
    FOR EACH ROW EXECUTE FUNCTION site_changes_note()""",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise RuntimeError(
                "migration 0007 rebuilds tables and needs SQLite's foreign keys off "
                "(they would cascade-delete every site's data): run `hitmap migrate`"
            )
        for table in REBUILT:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass
    op.create_table(
        "site_changes",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("public_key", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_site_changes")),
        sqlite_autoincrement=True,
    )
    for statement in SQLITE_TRIGGERS if bind.dialect.name == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(sa.text(statement))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in ("site_deleted", "hostname_added", "hostname_removed"):
            op.execute(sa.text(f"DROP TRIGGER site_changes_{name}"))
    else:
        op.execute(sa.text("DROP TRIGGER site_changes_site_deleted ON sites"))
        op.execute(sa.text("DROP TRIGGER site_changes_hostname_changed ON site_hostnames"))
        op.execute(sa.text("DROP FUNCTION site_changes_note()"))
    op.drop_table("site_changes")
    # AUTOINCREMENT stays on SQLite: ids that are never reused harm no older Hitmap.
