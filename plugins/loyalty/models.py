"""The loyalty plugin's tables: members, the append-only ledger, earning lots,
per-order points state, rewards and staff↔customer links.

The ledger is the truth: every change of a member's points is one entry with a
unique ``source_key`` and the deltas it applies to the three balances
(available, pending, held). ``LoyaltyMember`` caches the sums (updated in the
entry's transaction, under the member's row lock) and :func:`plugins.loyalty.ledger.verify`
re-derives them. Lots, lot uses and per-order rows are bookkeeping that
explain *which* points an entry moved; they change only under the same lock.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow

__all__ = ["LoyaltyMember", "LedgerEntry", "PointsLot", "LotUse", "LoyaltyOrder", "Reward", "StaffLink",
           "ENTRY_KINDS", "LedgerAppendOnly"]

IdType = BigInteger().with_variant(Integer, "sqlite")

#: what each ledger kind does to the balances (a: available, p: pending, h: held)
ENTRY_KINDS = (
    "earn",        # p+  points earned by a paid order, not yet usable
    "vest",        # p-, a+  the order completed / the return window closed
    "hold",        # a-, h+  points reserved by a placed order (redeem_points)
    "redeem",      # h-  the order was paid: held points are spent
    "release",     # h-, a+  the order was cancelled before payment
    "return",      # a+  a refund gives redeemed points back
    "clawback",    # p- and/or a-  a refund takes earned points back
    "expire",      # a-  a lot reached its expiry
    "adjustment",  # a+/-  a staff correction (audited)
)


class LoyaltyMember(Base):
    """One member per customer; the row every balance change locks first."""

    __tablename__ = "loyalty_members"
    __table_args__ = (
        CheckConstraint("pending >= 0", name="pending_nonneg"),
        CheckConstraint("held >= 0", name="held_nonneg"),
    )

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True, autoincrement=False)
    tier: Mapped[str] = mapped_column(String(40))
    available: Mapped[int] = mapped_column(BigInteger, default=0)  # negative only under the "allow" refund policy
    pending: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    rolling_spend_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # at the last tier evaluation
    joined_via: Mapped[str] = mapped_column(String(20))  # "order" | "explicit" | "adjustment"
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    tier_since: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LedgerEntry(Base):
    """Append-only: one change of a member's points, unique by ``source_key``."""

    __tablename__ = "loyalty_ledger"
    __table_args__ = (Index("ix_loyalty_ledger_customer", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("loyalty_members.customer_id"))
    kind: Mapped[str] = mapped_column(String(20))
    source_key: Mapped[str] = mapped_column(String(200), unique=True)
    available_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    held_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    eligible_fen_delta: Mapped[int] = mapped_column(BigInteger, default=0)  # spend counted for tiers
    written_off: Mapped[int] = mapped_column(BigInteger, default=0)  # clawback not collected ("forbid" policy)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    lot_id: Mapped[int | None] = mapped_column(IdType)  # the lot an earn/vest/expire entry concerns
    actor: Mapped[str] = mapped_column(String(100), default="system")
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PointsLot(Base):
    """Points that became available together and expire together."""

    __tablename__ = "loyalty_lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="remaining_nonneg"),
        CheckConstraint("remaining <= points", name="remaining_le_points"),
        Index("ix_loyalty_lots_customer_expiry", "customer_id", "expires_at"),
        Index("ix_loyalty_lots_expiry", "expires_at", "remaining"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("loyalty_members.customer_id"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("loyalty_ledger.id"))  # the vest/adjustment that made it
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LotUse(Base):
    """Points an entry (a hold, a debit) took from a lot; ``returned`` of them came back."""

    __tablename__ = "loyalty_lot_uses"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("loyalty_ledger.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("loyalty_lots.id"), index=True)
    points: Mapped[int] = mapped_column(BigInteger)
    returned: Mapped[int] = mapped_column(BigInteger, default=0)


class LoyaltyOrder(Base):
    """What the plugin did for one order (redemption, earning, refunds)."""

    __tablename__ = "loyalty_orders"
    __table_args__ = (Index("ix_loyalty_orders_vest", "earn_state", "vest_due_at"),)

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("loyalty_members.customer_id"), index=True)
    online: Mapped[bool] = mapped_column(Boolean)
    redeem_points: Mapped[int] = mapped_column(BigInteger, default=0)
    redeem_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    redeem_state: Mapped[str | None] = mapped_column(String(10))  # held | spent | released
    hold_entry_id: Mapped[int | None] = mapped_column(IdType)
    returned_points: Mapped[int] = mapped_column(BigInteger, default=0)
    earned_points: Mapped[int] = mapped_column(BigInteger, default=0)
    eligible_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    earned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # the order's payment time
    earn_state: Mapped[str | None] = mapped_column(String(10))  # pending | vested | void
    vest_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    vested_points: Mapped[int] = mapped_column(BigInteger, default=0)
    lot_id: Mapped[int | None] = mapped_column(IdType)
    clawed_points: Mapped[int] = mapped_column(BigInteger, default=0)
    clawed_eligible_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Reward(Base):
    """A product customers may take for points (never Rx or OTC-A)."""

    __tablename__ = "loyalty_rewards"
    __table_args__ = (CheckConstraint("points_cost > 0", name="cost_pos"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), unique=True)
    points_cost: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class StaffLink(Base):
    """A staff user who is also a customer: they may not adjust that account."""

    __tablename__ = "loyalty_staff_links"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), unique=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerAppendOnly(Exception):
    """An attempt to change or delete a ledger entry."""


def _refuse(mapper, connection, target):
    raise LedgerAppendOnly("loyalty_ledger is append-only: entries are never changed or deleted")


event.listen(LedgerEntry, "before_update", _refuse)
event.listen(LedgerEntry, "before_delete", _refuse)
