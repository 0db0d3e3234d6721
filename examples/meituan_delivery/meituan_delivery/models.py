"""The plugin's one table: which core order a Meituan order became, and how its delivery goes."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow

__all__ = ["MeituanOrder", "DELIVERY_STATUSES"]

IdType = BigInteger().with_variant(Integer, "sqlite")
#: Meituan's view of the delivery, as its callbacks report it
DELIVERY_STATUSES = ("accepted", "rider_assigned", "picked_up", "delivered", "cancelled")


class MeituanOrder(Base):
    __tablename__ = "meituan_orders"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    meituan_order_id: Mapped[str] = mapped_column(String(64), unique=True)  # Meituan's id: the idempotency key
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    app_poi_code: Mapped[str] = mapped_column(String(64))  # Meituan's shop code
    delivery_status: Mapped[str] = mapped_column(String(20))
    meituan_total_fen: Mapped[int] = mapped_column(BigInteger)  # what the customer paid Meituan
    body_sha256: Mapped[str] = mapped_column(String(64))  # of the accepted webhook body (replays must match)
    rider_name: Mapped[str | None] = mapped_column(String(100))
    rider_phone: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
