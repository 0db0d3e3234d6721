"""wechat_channel: verified payment notifications are append-only in the database itself

The ORM refused to change or delete a recorded notification, but raw SQL could. Row
triggers now refuse UPDATE and DELETE (PostgreSQL and SQLite), and a
statement trigger refuses TRUNCATE (PostgreSQL). Dropping the table (a purge)
is not affected.

Revision ID: wechat_channel_0003
Revises: wechat_channel_0002
Create Date: 2026-11-25
"""
from alembic import op

from core.migrations import add_append_only_guards, drop_append_only_guards

revision = "wechat_channel_0003"
down_revision = "wechat_channel_0002"
branch_labels = None
depends_on = "core_0001"  # pharmo2o_append_only()

TABLE = "wechat_pay_notifications"


def upgrade() -> None:
    add_append_only_guards(op, TABLE)


def downgrade() -> None:
    drop_append_only_guards(op, TABLE)
