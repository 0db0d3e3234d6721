"""pos_sync: start of the plugin's own Alembic branch (its tables come with its features).

Revision ID: pos_sync_0001
Revises:
Create Date: 2026-11-25
"""
revision = "pos_sync_0001"
down_revision = None
branch_labels = ("pos_sync",)
depends_on = "core_0001"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
