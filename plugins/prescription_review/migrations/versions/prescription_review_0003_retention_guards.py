"""prescription_review: the retained records refuse TRUNCATE; who and what a prescription names never change

prescription_review_0002's row triggers refuse UPDATE/DELETE of the append-only tables and DELETE of
prescriptions and consumptions. Two gaps are closed in the database itself:

* TRUNCATE fires no row trigger: a statement-level BEFORE TRUNCATE trigger on every retained table
  (PostgreSQL; SQLite has no TRUNCATE and its DELETE without WHERE fires the row triggers).
* ``rx_prescriptions``: an UPDATE naming what identifies the prescription — the patient (name, resident
  ID, relationship), the prescriber, institution, number and its key, the document, the order, store,
  customer, submitter, extension note — is refused (both backends). Its workflow columns (status and
  decision) change through the plugin's conditional updates; its dates (issue, validity, submission) are
  guarded by the ORM only, because the plugin's tests move them to travel in time.
* ``rx_consumptions``: only ``released_at`` may change.

Revision ID: prescription_review_0003
Revises: prescription_review_0002
Create Date: 2026-11-25
"""
from alembic import op

revision = "prescription_review_0003"
down_revision = "prescription_review_0002"
branch_labels = None
depends_on = None

RETAINED = ("rx_documents", "rx_prescriptions", "rx_prescription_items", "rx_decisions", "rx_access_log",
            "rx_prescription_keys", "rx_consumptions", "rx_dispensings", "rx_banlists")
#: per table, the columns that never change once recorded (every column but the workflow ones)
FIXED = {
    "rx_prescriptions": ("id", "order_id", "store_id", "customer_id", "document_id", "patient_name",
                         "patient_id_number", "relationship", "prescriber", "institution", "prescription_number",
                         "number_key", "extension_note", "submitted_by"),
    "rx_consumptions": ("id", "prescription_id", "order_id", "product_id", "quantity", "actor", "created_at"),
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":  # pharmo2o_append_only() comes with the core's first revision
        for table in RETAINED:
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION pharmo2o_append_only()")
        for table, columns in FIXED.items():
            op.execute(f"CREATE TRIGGER {table}_fixed_columns BEFORE UPDATE OF {', '.join(columns)} ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION pharmo2o_append_only()")
    elif dialect == "sqlite":
        for table, columns in FIXED.items():
            op.execute(f"CREATE TRIGGER {table}_fixed_columns BEFORE UPDATE OF {', '.join(columns)} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table}: only the workflow columns may change'); END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in FIXED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_fixed_columns ON {table}")
        for table in RETAINED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    elif dialect == "sqlite":
        for table in FIXED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_fixed_columns")
