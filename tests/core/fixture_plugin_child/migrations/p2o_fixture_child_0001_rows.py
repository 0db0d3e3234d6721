"""p2o_fixture_child: rows table

Revision ID: p2o_fixture_child_0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "p2o_fixture_child_0001"
down_revision = None
branch_labels = ("p2o_fixture_child",)
depends_on = ("core_0001", "p2o_fixture_0001")

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "p2o_fixture_child_rows",
        sa.Column("id", ID, primary_key=True),
        sa.Column("note_id", ID, sa.ForeignKey("p2o_fixture_notes.id", name="fk_p2o_fixture_child_rows_note_id"),
                  nullable=False),
    )


def downgrade() -> None:
    op.drop_table("p2o_fixture_child_rows")
