"""wechat_channel: inbound pushes, followers, OAuth states and login codes, payments, notifications,
refunds, template sends, the shared access token

Revision ID: wechat_channel_0002
Revises: wechat_channel_0001
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = "wechat_channel_0002"
down_revision = "wechat_channel_0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _index(table: str, column: str, unique: bool = False) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=unique)


def upgrade() -> None:
    op.create_table(
        "wechat_inbound",
        sa.Column("id", ID, nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("msg_type", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=True),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_inbound")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_wechat_inbound_dedupe_key")),
    )
    _index("wechat_inbound", "openid")
    _index("wechat_inbound", "created_at")

    op.create_table(
        "wechat_followers",
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("store_id", ID, nullable=True),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("scene", sa.String(length=100), nullable=True),
        sa.Column("subscribed_at", TS, nullable=True),
        sa.Column("unsubscribed_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_wechat_followers_store_id_stores")),
        sa.PrimaryKeyConstraint("openid", name=op.f("pk_wechat_followers")),
    )

    op.create_table(
        "wechat_oauth_states",
        sa.Column("id", ID, nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("next_path", sa.String(length=500), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_oauth_states")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_wechat_oauth_states_state_hash")),
    )
    _index("wechat_oauth_states", "expires_at")

    op.create_table(
        "wechat_login_codes",
        sa.Column("id", ID, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_wechat_login_codes_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_login_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_wechat_login_codes_code_hash")),
    )
    _index("wechat_login_codes", "customer_id")
    _index("wechat_login_codes", "expires_at")

    op.create_table(
        "wechat_payments",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("out_trade_no", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("sign_type", sa.String(length=12), nullable=False),
        sa.Column("prepay_id", sa.String(length=64), nullable=True),
        sa.Column("prepay_expires_at", TS, nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("transaction_id", sa.String(length=32), nullable=True),
        sa.Column("confirmed_via", sa.String(length=12), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("paid_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_wechat_payments_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_payments")),
        sa.UniqueConstraint("out_trade_no", name=op.f("uq_wechat_payments_out_trade_no")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_wechat_payments_transaction_id")),
    )
    _index("wechat_payments", "order_id")
    _index("wechat_payments", "status")

    op.create_table(
        "wechat_pay_notifications",
        sa.Column("id", ID, nullable=False),
        sa.Column("out_trade_no", sa.String(length=32), nullable=False),
        sa.Column("transaction_id", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_pay_notifications")),
    )
    _index("wechat_pay_notifications", "out_trade_no")
    _index("wechat_pay_notifications", "transaction_id")

    op.create_table(
        "wechat_refunds",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("payment_id", ID, nullable=False),
        sa.Column("out_refund_no", sa.String(length=64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("refund_id", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_wechat_refunds_order_id_orders")),
        sa.ForeignKeyConstraint(["payment_id"], ["wechat_payments.id"],
                                name=op.f("fk_wechat_refunds_payment_id_wechat_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_refunds")),
        sa.UniqueConstraint("out_refund_no", name=op.f("uq_wechat_refunds_out_refund_no")),
    )
    _index("wechat_refunds", "order_id")
    _index("wechat_refunds", "payment_id")

    op.create_table(
        "wechat_template_sends",
        sa.Column("id", ID, nullable=False),
        sa.Column("dedupe_key", sa.String(length=100), nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=True),
        sa.Column("template_id", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("msgid", sa.String(length=32), nullable=True),
        sa.Column("delivery", sa.String(length=60), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_wechat_template_sends_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_template_sends")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_wechat_template_sends_dedupe_key")),
    )
    _index("wechat_template_sends", "order_id")
    _index("wechat_template_sends", "msgid")

    op.create_table(
        "wechat_access_tokens",
        sa.Column("appid", sa.String(length=40), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("appid", name=op.f("pk_wechat_access_tokens")),
    )


def downgrade() -> None:
    # dropping a table drops its indexes too (SQLite and PostgreSQL)
    for table in ("wechat_access_tokens", "wechat_template_sends", "wechat_refunds", "wechat_pay_notifications",
                  "wechat_payments", "wechat_login_codes", "wechat_oauth_states", "wechat_followers",
                  "wechat_inbound"):
        op.drop_table(table)
