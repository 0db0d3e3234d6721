"""loyalty: the points ledger is append-only in the database itself

The ORM refused to change or delete a ledger entry, but raw SQL could. Row
triggers now refuse UPDATE and DELETE (PostgreSQL and SQLite), and a
statement trigger refuses TRUNCATE (PostgreSQL). Dropping the table (a purge)
is not affected.

Revision ID: loyalty_0003
Revises: loyalty_0002
Create Date: 2026-11-25
"""
from alembic import op

from core.migrations import add_append_only_guards, drop_append_only_guards

revision = "loyalty_0003"
down_revision = "loyalty_0002"
branch_labels = None
depends_on = "core_0001"  # pharmo2o_append_only()

TABLE = "loyalty_ledger"


def upgrade() -> None:
    add_append_only_guards(op, TABLE)


def downgrade() -> None:
    drop_append_only_guards(op, TABLE)
