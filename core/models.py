"""The core's tables: stores, catalogue, people, lot stock, orders, audit, outbox."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, CheckConstraint, Date, ForeignKey, Index, Integer,
    String, Text, UniqueConstraint, event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, UTCDateTime, utcnow

__all__ = [
    "Store", "Product", "Customer", "User", "ApiToken", "StockLot", "StockMovement",
    "Order", "OrderLine", "OrderAllocation", "OrderAdjustment", "OrderEvent",
    "AuditEntry", "OutboxMessage", "RX_CLASSES", "ROLES", "ORDER_STATUSES",
    "LoginAttempt", "IdempotencyRecord",
]

RX_CLASSES = ("rx", "otc_a", "otc_b")
ROLES = ("admin", "store_manager", "pharmacist", "clerk")
ORDER_STATUSES = (
    "awaiting_review", "awaiting_payment", "paid", "ready", "dispatched",
    "completed", "cancelled", "refunded",
)
MOVEMENT_KINDS = (
    "receipt", "adjustment", "sale", "reservation", "release", "transfer_out",
    "transfer_in", "return",
)

IdType = BigInteger().with_variant(Integer, "sqlite")


class Store(Base):
    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("rx_class IN ('rx','otc_a','otc_b')", name="rx_class"),
        CheckConstraint("price_fen >= 0", name="price_nonneg"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    barcode: Mapped[str | None] = mapped_column(String(64), index=True)
    generic_name: Mapped[str] = mapped_column(String(200), index=True)
    brand_name: Mapped[str] = mapped_column(String(200), default="")
    specification: Mapped[str] = mapped_column(String(200), default="")
    pack: Mapped[str] = mapped_column(String(100), default="")
    dosage_form: Mapped[str] = mapped_column(String(100), default="")
    manufacturer: Mapped[str] = mapped_column(String(200), default="")
    mah: Mapped[str] = mapped_column(String(200), default="")
    approval_number: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(100), default="", index=True)
    rx_class: Mapped[str] = mapped_column(String(8))
    ephedrine: Mapped[bool] = mapped_column(Boolean, default=False)
    online_banned: Mapped[bool] = mapped_column(Boolean, default=False)
    cold_chain: Mapped[bool] = mapped_column(Boolean, default=False)
    storage: Mapped[str] = mapped_column(String(200), default="")
    package_insert: Mapped[str] = mapped_column(Text, default="")
    price_fen: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, index=True)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str | None] = mapped_column(String(40), index=True)
    openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('admin','store_manager','pharmacist','clerk')", name="role"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    licence_number: Mapped[str | None] = mapped_column(String(64))
    licence_expiry: Mapped[dt.date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class StockLot(Base):
    """One lot of one product in one store; ``on_hand``/``reserved`` are the sums
    of its movements, kept in the same transaction as each movement."""

    __tablename__ = "stock_lots"
    __table_args__ = (
        UniqueConstraint("store_id", "product_id", "lot_no"),
        CheckConstraint("reserved >= 0", name="reserved_nonneg"),
        Index("ix_stock_lots_store_product_expiry", "store_id", "product_id", "expiry"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    lot_no: Mapped[str] = mapped_column(String(64))
    expiry: Mapped[dt.date] = mapped_column(Date)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, index=True)

    product: Mapped[Product] = relationship()


class StockMovement(Base):
    """Append-only: every change of a lot's on-hand or reserved quantity."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        Index("ix_stock_movements_store_product", "store_id", "product_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    lot_id: Mapped[int] = mapped_column(ForeignKey("stock_lots.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    on_hand_delta: Mapped[int] = mapped_column(Integer, default=0)
    reserved_delta: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    reference: Mapped[str | None] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("fulfilment IN ('pickup','delivery')", name="fulfilment"),
        CheckConstraint("total_fen >= 0", name="total_nonneg"),
        Index("ix_orders_store_status", "store_id", "status"),
        Index("ix_orders_status_expires", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    channel: Mapped[str] = mapped_column(String(40))
    fulfilment: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    subtotal_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    adjustments_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    pickup_code: Mapped[str | None] = mapped_column(String(12))
    hold_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    delivery_address: Mapped[str | None] = mapped_column(String(500))
    payment_provider: Mapped[str | None] = mapped_column(String(40))
    payment_reference: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(500))
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    lines: Mapped[list["OrderLine"]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id", lazy="selectin")
    adjustments: Mapped[list["OrderAdjustment"]] = relationship(
        cascade="all, delete-orphan", order_by="OrderAdjustment.id", lazy="selectin")


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="qty_pos"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    line_total_fen: Mapped[int] = mapped_column(BigInteger)
    product_name: Mapped[str] = mapped_column(String(300))
    rx_class: Mapped[str] = mapped_column(String(8))

    order: Mapped[Order] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()
    allocations: Mapped[list["OrderAllocation"]] = relationship(
        cascade="all, delete-orphan", order_by="OrderAllocation.id", lazy="selectin")


class OrderAllocation(Base):
    """Which lots a line takes (FEFO), with lot number and expiry recorded."""

    __tablename__ = "order_allocations"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("stock_lots.id"), index=True)
    lot_no: Mapped[str] = mapped_column(String(64))
    expiry: Mapped[dt.date] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(Integer)


class OrderAdjustment(Base):
    __tablename__ = "order_adjustments"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class OrderEvent(Base):
    """Append-only history of an order's status."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    old_status: Mapped[str | None] = mapped_column(String(20))
    new_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """Append-only audit log: who did what, when, with the before/after state."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100), index=True)
    entity: Mapped[str] = mapped_column(String(100))
    entity_id: Mapped[str | None] = mapped_column(String(100))
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class OutboxMessage(Base):
    """A message to the outside world, written in the business transaction and
    sent after commit by the dispatcher, with retries."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    """Failed logins per (username, client address), shared by every worker: the
    key is the SHA-256 of both, so neither is stored in clear."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, index=True)


class IdempotencyRecord(Base):
    """The stored answer to a mutating API request sent with an ``Idempotency-Key``,
    written in the request's own transaction (so it exists only if the change does)."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("actor", "key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class AppendOnlyViolation(Exception):
    """An attempt to change or delete a row of an append-only table."""


def _refuse(mapper, connection, target):
    raise AppendOnlyViolation(f"{type(target).__tablename__} is append-only: rows are never changed or deleted")


for _cls in (AuditEntry, StockMovement, OrderEvent):
    event.listen(_cls, "before_update", _refuse)
    event.listen(_cls, "before_delete", _refuse)
