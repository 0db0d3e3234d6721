"""prescription_review: start of the plugin's own Alembic branch (its tables come with its features).

Revision ID: prescription_review_0001
Revises:
Create Date: 2026-11-25
"""
revision = "prescription_review_0001"
down_revision = None
branch_labels = ("prescription_review",)
depends_on = "core_0001"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
