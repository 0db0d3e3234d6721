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

from core.migrations import add_append_only_guards, drop_append_only_guards

revision = "pos_sync_0003"
down_revision = "pos_sync_0002"
branch_labels = None
depends_on = "core_0001"  # pharmo2o_append_only()

TABLE = "pos_price_history"


def upgrade() -> None:
    add_append_only_guards(op, TABLE)


def downgrade() -> None:
    drop_append_only_guards(op, TABLE)
