"""Loyalty services: membership, redemption holds, earning and vesting, refunds,
expiry, tiers, staff adjustments, and the reads behind the API.

Functions that change points run inside the caller's transaction (a hook's or
a request's) and are idempotent by their ledger source keys; the ``run_*``
jobs open one short transaction per member.
"""
from __future__ import annotations

import datetime as dt
import uuid
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.auth import Caller
from core.db import utcnow
from core.errors import Conflict, Forbidden, IdempotencyConflict, NotFound, ValidationFailed
from core.listing import Page, keyset
from core.models import Customer, Order, User

from . import ledger
from .earning import earning, redeemable_fen
from .models import LedgerEntry, LotUse, LoyaltyMember, LoyaltyOrder, PointsLot, StaffLink
from .settings import Settings

__all__ = ["join", "get_member", "summary", "list_ledger", "hold", "spend", "release", "earn", "schedule_vest",
           "vest", "refund", "evaluate_tier", "adjust", "link_staff", "unlink_staff", "list_staff_links",
           "run_expire", "run_vest", "run_tiers", "check_redeem_request", "TIER_WINDOW"]

TIER_WINDOW = dt.timedelta(days=365)
ROLES_READING_MEMBERS = ("admin", "store_manager", "pharmacist", "clerk")


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: pass a timezone-aware UTC time")
    return now


def _int_id(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationFailed.one(field, f"{value!r} is not an id")
    return value


def _order_row(session: Session, order_id: int) -> LoyaltyOrder | None:
    return session.scalars(select(LoyaltyOrder).where(LoyaltyOrder.order_id == order_id)
                           .with_for_update().execution_options(populate_existing=True)).one_or_none()


# ------------------------------------------------------------------ membership

def join(session: Session, settings: Settings, customer_id: int, caller: Caller,
         now: dt.datetime | None = None) -> tuple[LoyaltyMember, bool]:
    """Make ``customer_id`` a member (the customer themself or staff); ``(member, created)``."""
    customer_id = _int_id(customer_id, "customer_id")
    if caller.role == "customer" and caller.customer_id != customer_id:
        raise Forbidden("a customer may only join for themself")
    if caller.role != "customer" and not caller.is_staff:
        raise Forbidden("only the customer or store staff may enrol a member")
    member, created = ledger.ensure_member(session, settings, customer_id, "explicit", _now(now))
    if created:
        audit.record(session, caller, "loyalty.join", "loyalty_member", customer_id, after={"tier": member.tier})
    return member, created


def get_member(session: Session, customer_id: int) -> LoyaltyMember:
    member = session.get(LoyaltyMember, customer_id) if isinstance(customer_id, int) else None
    if member is None:
        raise NotFound(f"customer {customer_id} is not a loyalty member")
    return member


def may_read(caller: Caller, customer_id: int) -> bool:
    return caller.is_staff or (caller.role == "customer" and caller.customer_id == customer_id)


def summary(session: Session, settings: Settings, customer_id: int, *, within_days: int | None = None,
            now: dt.datetime | None = None) -> dict[str, Any]:
    """Balances, tier and points expiring within ``within_days`` of ``customer_id``."""
    now = _now(now)
    member = get_member(session, customer_id)
    days = settings.expiring_within_days if within_days is None else within_days
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 3650:
        raise ValidationFailed.one("within_days", "must be an integer from 0 to 3650")
    live = select(PointsLot).where(PointsLot.customer_id == customer_id, PointsLot.remaining > 0,
                                   PointsLot.expired_at.is_(None))
    lots = list(session.scalars(live.order_by(PointsLot.expires_at, PointsLot.id)))
    overdue = sum(lot.remaining for lot in lots if lot.expires_at <= now)  # the expiry job has not run yet
    until = now + dt.timedelta(days=days)
    soon = [lot for lot in lots if now < lot.expires_at <= until]
    tier = settings.tier(member.tier)
    higher = [t for t in settings.tiers if t.min_spend_fen > tier.min_spend_fen]
    return {
        "customer_id": customer_id,
        "tier": member.tier,
        "tier_multiplier": str(tier.multiplier),
        "tier_since": member.tier_since.isoformat(),
        "rolling_spend_fen": member.rolling_spend_fen,
        "next_tier": ({"name": higher[0].name, "min_spend_fen": higher[0].min_spend_fen} if higher else None),
        "available": member.available - overdue,
        "pending": member.pending,
        "held": member.held,
        "expiring": {
            "within_days": days,
            "points": sum(lot.remaining for lot in soon),
            "lots": [{"points": lot.remaining, "expires_at": lot.expires_at.isoformat()} for lot in soon],
        },
        "joined_at": member.joined_at.isoformat(),
        "joined_via": member.joined_via,
    }


def serialize_entry(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "kind": entry.kind, "available_delta": entry.available_delta,
        "pending_delta": entry.pending_delta, "held_delta": entry.held_delta,
        "eligible_fen_delta": entry.eligible_fen_delta, "written_off": entry.written_off,
        "order_id": entry.order_id, "detail": entry.detail, "actor": entry.actor,
        "created_at": entry.created_at.isoformat(),
    }


def list_ledger(session: Session, customer_id: int, *, kind: str | None = None, before: int | None = None,
                limit: int = 50) -> Page[LedgerEntry]:
    """The member's entries, newest first; ``before`` an entry id to continue from."""
    get_member(session, customer_id)
    stmt = select(LedgerEntry).where(LedgerEntry.customer_id == customer_id)
    if kind is not None:
        stmt = stmt.where(LedgerEntry.kind == kind)
    return keyset(session, stmt, LedgerEntry.id, after=before, limit=limit, descending=True)


# ------------------------------------------------------------------ redemption

def check_redeem_request(order: Order, extra: dict, settings: Settings) -> tuple[int, list[tuple[str, str]]]:
    """The points ``extra`` asks to redeem on ``order`` and the problems with the request (no locks)."""
    value = (extra or {}).get("redeem_points")
    if value is None or value == 0 and not isinstance(value, bool):
        return 0, []
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0, [("redeem_points", "must be a whole number of points >= 0")]
    if order.status == "paid":
        return value, [("redeem_points", "points cannot be redeemed on a sale recorded after the fact "
                                         "(offline POS): they must be held before payment")]
    if order.channel in settings.no_redemption_channels:
        return value, [("redeem_points", f"points cannot be redeemed on channel {order.channel!r}")]
    if order.customer_id is None:
        return value, [("redeem_points", "only a customer's order can redeem points")]
    if value < settings.min_redeem_points:
        return value, [("redeem_points", f"at least {settings.min_redeem_points} points per redemption")]
    cap = redeemable_fen(order, settings)
    if value * settings.fen_per_point > cap:
        return value, [("redeem_points", f"at most {cap // settings.fen_per_point} points can be redeemed on "
                                         f"this order ({settings.max_redeem_percent}% of its "
                                         f"{'' if settings.redeem_on_rx else 'non-Rx '}lines)")]
    return value, []


def hold(session: Session, settings: Settings, order: Order, points: int, online: bool, actor: str,
         now: dt.datetime | None = None) -> int:
    """Hold ``points`` of the customer for the new ``order``; returns the discount in fen.

    Refuses (naming ``redeem_points``) when the available balance is short;
    two holds on one balance serialize on the member's row lock.
    """
    now = _now(now)
    member = ledger.lock_member(session, order.customer_id)
    if member is None:
        raise ValidationFailed.one("redeem_points", "the customer is not a loyalty member and has no points")
    ledger.settle(session, member, now)
    if member.available < points:
        raise ValidationFailed.one("redeem_points",
                                   f"only {max(0, member.available)} points are available, {points} asked")
    fen = points * settings.fen_per_point
    entry = ledger.post(session, member, "hold", f"hold:order:{order.id}", available=-points, held=points,
                        order_id=order.id, actor=actor, detail=f"held for order #{order.id}", now=now)
    if entry is None:  # the same order again: its hold is already there
        return fen
    taken = ledger.take(session, entry, points, now)
    if taken != points:  # the lots disagree with the balance: refuse rather than overdraw
        raise RuntimeError(f"loyalty member {member.customer_id}: lots hold {taken} of {points} available points; "
                           "run `pharmo2o loyalty verify`")
    session.add(LoyaltyOrder(order_id=order.id, customer_id=member.customer_id, online=online, redeem_points=points,
                             redeem_fen=fen, redeem_state="held", hold_entry_id=entry.id))
    session.flush()
    return fen


def spend(session: Session, order: Order, actor: str, now: dt.datetime | None = None) -> bool:
    """The order is paid: its held points are spent. ``False`` when there is nothing (more) to do."""
    if order.customer_id is None:
        return False
    member = ledger.lock_member(session, order.customer_id)
    row = _order_row(session, order.id) if member is not None else None
    if row is None or row.redeem_state != "held":
        return False
    entry = ledger.post(session, member, "redeem", f"redeem:order:{order.id}", held=-row.redeem_points,
                        order_id=order.id, actor=actor, now=_now(now),
                        detail=f"{row.redeem_points} points paid {row.redeem_fen} fen of order #{order.id}")
    if entry is None:
        return False
    row.redeem_state = "spent"
    return True


def _give_back(session: Session, settings: Settings, member: LoyaltyMember, row: LoyaltyOrder,
               entry: LedgerEntry, points: int, debt_before: int, now: dt.datetime, actor: str) -> None:
    """Return ``points`` of the order's hold to the lots they were taken from."""
    uses = session.scalars(select(LotUse).where(LotUse.entry_id == row.hold_entry_id).order_by(LotUse.id)
                           .with_for_update().execution_options(populate_existing=True)).all()
    credits, left = [], points
    for use in uses:
        n = min(left, use.points - use.returned)
        if n <= 0:
            continue
        use.returned += n
        left -= n
        credits.append((session.get(PointsLot, use.lot_id, populate_existing=True), n))
    if left:
        raise RuntimeError(f"order {row.order_id}: {left} redeemed points have no lot to go back to")
    ledger.credit(session, settings, member, entry, credits, debt_before, now, actor)


def release(session: Session, settings: Settings, order: Order, actor: str, now: dt.datetime | None = None) -> bool:
    """The unpaid order was cancelled: its held points become available again."""
    if order.customer_id is None:
        return False
    now = _now(now)
    member = ledger.lock_member(session, order.customer_id)
    row = _order_row(session, order.id) if member is not None else None
    if row is None or row.redeem_state != "held":
        return False
    debt = max(0, -member.available)
    entry = ledger.post(session, member, "release", f"release:order:{order.id}", available=row.redeem_points,
                        held=-row.redeem_points, order_id=order.id, actor=actor, now=now,
                        detail=f"order #{order.id} cancelled")
    if entry is None:
        return False
    row.redeem_state = "released"
    _give_back(session, settings, member, row, entry, row.redeem_points, debt, now, actor)
    return True


# --------------------------------------------------------------------- earning

def earn(session: Session, settings: Settings, order: Order, online: bool, actor: str,
         now: dt.datetime | None = None) -> LedgerEntry | None:
    """The order is paid: earn its points as pending (joining the customer if configured).

    Idempotent: the entry's source key is the order, so a replayed or
    concurrent call adds nothing. Returns the new entry or ``None``.
    """
    if order.customer_id is None:
        return None
    now = _now(now)
    if settings.auto_join:
        member, _ = ledger.ensure_member(session, settings, order.customer_id, "order", now)
    else:
        member = ledger.lock_member(session, order.customer_id)
        if member is None:
            return None
    got = earning(order, settings, settings.tier(member.tier))
    if got.points == 0 and got.eligible_fen == 0:
        return None
    entry = ledger.post(session, member, "earn", f"earn:order:{order.id}", pending=got.points,
                        eligible_fen=got.eligible_fen, order_id=order.id, actor=actor, now=now,
                        detail=f"order #{order.id}: {got.eligible_fen} fen eligible, tier {member.tier}")
    if entry is None:
        return None
    row = _order_row(session, order.id)
    if row is None:
        row = LoyaltyOrder(order_id=order.id, customer_id=member.customer_id, online=online)
        session.add(row)
    row.earned_points, row.eligible_fen = got.points, got.eligible_fen
    row.earned_at = order.paid_at or now
    row.earn_state = "pending"
    session.flush()
    evaluate_tier(session, settings, member, now)
    return entry


def schedule_vest(session: Session, settings: Settings, order: Order, actor: str,
                  now: dt.datetime | None = None) -> bool:
    """The order was handed over: set when its points vest, and vest them if that is now."""
    if order.customer_id is None:
        return False
    now = _now(now)
    member = ledger.lock_member(session, order.customer_id)
    row = _order_row(session, order.id) if member is not None else None
    if row is None or row.earn_state != "pending":
        return False
    if row.online:
        due = now + dt.timedelta(days=settings.online_return_window_days)
    else:  # the return window of a counter/offline sale runs from the sale
        due = (row.earned_at or now) + dt.timedelta(days=settings.return_window_days)
    if row.vest_due_at is None:
        row.vest_due_at = due
    if row.vest_due_at <= now:
        return _vest(session, settings, member, row, now, actor)
    return False


def _vest(session: Session, settings: Settings, member: LoyaltyMember, row: LoyaltyOrder, now: dt.datetime,
          actor: str) -> bool:
    points = row.earned_points - row.clawed_points
    if points <= 0:
        row.earn_state = "void"
        return False
    debt = max(0, -member.available)
    entry = ledger.post(session, member, "vest", f"vest:order:{row.order_id}", pending=-points, available=points,
                        order_id=row.order_id, actor=actor, now=now, detail=f"order #{row.order_id} points usable")
    if entry is None:
        return False
    lot = ledger.new_lot(session, settings, member, entry, points, row.earned_at or now, order_id=row.order_id)
    row.earn_state, row.vested_points, row.lot_id = "vested", points, lot.id
    ledger.credit(session, settings, member, entry, [(lot, points)], debt, now, actor)
    return True


def vest(session: Session, settings: Settings, order_id: int, actor: str = "system",
         now: dt.datetime | None = None) -> bool:
    """Vest one order's pending points if their time has come (used by :func:`run_vest`)."""
    now = _now(now)
    customer_id = session.scalar(select(LoyaltyOrder.customer_id).where(LoyaltyOrder.order_id == order_id))
    if customer_id is None:
        return False
    member = ledger.lock_member(session, customer_id)
    row = _order_row(session, order_id)
    if row is None or row.earn_state != "pending" or row.vest_due_at is None or row.vest_due_at > now:
        return False
    return _vest(session, settings, member, row, now, actor)


# --------------------------------------------------------------------- refunds

def refund(session: Session, settings: Settings, order: Order, actor: str, *, ref: str = "refunded",
           refunded_fen: int | None = None, now: dt.datetime | None = None) -> dict | None:
    """Claw back earned points and give back redeemed points for a refund of ``order``.

    ``refunded_fen`` is this refund's amount (``None``: the whole order, which
    is what the core refunds today); ``ref`` names the refund, so the same
    refund processed again changes nothing. Amounts are proportional to the
    share of the order total refunded so far, rounded half up and computed
    cumulatively (several partial refunds add up to exactly the whole).
    Earned points still pending are taken from pending; vested ones from the
    order's own lot, then the soonest-expiring lots; what is no longer there
    follows ``negative_balance``: ``allow`` leaves a debt that later points
    repay, ``forbid`` writes it off (recorded on the entry).
    """
    if order.customer_id is None:
        return None
    now = _now(now)
    member = ledger.lock_member(session, order.customer_id)
    row = _order_row(session, order.id) if member is not None else None
    if row is None:
        return None
    total = order.total_fen
    refunded = total if refunded_fen is None else min(total, row.refunded_fen + max(0, int(refunded_fen)))
    share = Fraction(refunded, total) if total > 0 else Fraction(1 if refunded_fen is None else 0)
    claw = ledger.round_half_up(row.earned_points * share) - row.clawed_points
    claw_elig = ledger.round_half_up(row.eligible_fen * share) - row.clawed_eligible_fen
    give = ledger.round_half_up(row.redeem_points * share) - row.returned_points \
        if row.redeem_state == "spent" else 0
    claw, claw_elig, give = max(0, claw), max(0, claw_elig), max(0, give)
    ledger.settle(session, member, now, actor)
    pending_part = available_part = written_off = 0
    if row.earn_state == "pending":
        pending_part = claw
    elif row.earn_state == "vested":
        collectable = max(0, min(claw, member.available))
        if settings.negative_balance == "allow":
            available_part = claw
        else:
            available_part, written_off = collectable, claw - collectable
    entry = ledger.post(session, member, "clawback", f"clawback:order:{order.id}:{ref}", pending=-pending_part,
                        available=-available_part, eligible_fen=-claw_elig, written_off=written_off,
                        order_id=order.id, actor=actor, now=now,
                        detail=(f"refund {ref!r} of order #{order.id}: {claw} of {row.earned_points} earned points"
                                + (f", {written_off} already spent and written off" if written_off else "")))
    if entry is None:
        return None  # this refund was processed before
    if available_part:
        lot = session.get(PointsLot, row.lot_id) if row.lot_id else None
        ledger.take(session, entry, min(available_part, max(0, member.available + available_part)), now, first=lot)
    row.clawed_points += claw
    row.clawed_eligible_fen += claw_elig
    row.refunded_fen = refunded
    if row.earn_state == "pending" and row.clawed_points >= row.earned_points:
        row.earn_state = "void"
    result = {"clawed_back": claw, "written_off": written_off, "returned": 0}
    if give:
        debt = max(0, -member.available)
        back = ledger.post(session, member, "return", f"return:order:{order.id}:{ref}", available=give,
                           order_id=order.id, actor=actor, now=now,
                           detail=f"refund {ref!r} of order #{order.id}: redeemed points given back")
        if back is not None:
            row.returned_points += give
            _give_back(session, settings, member, row, back, give, debt, now, actor)
            result["returned"] = give
    session.flush()
    evaluate_tier(session, settings, member, now)
    return result


# ----------------------------------------------------------------------- tiers

def evaluate_tier(session: Session, settings: Settings, member: LoyaltyMember, now: dt.datetime) -> str:
    """Set the member's tier from their eligible spend (net of refunds) paid in the last 365 days."""
    spend = session.scalar(
        select(func.coalesce(func.sum(LoyaltyOrder.eligible_fen - LoyaltyOrder.clawed_eligible_fen), 0))
        .where(LoyaltyOrder.customer_id == member.customer_id, LoyaltyOrder.earned_at > now - TIER_WINDOW,
               LoyaltyOrder.earned_at <= now))
    tier = settings.tier_for(int(spend))
    member.rolling_spend_fen = int(spend)
    if tier.name != member.tier:
        member.tier, member.tier_since = tier.name, now
    return member.tier


# ------------------------------------------------------------- staff adjustments

def _admin(caller: Caller) -> None:
    if caller.role != "admin":
        raise Forbidden(f"only an admin may do this (caller role: {caller.role!r})")


def _own_account(session: Session, caller: Caller, customer_id: int) -> bool:
    if caller.user_id is None:
        return False
    return session.scalar(select(StaffLink.user_id).where(StaffLink.user_id == caller.user_id,
                                                          StaffLink.customer_id == customer_id)) is not None


def _replayed_adjustment(session: Session, source: str, key: str | None, customer_id: int, points: int,
                         reason: str) -> LedgerEntry | None:
    first = session.scalars(select(LedgerEntry).where(LedgerEntry.source_key == source)).one_or_none()
    if first is not None and (first.customer_id != customer_id or first.available_delta != points
                              or first.detail != reason):
        raise IdempotencyConflict(f"Idempotency-Key {key!r} was already used for a different adjustment "
                                  f"(entry #{first.id})",
                                  fields=[{"field": "Idempotency-Key", "message": "reused with different content"}])
    return first


def adjust(session: Session, settings: Settings, customer_id: int, data: dict[str, Any], caller: Caller,
           *, key: str | None = None, now: dt.datetime | None = None) -> tuple[LedgerEntry, bool]:
    """A staff correction of ``points`` (positive credits, negative debits) with a ``reason``.

    Admin only, audited; refused on the admin's own customer account (see
    :func:`link_staff`). A ``key`` makes a retry return the first entry;
    ``(entry, created)``.
    """
    _admin(caller)
    customer_id = _int_id(customer_id, "customer_id")
    if not isinstance(data, dict):
        raise ValidationFailed.one("body", "must be an object with points and reason")
    unknown = sorted(set(data) - {"points", "reason"})
    errors = [{"field": k, "message": "unknown field"} for k in unknown]
    points, reason = data.get("points"), data.get("reason")
    if isinstance(points, bool) or not isinstance(points, int) or points == 0 \
            or abs(points) > settings.max_adjustment_points:
        errors.append({"field": "points", "message": f"must be a non-zero integer within "
                                                     f"±{settings.max_adjustment_points}"})
    if not isinstance(reason, str) or not reason.strip():
        errors.append({"field": "reason", "message": "is required"})
    elif len(reason) > 500:
        errors.append({"field": "reason", "message": "at most 500 characters"})
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), fields=errors)
    reason = reason.strip()
    if session.get(Customer, customer_id) is None:
        raise NotFound(f"customer {customer_id} does not exist")
    if _own_account(session, caller, customer_id):
        raise Forbidden(f"user {caller.actor} is linked to customer {customer_id}: "
                        "staff may not adjust their own loyalty account; ask another admin")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 150):
        raise ValidationFailed.one("Idempotency-Key", "must be 1 to 150 characters")
    source = f"adjustment:{caller.actor}:{key}" if key else f"adjustment:{uuid.uuid4().hex}"
    now = _now(now)
    replay = _replayed_adjustment(session, source, key, customer_id, points, reason) if key else None
    if replay is not None:
        return replay, False
    member, _ = ledger.ensure_member(session, settings, customer_id, "adjustment", now)
    before = {"available": member.available, "pending": member.pending, "held": member.held}
    if points < 0:
        ledger.settle(session, member, now, caller.actor)
        if member.available + points < 0:
            raise ValidationFailed.one("points", f"only {max(0, member.available)} points are available to debit")
    debt = max(0, -member.available)
    entry = ledger.post(session, member, "adjustment", source, available=points, actor=caller.actor, now=now,
                        detail=reason)
    if entry is None:  # a concurrent retry with the same key got in first
        return _replayed_adjustment(session, source, key, customer_id, points, reason), False
    if points > 0:
        lot = ledger.new_lot(session, settings, member, entry, points, now)
        ledger.credit(session, settings, member, entry, [(lot, points)], debt, now, caller.actor)
    else:
        ledger.take(session, entry, -points, now)
    audit.record(session, caller, "loyalty.adjust", "loyalty_member", customer_id, before=before,
                 after={"available": member.available, "pending": member.pending, "held": member.held,
                        "points": points, "entry_id": entry.id}, detail=reason)
    return entry, True


def link_staff(session: Session, user_id: int, customer_id: int, caller: Caller) -> StaffLink:
    """Record that staff user ``user_id`` is customer ``customer_id`` (admin only, audited)."""
    _admin(caller)
    errors = []
    if isinstance(user_id, bool) or not isinstance(user_id, int) or session.get(User, user_id) is None:
        errors.append({"field": "user_id", "message": f"user {user_id!r} does not exist"})
    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or session.get(Customer, customer_id) is None:
        errors.append({"field": "customer_id", "message": f"customer {customer_id!r} does not exist"})
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), fields=errors)
    existing = session.get(StaffLink, user_id)
    if existing is not None:
        if existing.customer_id == customer_id:
            return existing
        raise Conflict(f"user {user_id} is already linked to customer {existing.customer_id}")
    taken = session.scalar(select(StaffLink.user_id).where(StaffLink.customer_id == customer_id))
    if taken is not None:
        raise Conflict(f"customer {customer_id} is already linked to user {taken}")
    link = StaffLink(user_id=user_id, customer_id=customer_id, created_by=caller.actor)
    session.add(link)
    session.flush()
    audit.record(session, caller, "loyalty.staff_link", "user", user_id, after={"customer_id": customer_id})
    return link


def unlink_staff(session: Session, user_id: int, caller: Caller) -> None:
    """Remove a link (admin only, audited); an admin may not remove their own."""
    _admin(caller)
    link = session.get(StaffLink, user_id) if isinstance(user_id, int) else None
    if link is None:
        raise NotFound(f"user {user_id} has no customer link")
    if caller.user_id == user_id:
        raise Forbidden("an admin may not remove the link to their own customer account")
    audit.record(session, caller, "loyalty.staff_unlink", "user", user_id, before={"customer_id": link.customer_id})
    session.delete(link)
    session.flush()


def list_staff_links(session: Session, *, after: int | None = None, limit: int = 50) -> Page[StaffLink]:
    stmt = select(StaffLink)
    return keyset(session, stmt, StaffLink.user_id, after=after, limit=limit)


# ------------------------------------------------------------------------ jobs

def run_expire(ctx, settings: Settings, now: dt.datetime | None = None, limit: int = 10_000) -> dict[str, int]:
    """Expire every lot past its expiry; running it again (or twice at once) changes nothing."""
    now = _now(now)
    with ctx.session() as session:
        ids = session.scalars(select(PointsLot.customer_id).where(PointsLot.expired_at.is_(None),
                                                                  PointsLot.expires_at <= now)
                              .group_by(PointsLot.customer_id).order_by(PointsLot.customer_id).limit(limit)).all()
    points = members = 0
    for cid in ids:
        with ctx.transaction() as session:
            member = ledger.lock_member(session, cid)
            n = ledger.settle(session, member, now)
            points += n
            members += 1 if n else 0
    return {"members": members, "points": points}


def run_vest(ctx, settings: Settings, now: dt.datetime | None = None, limit: int = 10_000) -> dict[str, int]:
    """Vest every pending order whose return window has closed."""
    now = _now(now)
    with ctx.session() as session:
        ids = session.scalars(select(LoyaltyOrder.order_id).where(LoyaltyOrder.earn_state == "pending",
                                                                  LoyaltyOrder.vest_due_at <= now)
                              .order_by(LoyaltyOrder.order_id).limit(limit)).all()
    done = 0
    for oid in ids:
        with ctx.transaction() as session:
            done += vest(session, settings, oid, "system", now)
    return {"orders": done}


def run_tiers(ctx, settings: Settings, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-evaluate every member's tier (spend leaves the rolling window as time passes)."""
    now = _now(now)
    with ctx.session() as session:
        ids = session.scalars(select(LoyaltyMember.customer_id).order_by(LoyaltyMember.customer_id)).all()
    changed = 0
    for cid in ids:
        with ctx.transaction() as session:
            member = ledger.lock_member(session, cid)
            before = member.tier
            changed += evaluate_tier(session, settings, member, now) != before
    return {"members": len(ids), "changed": changed}
