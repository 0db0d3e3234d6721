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

revision = "wechat_channel_0003"
down_revision = "wechat_channel_0002"
branch_labels = None
depends_on = "core_0001"  # pharmo2o_append_only()

TABLE = "wechat_pay_notifications"


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
