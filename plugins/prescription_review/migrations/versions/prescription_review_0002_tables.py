"""prescription_review: documents, prescriptions, items, decisions, claims, access log, keys,
consumptions, dispensings, ban list versions

The retained tables refuse UPDATE/DELETE in the database itself (prescriptions and consumptions refuse
DELETE; their workflow columns change through the plugin's conditional updates). Going down refuses while
a prescription younger than the retention period (5 years) exists: purging would destroy records the law
requires to be kept.

Revision ID: prescription_review_0002
Revises: prescription_review_0001
Create Date: 2026-11-25
"""
import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "prescription_review_0002"
down_revision = "prescription_review_0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
RETENTION_DAYS = 5 * 366

APPEND_ONLY = ("rx_documents", "rx_prescription_items", "rx_decisions", "rx_access_log", "rx_prescription_keys",
               "rx_dispensings", "rx_banlists")
NO_DELETE = ("rx_prescriptions", "rx_consumptions")


def _guards_up() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # pharmo2o_append_only() comes with the core's first revision
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION pharmo2o_append_only()")
        for table in NO_DELETE:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION pharmo2o_append_only()")
    elif bind.dialect.name == "sqlite":
        for table in APPEND_ONLY + NO_DELETE:
            events = ("UPDATE", "DELETE") if table in APPEND_ONLY else ("DELETE",)
            for event in events:
                op.execute(f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")


def upgrade() -> None:
    op.create_table(
        "rx_documents",
        sa.Column("id", ID, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=40), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rx_documents")),
        sa.UniqueConstraint("sha256", name=op.f("uq_rx_documents_sha256")),
    )
    op.create_table(
        "rx_prescriptions",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("document_id", ID, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("patient_name", sa.String(length=100), nullable=False),
        sa.Column("patient_id_number", sa.String(length=18), nullable=False),
        sa.Column("relationship", sa.String(length=20), nullable=False),
        sa.Column("prescriber", sa.String(length=100), nullable=False),
        sa.Column("institution", sa.String(length=200), nullable=False),
        sa.Column("prescription_number", sa.String(length=64), nullable=False),
        sa.Column("number_key", sa.String(length=64), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("extension_note", sa.String(length=500), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("submitted_by", sa.String(length=100), nullable=False),
        sa.Column("submitted_at", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decided_by_user_id", ID, nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("reason_code", sa.String(length=40), nullable=True),
        sa.Column("customer_message", sa.String(length=500), nullable=True),
        sa.CheckConstraint("status IN ('pending','approved','rejected','withdrawn')",
                           name=op.f("ck_rx_prescriptions_status")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_rx_prescriptions_order_id_orders")),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_rx_prescriptions_store_id_stores")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_rx_prescriptions_customer_id_customers")),
        sa.ForeignKeyConstraint(["document_id"], ["rx_documents.id"],
                                name=op.f("fk_rx_prescriptions_document_id_rx_documents")),
        sa.ForeignKeyConstraint(["decided_by_user_id"], ["users.id"],
                                name=op.f("fk_rx_prescriptions_decided_by_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rx_prescriptions")),
    )
    with op.batch_alter_table("rx_prescriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rx_prescriptions_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rx_prescriptions_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rx_prescriptions_document_id"), ["document_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rx_prescriptions_submitted_at"), ["submitted_at"], unique=False)
        batch_op.create_index("ix_rx_prescriptions_queue", ["status", "store_id", "id"], unique=False)
        batch_op.create_index("ix_rx_prescriptions_number_key", ["number_key"], unique=False)

    op.create_table(
        "rx_prescription_items",
        sa.Column("id", ID, nullable=False),
        sa.Column("prescription_id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("product_name", sa.String(length=300), nullable=False),
        sa.Column("dosage", sa.String(length=200), nullable=True),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_rx_prescription_items_qty_pos")),
        sa.ForeignKeyConstraint(["prescription_id"], ["rx_prescriptions.id"],
                                name=op.f("fk_rx_prescription_items_prescription_id_rx_prescriptions")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"],
                                name=op.f("fk_rx_prescription_items_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rx_prescription_items")),
        sa.UniqueConstraint("prescription_id", "product_id",
                            name=op.f("uq_rx_prescription_items_prescription_id_product_id")),
    )
    with op.batch_alter_table("rx_prescription_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rx_prescription_items_prescription_id"), ["prescription_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_rx_prescription_items_product_id"), ["product_id"], unique=False)

    op.create_table(
        "rx_decisions",
        sa.Column("id", ID, nullable=False),
        sa.Column("prescription_id", ID, nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("licence_number", sa.String(length=64), nullable=True),
        sa.Column("store_id", ID, nullable=True),
        sa.Column("reason_code", sa.String(length=40), nullable=True),
        sa.Column("customer_message", sa.String(length=500), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["prescription_id"], ["rx_prescriptions.id"],
                                name=op.f("fk_rx_decisions_prescription_id_rx_prescriptions")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_rx_decisions_user_id_users")),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_rx_decisions_store_id_stores")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rx_decisions")),
    )
    with op.batch_alter_table("rx_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rx_decisions_prescription_id"), ["prescription_id"], unique=False)

    op.create_table(
        "rx_claims",
        sa.Column("prescription_id", ID, nullable=False, autoincrement=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("claimed_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["prescription_id"], ["rx_prescriptions.id"],
                                name=op.f("fk_rx_claims_prescription_id_rx_prescriptions")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_rx_claims_user_id_users")),
        sa.PrimaryKeyConstraint("prescription_id", name=op.f("pk_rx_claims")),
    )
    op.create_table(
        "rx_access_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("prescription_id", ID, nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=True),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["prescription_id"], ["rx_prescriptions.id"],
                                name=op.f("fk_rx_access_log_prescription_id_rx_prescriptions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rx_access_log")),
    )
    with op.batch_alter_table("rx_access_log", schema=None) as batch_op:
        batch_op.create_index("ix_rx_access_log_prescription", ["prescription_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rx_access_log_created_at"), ["created_at"], unique=False)

    op.create_table(
        "rx_prescription_keys",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("prescription_id", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["prescription_id"], ["rx_prescriptions.id"],
                                name=op.f("fk_rx_prescription_keys_prescription_id_rx_prescriptions")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rx_prescription_keys")),
    )
    with op.batch_alter_table("rx_prescription_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rx_prescription_keys_prescription_id"), ["prescription_id"],
                              unique=False)

    op.create_table(
        "rx_consumptions",
        sa.Column("id", ID, nullable=False),
        sa.Column("prescription_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_rx_consumptions_qty_pos")),
        sa.ForeignKeyConstraint(["prescription_id"], ["rx_prescriptions.id"],
                                name=op.f("fk_rx_consumptions_prescription_id_rx_prescriptions")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_rx_consumptions_order_id_orders")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_rx_consumptions_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rx_consumptions")),
        sa.UniqueConstraint("prescription_id", "order_id", "product_id",
                            name=op.f("uq_rx_consumptions_prescription_id_order_id_product_id")),
    )
    with op.batch_alter_table("rx_consumptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rx_consumptions_prescription_id"), ["prescription_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rx_consumptions_order_id"), ["order_id"], unique=False)

    op.create_table(
        "rx_dispensings",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("prescription_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("approved_by_user_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_rx_dispensings_order_id_orders")),
        sa.ForeignKeyConstraint(["prescription_id"], ["rx_prescriptions.id"],
                                name=op.f("fk_rx_dispensings_prescription_id_rx_prescriptions")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_rx_dispensings_user_id_users")),
        sa.ForeignKeyConstraint(["approved_by_user_id"], ["users.id"],
                                name=op.f("fk_rx_dispensings_approved_by_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rx_dispensings")),
        sa.UniqueConstraint("order_id", name=op.f("uq_rx_dispensings_order_id")),
    )
    with op.batch_alter_table("rx_dispensings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rx_dispensings_prescription_id"), ["prescription_id"], unique=False)

    op.create_table(
        "rx_banlists",
        sa.Column("id", ID, nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("loaded_by", sa.String(length=100), nullable=False),
        sa.Column("loaded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rx_banlists")),
        sa.UniqueConstraint("version", name=op.f("uq_rx_banlists_version")),
    )
    _guards_up()


def downgrade() -> None:
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=RETENTION_DAYS)
    bind = op.get_bind()
    young = bind.execute(sa.text("SELECT count(*) FROM rx_prescriptions WHERE submitted_at > :cutoff"),
                         {"cutoff": cutoff if bind.dialect.name != "sqlite" else cutoff.replace(tzinfo=None)}
                         ).scalar_one()
    if young:
        raise RuntimeError(f"prescription_review keeps prescriptions at least 5 years: {young} prescription(s) "
                           "are younger than that, so its tables cannot be dropped")
    for table in ("rx_banlists", "rx_dispensings", "rx_consumptions", "rx_prescription_keys", "rx_access_log",
                  "rx_claims", "rx_decisions", "rx_prescription_items", "rx_prescriptions", "rx_documents"):
        op.drop_table(table)
