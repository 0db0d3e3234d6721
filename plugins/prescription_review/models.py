"""The prescription_review plugin's tables.

Prescriptions are sensitive personal data kept at least five years: nothing
here is ever deleted by the application, and the record of what was
submitted, decided, read and dispensed is append-only:

* ``rx_documents``      one row per distinct uploaded file (by SHA-256); the bytes live on disk
* ``rx_prescriptions``  what was submitted; only the workflow columns (status, decision) change,
                        and only through the conditional updates of :mod:`.services`
* ``rx_prescription_items``  the prescribed products and quantities
* ``rx_decisions``      append-only: submit, claim, approve, reject, withdraw, consume — who, with which
                        licence, why
* ``rx_claims``         the current claim of a pending prescription (a short lease, not history)
* ``rx_access_log``     append-only: every read of a prescription or its document
* ``rx_prescription_keys``  the (institution, number) and document hash an approved prescription holds:
                        unique, so one prescription cannot be approved twice under two records
* ``rx_consumptions``   which order used how much of which prescribed item (released if the order
                        is cancelled before payment)
* ``rx_dispensings``    append-only: who dispensed an approved Rx order (never its approver)
* ``rx_banlists``       append-only: every loaded version of the online-sale ban list
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (JSON, BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, event, inspect)
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow

__all__ = ["RxDocument", "Prescription", "PrescriptionItem", "Decision", "Claim", "AccessLog", "PrescriptionKey",
           "Consumption", "Dispensing", "BanListVersion", "STATUSES", "RELATIONSHIPS", "DECISION_ACTIONS",
           "RecordIsAppendOnly"]

IdType = BigInteger().with_variant(Integer, "sqlite")

STATUSES = ("pending", "approved", "rejected", "withdrawn")
#: the buyer's relationship to the patient
RELATIONSHIPS = ("self", "spouse", "parent", "child", "relative", "guardian", "other")
DECISION_ACTIONS = ("submit", "claim", "approve", "reject", "withdraw", "consume")


class RecordIsAppendOnly(Exception):
    """An attempt to change or delete a retained prescription record."""


class RxDocument(Base):
    """An uploaded prescription image or PDF: its hash, type and size (the bytes are on disk)."""

    __tablename__ = "rx_documents"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    media_type: Mapped[str] = mapped_column(String(40))  # image/jpeg, image/png, application/pdf
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Prescription(Base):
    __tablename__ = "rx_prescriptions"
    __table_args__ = (
        CheckConstraint("status IN ('pending','approved','rejected','withdrawn')", name="status"),
        Index("ix_rx_prescriptions_queue", "status", "store_id", "id"),
        Index("ix_rx_prescriptions_number_key", "number_key"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("rx_documents.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    patient_name: Mapped[str] = mapped_column(String(100))
    patient_id_number: Mapped[str] = mapped_column(String(18))
    relationship: Mapped[str] = mapped_column(String(20))  # (shadows orm.relationship in this body)
    prescriber: Mapped[str] = mapped_column(String(100))
    institution: Mapped[str] = mapped_column(String(200))
    prescription_number: Mapped[str] = mapped_column(String(64))
    number_key: Mapped[str] = mapped_column(String(64))  # SHA-256 of the normalised (institution, number)
    issue_date: Mapped[dt.date] = mapped_column(Date)
    extension_note: Mapped[str | None] = mapped_column(String(500))
    valid_until: Mapped[dt.date] = mapped_column(Date)  # the last local day it may be approved, paid, sold
    submitted_by: Mapped[str] = mapped_column(String(100))
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # workflow: written once, by the winning decision (conditional UPDATE ... WHERE status = 'pending')
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_by: Mapped[str | None] = mapped_column(String(100))
    reason_code: Mapped[str | None] = mapped_column(String(40))
    customer_message: Mapped[str | None] = mapped_column(String(500))

    items: Mapped[list["PrescriptionItem"]] = orm.relationship(order_by="PrescriptionItem.id", lazy="selectin")
    document: Mapped[RxDocument] = orm.relationship(lazy="joined")


class PrescriptionItem(Base):
    __tablename__ = "rx_prescription_items"
    __table_args__ = (
        UniqueConstraint("prescription_id", "product_id"),
        CheckConstraint("quantity > 0", name="qty_pos"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("rx_prescriptions.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    product_name: Mapped[str] = mapped_column(String(300))  # as the catalogue named it at submission
    dosage: Mapped[str | None] = mapped_column(String(200))  # usage as prescribed, if given


class Decision(Base):
    """Append-only: one step of a prescription's review."""

    __tablename__ = "rx_decisions"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("rx_prescriptions.id"), index=True)
    action: Mapped[str] = mapped_column(String(12))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(100))
    licence_number: Mapped[str | None] = mapped_column(String(64))  # the pharmacist's licence at the time
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    reason_code: Mapped[str | None] = mapped_column(String(40))
    customer_message: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Claim(Base):
    """The pharmacist currently reviewing a pending prescription (a lease; history is in rx_decisions)."""

    __tablename__ = "rx_claims"

    prescription_id: Mapped[int] = mapped_column(ForeignKey("rx_prescriptions.id"), primary_key=True,
                                                 autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(100))
    claimed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AccessLog(Base):
    """Append-only: who read which prescription (or its document), when."""

    __tablename__ = "rx_access_log"
    __table_args__ = (Index("ix_rx_access_log_prescription", "prescription_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("rx_prescriptions.id"))
    action: Mapped[str] = mapped_column(String(20))  # "view" | "document"
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str | None] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(IdType)
    customer_id: Mapped[int | None] = mapped_column(IdType)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class PrescriptionKey(Base):
    """A key held by an approved prescription: ``number:<sha256>`` or ``document:<sha256>``."""

    __tablename__ = "rx_prescription_keys"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("rx_prescriptions.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Consumption(Base):
    """How much of a prescribed item an order uses; ``released_at`` when that order was cancelled unpaid."""

    __tablename__ = "rx_consumptions"
    __table_args__ = (
        UniqueConstraint("prescription_id", "order_id", "product_id"),
        CheckConstraint("quantity > 0", name="qty_pos"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("rx_prescriptions.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Dispensing(Base):
    """Append-only: the dispensing step of an approved Rx order and who did it."""

    __tablename__ = "rx_dispensings"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("rx_prescriptions.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(100))
    approved_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class BanListVersion(Base):
    """Append-only: one loaded version of the online-sale ban list; the newest row is in force."""

    __tablename__ = "rx_banlists"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    loaded_by: Mapped[str] = mapped_column(String(100))
    loaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# ------------------------------------------------------------ append-only

def _refuse(mapper, connection, target):
    raise RecordIsAppendOnly(f"{type(target).__tablename__} is append-only: rows are never changed or deleted")


def _only(columns: frozenset[str]):
    def check(mapper, connection, target):
        state = inspect(target)
        changed = {a.key for a in state.attrs if a.history.has_changes()}
        bad = sorted(changed - columns)
        if bad:
            raise RecordIsAppendOnly(f"{type(target).__tablename__}: {', '.join(bad)} may not change once recorded")
    return check


for _cls in (RxDocument, PrescriptionItem, Decision, AccessLog, PrescriptionKey, Dispensing, BanListVersion):
    event.listen(_cls, "before_update", _refuse)
for _cls in (RxDocument, Prescription, PrescriptionItem, Decision, AccessLog, PrescriptionKey, Consumption,
             Dispensing, BanListVersion):
    event.listen(_cls, "before_delete", _refuse)
event.listen(Prescription, "before_update", _only(frozenset(
    {"status", "decided_at", "decided_by_user_id", "decided_by", "reason_code", "customer_message"})))
event.listen(Consumption, "before_update", _only(frozenset({"released_at"})))
