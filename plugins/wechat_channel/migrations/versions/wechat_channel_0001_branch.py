"""wechat_channel: start of the plugin's own Alembic branch (its tables come with its features).

Revision ID: wechat_channel_0001
Revises:
Create Date: 2026-11-25
"""
revision = "wechat_channel_0001"
down_revision = None
branch_labels = ("wechat_channel",)
depends_on = "core_0001"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
