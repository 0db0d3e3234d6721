"""core: the append-only tables refuse TRUNCATE too (PostgreSQL)

core_0001's row triggers refuse UPDATE and DELETE, but TRUNCATE fires no row
trigger: a statement-level BEFORE TRUNCATE trigger closes that gap (also when
the table is reached through TRUNCATE ... CASCADE of a table it references).
SQLite has no TRUNCATE; its DELETE without WHERE already fires the row triggers.

Revision ID: core_0003
Revises: core_0002
Create Date: 2026-11-25
"""
from alembic import op

revision = "core_0003"
down_revision = "core_0002"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_log", "stock_movements", "order_events")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # pharmo2o_append_only() comes with core_0001
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION pharmo2o_append_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
