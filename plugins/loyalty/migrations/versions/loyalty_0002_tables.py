"""loyalty: members, append-only ledger, lots, per-order state, rewards, staff links

Revision ID: loyalty_0002
Revises: loyalty_0001
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = "loyalty_0002"
down_revision = "loyalty_0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "loyalty_members",
        sa.Column("customer_id", ID, nullable=False, autoincrement=False),
        sa.Column("tier", sa.String(length=40), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("rolling_spend_fen", sa.BigInteger(), nullable=False),
        sa.Column("joined_via", sa.String(length=20), nullable=False),
        sa.Column("joined_at", TS, nullable=False),
        sa.Column("tier_since", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("pending >= 0", name=op.f("ck_loyalty_members_pending_nonneg")),
        sa.CheckConstraint("held >= 0", name=op.f("ck_loyalty_members_held_nonneg")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_loyalty_members_customer_id_customers")),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_loyalty_members")),
    )
    op.create_table(
        "loyalty_ledger",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source_key", sa.String(length=200), nullable=False),
        sa.Column("available_delta", sa.BigInteger(), nullable=False),
        sa.Column("pending_delta", sa.BigInteger(), nullable=False),
        sa.Column("held_delta", sa.BigInteger(), nullable=False),
        sa.Column("eligible_fen_delta", sa.BigInteger(), nullable=False),
        sa.Column("written_off", sa.BigInteger(), nullable=False),
        sa.Column("order_id", ID, nullable=True),
        sa.Column("lot_id", ID, nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["loyalty_members.customer_id"],
                                name=op.f("fk_loyalty_ledger_customer_id_loyalty_members")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_loyalty_ledger_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_ledger")),
        sa.UniqueConstraint("source_key", name=op.f("uq_loyalty_ledger_source_key")),
    )
    with op.batch_alter_table("loyalty_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_loyalty_ledger_customer", ["customer_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_loyalty_ledger_order_id"), ["order_id"], unique=False)

    op.create_table(
        "loyalty_lots",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("entry_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("earned_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("expired_at", TS, nullable=True),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_loyalty_lots_remaining_nonneg")),
        sa.CheckConstraint("remaining <= points", name=op.f("ck_loyalty_lots_remaining_le_points")),
        sa.ForeignKeyConstraint(["customer_id"], ["loyalty_members.customer_id"],
                                name=op.f("fk_loyalty_lots_customer_id_loyalty_members")),
        sa.ForeignKeyConstraint(["entry_id"], ["loyalty_ledger.id"],
                                name=op.f("fk_loyalty_lots_entry_id_loyalty_ledger")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_loyalty_lots_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_lots")),
    )
    with op.batch_alter_table("loyalty_lots", schema=None) as batch_op:
        batch_op.create_index("ix_loyalty_lots_customer_expiry", ["customer_id", "expires_at"], unique=False)
        batch_op.create_index("ix_loyalty_lots_expiry", ["expires_at", "remaining"], unique=False)

    op.create_table(
        "loyalty_lot_uses",
        sa.Column("id", ID, nullable=False),
        sa.Column("entry_id", ID, nullable=False),
        sa.Column("lot_id", ID, nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("returned", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["loyalty_ledger.id"],
                                name=op.f("fk_loyalty_lot_uses_entry_id_loyalty_ledger")),
        sa.ForeignKeyConstraint(["lot_id"], ["loyalty_lots.id"],
                                name=op.f("fk_loyalty_lot_uses_lot_id_loyalty_lots")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_lot_uses")),
    )
    with op.batch_alter_table("loyalty_lot_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loyalty_lot_uses_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_loyalty_lot_uses_lot_id"), ["lot_id"], unique=False)

    op.create_table(
        "loyalty_orders",
        sa.Column("order_id", ID, nullable=False, autoincrement=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("redeem_points", sa.BigInteger(), nullable=False),
        sa.Column("redeem_fen", sa.BigInteger(), nullable=False),
        sa.Column("redeem_state", sa.String(length=10), nullable=True),
        sa.Column("hold_entry_id", ID, nullable=True),
        sa.Column("returned_points", sa.BigInteger(), nullable=False),
        sa.Column("earned_points", sa.BigInteger(), nullable=False),
        sa.Column("eligible_fen", sa.BigInteger(), nullable=False),
        sa.Column("earned_at", TS, nullable=True),
        sa.Column("earn_state", sa.String(length=10), nullable=True),
        sa.Column("vest_due_at", TS, nullable=True),
        sa.Column("vested_points", sa.BigInteger(), nullable=False),
        sa.Column("lot_id", ID, nullable=True),
        sa.Column("clawed_points", sa.BigInteger(), nullable=False),
        sa.Column("clawed_eligible_fen", sa.BigInteger(), nullable=False),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["loyalty_members.customer_id"],
                                name=op.f("fk_loyalty_orders_customer_id_loyalty_members")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_loyalty_orders_order_id_orders")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_loyalty_orders")),
    )
    with op.batch_alter_table("loyalty_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loyalty_orders_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index("ix_loyalty_orders_vest", ["earn_state", "vest_due_at"], unique=False)

    op.create_table(
        "loyalty_rewards",
        sa.Column("id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("points_cost", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("points_cost > 0", name=op.f("ck_loyalty_rewards_cost_pos")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_loyalty_rewards_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_rewards")),
        sa.UniqueConstraint("product_id", name=op.f("uq_loyalty_rewards_product_id")),
    )
    op.create_table(
        "loyalty_staff_links",
        sa.Column("user_id", ID, nullable=False, autoincrement=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_loyalty_staff_links_customer_id_customers")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_loyalty_staff_links_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_loyalty_staff_links")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_loyalty_staff_links_customer_id")),
    )


def downgrade() -> None:
    op.drop_table("loyalty_staff_links")
    op.drop_table("loyalty_rewards")
    with op.batch_alter_table("loyalty_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_loyalty_orders_vest")
        batch_op.drop_index(batch_op.f("ix_loyalty_orders_customer_id"))
    op.drop_table("loyalty_orders")
    with op.batch_alter_table("loyalty_lot_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loyalty_lot_uses_lot_id"))
        batch_op.drop_index(batch_op.f("ix_loyalty_lot_uses_entry_id"))
    op.drop_table("loyalty_lot_uses")
    with op.batch_alter_table("loyalty_lots", schema=None) as batch_op:
        batch_op.drop_index("ix_loyalty_lots_expiry")
        batch_op.drop_index("ix_loyalty_lots_customer_expiry")
    op.drop_table("loyalty_lots")
    with op.batch_alter_table("loyalty_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loyalty_ledger_order_id"))
        batch_op.drop_index("ix_loyalty_ledger_customer")
    op.drop_table("loyalty_ledger")
    op.drop_table("loyalty_members")
