"""Orders: creation with FEFO reservations and idempotency, and the state machine.

::

    awaiting_review --approve--> awaiting_payment --pay--> paid --fulfil--> ready (pickup) --complete--> completed
          |                            |                     \\--fulfil--> dispatched (delivery) --complete--/
          +-------- cancel ------------+--> cancelled         paid / ready / dispatched / completed --refund--> refunded

Stock: placing reserves (FEFO), cancel and expiry release, payment turns the
reservation into a sale, a refund before hand-over (paid, ready) puts the
units back; after hand-over goods do not return to sellable stock.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import audit, catalog, stock
from .auth import Caller
from .db import is_sqlite, utcnow
from .errors import (Conflict, Forbidden, IdempotencyConflict, IllegalTransition, NotFound,
                     ValidationFailed)
from .listing import Page, keyset
from .models import Customer, Order, OrderAdjustment, OrderAllocation, OrderEvent, OrderLine, Product, Store

__all__ = ["TRANSITIONS", "create_order", "transition", "get_order", "cancel", "pay", "fulfil", "complete",
           "refund", "approve_hold", "expire_unpaid", "channels", "payment_providers", "serialize_order",
           "list_orders"]

TRANSITIONS: dict[str, frozenset[str]] = {
    "awaiting_review": frozenset({"awaiting_payment", "cancelled"}),
    "awaiting_payment": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"ready", "dispatched", "refunded"}),
    "ready": frozenset({"completed", "refunded"}),
    "dispatched": frozenset({"completed", "refunded"}),
    "completed": frozenset({"refunded"}),
    "cancelled": frozenset(),
    "refunded": frozenset(),
}
RESERVED_STATES = ("awaiting_review", "awaiting_payment")
MAX_LINES = 100
MAX_QUANTITY = 10_000


def channels(registry) -> dict[str, dict]:
    return {c["name"]: c for c in registry.concat_named("register_sales_channels", "sales channel")}


def payment_providers(registry) -> dict[str, Any]:
    return {p.name: p for p in registry.concat_named("register_payment_providers", "payment provider",
                                                     key=lambda p: p.name)}


def _request_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def get_order(session: Session, order_id: int, *, lock: bool = False) -> Order:
    if isinstance(order_id, bool) or not isinstance(order_id, int):
        raise NotFound(f"order {order_id!r} does not exist")
    q = select(Order).where(Order.id == order_id)
    if lock:
        q = q.with_for_update()
    order = session.scalars(q).one_or_none()
    if order is None:
        raise NotFound(f"order {order_id} does not exist")
    return order


def _ttl(ctx, status: str) -> dt.timedelta:
    if status == "awaiting_review":
        return dt.timedelta(minutes=int(ctx.setting("orders.review_ttl_minutes", 24 * 60)))
    return dt.timedelta(minutes=int(ctx.setting("orders.unpaid_ttl_minutes", 30)))


def _validate_request(ctx, session: Session, store_id, customer_id, channel, fulfilment, lines, caller,
                      delivery_address) -> tuple[Store, dict, list[tuple[Product, int]]]:
    errors: list[dict] = []
    store = session.get(Store, store_id) if isinstance(store_id, int) and not isinstance(store_id, bool) else None
    if store is None or not store.active:
        errors.append({"field": "store_id", "message": f"store {store_id!r} does not exist or is closed"})
    if customer_id is not None:
        if isinstance(customer_id, bool) or not isinstance(customer_id, int) or session.get(Customer, customer_id) is None:
            errors.append({"field": "customer_id", "message": f"customer {customer_id!r} does not exist"})
    if caller.role == "customer" and customer_id != caller.customer_id:
        raise Forbidden("a customer may only place orders for themself")
    known = channels(ctx.registry)
    if channel not in known:
        errors.append({"field": "channel", "message": f"unknown channel {channel!r}; known: {', '.join(sorted(known))}"})
    if fulfilment not in ("pickup", "delivery"):
        errors.append({"field": "fulfilment", "message": "must be 'pickup' or 'delivery'"})
    elif fulfilment == "delivery" and not (isinstance(delivery_address, str) and delivery_address.strip()):
        errors.append({"field": "delivery_address", "message": "is required for delivery"})
    if not isinstance(lines, list) or not lines:
        errors.append({"field": "lines", "message": "must be a non-empty list"})
        lines = []
    elif len(lines) > MAX_LINES:
        errors.append({"field": "lines", "message": f"at most {MAX_LINES} lines"})
        lines = []
    resolved: list[tuple[Product, int]] = []
    seen: set[int] = set()
    for i, line in enumerate(lines):
        pid = line.get("product_id") if isinstance(line, dict) else None
        qty = line.get("quantity") if isinstance(line, dict) else None
        product = session.get(Product, pid) if isinstance(pid, int) and not isinstance(pid, bool) else None
        if product is None or not product.active:
            errors.append({"field": f"lines[{i}].product_id", "message": f"product {pid!r} does not exist or is inactive"})
            continue
        if pid in seen:
            errors.append({"field": f"lines[{i}].product_id", "message": "appears twice: put the quantity on one line"})
            continue
        seen.add(pid)
        if isinstance(qty, bool) or not isinstance(qty, int) or not 0 < qty <= MAX_QUANTITY:
            errors.append({"field": f"lines[{i}].quantity", "message": f"must be an integer from 1 to {MAX_QUANTITY}"})
            continue
        if channel in known:
            if not catalog.visible(ctx.registry, product, channel, caller):
                errors.append({"field": f"lines[{i}].product_id", "message": f"product {pid} is not sold on channel {channel!r}"})
                continue
            refusals = catalog.sale_refusals(ctx.registry, product, channel, caller)
            if refusals:
                errors.append({"field": f"lines[{i}].product_id", "message": "; ".join(refusals)})
                continue
        resolved.append((product, qty))
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), fields=errors)
    return store, known[channel], resolved


def create_order(ctx, session: Session, *, store_id: int, channel: str, fulfilment: str, lines: list[dict],
                 caller: Caller, customer_id: int | None = None, idempotency_key: str | None = None,
                 extra: dict | None = None, delivery_address: str | None = None, note: str | None = None,
                 today: dt.date | None = None) -> tuple[Order, bool]:
    """Place an order: validate, reserve stock FEFO, run the order hooks.

    Returns ``(order, created)``; with an ``idempotency_key`` already used for
    the same content, the existing order and ``False``; for other content,
    :class:`IdempotencyConflict`.
    """
    extra = dict(extra or {})
    request = {"store_id": store_id, "customer_id": customer_id, "channel": channel, "fulfilment": fulfilment,
               "lines": lines, "extra": extra, "delivery_address": delivery_address, "note": note}
    digest = _request_hash(request)
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 200:
            raise ValidationFailed.one("Idempotency-Key", "must be 1 to 200 characters")
        existing = _by_key(session, idempotency_key, digest)
        if existing is not None:
            return existing, False
    store, _channel, resolved = _validate_request(ctx, session, store_id, customer_id, channel, fulfilment,
                                                  lines, caller, delivery_address)
    order = Order(store_id=store.id, customer_id=customer_id, channel=channel, fulfilment=fulfilment,
                  status="awaiting_payment", idempotency_key=idempotency_key, request_hash=digest,
                  extra=extra, delivery_address=delivery_address, note=note, created_by=caller.actor,
                  pickup_code=f"{secrets.randbelow(10**6):06d}" if fulfilment == "pickup" else None,
                  hold_reasons=[])
    if idempotency_key is not None and not is_sqlite(session.get_bind()):
        try:  # a concurrent twin with the same key commits first: return its order
            with session.begin_nested():
                session.add(order)
                session.flush()
        except IntegrityError:
            existing = _by_key(session, idempotency_key, digest)
            if existing is None:
                raise
            return existing, False
    else:
        session.add(order)
        session.flush()
    subtotal = 0
    for i, (product, qty) in enumerate(resolved):
        line = OrderLine(order_id=order.id, product_id=product.id, quantity=qty, unit_price_fen=product.price_fen,
                         line_total_fen=product.price_fen * qty, rx_class=product.rx_class,
                         product_name=f"{product.generic_name} {product.specification}".strip())
        session.add(line)
        session.flush()
        for lot, q in stock.reserve_fefo(ctx, session, store.id, product.id, qty, order_id=order.id,
                                         actor=caller.actor, today=today, field=f"lines[{i}].quantity"):
            session.add(OrderAllocation(order_line_id=line.id, lot_id=lot.id, lot_no=lot.lot_no, expiry=lot.expiry,
                                        quantity=q))
        subtotal += line.line_total_fen
    session.flush()
    session.refresh(order)
    problems = [p for answer in ctx.registry.collect("order_validate", session=session, order=order, extra=extra,
                                                      caller=caller) for p in answer]
    if problems:
        fields = [{"field": f, "message": m} for f, m in problems]
        raise ValidationFailed("; ".join(f"{f}: {m}" for f, m in problems), fields=fields)
    holds = ctx.registry.collect("order_hold", session=session, order=order, extra=extra, caller=caller)
    adjustments = [a for answer in ctx.registry.collect("order_price_adjustments", session=session, order=order,
                                                         extra=extra, caller=caller) for a in answer]
    adj_total = 0
    for adj in adjustments:
        amount = adj.get("amount_fen")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"price adjustment {adj!r}: amount_fen must be an integer")
        session.add(OrderAdjustment(order_id=order.id, code=str(adj["code"]), label=str(adj.get("label", adj["code"])),
                                    amount_fen=amount))
        adj_total += amount
    if subtotal + adj_total < 0:
        raise ValidationFailed.one("lines", "the price adjustments exceed the order total")
    order.subtotal_fen, order.adjustments_fen, order.total_fen = subtotal, adj_total, subtotal + adj_total
    order.status = "awaiting_review" if holds else "awaiting_payment"
    order.hold_reasons = list(holds)
    order.expires_at = utcnow() + _ttl(ctx, order.status)
    session.add(OrderEvent(order_id=order.id, old_status=None, new_status=order.status, actor=caller.actor,
                           reason="; ".join(holds)))
    session.flush()
    ctx.hook.order_status_changed(session=session, order=order, old_status=None, new_status=order.status,
                                  caller=caller)
    session.refresh(order)
    return order, True


def _by_key(session: Session, key: str, digest: str) -> Order | None:
    existing = session.scalars(select(Order).where(Order.idempotency_key == key)).one_or_none()
    if existing is not None and existing.request_hash != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used for a different order (#{existing.id})",
            fields=[{"field": "Idempotency-Key", "message": "reused with different content"}])
    return existing


def _allocations(order: Order):
    for line in order.lines:
        for alloc in line.allocations:
            yield line, alloc


def transition(ctx, session: Session, order: Order, new_status: str, caller: Caller, *, reason: str = "") -> Order:
    """Move ``order`` to ``new_status`` (locked; hooks may veto; stock follows)."""
    old = order.status
    if new_status not in TRANSITIONS.get(old, ()):
        raise IllegalTransition(f"order {order.id} is {old}: it cannot become {new_status}",
                                status_from=old, status_to=new_status)
    vetoes = ctx.registry.collect("order_before_transition", session=session, order=order, old_status=old,
                                  new_status=new_status, caller=caller)
    if vetoes:
        raise Conflict(f"order {order.id} cannot become {new_status}: {'; '.join(vetoes)}",
                       status_from=old, status_to=new_status)
    actor = caller.actor
    if new_status == "cancelled" and old in RESERVED_STATES:
        for _line, alloc in _allocations(order):
            stock.release(ctx, session, alloc.lot_id, alloc.quantity, order_id=order.id, actor=actor, reason=reason)
    elif new_status == "paid":
        for _line, alloc in _allocations(order):
            stock.sell_reserved(ctx, session, alloc.lot_id, alloc.quantity, order_id=order.id, actor=actor)
        order.paid_at = utcnow()
    elif new_status == "refunded" and old in ("paid", "ready"):
        for _line, alloc in _allocations(order):
            stock.return_to_stock(ctx, session, alloc.lot_id, alloc.quantity, order_id=order.id, actor=actor,
                                  reason=f"refund before hand-over: {reason}")
    order.status = new_status
    if new_status == "awaiting_payment":
        order.expires_at = utcnow() + _ttl(ctx, new_status)
    elif new_status not in RESERVED_STATES:
        order.expires_at = None
    session.add(OrderEvent(order_id=order.id, old_status=old, new_status=new_status, actor=actor, reason=reason))
    session.flush()
    ctx.hook.order_status_changed(session=session, order=order, old_status=old, new_status=new_status, caller=caller)
    return order


def _reason(reason, field="reason") -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.one(field, "is required")
    if len(reason) > 500:
        raise ValidationFailed.one(field, "at most 500 characters")
    return reason.strip()


def cancel(ctx, session: Session, order_id: int, caller: Caller, reason: str) -> Order:
    order = get_order(session, order_id, lock=True)
    if caller.role == "customer" and order.customer_id != caller.customer_id:
        raise NotFound(f"order {order_id} does not exist")
    reason = _reason(reason)
    transition(ctx, session, order, "cancelled", caller, reason=reason)
    audit.record(session, caller, "order.cancel", "order", order.id, before={"status": "placed"},
                 after={"status": "cancelled"}, detail=reason)
    return order


def approve_hold(ctx, session: Session, order_id: int, caller: Caller, reason: str = "") -> Order:
    """Release a held order for payment (called by the plugin that held it)."""
    order = get_order(session, order_id, lock=True)
    return transition(ctx, session, order, "awaiting_payment", caller, reason=reason)


def pay(ctx, session: Session, order_id: int, provider_name: str, payload: dict, caller: Caller) -> Order:
    """Capture payment through a registered provider and mark the order paid."""
    order = get_order(session, order_id, lock=True)
    providers = payment_providers(ctx.registry)
    provider = providers.get(provider_name)
    if provider is None:
        raise ValidationFailed.one("provider", f"unknown payment provider {provider_name!r}; known: {', '.join(sorted(providers))}")
    if provider.roles and caller.role not in provider.roles:
        raise Forbidden(f"role {caller.role!r} may not take payments with {provider_name!r}")
    if order.status == "paid" and order.payment_provider == provider_name:
        ref = payload.get("reference")
        if ref is not None and ref == order.payment_reference:
            return order  # the same payment again: nothing more to do
    if order.status != "awaiting_payment":
        raise IllegalTransition(f"order {order.id} is {order.status}: only an order awaiting payment can be paid",
                                status_from=order.status, status_to="paid")
    result = provider.capture(session, order, payload, caller) or {}
    order.payment_provider = provider_name
    order.payment_reference = result.get("reference")
    transition(ctx, session, order, "paid", caller, reason=f"paid via {provider_name}")
    return order


def fulfil(ctx, session: Session, order_id: int, caller: Caller) -> Order:
    """Mark a paid order prepared: ``ready`` for pickup or ``dispatched`` for delivery."""
    order = get_order(session, order_id, lock=True)
    return transition(ctx, session, order, "ready" if order.fulfilment == "pickup" else "dispatched", caller)


def complete(ctx, session: Session, order_id: int, caller: Caller, pickup_code: str | None = None) -> Order:
    """Hand over: a pickup order needs the customer's pickup code."""
    order = get_order(session, order_id, lock=True)
    if order.fulfilment == "pickup" and order.status == "ready":
        # compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
        if not isinstance(pickup_code, str) or not secrets.compare_digest(
                pickup_code.strip().encode("utf-8", "surrogatepass"), (order.pickup_code or "").encode()):
            raise ValidationFailed.one("pickup_code", "does not match the code issued to the customer")
    return transition(ctx, session, order, "completed", caller)


def refund(ctx, session: Session, order_id: int, caller: Caller, reason: str) -> Order:
    order = get_order(session, order_id, lock=True)
    reason = _reason(reason)
    before = order.status
    transition(ctx, session, order, "refunded", caller, reason=reason)
    audit.record(session, caller, "order.refund", "order", order.id, before={"status": before},
                 after={"status": "refunded", "total_fen": order.total_fen}, detail=reason)
    return order


def expire_unpaid(ctx, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Cancel unpaid (or unreviewed) orders past their deadline, releasing their stock."""
    from .auth import SYSTEM
    now = now or utcnow()
    with ctx.session() as session:
        ids = session.scalars(select(Order.id).where(Order.status.in_(RESERVED_STATES), Order.expires_at <= now)
                              .order_by(Order.id).limit(limit)).all()
    done = 0
    for oid in ids:
        with ctx.transaction() as session:
            order = get_order(session, oid, lock=True)
            if order.status in RESERVED_STATES and order.expires_at and order.expires_at <= now:
                transition(ctx, session, order, "cancelled", SYSTEM, reason="expired unpaid: reservation released")
                done += 1
    return done


def serialize_order(order: Order, caller: Caller | None = None) -> dict:
    data = {
        "id": order.id, "status": order.status, "store_id": order.store_id, "customer_id": order.customer_id,
        "channel": order.channel, "fulfilment": order.fulfilment, "subtotal_fen": order.subtotal_fen,
        "adjustments_fen": order.adjustments_fen, "total_fen": order.total_fen,
        "hold_reasons": list(order.hold_reasons or []), "delivery_address": order.delivery_address,
        "note": order.note, "payment_provider": order.payment_provider,
        "created_at": order.created_at.isoformat(), "updated_at": order.updated_at.isoformat(),
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
        "expires_at": order.expires_at.isoformat() if order.expires_at else None,
        "extra": dict(order.extra or {}),
        "lines": [{
            "id": line.id, "product_id": line.product_id, "product_name": line.product_name,
            "rx_class": line.rx_class, "quantity": line.quantity, "unit_price_fen": line.unit_price_fen,
            "line_total_fen": line.line_total_fen,
            "allocations": [{"lot_id": a.lot_id, "lot_no": a.lot_no, "expiry": a.expiry.isoformat(),
                             "quantity": a.quantity} for a in line.allocations],
        } for line in order.lines],
        "adjustments": [{"code": a.code, "label": a.label, "amount_fen": a.amount_fen} for a in order.adjustments],
    }
    if caller is not None and caller.role == "customer" and caller.customer_id == order.customer_id:
        data["pickup_code"] = order.pickup_code
    return data


def list_orders(session: Session, *, store_id: int | None = None, customer_id: int | None = None,
                status: str | None = None, before: int | None = None, limit: int = 50) -> Page[Order]:
    """Orders newest first, filtered; ``before`` an order id to continue from."""
    stmt = select(Order)
    if store_id is not None:
        stmt = stmt.where(Order.store_id == store_id)
    if customer_id is not None:
        stmt = stmt.where(Order.customer_id == customer_id)
    if status is not None:
        stmt = stmt.where(Order.status == status)
    return keyset(session, stmt, Order.id, after=before, limit=limit, descending=True)


def record_sale(ctx, session: Session, *, store_id: int, channel: str, lines: list[dict], caller: Caller,
                customer_id: int | None = None, extra: dict | None = None, sold_at: dt.datetime | None = None,
                payments: list[dict] | None = None, idempotency_key: str | None = None) -> tuple[Order, list[dict]]:
    """Record a sale that already happened at a counter or an offline terminal.

    The same validation and order hooks run as for an online order (so
    plugins see a new order, then ``paid``, then ``completed``), but stock is
    taken directly and never refused: a shortfall is returned as
    ``[{"line": i, "product_id": ..., "short": n}]`` for the caller to record.
    A hold (e.g. a prescription not approved) cannot wait for a sale that is
    already made: it refuses the sale. Lines may carry ``unit_price_fen`` (the
    price the terminal charged) and ``lot_no`` (the lot scanned).
    """
    extra = dict(extra or {})
    if payments is not None:
        extra["payments"] = payments
    store, _info, resolved = _validate_request(ctx, session, store_id, customer_id, channel, "pickup",
                                               [{"product_id": l.get("product_id"), "quantity": l.get("quantity")}
                                                if isinstance(l, dict) else l for l in lines],
                                               caller, None)
    order = Order(store_id=store.id, customer_id=customer_id, channel=channel, fulfilment="pickup",
                  status="paid", idempotency_key=idempotency_key, extra=extra, hold_reasons=[],
                  created_by=caller.actor, paid_at=sold_at or utcnow(), payment_provider=channel,
                  created_at=sold_at or utcnow())
    session.add(order)
    session.flush()
    subtotal, shortfalls = 0, []
    for i, ((product, qty), raw) in enumerate(zip(resolved, lines)):
        price = raw.get("unit_price_fen", product.price_fen)
        if isinstance(price, bool) or not isinstance(price, int) or price < 0:
            raise ValidationFailed.one(f"lines[{i}].unit_price_fen", "must be a non-negative integer number of fen")
        line = OrderLine(order_id=order.id, product_id=product.id, quantity=qty, unit_price_fen=price,
                         line_total_fen=price * qty, rx_class=product.rx_class,
                         product_name=f"{product.generic_name} {product.specification}".strip())
        session.add(line)
        session.flush()
        taken, short = stock.sell_direct(ctx, session, store.id, product.id, qty, order_id=order.id,
                                         actor=caller.actor, lot_no=raw.get("lot_no"))
        for lot, q in taken:
            session.add(OrderAllocation(order_line_id=line.id, lot_id=lot.id, lot_no=lot.lot_no,
                                        expiry=lot.expiry, quantity=q))
        if short:
            shortfalls.append({"line": i, "product_id": product.id, "short": short})
        subtotal += line.line_total_fen
    session.flush()
    session.refresh(order)
    problems = [p for answer in ctx.registry.collect("order_validate", session=session, order=order, extra=extra,
                                                      caller=caller) for p in answer]
    if problems:
        raise ValidationFailed("; ".join(f"{f}: {m}" for f, m in problems),
                               fields=[{"field": f, "message": m} for f, m in problems])
    holds = ctx.registry.collect("order_hold", session=session, order=order, extra=extra, caller=caller)
    if holds:
        raise ValidationFailed("; ".join(holds), fields=[{"field": "lines", "message": h} for h in holds])
    adjustments = [a for answer in ctx.registry.collect("order_price_adjustments", session=session, order=order,
                                                         extra=extra, caller=caller) for a in answer]
    adj_total = sum(int(a["amount_fen"]) for a in adjustments)
    for adj in adjustments:
        session.add(OrderAdjustment(order_id=order.id, code=str(adj["code"]), label=str(adj.get("label", adj["code"])),
                                    amount_fen=int(adj["amount_fen"])))
    order.subtotal_fen, order.adjustments_fen = subtotal, adj_total
    order.total_fen = max(0, subtotal + adj_total)
    session.add(OrderEvent(order_id=order.id, old_status=None, new_status="paid", actor=caller.actor,
                           reason="sale recorded"))
    session.flush()
    ctx.hook.order_status_changed(session=session, order=order, old_status=None, new_status="paid", caller=caller)
    transition(ctx, session, order, "ready", caller)
    transition(ctx, session, order, "completed", caller, reason="handed over at the counter")
    return order, shortfalls
