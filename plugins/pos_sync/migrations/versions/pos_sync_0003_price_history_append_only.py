"""pos_sync: the price history is append-only in the database itself

Its model says append-only (a line of a sale records the price-list version it used, and
the staleness check reads the history), but nothing refused a change. Row
triggers now refuse UPDATE and DELETE (PostgreSQL and SQLite), and a
statement trigger refuses TRUNCATE (PostgreSQL). Dropping the table (a purge)
is not affected.

Revision ID: pos_sync_0003
Revises: pos_sync_0002
Create Date: 2026-11-25
"""
from alembic import op

revision = "pos_sync_0003"
down_revision = "pos_sync_0002"
branch_labels = None
depends_on = "core_0001"  # pharmo2o_append_only()

TABLE = "pos_price_history"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
                   f"FOR EACH ROW EXECUTE FUNCTION pharmo2o_append_only()")
        op.execute(f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION pharmo2o_append_only()")
    elif dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {TABLE}_no_{event.lower()} BEFORE {event} ON {TABLE} "
                       f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
    elif dialect == "sqlite":
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{event}")
