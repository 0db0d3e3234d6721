"""The pos_sync tables: terminals, uploaded sales, review flags, stock discrepancies, price versions."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow

__all__ = ["PosDevice", "PosSale", "PosSaleFlag", "PosStockDiscrepancy", "PosSyncState", "PosProductPrice",
           "PosPriceVersion", "PosPriceHistory", "DEVICE_STATUSES", "SALE_STATUSES", "FLAG_KINDS"]

IdType = BigInteger().with_variant(Integer, "sqlite")

DEVICE_STATUSES = ("active", "revoked")
SALE_STATUSES = ("accepted", "rejected")
#: why a sale (or an upload attempt) needs a person to look at it
FLAG_KINDS = ("content_mismatch", "clock_drift", "stale_price", "sequence_reused", "database_mismatch")


class PosDevice(Base):
    """A terminal bound to one store. Only the SHA-256 of its secret is kept; ``database_id``
    is the terminal database it was first seen with (cleared by a re-registration)."""

    __tablename__ = "pos_devices"
    __table_args__ = (CheckConstraint("status IN ('active','revoked')", name="status"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="active")
    database_id: Mapped[str | None] = mapped_column(String(64))
    registered_by: Mapped[str] = mapped_column(String(100))
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(100))
    revoke_reason: Mapped[str | None] = mapped_column(String(500))
    last_contact_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_upload_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_clock_offset_s: Mapped[int | None] = mapped_column(Integer)  # device clock minus server clock
    queued: Mapped[int] = mapped_column(Integer, default=0)  # sales the terminal said were still queued
    last_lag_s: Mapped[int | None] = mapped_column(Integer)  # receive time minus sale time of the oldest sale of the last upload
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PosSale(Base):
    """One offline sale as first received: its content hash and the result that is returned
    again for every re-send. The sale itself is a core order (``order_id``)."""

    __tablename__ = "pos_sales"
    __table_args__ = (
        UniqueConstraint("device_id", "client_sale_id"),
        CheckConstraint("status IN ('accepted','rejected')", name="status"),
        Index("ix_pos_sales_device_status", "device_id", "status"),
        Index("ix_pos_sales_device_seq", "device_id", "device_seq"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("pos_devices.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    client_sale_id: Mapped[str] = mapped_column(String(64))
    device_seq: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(2000), default="")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), unique=True)
    total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    sold_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the device's clock
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the server's clock, first receipt
    clock_offset_s: Mapped[int | None] = mapped_column(Integer)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PosSaleFlag(Base):
    """Something about an upload a person must review (different content under a known sale
    id, clock drift, a stale price, a reused sequence number, a foreign terminal database)."""

    __tablename__ = "pos_sale_flags"
    __table_args__ = (Index("ix_pos_sale_flags_store_open", "store_id", "reviewed_at", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("pos_devices.id"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    sale_id: Mapped[int | None] = mapped_column(ForeignKey("pos_sales.id"), index=True)
    client_sale_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(2000), default="")
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)  # e.g. the refused content
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reviewed_by: Mapped[str | None] = mapped_column(String(100))


class PosStockDiscrepancy(Base):
    """Units an accepted offline sale took beyond the store's recorded on-hand."""

    __tablename__ = "pos_stock_discrepancies"
    __table_args__ = (
        CheckConstraint("quantity_short > 0", name="short_pos"),
        Index("ix_pos_stock_discrepancies_store_open", "store_id", "resolved_at", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    device_id: Mapped[int] = mapped_column(ForeignKey("pos_devices.id"))
    sale_id: Mapped[int] = mapped_column(ForeignKey("pos_sales.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    client_sale_id: Mapped[str] = mapped_column(String(64))
    line_id: Mapped[str] = mapped_column(String(64))
    quantity_short: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(500))


class PosSyncState(Base):
    """The plugin's single state row (id 1): the current price-list version and the key that
    signs catalogue cursors (a cursor from another database does not verify)."""

    __tablename__ = "pos_sync_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cursor_key: Mapped[str] = mapped_column(String(64))
    price_version: Mapped[int] = mapped_column(BigInteger, default=0)
    prices_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class PosProductPrice(Base):
    """Each product's price as of the current price-list version."""

    __tablename__ = "pos_product_prices"

    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    price_fen: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(BigInteger)


class PosPriceVersion(Base):
    """When each price-list version was published (and how many prices it changed)."""

    __tablename__ = "pos_price_versions"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed: Mapped[int] = mapped_column(Integer, default=0)


class PosPriceHistory(Base):
    """Append-only: a product's price from a price-list version on."""

    __tablename__ = "pos_price_history"
    __table_args__ = (UniqueConstraint("product_id", "version"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    version: Mapped[int] = mapped_column(BigInteger)
    price_fen: Mapped[int] = mapped_column(BigInteger)
