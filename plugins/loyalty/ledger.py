"""Ledger primitives: member locks, idempotent entries, earning lots, verification.

Rules every function here keeps:

* A change of a member's points takes the member's row lock first
  (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
  already serializes writers), then touches the member's lots. One lock
  order, so no deadlock between two changes of one member.
* :func:`post` inserts the entry inside a SAVEPOINT: a ``source_key`` that is
  already there (a replayed event, a second worker) makes it return ``None``
  and the caller does nothing else. Balances and lots change only after the
  entry is in, in the same transaction.
* Invariant, checked by :func:`verify`: the cached balances equal the sums of
  the ledger's deltas; the unexpired lots' remaining points add up to
  ``available`` (or to 0 while a refund left the member in debt).
"""
from __future__ import annotations

import datetime as dt
from fractions import Fraction

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Customer

from .models import LedgerEntry, LotUse, LoyaltyMember, PointsLot
from .settings import Settings

__all__ = ["lock_member", "ensure_member", "post", "new_lot", "take", "credit", "settle", "expire_lot",
           "lot_expiry", "round_half_up", "verify"]


def round_half_up(value: Fraction) -> int:
    """The nearest integer, halves away from zero (``value`` is never negative here)."""
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def lot_expiry(earned_at: dt.datetime, settings: Settings) -> dt.datetime:
    """The end of the calendar month ``expiry_months`` after the month of ``earned_at`` (local time), in UTC."""
    local = earned_at.astimezone(settings.timezone)
    index = local.year * 12 + (local.month - 1) + settings.expiry_months + 1
    start_of_next = dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=settings.timezone)
    return start_of_next.astimezone(dt.timezone.utc)


def lock_member(session: Session, customer_id: int) -> LoyaltyMember | None:
    """The member row, locked for the rest of the transaction, read fresh from the database."""
    return session.scalars(
        select(LoyaltyMember).where(LoyaltyMember.customer_id == customer_id)
        .with_for_update().execution_options(populate_existing=True)).one_or_none()


def ensure_member(session: Session, settings: Settings, customer_id: int, via: str,
                  now: dt.datetime) -> tuple[LoyaltyMember, bool]:
    """The locked member for ``customer_id``, created if needed; ``(member, created)``."""
    member = lock_member(session, customer_id)
    if member is not None:
        return member, False
    if session.get(Customer, customer_id) is None:
        raise NotFound(f"customer {customer_id} does not exist")
    member = LoyaltyMember(customer_id=customer_id, tier=settings.tiers[0].name, available=0, pending=0, held=0,
                           rolling_spend_fen=0, joined_via=via, joined_at=now, tier_since=now)
    try:
        with session.begin_nested():  # two first orders at once: one insert wins, the other reads it
            session.add(member)
            session.flush()
    except IntegrityError:
        member = lock_member(session, customer_id)
        if member is None:
            raise
        return member, False
    return member, True


def post(session: Session, member: LoyaltyMember, kind: str, source_key: str, *, available: int = 0,
         pending: int = 0, held: int = 0, eligible_fen: int = 0, written_off: int = 0,
         order_id: int | None = None, lot_id: int | None = None, actor: str = "system", detail: str = "",
         now: dt.datetime | None = None) -> LedgerEntry | None:
    """Append one entry and apply its deltas to ``member`` (locked); ``None`` if ``source_key`` is already in."""
    entry = LedgerEntry(customer_id=member.customer_id, kind=kind, source_key=source_key, available_delta=available,
                        pending_delta=pending, held_delta=held, eligible_fen_delta=eligible_fen,
                        written_off=written_off, order_id=order_id, lot_id=lot_id, actor=actor, detail=detail)
    if now is not None:
        entry.created_at = now
    try:
        with session.begin_nested():
            session.add(entry)
            session.flush()
    except IntegrityError:
        if session.scalar(select(LedgerEntry.id).where(LedgerEntry.source_key == source_key)) is None:
            raise  # some other constraint: not a replay
        return None
    member.available += available
    member.pending += pending
    member.held += held
    return entry


def new_lot(session: Session, settings: Settings, member: LoyaltyMember, entry: LedgerEntry, points: int,
            earned_at: dt.datetime, order_id: int | None = None) -> PointsLot:
    """A lot for ``points`` that became available through ``entry``, initially empty (see :func:`credit`)."""
    lot = PointsLot(customer_id=member.customer_id, entry_id=entry.id, order_id=order_id, points=points,
                    remaining=0, earned_at=earned_at, expires_at=lot_expiry(earned_at, settings))
    session.add(lot)
    session.flush()
    return lot


def _usable(session: Session, customer_id: int, now: dt.datetime) -> list[PointsLot]:
    return list(session.scalars(
        select(PointsLot).where(PointsLot.customer_id == customer_id, PointsLot.remaining > 0,
                                PointsLot.expired_at.is_(None), PointsLot.expires_at > now)
        .order_by(PointsLot.expires_at, PointsLot.id)
        .with_for_update().execution_options(populate_existing=True)))


def take(session: Session, entry: LedgerEntry, points: int, now: dt.datetime,
         first: PointsLot | None = None) -> int:
    """Take up to ``points`` from the member's usable lots, ``first`` then soonest-expiring first,
    recording each use against ``entry``; returns how many were taken."""
    lots = _usable(session, entry.customer_id, now)
    if first is not None and first in lots:
        lots.remove(first)
        lots.insert(0, first)
    left = points
    for lot in lots:
        if left == 0:
            break
        n = min(left, lot.remaining)
        lot.remaining -= n
        session.add(LotUse(entry_id=entry.id, lot_id=lot.id, points=n, returned=0))
        left -= n
    session.flush()
    return points - left


def credit(session: Session, settings: Settings, member: LoyaltyMember, entry: LedgerEntry,
           credits: list[tuple[PointsLot, int]], debt_before: int, now: dt.datetime, actor: str) -> None:
    """Put credited points into their lots after ``entry`` (already posted) raised ``available``.

    A debt (``available`` below zero before the entry) is repaid first, from
    the soonest-expiring credits; a credit to a lot already past its expiry
    expires at once (giving points back never extends their life).
    """
    debt = max(0, debt_before)
    for lot, n in sorted(credits, key=lambda c: (c[0].expires_at, c[0].id)):
        repay = min(debt, n)
        debt -= repay
        lot.remaining += n - repay
    session.flush()
    for lot, _n in credits:
        if lot.expires_at <= now and lot.remaining > 0:
            expire_lot(session, member, lot, now, actor=actor, after_entry=entry.id)


def expire_lot(session: Session, member: LoyaltyMember, lot: PointsLot, now: dt.datetime, *,
               actor: str = "system", after_entry: int | None = None) -> int:
    """Expire what is left of ``lot`` (past its expiry; member locked); returns the points expired."""
    expired = lot.remaining
    first_time = lot.expired_at is None
    if expired > 0:
        key = f"expire:lot:{lot.id}" if first_time else f"expire:lot:{lot.id}:after:{after_entry}"
        entry = post(session, member, "expire", key, available=-expired, lot_id=lot.id, order_id=lot.order_id,
                     actor=actor, detail=f"lot #{lot.id} expired at {lot.expires_at.isoformat()}", now=now)
        if entry is None:
            return 0
        lot.remaining = 0
    if first_time:
        lot.expired_at = now
    session.flush()
    return expired


def settle(session: Session, member: LoyaltyMember, now: dt.datetime, actor: str = "system") -> int:
    """Expire the member's lots that are past expiry (member locked); returns the points expired."""
    lots = session.scalars(
        select(PointsLot).where(PointsLot.customer_id == member.customer_id, PointsLot.expired_at.is_(None),
                                PointsLot.expires_at <= now)
        .order_by(PointsLot.expires_at, PointsLot.id)
        .with_for_update().execution_options(populate_existing=True)).all()
    return sum(expire_lot(session, member, lot, now, actor=actor) for lot in lots)


def verify(session: Session, customer_id: int | None = None) -> list[dict]:
    """Re-derive balances from the ledger and lots; one problem dict per mismatch (empty when sound)."""
    members = select(LoyaltyMember)
    sums = select(LedgerEntry.customer_id, func.coalesce(func.sum(LedgerEntry.available_delta), 0),
                  func.coalesce(func.sum(LedgerEntry.pending_delta), 0),
                  func.coalesce(func.sum(LedgerEntry.held_delta), 0)).group_by(LedgerEntry.customer_id)
    lots = select(PointsLot.customer_id, func.coalesce(func.sum(PointsLot.remaining), 0)) \
        .group_by(PointsLot.customer_id)
    if customer_id is not None:
        members = members.where(LoyaltyMember.customer_id == customer_id)
        sums = sums.where(LedgerEntry.customer_id == customer_id)
        lots = lots.where(PointsLot.customer_id == customer_id)
    derived = {cid: (a, p, h) for cid, a, p, h in session.execute(sums)}
    in_lots = dict(session.execute(lots).all())
    problems = []
    for m in session.scalars(members):
        a, p, h = derived.get(m.customer_id, (0, 0, 0))
        if (m.available, m.pending, m.held) != (a, p, h):
            problems.append({"customer_id": m.customer_id, "problem": "cached balance differs from the ledger",
                             "cached": [m.available, m.pending, m.held], "ledger": [a, p, h]})
        expected = max(0, a)
        if in_lots.get(m.customer_id, 0) != expected:
            problems.append({"customer_id": m.customer_id, "problem": "lots do not add up to the available balance",
                             "lots": in_lots.get(m.customer_id, 0), "available": a})
        if p < 0 or h < 0:
            problems.append({"customer_id": m.customer_id, "problem": "negative pending or held", "ledger": [a, p, h]})
    return problems
