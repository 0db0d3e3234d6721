"""Prescription first, then drug: submitting, reviewing, consuming and dispensing prescriptions.

::

    order with Rx lines --(order_hold)--> awaiting_review
        POST /orders/{id}/prescription --> prescription pending (document stored, items recorded)
            claim  (optional lease)        a licensed pharmacist of the order's store
            approve --> approved: keys held, the order's Rx lines consumed, order -> awaiting_payment
            reject  --> rejected (coded reason + customer text): order cancelled, stock released,
                        the customer is notified through the outbox and may order again
        order cancelled while pending --> withdrawn
    pay          -> the prescription must still be valid (local date <= valid_until)
    fulfil       -> recorded as dispensing; the dispenser may not be the approving pharmacist
    an order or POS sale naming an approved prescription_id consumes what is left of it (no review)

Concurrency: every decision locks the order row first, then writes the
prescription with ``UPDATE ... WHERE status = 'pending'`` — of two pharmacists
deciding at once exactly one changes a row; the other gets 409. The keys an
approved prescription holds (its (institution, number) and its document hash)
are unique rows, so two records of one prescription are never both approved.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, orders
from core.api.access import check_order, check_store
from core.auth import Caller
from core.context import context_of
from core.db import utcnow
from core.default_plugin import valid_resident_id
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.listing import Page, keyset
from core.models import Order, Product, User
from core.outbox import enqueue

from . import documents
from .models import (RELATIONSHIPS, AccessLog, Claim, Consumption, Decision, Dispensing, Prescription,
                     PrescriptionItem, PrescriptionKey)
from .reasons import REASONS
from .settings import Settings, settings_of

__all__ = ["NOTIFY_KIND", "Submission", "parse_submission", "submit", "claim", "approve", "reject", "get_for",
           "log_access", "list_prescriptions", "review_problems", "rx_lines", "require_licensed", "consume_for",
           "order_prescription", "on_order_cancelled", "record_dispensing", "dispense_refusal", "payment_refusal",
           "approved_for_product", "number_key", "MAX_ITEMS"]

#: the outbox kind of customer messages: a channel plugin (wechat_channel) sends them; see the README
NOTIFY_KIND = "customer.notify"
MAX_ITEMS = 50
MAX_ITEM_QUANTITY = 10_000


def settings_for(session: Session) -> Settings:
    return settings_of(context_of(session).config)


def rx_lines(order: Order) -> list:
    return [line for line in order.lines if line.rx_class == "rx"]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def number_key(institution: str, number: str) -> str:
    """The identity of a paper prescription: its institution and number, normalised, hashed."""
    return hashlib.sha256(f"{_norm(institution)}\x1f{_norm(number)}".encode()).hexdigest()


def _keys(p: Prescription) -> list[str]:
    return [f"number:{p.number_key}", f"document:{p.document.sha256}"]


def valid_until(settings: Settings, issue_date: dt.date, extension_note: str | None) -> dt.date:
    """The issue day only, or up to ``max_extension_days`` later when the prescriber noted an extension."""
    return issue_date + dt.timedelta(days=settings.max_extension_days if extension_note else 0)


# ------------------------------------------------------------------ submit

@dataclass
class Submission:
    """The checked fields of an upload (everything but the document bytes)."""

    patient_name: str
    patient_id_number: str
    relationship: str
    prescriber: str
    institution: str
    prescription_number: str
    issue_date: dt.date
    extension_note: str | None
    items: list[dict]  # [{"product_id", "quantity", "dosage"}]


def _text(fields: dict, name: str, problems: list, max_len: int, required: bool = True) -> str | None:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.append((name, "is required"))
        return None
    if not isinstance(value, str):
        problems.append((name, "must be text"))
        return None
    value = value.strip()
    if len(value) > max_len:
        problems.append((name, f"at most {max_len} characters"))
        return None
    if "\x00" in value:  # PostgreSQL cannot store it; no field of a prescription has a use for it
        problems.append((name, "must not contain the NUL character (\\u0000)"))
        return None
    return value


def parse_submission(fields: dict[str, Any], settings: Settings, today: dt.date) -> Submission:
    """Check the text fields of an upload; every bad field is reported at once (422)."""
    problems: list[tuple[str, str]] = []
    patient = _text(fields, "patient_name", problems, 100)
    id_number = _text(fields, "patient_id_number", problems, 18)
    if id_number is not None and not valid_resident_id(id_number):
        problems.append(("patient_id_number", "must be an 18-character resident ID number with a valid check digit"))
    relationship = _text(fields, "relationship", problems, 20)
    if relationship is not None and relationship not in RELATIONSHIPS:
        problems.append(("relationship", f"must be one of {', '.join(RELATIONSHIPS)}"))
    prescriber = _text(fields, "prescriber", problems, 100)
    institution = _text(fields, "institution", problems, 200)
    number = _text(fields, "prescription_number", problems, 64)
    extension = _text(fields, "extension_note", problems, 500, required=False)
    raw_date = _text(fields, "issue_date", problems, 10)
    issue = None
    if raw_date is not None:
        try:
            issue = dt.date.fromisoformat(raw_date)
        except ValueError:
            problems.append(("issue_date", "must be a date YYYY-MM-DD"))
    if issue is not None:
        if issue > today:
            problems.append(("issue_date", f"is after today ({today.isoformat()}, {settings.timezone})"))
        elif today > valid_until(settings, issue, extension):
            if extension:
                problems.append(("issue_date", f"the prescription expired: issued {issue.isoformat()}, valid at "
                                               f"most {settings.max_extension_days} days with an extension"))
            else:
                problems.append(("issue_date", f"the prescription expired: valid on its issue day "
                                               f"{issue.isoformat()} only (up to {settings.max_extension_days} days "
                                               "when the prescriber notes an extension: extension_note)"))
    items = _items(fields.get("items"), problems)
    if problems:
        raise ValidationFailed("; ".join(f"{f}: {m}" for f, m in problems),
                               fields=[{"field": f, "message": m} for f, m in problems])
    return Submission(patient, id_number, relationship, prescriber, institution, number, issue, extension, items)


def _items(raw: Any, problems: list) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        problems.append(("items", "must list the prescribed products: [{\"product_id\": 1, \"quantity\": 2}]"))
        return []
    if len(raw) > MAX_ITEMS:
        problems.append(("items", f"at most {MAX_ITEMS} items"))
        return []
    out, seen = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"product_id", "quantity", "dosage"}:
            problems.append((f"items[{i}]", "must be {product_id, quantity, dosage (optional)}"))
            continue
        pid, qty, dosage = item.get("product_id"), item.get("quantity"), item.get("dosage")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 1:
            problems.append((f"items[{i}].product_id", "must be a product id"))
            continue
        if pid in seen:
            problems.append((f"items[{i}].product_id", "appears twice: put the quantity on one item"))
            continue
        seen.add(pid)
        if isinstance(qty, bool) or not isinstance(qty, int) or not 0 < qty <= MAX_ITEM_QUANTITY:
            problems.append((f"items[{i}].quantity", f"must be an integer from 1 to {MAX_ITEM_QUANTITY}"))
            continue
        if dosage is not None and (not isinstance(dosage, str) or len(dosage) > 200 or "\x00" in dosage):
            problems.append((f"items[{i}].dosage", "must be text of at most 200 characters"))
            continue
        out.append({"product_id": pid, "quantity": qty, "dosage": dosage.strip() if dosage else None})
    return out


def _coverage_problems(lines: list, prescribed: dict[int, int]) -> list[tuple[str, str]]:
    """``[(reason_code, message)]`` for Rx lines the prescribed quantities do not cover (no substitution)."""
    out = []
    for line in lines:
        have = prescribed.get(line.product_id)
        if have is None:
            out.append(("substitution", f"{line.product_name} (product {line.product_id}) is not on the "
                                        "prescription; a different product may not be substituted"))
        elif have < line.quantity:
            out.append(("not_covered", f"{line.product_name}: {line.quantity} ordered, {have} prescribed"
                                       + (" and not yet used" if have else "")))
    return out


def _key_holder(session: Session, keys: list[str]) -> Prescription | None:
    held = session.scalars(select(PrescriptionKey).where(PrescriptionKey.key.in_(keys))).first()
    return session.get(Prescription, held.prescription_id) if held is not None else None


def _reuse_problem(session: Session, p_id: int | None, order_id: int, number: str, document_id: int | None,
                   sha: str) -> str | None:
    """Why this (institution, number) or document cannot be used for ``order_id``, or ``None``."""
    holder = _key_holder(session, [f"number:{number}", f"document:{sha}"])
    if holder is not None and holder.id != p_id:
        return (f"this prescription was already approved as prescription #{holder.id} for order #{holder.order_id}: "
                "a prescription is used once (an approved one can be named as prescription_id on a new order "
                "for what it still covers)")
    other = session.scalars(select(Prescription).where(
        Prescription.status == "pending", Prescription.order_id != order_id,
        or_(Prescription.number_key == number,
            Prescription.document_id == (document_id if document_id is not None else -1)))).first()
    if other is not None and other.id != p_id:
        return f"this prescription is already waiting for review as prescription #{other.id} for order #{other.order_id}"
    return None


def submit(ctx, session: Session, order_id: int, caller: Caller, fields: dict[str, Any], data: bytes,
           *, now: dt.datetime | None = None) -> tuple[Prescription, bool]:
    """Record a prescription for ``order_id`` (its customer or staff of its store).

    Returns ``(prescription, created)``: the same upload again (same document,
    number and items) returns the pending one with ``False``.
    """
    settings = settings_of(ctx.config)
    now = now or utcnow()
    order = orders.get_order(session, order_id, lock=True)  # lock order -> prescription, as decisions do
    check_order(caller, order)
    lines = rx_lines(order)
    if not lines:
        raise Conflict(f"order {order.id} has no prescription (Rx) lines: there is nothing to review")
    sub = parse_submission(fields, settings, settings.today(now))
    missing = [i for i, it in enumerate(sub.items) if session.get(Product, it["product_id"]) is None]
    if missing:
        raise ValidationFailed("; ".join(f"items[{i}].product_id: no such product" for i in missing),
                               fields=[{"field": f"items[{i}].product_id", "message": "no such product"}
                                       for i in missing])
    media_type, digest = documents.check(data)
    nkey = number_key(sub.institution, sub.prescription_number)
    current = session.scalars(select(Prescription).where(
        Prescription.order_id == order.id, Prescription.status.in_(("pending", "approved")))).first()
    if current is not None:
        same = (current.status == "pending" and current.document.sha256 == digest and current.number_key == nkey
                and sorted((i.product_id, i.quantity) for i in current.items)
                == sorted((i["product_id"], i["quantity"]) for i in sub.items))
        if same:
            return current, False
        raise Conflict(f"order {order.id} already has prescription #{current.id} ({current.status}); a rejected "
                       "prescription cancels its order, so submit a corrected one with a new order",
                       prescription_id=current.id)
    if order.status != "awaiting_review":
        raise Conflict(f"order {order.id} is {order.status}: only an order awaiting review takes a prescription")
    problems = _coverage_problems(lines, {i["product_id"]: i["quantity"] for i in sub.items})
    if problems:
        raise ValidationFailed("; ".join(m for _c, m in problems),
                               fields=[{"field": "items", "message": m} for _c, m in problems],
                               reason_codes=sorted({c for c, _m in problems}))
    known = documents.find(session, digest)
    reuse = _reuse_problem(session, None, order.id, nkey, known.id if known else None, digest)
    if reuse:
        raise Conflict(reuse, reason_codes=["reused"])
    doc = documents.save(session, settings, data, caller.actor)
    p = Prescription(order_id=order.id, store_id=order.store_id, customer_id=order.customer_id, document_id=doc.id,
                     status="pending", patient_name=sub.patient_name, patient_id_number=sub.patient_id_number.upper(),
                     relationship=sub.relationship, prescriber=sub.prescriber, institution=sub.institution,
                     prescription_number=sub.prescription_number, number_key=nkey, issue_date=sub.issue_date,
                     extension_note=sub.extension_note,
                     valid_until=valid_until(settings, sub.issue_date, sub.extension_note),
                     submitted_by=caller.actor, submitted_at=now)
    session.add(p)
    session.flush()
    for it in sub.items:
        product = session.get(Product, it["product_id"])
        session.add(PrescriptionItem(prescription_id=p.id, product_id=product.id, quantity=it["quantity"],
                                     product_name=f"{product.generic_name} {product.specification}".strip(),
                                     dosage=it["dosage"]))
    session.add(Decision(prescription_id=p.id, action="submit", actor=caller.actor,
                         user_id=caller.user_id if caller.is_staff else None, store_id=order.store_id,
                         note=f"document {doc.sha256} ({doc.media_type}, {doc.size_bytes} bytes)", created_at=now))
    session.flush()
    session.refresh(p)
    return p, True


# ------------------------------------------------------------------ review

def require_licensed(session: Session, caller: Caller, store_id: int, today: dt.date) -> User:
    """The caller's user row when they may decide prescriptions of ``store_id``; else 403 saying why."""
    if caller.role != "pharmacist" or caller.user_id is None:
        raise Forbidden(f"only a licensed pharmacist may review prescriptions, not role {caller.role!r}")
    user = session.get(User, caller.user_id)
    if user is None or not user.active:
        raise Forbidden("your account is inactive")
    if not (user.licence_number or "").strip():
        raise Forbidden("your profile has no pharmacist licence number: an admin must record it before you review")
    if user.licence_expiry is None or user.licence_expiry < today:
        when = user.licence_expiry.isoformat() if user.licence_expiry else "unknown"
        raise Forbidden(f"your pharmacist licence {user.licence_number} is not current (expiry {when}): "
                        "it must be renewed and recorded before you review")
    if user.store_id is None:
        raise Forbidden("your licence is not registered at a store: an admin must assign your store")
    if user.store_id != store_id:
        raise Forbidden(f"this prescription is for store {store_id}; your licence is registered at store "
                        f"{user.store_id}")
    return user


def _get(session: Session, pid: int) -> Prescription:
    p = session.get(Prescription, pid) if isinstance(pid, int) and not isinstance(pid, bool) else None
    if p is None:
        raise NotFound(f"prescription {pid} does not exist")
    return p


def _active_claim(session: Session, pid: int, now: dt.datetime) -> Claim | None:
    c = session.get(Claim, pid, populate_existing=True)
    return c if c is not None and c.expires_at > now else None


def claim(ctx, session: Session, pid: int, caller: Caller, *, now: dt.datetime | None = None) -> Claim:
    """Take (or renew) the review of a pending prescription for ``claim_minutes``; 409 while another holds it."""
    settings = settings_of(ctx.config)
    now = now or utcnow()
    p = _get(session, pid)
    user = require_licensed(session, caller, p.store_id, settings.today(now))
    if p.status != "pending":
        raise Conflict(f"prescription {pid} is {p.status}: only a pending prescription can be claimed")
    until = now + dt.timedelta(minutes=settings.claim_minutes)
    taken = session.execute(update(Claim).where(
        Claim.prescription_id == pid, or_(Claim.user_id == user.id, Claim.expires_at <= now)
    ).values(user_id=user.id, actor=caller.actor, claimed_at=now, expires_at=until)).rowcount
    if not taken:
        holder = session.get(Claim, pid, populate_existing=True)
        if holder is not None:
            raise Conflict(f"prescription {pid} is being reviewed by {holder.actor} until "
                           f"{holder.expires_at.isoformat()}", claimed_by=holder.actor)
        try:
            with session.begin_nested():
                session.add(Claim(prescription_id=pid, user_id=user.id, actor=caller.actor, claimed_at=now,
                                  expires_at=until))
                session.flush()
        except IntegrityError:
            holder = session.get(Claim, pid, populate_existing=True)
            raise Conflict(f"prescription {pid} was just claimed by {holder.actor if holder else 'someone else'}")
    session.add(Decision(prescription_id=pid, action="claim", user_id=user.id, actor=caller.actor,
                         licence_number=user.licence_number, store_id=user.store_id, created_at=now,
                         note=f"until {until.isoformat()}"))
    session.flush()
    return session.get(Claim, pid, populate_existing=True)


def review_problems(session: Session, settings: Settings, p: Prescription, order: Order,
                    today: dt.date) -> list[tuple[str, str]]:
    """``[(reason_code, message)]``: what stands against approving ``p`` for its order today."""
    out = []
    if today > p.valid_until:
        out.append(("expired", f"the prescription expired: issued {p.issue_date.isoformat()}, valid until "
                               f"{p.valid_until.isoformat()} ({settings.timezone}); today is {today.isoformat()}"))
    out += _coverage_problems(rx_lines(order), {i.product_id: i.quantity for i in p.items})
    reuse = _reuse_problem(session, p.id, order.id, p.number_key, p.document_id, p.document.sha256)
    if reuse:
        out.append(("reused", reuse))
    return out


def _decide(ctx, session: Session, pid: int, caller: Caller, now: dt.datetime) -> tuple[Prescription, Order, User]:
    """Checks shared by approve and reject; returns with the order row locked and the prescription fresh."""
    settings = settings_of(ctx.config)
    p = _get(session, pid)
    user = require_licensed(session, caller, p.store_id, settings.today(now))
    order = orders.get_order(session, p.order_id, lock=True)
    session.refresh(p)
    if p.status != "pending":
        raise Conflict(f"prescription {pid} was already {p.status} by {p.decided_by or 'the system'}"
                       + (f" at {p.decided_at.isoformat()}" if p.decided_at else ""), prescription_status=p.status)
    holder = _active_claim(session, pid, now)
    if holder is not None and holder.user_id != user.id:
        raise Conflict(f"prescription {pid} is being reviewed by {holder.actor} until {holder.expires_at.isoformat()}",
                       claimed_by=holder.actor)
    return p, order, user


def _set_status(session: Session, p: Prescription, new: str, user: User, caller: Caller, now: dt.datetime,
                **values) -> None:
    """The one write that decides: only a still-pending row changes (the loser of a race gets 409)."""
    changed = session.execute(update(Prescription).where(Prescription.id == p.id, Prescription.status == "pending")
                              .values(status=new, decided_at=now, decided_by_user_id=user.id,
                                      decided_by=caller.actor, **values)).rowcount
    if changed != 1:
        session.refresh(p)
        raise Conflict(f"prescription {p.id} was decided meanwhile ({p.status} by {p.decided_by})", prescription_status=p.status)
    session.execute(Claim.__table__.delete().where(Claim.prescription_id == p.id))
    session.refresh(p)


def approve(ctx, session: Session, pid: int, caller: Caller, note: str = "", *,
            now: dt.datetime | None = None) -> Prescription:
    """Approve: keys held, the order's Rx lines consumed, the order released for payment."""
    settings = settings_of(ctx.config)
    now = now or utcnow()
    p, order, user = _decide(ctx, session, pid, caller, now)
    if order.status != "awaiting_review":
        raise Conflict(f"order {order.id} is {order.status}: its prescription can no longer be approved")
    problems = review_problems(session, settings, p, order, settings.today(now))
    if problems:
        raise ValidationFailed("cannot approve: " + "; ".join(m for _c, m in problems),
                               fields=[{"field": "prescription", "message": m} for _c, m in problems],
                               reason_codes=sorted({c for c, _m in problems}))
    _set_status(session, p, "approved", user, caller, now)
    for key in _keys(p):
        try:
            with session.begin_nested():
                session.add(PrescriptionKey(key=key, prescription_id=p.id, created_at=now))
                session.flush()
        except IntegrityError:
            raise Conflict("the same prescription was approved meanwhile under another record: it is used once",
                           reason_codes=["reused"]) from None
    _consume(session, p, order, rx_lines(order), caller.actor, now)
    session.add(Decision(prescription_id=p.id, action="approve", user_id=user.id, actor=caller.actor,
                         licence_number=user.licence_number, store_id=user.store_id, note=note or "", created_at=now))
    audit.record(session, caller, "prescription.approve", "prescription", p.id, before={"status": "pending"},
                 after={"status": "approved", "order_id": order.id, "licence_number": user.licence_number,
                        "valid_until": p.valid_until.isoformat()}, detail=note or "")
    orders.approve_hold(ctx, session, order.id, caller, reason=f"prescription #{p.id} approved by {caller.actor}")
    _notify(session, p, order, "prescription.approved", {
        "title": "处方审核通过", "text": "您的处方已由执业药师审核通过，请在处方有效期内完成支付。",
        "valid_until": p.valid_until.isoformat()})
    session.flush()
    return p


def reject(ctx, session: Session, pid: int, caller: Caller, reason_code: str, message: str | None = None,
           note: str = "", *, now: dt.datetime | None = None) -> Prescription:
    """Reject with a coded reason and the text the customer sees: the order is cancelled (stock released)."""
    now = now or utcnow()
    reason = REASONS.get(reason_code)
    if reason is None:
        raise ValidationFailed.one("reason_code", f"must be one of {', '.join(REASONS)}")
    message = (message or "").strip()
    if reason_code == "other" and not message:
        raise ValidationFailed.one("message", "explain the reason to the customer when the code is 'other'")
    text = message or reason.customer_text
    p, order, user = _decide(ctx, session, pid, caller, now)
    _set_status(session, p, "rejected", user, caller, now, reason_code=reason_code, customer_message=text)
    session.add(Decision(prescription_id=p.id, action="reject", user_id=user.id, actor=caller.actor,
                         licence_number=user.licence_number, store_id=user.store_id, reason_code=reason_code,
                         customer_message=text, note=note or "", created_at=now))
    audit.record(session, caller, "prescription.reject", "prescription", p.id, before={"status": "pending"},
                 after={"status": "rejected", "order_id": order.id, "reason_code": reason_code,
                        "licence_number": user.licence_number}, detail=text)
    if order.status in ("awaiting_review", "awaiting_payment"):
        orders.cancel(ctx, session, order.id, caller, f"prescription #{p.id} rejected ({reason_code})")
    _notify(session, p, order, "prescription.rejected", {
        "title": "处方审核未通过", "text": text, "reason_code": reason_code, "reason_label": reason.label,
        "resubmit": "请在新订单中重新提交处方。"})
    session.flush()
    return p


def _notify(session: Session, p: Prescription, order: Order, event: str, content: dict) -> None:
    if order.customer_id is None:
        return
    enqueue(session, NOTIFY_KIND, {"event": event, "customer_id": order.customer_id, "order_id": order.id,
                                   "store_id": order.store_id, "prescription_id": p.id, **content},
            dedupe_key=f"prescription_review:{p.id}:{event}")


# ------------------------------------------------------------- consumption

def _consume(session: Session, p: Prescription, order: Order, lines: list, actor: str, now: dt.datetime) -> None:
    for line in lines:
        session.add(Consumption(prescription_id=p.id, order_id=order.id, product_id=line.product_id,
                                quantity=line.quantity, actor=actor, created_at=now))
    session.flush()


def remaining(session: Session, p: Prescription) -> dict[int, int]:
    """What ``p`` still covers: prescribed quantity minus what live orders use, per product."""
    used = dict(session.execute(
        select(Consumption.product_id, func.sum(Consumption.quantity))
        .where(Consumption.prescription_id == p.id, Consumption.released_at.is_(None))
        .group_by(Consumption.product_id)).all())
    return {i.product_id: i.quantity - int(used.get(i.product_id) or 0) for i in p.items}


def _parse_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def consume_for(session: Session, order: Order, prescription_id: Any, actor: str) -> Prescription:
    """Use an approved prescription named on a new order or sale for its Rx lines (422 naming
    ``prescription_id`` when it does not exist, is not approved, belongs to another customer,
    was not valid on the order's local date, or does not cover what is left)."""
    settings = settings_for(session)

    def refuse(message: str):
        raise ValidationFailed.one("prescription_id", message)

    pid = _parse_id(prescription_id)
    if pid is None:
        refuse("must be the id of an approved prescription")
    p = session.scalars(select(Prescription).where(Prescription.id == pid)
                        .with_for_update(of=Prescription)).one_or_none()
    if p is None:
        refuse(f"prescription {pid} does not exist")
    session.refresh(p)
    if p.status != "approved":
        refuse(f"prescription {pid} is {p.status}, not approved by a pharmacist")
    if p.customer_id is not None and order.customer_id != p.customer_id:
        # a customer's prescription serves that customer's orders and sales only: a sale naming no
        # customer cannot use it either (else any counter or terminal could dispense on anyone's)
        refuse(f"prescription {pid} belongs to another customer" if order.customer_id is not None else
               f"prescription {pid} is a customer's: name that customer (customer_id) on the sale")
    day = settings.today(order.created_at)
    if not p.issue_date <= day <= p.valid_until:
        refuse(f"prescription {pid} is valid from {p.issue_date.isoformat()} to {p.valid_until.isoformat()}, "
               f"not on {day.isoformat()}")
    lines = rx_lines(order)
    problems = _coverage_problems(lines, remaining(session, p))
    if problems:
        refuse(f"prescription {pid} does not cover this order: " + "; ".join(m for _c, m in problems))
    _consume(session, p, order, lines, actor, utcnow())
    session.add(Decision(prescription_id=p.id, action="consume", actor=actor, store_id=order.store_id,
                         note=f"used by order #{order.id}: " + ", ".join(f"{l.product_id}×{l.quantity}" for l in lines)))
    return p


def order_prescription(session: Session, order: Order) -> Prescription | None:
    """The approved prescription whose (unreleased) consumption covers ``order``, if any."""
    pid = session.scalar(select(Consumption.prescription_id).where(
        Consumption.order_id == order.id, Consumption.released_at.is_(None)).limit(1))
    return session.get(Prescription, pid) if pid is not None else None


def payment_refusal(session: Session, order: Order, now: dt.datetime | None = None) -> str | None:
    """Why an Rx order cannot be paid now (no approved prescription, or it expired), or ``None``."""
    if not rx_lines(order):
        return None
    p = order_prescription(session, order)
    if p is None or p.status != "approved":
        return "its prescription (Rx) lines are not covered by an approved prescription"
    today = settings_for(session).today(now)
    if today > p.valid_until:
        return (f"prescription #{p.id} expired on {p.valid_until.isoformat()} (checked again at payment): "
                "the customer needs a new prescription")
    return None


def dispense_refusal(session: Session, order: Order, caller: Caller, now: dt.datetime | None = None) -> str | None:
    """Why ``caller`` may not dispense (fulfil) an Rx order, or ``None``: validity is checked again here."""
    if not rx_lines(order):
        return None
    p = order_prescription(session, order)
    if p is None or p.status != "approved":
        return "its prescription (Rx) lines are not covered by an approved prescription"
    if caller.is_staff and caller.user_id is not None and caller.user_id == p.decided_by_user_id:
        return (f"{caller.actor} approved prescription #{p.id} and may not also dispense it: "
                "another staff member must dispense")
    if settings_for(session).today(now) > p.valid_until:
        return (f"prescription #{p.id} expired on {p.valid_until.isoformat()} (checked again at dispensing): "
                "refund the order; the customer needs a new prescription")
    return None


def record_dispensing(session: Session, order: Order, caller: Caller) -> None:
    p = order_prescription(session, order)
    if p is None:
        return
    row = Dispensing(order_id=order.id, prescription_id=p.id, actor=caller.actor,
                     user_id=caller.user_id if caller.is_staff else None, approved_by_user_id=p.decided_by_user_id)
    session.add(row)
    audit.record(session, caller, "prescription.dispense", "order", order.id,
                 after={"prescription_id": p.id, "dispensed_by": caller.actor, "approved_by": p.decided_by})


def on_order_cancelled(session: Session, order: Order, caller: Caller) -> None:
    """A pending prescription of a cancelled order is withdrawn; what the order used is released."""
    now = utcnow()
    for p in session.scalars(select(Prescription).where(Prescription.order_id == order.id,
                                                        Prescription.status == "pending")).all():
        if session.execute(update(Prescription).where(Prescription.id == p.id, Prescription.status == "pending")
                           .values(status="withdrawn", decided_at=now, decided_by=caller.actor)).rowcount:
            session.add(Decision(prescription_id=p.id, action="withdraw", actor=caller.actor,
                                 note=f"order #{order.id} cancelled", created_at=now))
            session.refresh(p)
    for c in session.scalars(select(Consumption).where(Consumption.order_id == order.id,
                                                       Consumption.released_at.is_(None))).all():
        c.released_at = now
    session.flush()


def approved_for_product(session: Session, customer_id: int, product_id: int, today: dt.date) -> int | None:
    """An approved, still valid prescription of the customer that covers at least one more unit of the product."""
    candidates = session.scalars(
        select(Prescription).join(PrescriptionItem, PrescriptionItem.prescription_id == Prescription.id)
        .where(Prescription.customer_id == customer_id, Prescription.status == "approved",
               Prescription.valid_until >= today, PrescriptionItem.product_id == product_id)
        .order_by(Prescription.id.desc()).limit(5)).all()
    for p in candidates:
        if remaining(session, p).get(product_id, 0) > 0:
            return p.id
    return None


# ------------------------------------------------------------------ reading

def get_for(session: Session, pid: int, caller: Caller) -> Prescription:
    """The prescription if ``caller`` may read it: a pharmacist (of its store, when bound to one) or
    the customer it belongs to (others get 404, other stores' pharmacists 403)."""
    p = _get(session, pid)
    if caller.role == "customer":
        if p.customer_id is None or p.customer_id != caller.customer_id:
            raise NotFound(f"prescription {pid} does not exist")
    elif caller.role == "pharmacist":
        check_store(caller, p.store_id)
    else:
        raise Forbidden("prescriptions are sensitive personal data: pharmacists and the patient only")
    return p


def log_access(session: Session, p: Prescription, caller: Caller, action: str, request_id: str | None) -> None:
    session.add(AccessLog(prescription_id=p.id, action=action, actor=caller.actor, role=caller.role,
                          user_id=caller.user_id, customer_id=caller.customer_id, request_id=request_id))
    session.flush()


def list_prescriptions(session: Session, caller: Caller, *, status: str | None, store_id: int | None,
                       after: int | None, limit: int) -> Page[Prescription]:
    """Oldest first. Pharmacists: their store's (or the asked store's when not bound); customers: their own."""
    stmt = select(Prescription)
    if caller.role == "customer":
        stmt = stmt.where(Prescription.customer_id == caller.customer_id)
    elif caller.role == "pharmacist":
        if store_id is not None:
            check_store(caller, store_id)
        scope = caller.store_id if store_id is None else store_id
        if scope is not None:
            stmt = stmt.where(Prescription.store_id == scope)
    else:
        raise Forbidden("prescriptions are sensitive personal data: pharmacists and the patient only")
    if status is not None:
        stmt = stmt.where(Prescription.status == status)
    return keyset(session, stmt, Prescription.id, after=after, limit=limit)


def decisions_of(session: Session, pid: int) -> list[Decision]:
    return list(session.scalars(select(Decision).where(Decision.prescription_id == pid).order_by(Decision.id)))


def access_log_of(session: Session, pid: int, after: int | None, limit: int) -> Page[AccessLog]:
    return keyset(session, select(AccessLog).where(AccessLog.prescription_id == pid), AccessLog.id, after=after,
                  limit=limit)


def active_claim(session: Session, pid: int, now: dt.datetime | None = None) -> Claim | None:
    return _active_claim(session, pid, now or utcnow())
