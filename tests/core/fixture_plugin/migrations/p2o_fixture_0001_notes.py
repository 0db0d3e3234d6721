"""p2o_fixture: notes table

Revision ID: p2o_fixture_0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "p2o_fixture_0001"
down_revision = None
branch_labels = ("p2o_fixture",)
depends_on = "core_0001"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "p2o_fixture_notes",
        sa.Column("id", ID, primary_key=True),
        sa.Column("store_id", ID, sa.ForeignKey("stores.id", name="fk_p2o_fixture_notes_store_id_stores"),
                  nullable=True),
        sa.Column("body", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("p2o_fixture_notes")
