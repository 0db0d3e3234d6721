"""pos_sync: terminals, uploaded sales, review flags, stock discrepancies, price-list versions

Revision ID: pos_sync_0002
Revises: pos_sync_0001
Create Date: 2026-11-26
"""
import secrets

from alembic import op
import sqlalchemy as sa

revision = "pos_sync_0002"
down_revision = "pos_sync_0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pos_devices",
        sa.Column("id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("database_id", sa.String(64), nullable=True),
        sa.Column("registered_by", sa.String(100), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.String(100), nullable=True),
        sa.Column("revoke_reason", sa.String(500), nullable=True),
        sa.Column("last_contact_at", TS, nullable=True),
        sa.Column("last_upload_at", TS, nullable=True),
        sa.Column("last_clock_offset_s", sa.Integer(), nullable=True),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("last_lag_s", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('active','revoked')", name=op.f("ck_pos_devices_status")),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_pos_devices_store_id_stores")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pos_devices")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_pos_devices_secret_hash")),
    )
    op.create_index(op.f("ix_pos_devices_store_id"), "pos_devices", ["store_id"])

    op.create_table(
        "pos_sales",
        sa.Column("id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("client_sale_id", sa.String(64), nullable=False),
        sa.Column("device_seq", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("order_id", ID, nullable=True),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("sold_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("clock_offset_s", sa.Integer(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('accepted','rejected')", name=op.f("ck_pos_sales_status")),
        sa.ForeignKeyConstraint(["device_id"], ["pos_devices.id"], name=op.f("fk_pos_sales_device_id_pos_devices")),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_pos_sales_store_id_stores")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_pos_sales_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pos_sales")),
        sa.UniqueConstraint("device_id", "client_sale_id", name=op.f("uq_pos_sales_device_id_client_sale_id")),
        sa.UniqueConstraint("order_id", name=op.f("uq_pos_sales_order_id")),
    )
    op.create_index("ix_pos_sales_device_status", "pos_sales", ["device_id", "status"])
    op.create_index("ix_pos_sales_device_seq", "pos_sales", ["device_id", "device_seq"])
    op.create_index(op.f("ix_pos_sales_store_id"), "pos_sales", ["store_id"])

    op.create_table(
        "pos_sale_flags",
        sa.Column("id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("sale_id", ID, nullable=True),
        sa.Column("client_sale_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(2000), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("dedupe_key", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("reviewed_at", TS, nullable=True),
        sa.Column("reviewed_by", sa.String(100), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["pos_devices.id"], name=op.f("fk_pos_sale_flags_device_id_pos_devices")),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_pos_sale_flags_store_id_stores")),
        sa.ForeignKeyConstraint(["sale_id"], ["pos_sales.id"], name=op.f("fk_pos_sale_flags_sale_id_pos_sales")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pos_sale_flags")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_pos_sale_flags_dedupe_key")),
    )
    op.create_index(op.f("ix_pos_sale_flags_device_id"), "pos_sale_flags", ["device_id"])
    op.create_index(op.f("ix_pos_sale_flags_sale_id"), "pos_sale_flags", ["sale_id"])
    op.create_index("ix_pos_sale_flags_store_open", "pos_sale_flags", ["store_id", "reviewed_at", "id"])

    op.create_table(
        "pos_stock_discrepancies",
        sa.Column("id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("sale_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("client_sale_id", sa.String(64), nullable=False),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("quantity_short", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.String(100), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.CheckConstraint("quantity_short > 0", name=op.f("ck_pos_stock_discrepancies_short_pos")),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_pos_stock_discrepancies_store_id_stores")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"],
                                name=op.f("fk_pos_stock_discrepancies_product_id_products")),
        sa.ForeignKeyConstraint(["device_id"], ["pos_devices.id"],
                                name=op.f("fk_pos_stock_discrepancies_device_id_pos_devices")),
        sa.ForeignKeyConstraint(["sale_id"], ["pos_sales.id"], name=op.f("fk_pos_stock_discrepancies_sale_id_pos_sales")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_pos_stock_discrepancies_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pos_stock_discrepancies")),
    )
    op.create_index(op.f("ix_pos_stock_discrepancies_sale_id"), "pos_stock_discrepancies", ["sale_id"])
    op.create_index("ix_pos_stock_discrepancies_store_open", "pos_stock_discrepancies",
                    ["store_id", "resolved_at", "id"])

    state = op.create_table(
        "pos_sync_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cursor_key", sa.String(64), nullable=False),
        sa.Column("price_version", sa.BigInteger(), nullable=False),
        sa.Column("prices_checked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pos_sync_state")),
    )
    op.bulk_insert(state, [{"id": 1, "cursor_key": secrets.token_hex(32), "price_version": 0}])

    op.create_table(
        "pos_product_prices",
        sa.Column("product_id", ID, nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"],
                                name=op.f("fk_pos_product_prices_product_id_products")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_pos_product_prices")),
    )
    op.create_table(
        "pos_price_versions",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_pos_price_versions")),
    )
    op.create_table(
        "pos_price_history",
        sa.Column("id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_pos_price_history_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pos_price_history")),
        sa.UniqueConstraint("product_id", "version", name=op.f("uq_pos_price_history_product_id_version")),
    )


def downgrade() -> None:
    op.drop_table("pos_price_history")
    op.drop_table("pos_price_versions")
    op.drop_table("pos_product_prices")
    op.drop_table("pos_sync_state")
    op.drop_index("ix_pos_stock_discrepancies_store_open", table_name="pos_stock_discrepancies")
    op.drop_index(op.f("ix_pos_stock_discrepancies_sale_id"), table_name="pos_stock_discrepancies")
    op.drop_table("pos_stock_discrepancies")
    op.drop_index("ix_pos_sale_flags_store_open", table_name="pos_sale_flags")
    op.drop_index(op.f("ix_pos_sale_flags_sale_id"), table_name="pos_sale_flags")
    op.drop_index(op.f("ix_pos_sale_flags_device_id"), table_name="pos_sale_flags")
    op.drop_table("pos_sale_flags")
    op.drop_index(op.f("ix_pos_sales_store_id"), table_name="pos_sales")
    op.drop_index("ix_pos_sales_device_seq", table_name="pos_sales")
    op.drop_index("ix_pos_sales_device_status", table_name="pos_sales")
    op.drop_table("pos_sales")
    op.drop_index(op.f("ix_pos_devices_store_id"), table_name="pos_devices")
    op.drop_table("pos_devices")
