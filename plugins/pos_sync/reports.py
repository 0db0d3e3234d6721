"""What store staff review: stock discrepancies, flagged uploads, and each terminal's sync status."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.auth import Caller
from core.db import utcnow
from core.errors import Conflict, NotFound, ValidationFailed
from core.listing import Page, keyset

from .devices import check_store_access, list_scope
from .models import PosDevice, PosSale, PosSaleFlag, PosStockDiscrepancy

__all__ = ["list_discrepancies", "resolve_discrepancy", "serialize_discrepancy", "list_flags", "review_flag",
           "serialize_flag", "sync_status", "STATES"]

STATES = ("open", "resolved", "all")


def _state(value: str) -> str:
    if value not in STATES:
        raise ValidationFailed.one("state", f"must be one of {', '.join(STATES)}")
    return value


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def list_discrepancies(session: Session, caller: Caller, *, store_id: int | None = None, state: str = "open",
                       before: int | None = None, limit: int = 50) -> Page[PosStockDiscrepancy]:
    """Stock discrepancies newest first (``state``: open, resolved or all)."""
    stmt = select(PosStockDiscrepancy)
    scope = list_scope(caller, store_id)
    if scope is not None:
        stmt = stmt.where(PosStockDiscrepancy.store_id == scope)
    if _state(state) == "open":
        stmt = stmt.where(PosStockDiscrepancy.resolved_at.is_(None))
    elif state == "resolved":
        stmt = stmt.where(PosStockDiscrepancy.resolved_at.is_not(None))
    return keyset(session, stmt, PosStockDiscrepancy.id, after=before, limit=limit, descending=True)


def serialize_discrepancy(d: PosStockDiscrepancy) -> dict:
    return {"id": d.id, "store_id": d.store_id, "product_id": d.product_id, "device_id": d.device_id,
            "sale_id": d.sale_id, "order_id": d.order_id, "client_sale_id": d.client_sale_id, "line_id": d.line_id,
            "quantity_short": d.quantity_short, "created_at": _iso(d.created_at), "resolved_at": _iso(d.resolved_at),
            "resolved_by": d.resolved_by, "note": d.note}


def _note(note) -> str:
    if not isinstance(note, str) or not note.strip():
        raise ValidationFailed.one("note", "is required (what was found or done)")
    if len(note) > 500:
        raise ValidationFailed.one("note", "at most 500 characters")
    return note.strip()


def resolve_discrepancy(session: Session, discrepancy_id, caller: Caller, note) -> PosStockDiscrepancy:
    """Close a discrepancy once it is counted/explained (a stock adjustment is a separate step)."""
    note = _note(note)
    row = None
    if isinstance(discrepancy_id, int) and not isinstance(discrepancy_id, bool):
        row = session.scalars(select(PosStockDiscrepancy).where(PosStockDiscrepancy.id == discrepancy_id)
                              .with_for_update()).one_or_none()
    if row is None:
        raise NotFound(f"stock discrepancy {discrepancy_id!r} does not exist")
    check_store_access(caller, row.store_id)  # another store's: 403, as the core's store-bound staff
    if row.resolved_at is not None:
        raise Conflict(f"stock discrepancy {row.id} was already resolved by {row.resolved_by}")
    row.resolved_at, row.resolved_by, row.note = utcnow(), caller.actor, note
    session.flush()
    audit.record(session, caller, "pos.discrepancy.resolve", "pos_stock_discrepancy", row.id, detail=note)
    return row


def list_flags(session: Session, caller: Caller, *, store_id: int | None = None, state: str = "open",
               kind: str | None = None, before: int | None = None, limit: int = 50) -> Page[PosSaleFlag]:
    """Flagged uploads newest first (``state``: open = not yet reviewed)."""
    stmt = select(PosSaleFlag)
    scope = list_scope(caller, store_id)
    if scope is not None:
        stmt = stmt.where(PosSaleFlag.store_id == scope)
    if _state(state) == "open":
        stmt = stmt.where(PosSaleFlag.reviewed_at.is_(None))
    elif state == "resolved":
        stmt = stmt.where(PosSaleFlag.reviewed_at.is_not(None))
    if kind is not None:
        stmt = stmt.where(PosSaleFlag.kind == kind)
    return keyset(session, stmt, PosSaleFlag.id, after=before, limit=limit, descending=True)


def serialize_flag(f: PosSaleFlag) -> dict:
    return {"id": f.id, "kind": f.kind, "store_id": f.store_id, "device_id": f.device_id, "sale_id": f.sale_id,
            "client_sale_id": f.client_sale_id, "detail": f.detail, "payload": f.payload,
            "created_at": _iso(f.created_at), "reviewed_at": _iso(f.reviewed_at), "reviewed_by": f.reviewed_by}


def review_flag(session: Session, flag_id, caller: Caller, note) -> PosSaleFlag:
    note = _note(note)
    row = None
    if isinstance(flag_id, int) and not isinstance(flag_id, bool):
        row = session.scalars(select(PosSaleFlag).where(PosSaleFlag.id == flag_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFound(f"flag {flag_id!r} does not exist")
    check_store_access(caller, row.store_id)  # another store's: 403, as the core's store-bound staff
    if row.reviewed_at is not None:
        raise Conflict(f"flag {row.id} was already reviewed by {row.reviewed_by}")
    row.reviewed_at, row.reviewed_by = utcnow(), caller.actor
    session.flush()
    audit.record(session, caller, "pos.flag.review", "pos_sale_flag", row.id, detail=note)
    return row


def sync_status(session: Session, caller: Caller, *, store_id: int | None = None,
                now: dt.datetime | None = None) -> list[dict]:
    """Per terminal: last contact, queued/accepted/rejected counts, sequence gaps, lag, open reviews."""
    now = now or utcnow()
    scope = list_scope(caller, store_id)
    stmt = select(PosDevice).order_by(PosDevice.id)
    if scope is not None:
        stmt = stmt.where(PosDevice.store_id == scope)
    devices = list(session.scalars(stmt))
    ids = [d.id for d in devices]
    if not ids:
        return []
    counts: dict[tuple[int, str], int] = {
        (r.device_id, r.status): r.n for r in session.execute(
            select(PosSale.device_id, PosSale.status, func.count().label("n"))
            .where(PosSale.device_id.in_(ids)).group_by(PosSale.device_id, PosSale.status))}
    seqs = {r.device_id: r for r in session.execute(
        select(PosSale.device_id, func.min(PosSale.device_seq).label("lo"), func.max(PosSale.device_seq).label("hi"),
               func.count(func.distinct(PosSale.device_seq)).label("n"))
        .where(PosSale.device_id.in_(ids)).group_by(PosSale.device_id))}
    flags = dict(session.execute(select(PosSaleFlag.device_id, func.count()).where(
        PosSaleFlag.device_id.in_(ids), PosSaleFlag.reviewed_at.is_(None)).group_by(PosSaleFlag.device_id)).all())
    short = dict(session.execute(select(PosStockDiscrepancy.device_id, func.count()).where(
        PosStockDiscrepancy.device_id.in_(ids), PosStockDiscrepancy.resolved_at.is_(None))
        .group_by(PosStockDiscrepancy.device_id)).all())
    out = []
    for d in devices:
        s = seqs.get(d.id)
        out.append({
            "device_id": d.id, "name": d.name, "store_id": d.store_id, "status": d.status,
            "last_contact_at": _iso(d.last_contact_at), "last_upload_at": _iso(d.last_upload_at),
            "since_last_contact_s": int((now - d.last_contact_at).total_seconds()) if d.last_contact_at else None,
            "queued": d.queued, "accepted": counts.get((d.id, "accepted"), 0),
            "rejected": counts.get((d.id, "rejected"), 0),
            "last_sequence": s.hi if s else None,
            "sequence_gaps": (s.hi - s.lo + 1 - s.n) if s else 0,
            "lag_s": d.last_lag_s, "clock_offset_s": d.last_clock_offset_s,
            "open_flags": flags.get(d.id, 0), "open_discrepancies": short.get(d.id, 0),
        })
    return out
