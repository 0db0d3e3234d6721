"""meituan_delivery: the meituan_orders table (the plugin's own Alembic branch)

Revision ID: meituan_delivery_0001
Revises:
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = "meituan_delivery_0001"
down_revision = None
branch_labels = ("meituan_delivery",)  # the branch label is the plugin's name
depends_on = "core_0001"  # the core revision that creates `orders`

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "meituan_orders",
        sa.Column("id", ID, nullable=False),
        sa.Column("meituan_order_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("app_poi_code", sa.String(length=64), nullable=False),
        sa.Column("delivery_status", sa.String(length=20), nullable=False),
        sa.Column("meituan_total_fen", sa.BigInteger(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("rider_name", sa.String(length=100), nullable=True),
        sa.Column("rider_phone", sa.String(length=40), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_meituan_orders_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meituan_orders")),
        sa.UniqueConstraint("meituan_order_id", name=op.f("uq_meituan_orders_meituan_order_id")),
        sa.UniqueConstraint("order_id", name=op.f("uq_meituan_orders_order_id")),
    )


def downgrade() -> None:
    op.drop_table("meituan_orders")
