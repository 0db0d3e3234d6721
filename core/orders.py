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

from sqlalchemy import BigInteger, Integer, String, bindparam, func, insert, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from . import audit, catalog, stock
from . import bulk
from .auth import Caller
from .db import utcnow
from .errors import (Conflict, DomainError, Forbidden, IdempotencyConflict, IllegalTransition, NotFound,
                     ValidationFailed)
from .listing import Page, keyset
from .models import Customer, Order, OrderAdjustment, OrderAllocation, OrderEvent, OrderLine, Product, Store

__all__ = ["TRANSITIONS", "create_order", "transition", "get_order", "cancel", "pay", "fulfil", "complete",
           "refund", "approve_hold", "expire_unpaid", "channels", "payment_providers", "serialize_order",
           "list_orders", "record_sale", "record_sales"]

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


# built once (construction and cache key): the order path runs them on every order
_PRODUCTS = select(Product).where(Product.id.in_(bindparam("ids", expanding=True)))
_PRODUCTS_STORE = (select(Product, Store).select_from(Product).join(Store, true())
                   .where(Product.id.in_(bindparam("ids", expanding=True)), Store.id == bindparam("store_id")))
_PRODUCTS_STORE_CUSTOMER = (select(Product, Store, Customer).select_from(Product).join(Store, true())
                            .join(Customer, true())
                            .where(Product.id.in_(bindparam("ids", expanding=True)), Store.id == bindparam("store_id"),
                                   Customer.id == bindparam("customer_id")))
_INSERT_EVENT = insert(OrderEvent.__table__)
_INSERT_ORDER = {  # SQLite (PostgreSQL: _order_with_lines)
    "sqlite": sqlite.insert(Order.__table__).on_conflict_do_nothing(
        index_elements=[Order.__table__.c.idempotency_key]).returning(Order.__table__.c.id),
    None: insert(Order.__table__).returning(Order.__table__.c.id),
}


def _validate_request(ctx, session: Session, store_id, customer_id, channel, fulfilment, lines, caller,
                      delivery_address) -> tuple[Store, dict, list[tuple[Product, int]]]:
    errors: list[dict] = []
    store_ok = isinstance(store_id, int) and not isinstance(store_id, bool)
    customer_ok = isinstance(customer_id, int) and not isinstance(customer_id, bool)
    if not isinstance(lines, list) or not lines or len(lines) > MAX_LINES:
        wanted = []
    else:
        wanted = list({pid for line in lines if isinstance(line, dict)
                       and isinstance(pid := line.get("product_id"), int) and not isinstance(pid, bool)})
    # the products the session does not hold yet, in one query (a POS chunk holds most of them already),
    # with the store and the customer when neither is held either: one round trip for an online order
    products = {pid: p for pid in wanted if (p := session.identity_map.get(identity_key(Product, pid))) is not None}
    missing = [pid for pid in wanted if pid not in products]
    _loaded = None  # the identity map holds what a query loaded only while it is referenced
    if missing and store_ok and session.identity_map.get(identity_key(Store, store_id)) is None and (
            customer_id is None or customer_ok and session.identity_map.get(identity_key(Customer, customer_id)) is None):
        # a row per product only when the store (and the customer) exist: else the get()s below ask one by one
        _loaded = session.execute(_PRODUCTS_STORE, {"ids": missing, "store_id": store_id}).all() \
            if customer_id is None else \
            session.execute(_PRODUCTS_STORE_CUSTOMER, {"ids": missing, "store_id": store_id,
                                                      "customer_id": customer_id}).all()
        products.update((row[0].id, row[0]) for row in _loaded)
        missing = [pid for pid in missing if pid not in products] if _loaded else missing
    if len(missing) > 1:
        products.update((p.id, p) for p in session.scalars(_PRODUCTS, {"ids": missing}))
    store = session.get(Store, store_id) if store_ok else None
    if store is None or not store.active:
        errors.append({"field": "store_id", "message": f"store {store_id!r} does not exist or is closed"})
    if customer_id is not None:
        if not customer_ok or session.get(Customer, customer_id) is None:
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
        product = (products.get(pid) or session.get(Product, pid)) \
            if isinstance(pid, int) and not isinstance(pid, bool) else None
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

    The rows are written set-based, without the unit of work (the order with ``INSERT ... ON
    CONFLICT (idempotency_key) DO NOTHING``, its lines, the reservation, the allocations: one
    statement each), and the order is left in the session as a flush would leave it, with its lines
    and allocations loaded, so that the hooks and the answer read it without loading it back; a
    change the hooks make to it (a hold, price adjustments) is flushed as usual.
    """
    extra = dict(extra or {})
    request = {"store_id": store_id, "customer_id": customer_id, "channel": channel, "fulfilment": fulfilment,
               "lines": lines, "extra": extra, "delivery_address": delivery_address, "note": note}
    digest = _request_hash(request)
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 200:
            raise ValidationFailed.one("Idempotency-Key", "must be 1 to 200 characters")
    try:
        store, _channel, resolved = _validate_request(ctx, session, store_id, customer_id, channel, fulfilment,
                                                      lines, caller, delivery_address)
    except DomainError:
        # a retry of an order placed before gets that order even if it would not pass now (a product
        # since deactivated, ...): the key is looked up here, on the refusal, not before every order
        if idempotency_key is not None:
            existing = _by_key(session, idempotency_key, digest)
            if existing is not None:
                return existing, False
        raise
    now = utcnow()
    subtotal = sum(product.price_fen * qty for product, qty in resolved)
    order_row = {"store_id": store.id, "customer_id": customer_id, "channel": channel, "fulfilment": fulfilment,
              "status": "awaiting_payment", "subtotal_fen": subtotal, "adjustments_fen": 0, "total_fen": subtotal,
              "idempotency_key": idempotency_key, "request_hash": digest,
              "pickup_code": f"{secrets.randbelow(10**6):06d}" if fulfilment == "pickup" else None,
              "hold_reasons": [], "extra": extra, "delivery_address": delivery_address, "payment_provider": None,
              "payment_reference": None, "note": note, "expires_at": now + _ttl(ctx, "awaiting_payment"),
              "created_by": caller.actor, "created_at": now, "updated_at": now, "paid_at": None}
    line_rows = [{"product_id": product.id, "quantity": qty, "unit_price_fen": product.price_fen,
                  "line_total_fen": product.price_fen * qty, "rx_class": product.rx_class,
                  "product_name": f"{product.generic_name} {product.specification}".strip()}
                 for product, qty in resolved]
    order_id, line_ids = _insert_order(session, order_row, line_rows)
    if order_id is None:  # the key is taken: a retry, or a concurrent twin that committed first
        existing = _by_key(session, idempotency_key, digest)
        if existing is None:
            raise Conflict(f"Idempotency-Key {idempotency_key!r} is in use; retry")
        return existing, False
    # in the order of the request; the collections in the order the relationships load them (by id)
    lines_asked = [OrderLine(id=line_id, order_id=order_id, product=product, allocations=[], **row)
                   for (product, _qty), line_id, row in zip(resolved, line_ids, line_rows)]
    order = Order(id=order_id, **order_row, lines=sorted(lines_asked, key=lambda line: line.id), adjustments=[])
    bulk.attach(session, [order, *lines_asked])
    taken = stock.reserve_fefo_many(ctx, session, store.id, [(product.id, qty, f"lines[{i}].quantity")
                                                             for i, (product, qty) in enumerate(resolved)],
                                    order_id=order_id, actor=caller.actor, today=today)
    alloc_rows = [(line, {"order_line_id": line.id, "lot_id": lot.id, "lot_no": lot.lot_no, "expiry": lot.expiry,
                          "quantity": q})
                  for line, allocations in zip(lines_asked, taken) for lot, q in allocations]
    alloc_ids = bulk.insert_returning(session, OrderAllocation, [row for _line, row in alloc_rows])
    by_line: dict[OrderLine, list[OrderAllocation]] = {line: [] for line in lines_asked}
    for (line, row), alloc_id in zip(alloc_rows, alloc_ids):
        by_line[line].append(OrderAllocation(id=alloc_id, **row))
    bulk.attach(session, [a for allocations in by_line.values() for a in allocations])
    for line, allocations in by_line.items():
        set_committed_value(line, "allocations", sorted(allocations, key=lambda a: a.id))
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
        order.adjustments.append(OrderAdjustment(code=str(adj["code"]), label=str(adj.get("label", adj["code"])),
                                                 amount_fen=amount))
        adj_total += amount
    if subtotal + adj_total < 0:
        raise ValidationFailed.one("lines", "the price adjustments exceed the order total")
    if adj_total:
        order.adjustments_fen, order.total_fen = adj_total, subtotal + adj_total
    if holds:
        order.status = "awaiting_review"
        order.hold_reasons = list(holds)
        order.expires_at = utcnow() + _ttl(ctx, order.status)
    session.flush()  # what the hooks changed (the order held, its adjustments), if anything
    session.connection().execute(_INSERT_EVENT, {
        "order_id": order.id, "old_status": None, "new_status": order.status, "actor": caller.actor,
        "reason": "; ".join(holds), "created_at": utcnow()})
    ctx.hook.order_status_changed(session=session, order=order, old_status=None, new_status=order.status,
                                  caller=caller)
    return order, True


def _insert_order(session: Session, order_row: dict, line_rows: list[dict]) -> tuple[int | None, list[int]]:
    """INSERT the order row and its lines; return the order's id and the lines' ids (in the order of
    ``line_rows``), or ``(None, [])`` when the idempotency key is already taken (``ON CONFLICT DO
    NOTHING``: on PostgreSQL a concurrent twin's uncommitted row is waited for, and its key counts as
    taken only if it commits). No SAVEPOINT, and no read before the write. On PostgreSQL the order is
    a data-modifying CTE of the lines' INSERT (one round trip; no row comes back when the key is taken)."""
    conn = session.connection()
    keyed = order_row["idempotency_key"] is not None
    if conn.dialect.name == "postgresql":
        params = {f"o_{name}": value for name, value in order_row.items()}
        params.update((f"{name}s", [row[name] for row in line_rows]) for name, _type in _LINE_VALUES)
        found = conn.execute(_ORDER_WITH_LINES[keyed], params).all()
        if not found:
            return None, []
        ids = {product_id: line_id for line_id, product_id, _order_id in found}
        return found[0][2], [ids[row["product_id"]] for row in line_rows]
    order_id = conn.execute(_INSERT_ORDER["sqlite" if keyed and conn.dialect.name == "sqlite" else None],
                            order_row).scalar()
    if order_id is None:
        return None, []
    return order_id, bulk.insert_returning(session, OrderLine, [dict(row, order_id=order_id) for row in line_rows])


_LINE_VALUES = (("product_id", BigInteger), ("quantity", Integer), ("unit_price_fen", BigInteger),
                ("line_total_fen", BigInteger), ("product_name", String), ("rx_class", String))


def _order_with_lines(keyed: bool):
    """PostgreSQL: the order and its lines in one statement, the same for any number of lines (arrays,
    so that SQLAlchemy compiles it once)::

        WITH new_order AS (INSERT INTO orders (...) VALUES (:o_store_id, ...)
                           [ON CONFLICT (idempotency_key) DO NOTHING] RETURNING id)
        INSERT INTO order_lines (order_id, product_id, ...) SELECT new_order.id, v.product_id, ...
        FROM new_order JOIN unnest(:product_ids, :quantitys, ...) AS v (product_id, ...) ON true
        RETURNING id, product_id, order_id

    Lines have distinct products: their ids are told apart by it."""
    orders_t, lines_t = Order.__table__, OrderLine.__table__
    head = postgresql.insert(orders_t).values(
        {c.name: bindparam(f"o_{c.name}", type_=c.type) for c in orders_t.columns if c.name != "id"})
    if keyed:
        head = head.on_conflict_do_nothing(index_elements=[orders_t.c.idempotency_key])
    new_order = head.returning(orders_t.c.id).cte("new_order")
    names = [name for name, _type in _LINE_VALUES]
    data = func.unnest(*(bindparam(f"{name}s", type_=postgresql.ARRAY(type_)) for name, type_ in _LINE_VALUES)) \
        .table_valued(*names).render_derived()
    return (insert(lines_t)
            .from_select(["order_id", *names], select(new_order.c.id, *(data.c[name] for name in names))
                         .select_from(new_order).join(data, true()))
            .returning(lines_t.c.id, lines_t.c.product_id, lines_t.c.order_id))


_ORDER_WITH_LINES = {keyed: _order_with_lines(keyed) for keyed in (True, False)}


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
    Raises the :class:`DomainError` that refuses the sale (nothing of it is left
    written: see :func:`record_sales`); many sales at once: :func:`record_sales`.
    """
    sale = {"lines": lines, "customer_id": customer_id, "extra": extra, "sold_at": sold_at, "payments": payments,
            "idempotency_key": idempotency_key}
    done = record_sales(ctx, session, store_id=store_id, channel=channel, caller=caller, sales=[sale])[0]
    if isinstance(done, DomainError):
        raise done
    return done


def record_sales(ctx, session: Session, *, store_id: int, channel: str, caller: Caller, sales: list[dict],
                 today: dt.date | None = None) -> list[tuple[Order, list[dict]] | DomainError]:
    """Record many sales that already happened (an offline terminal's upload), each as :func:`record_sale`
    would, with set-based writes: one query locks the lots of every product sold, FEFO is planned in
    memory under those locks, and orders, lines, allocations, movements and events are inserted with
    one Core statement per table (no ORM unit of work); the lots are updated in one more. These
    writes are sent together before any hook runs (:func:`core.bulk.pipelined`: on PostgreSQL the
    server works on them while the ORM objects for the hooks are built; about a tenth of an upload).
    A sale already happened: its order is written ``completed`` at once, with the events of its three
    steps (paid, ready, completed). The hooks still get ORM objects: the orders (with
    their lines) and the movements are made persistent in ``session`` without an INSERT
    (:mod:`core.bulk`), so that whatever a hook changes on them is flushed as an UPDATE; a line's
    ``allocations`` are loaded on first access.

    ``sales``: dicts with ``lines`` and optional ``customer_id``, ``extra``, ``sold_at``, ``payments``,
    ``idempotency_key`` (the keyword arguments of :func:`record_sale`). Every sale gets the order hooks
    one by one in its own order (``stock_movement_recorded`` for its movements, ``order_validate``,
    ``order_hold``, ``order_price_adjustments``, ``order_status_changed`` to ``paid``, then the
    transitions to ``ready`` and ``completed``, with their ``order_before_transition`` vetoes), the
    sales taking each step together; during a step's hooks ``order.status`` is that step (as
    committed state: nothing to flush) while the row and its events already say ``completed``. Two
    ``UPDATE`` statements of every order (non-HOT on PostgreSQL: ``status`` is indexed) were a seventh
    of the database's work.

    Returns one entry per sale, in order: ``(order, shortfalls)``, or the :class:`DomainError` that
    refused it, in which case nothing of that sale is written. A sale refused by a hook after the
    batch was written is isolated by a SAVEPOINT around the batch: rolled back, the batch is written
    again without the refused sales (rare: a refusal by validation is found before anything is written).
    """
    results: list = [None] * len(sales)
    refused: dict[int, DomainError] = {}
    items = _validate_sales(ctx, session, store_id, channel, caller, sales, refused)
    while items:
        vetoed: dict[int, DomainError] = {}
        attached: list = []
        savepoint = session.begin_nested()
        try:
            done = _record_batch(ctx, session, channel, caller, items, vetoed, today=today, attached=attached)
        except BaseException:
            savepoint.rollback()
            _forget(session, attached)
            raise
        if not vetoed:
            savepoint.commit()
            for key, value in done.items():
                results[key] = value
            break
        savepoint.rollback()
        _forget(session, attached)
        refused.update(vetoed)
        items = [item for item in items if item[0] not in vetoed]
    for key, exc in refused.items():
        results[key] = exc
    return results


def _forget(session: Session, attached: list) -> None:
    """After a SAVEPOINT rollback: the objects :func:`_record_batch` attached without the unit of work
    (rows gone) leave the session, and everything else is expired (the lots and orders it updated with
    Core statements are not known to the session as changed in the SAVEPOINT); the next attempt locks
    and reads the lots again."""
    bulk.detach(session, attached)
    session.expire_all()


def _validate_sales(ctx, session: Session, store_id, channel, caller, sales, refused) -> list[tuple]:
    """Check every sale before anything is written (products and customers loaded in two queries);
    ``refused[i]`` gets the error of each refused one; returns ``[(i, sale, store, resolved)]``.

    What :func:`_validate_request` checks per product (exists, active, visible and not refused on
    ``channel`` for ``caller``) depends on the product, the channel and the caller only: it is asked
    once for every product of the batch together (:func:`_products_checked`). A sale is then taken
    as valid when its own parts are plainly right (known customer, 1 to ``MAX_LINES`` lines of
    distinct checked products, quantities from 1 to ``MAX_QUANTITY``), exactly what
    :func:`_validate_request` would accept; any other sale (and every sale, when a product of the
    batch is refused) goes through :func:`_validate_request` itself, for its exact errors."""
    pids = {p for sale in sales for l in sale["lines"] or [] if isinstance(l, dict)
            if isinstance(p := l.get("product_id"), int) and not isinstance(p, bool)}
    # loaded once into the identity map (which holds them only while referenced: kept here)
    loaded = list(session.scalars(select(Product).where(Product.id.in_(sorted(pids))))) if pids else []
    cids = list({c for sale in sales if isinstance(c := sale.get("customer_id"), int) and not isinstance(c, bool)})
    customers = set()
    if cids:
        found = session.scalars(select(Customer).where(Customer.id.in_(cids))).all()
        loaded += found
        customers = {c.id for c in found}
    checked = _products_checked(ctx, session, store_id, channel, caller, sorted(pids)) if len(sales) > 1 else None
    items = []
    for i, sale in enumerate(sales):
        lines = sale["lines"]
        resolved = _plainly_valid(sale, checked[1], customers) if checked is not None else None
        try:
            if resolved is not None:
                store = checked[0]
            else:
                store, _info, resolved = _validate_request(
                    ctx, session, store_id, sale.get("customer_id"), channel, "pickup",
                    [{"product_id": l.get("product_id"), "quantity": l.get("quantity")} if isinstance(l, dict)
                     else l for l in lines], caller, None)
            for n, ((product, _qty), raw) in enumerate(zip(resolved, lines)):
                price = raw.get("unit_price_fen", product.price_fen)
                if isinstance(price, bool) or not isinstance(price, int) or price < 0:
                    raise ValidationFailed.one(f"lines[{n}].unit_price_fen", "must be a non-negative integer number of fen")
        except DomainError as exc:
            refused[i] = exc
            continue
        items.append((i, sale, store, resolved))
    del loaded
    return items


def _products_checked(ctx, session: Session, store_id, channel, caller, pids: list) -> tuple | None:
    """``(store, {product_id: product})`` when :func:`_validate_request` accepts every product of
    ``pids`` (in requests of at most ``MAX_LINES`` lines of one unit each) for a staff caller or a
    terminal; ``None`` when it refuses one, or for a customer (whose own orders it checks apart)."""
    if not pids or caller.role == "customer":
        return None
    products, store = {}, None
    for start in range(0, len(pids), MAX_LINES):
        try:
            store, _info, resolved = _validate_request(
                ctx, session, store_id, None, channel, "pickup",
                [{"product_id": pid, "quantity": 1} for pid in pids[start:start + MAX_LINES]], caller, None)
        except DomainError:
            return None
        products.update((product.id, product) for product, _qty in resolved)
    return store, products


def _plainly_valid(sale: dict, products: dict, customers: set) -> list | None:
    """The sale's ``[(product, quantity)]`` when its parts are plainly right (see :func:`_validate_sales`),
    else ``None``."""
    cid = sale.get("customer_id")
    if cid is not None and (isinstance(cid, bool) or not isinstance(cid, int) or cid not in customers):
        return None
    lines = sale["lines"]
    if not isinstance(lines, list) or not 0 < len(lines) <= MAX_LINES:
        return None
    resolved, seen = [], set()
    for line in lines:
        if not isinstance(line, dict):
            return None
        pid, qty = line.get("product_id"), line.get("quantity")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid in seen or pid not in products:
            return None
        if isinstance(qty, bool) or not isinstance(qty, int) or not 0 < qty <= MAX_QUANTITY:
            return None
        seen.add(pid)
        resolved.append((products[pid], qty))
    return resolved


def _record_batch(ctx, session: Session, channel: str, caller: Caller, items: list[tuple], refused: dict,
                  today: dt.date | None = None, attached: list | None = None) -> dict[int, tuple[Order, list[dict]]]:
    """Write validated sales and run their hooks; a sale a hook refuses lands in ``refused`` (the caller
    rolls back); returns ``{i: (order, shortfalls)}`` for the others. ``attached`` gets the ORM objects
    made persistent without the unit of work (see :func:`_forget`)."""
    if not items:
        return {}
    attached = [] if attached is None else attached
    actor = caller.actor
    lots = stock.lock_lots(session, items[0][2].id, {p.id for _i, _s, _st, resolved in items for p, _q in resolved})
    now = utcnow()
    order_rows: list[dict] = []
    plans: list[tuple] = []  # (key, [(product, line row, [(lot, units, reason)])], shortfalls)
    for key, sale, store, resolved in items:
        extra = dict(sale.get("extra") or {})
        if sale.get("payments") is not None:
            extra["payments"] = sale["payments"]
        when = sale.get("sold_at") or now
        lines, short_list, subtotal = [], [], 0
        for i, ((product, qty), raw) in enumerate(zip(resolved, sale["lines"])):
            price = raw.get("unit_price_fen", product.price_fen)
            taken, short = stock.plan_direct(lots[product.id], qty, lot_no=raw.get("lot_no"), today=today)
            if short:
                short_list.append({"line": i, "product_id": product.id, "short": short})
            lines.append((product, {"product_id": product.id, "quantity": qty, "unit_price_fen": price,
                                    "line_total_fen": price * qty, "rx_class": product.rx_class,
                                    "product_name": f"{product.generic_name} {product.specification}".strip()},
                          taken))
            subtotal += price * qty
        order_rows.append({"store_id": store.id, "customer_id": sale.get("customer_id"), "channel": channel,
                           "fulfilment": "pickup", "status": "completed", "subtotal_fen": subtotal, "adjustments_fen": 0,
                           "total_fen": subtotal, "idempotency_key": sale.get("idempotency_key"),
                           "request_hash": None, "pickup_code": None, "hold_reasons": [], "extra": extra,
                           "delivery_address": None, "payment_provider": channel, "payment_reference": None,
                           "note": None, "expires_at": None, "created_by": actor, "created_at": when,
                           "updated_at": now, "paid_at": when})
        plans.append((key, lines, short_list))
    # every row's id first (queries), then the rows sent in one pipelined block (PostgreSQL works on
    # them while the ORM objects the hooks get are built; see core.bulk.pipelined)
    conn = session.connection()
    for row, new_id in zip(order_rows, bulk.new_ids(conn, Order.__table__, len(order_rows))):
        row["id"] = new_id
    line_rows = []
    for row, (_key, lines, _short) in zip(order_rows, plans):
        for _product, line_row, _taken in lines:
            line_row["order_id"] = row["id"]
            line_rows.append(line_row)
    for row, new_id in zip(line_rows, bulk.new_ids(conn, OrderLine.__table__, len(line_rows))):
        row["id"] = new_id
    alloc_rows, planned = [], []
    for row, (_key, lines, _short) in zip(order_rows, plans):
        for _product, line_row, taken in lines:
            for lot, q, reason in taken:
                alloc_rows.append({"order_line_id": line_row["id"], "lot_id": lot.id, "lot_no": lot.lot_no,
                                   "expiry": lot.expiry, "quantity": q})
                planned.append((lot, q, reason, row["id"]))
    for row, new_id in zip(alloc_rows, bulk.new_ids(conn, OrderAllocation.__table__, len(alloc_rows))):
        row["id"] = new_id
    booking = stock.DirectBooking(ctx, session, planned, actor=actor)
    events = [{"order_id": row["id"], "old_status": old, "new_status": new, "actor": actor, "reason": reason,
               "created_at": now} for row in order_rows for old, new, reason in _RECORDED_STEPS]
    orders: dict[int, Order] = {}
    shortfalls: dict[int, list[dict]] = {}
    with bulk.pipelined(conn) as writes:
        writes.insert(Order.__table__, order_rows)
        writes.insert(OrderLine.__table__, line_rows)
        writes.insert(OrderAllocation.__table__, alloc_rows)
        attached += booking.send(writes)
        writes.insert(OrderEvent.__table__, events)
        # the ORM objects the hooks and the caller get, persistent without an INSERT: the orders with
        # their lines (which every order hook may read); a line's allocations, which no bundled hook
        # reads, are left unloaded (loaded from the rows above on first access)
        new_lines = []
        for row, (key, lines, short_list) in zip(order_rows, plans):
            order_lines = [bulk.loaded(OrderLine, line_row, product=product) for product, line_row, _taken in lines]
            order = bulk.loaded(Order, row, lines=order_lines, adjustments=[])
            order.__dict__["status"] = "paid"  # the row is written completed; the hooks take it step by step
            for line in order_lines:
                line.__dict__["order"] = order
            new_lines += order_lines
            orders[key], shortfalls[key] = order, short_list
        attached += orders.values()
        bulk.attach(session, [*orders.values(), *new_lines])
    booking.announce()

    for key in list(orders):
        order, extra = orders[key], orders[key].extra
        try:
            problems = [p for answer in ctx.registry.collect("order_validate", session=session, order=order,
                                                              extra=extra, caller=caller) for p in answer]
            if problems:
                raise ValidationFailed("; ".join(f"{f}: {m}" for f, m in problems),
                                       fields=[{"field": f, "message": m} for f, m in problems])
            holds = ctx.registry.collect("order_hold", session=session, order=order, extra=extra, caller=caller)
            if holds:
                raise ValidationFailed("; ".join(holds), fields=[{"field": "lines", "message": h} for h in holds])
            adjustments = [a for answer in ctx.registry.collect("order_price_adjustments", session=session,
                                                                 order=order, extra=extra, caller=caller)
                           for a in answer]
        except DomainError as exc:
            refused[key] = exc
            continue
        if adjustments:
            adj_total = sum(int(a["amount_fen"]) for a in adjustments)
            for adj in adjustments:
                order.adjustments.append(OrderAdjustment(code=str(adj["code"]),
                                                         label=str(adj.get("label", adj["code"])),
                                                         amount_fen=int(adj["amount_fen"])))
            order.adjustments_fen = adj_total
            order.total_fen = max(0, order.subtotal_fen + adj_total)
    # a refusal ends the pass at once (the caller rolls back and writes the others again): the
    # status hooks of the others then run once, in the pass that commits
    if refused:
        return {}
    session.flush()  # a hook's changes to the orders (adjustments) before the status hooks
    _changed(ctx, session, orders, refused, None, "paid", caller)
    if not refused:
        _advance(ctx, session, orders, refused, "ready", caller)
    if not refused:
        _advance(ctx, session, orders, refused, "completed", caller)
    return {} if refused else {key: (orders[key], shortfalls[key]) for key in orders}


#: the steps of a recorded sale, as its order events say them: (old status, new status, reason)
_RECORDED_STEPS = ((None, "paid", "sale recorded"), ("paid", "ready", ""),
                   ("ready", "completed", "handed over at the counter"))


def _changed(ctx, session: Session, orders: dict, refused: dict, old_status, new_status, caller) -> None:
    hook = ctx.hook.order_status_changed
    for key, order in orders.items():
        if key in refused:
            continue
        try:
            hook(session=session, order=order, old_status=old_status, new_status=new_status, caller=caller)
        except DomainError as exc:
            refused[key] = exc


def _advance(ctx, session: Session, orders: dict, refused: dict, new_status: str, caller: Caller) -> None:
    """A step of recorded sales to ``ready`` or ``completed`` (no stock moves in these): the checks and
    hooks of :func:`transition`, per order. The rows and their events already say where the sales end
    (:func:`_record_batch` writes them completed, with every step's event): ``order.status`` takes the
    step as committed state (nothing to flush), then the ``order_status_changed`` hooks run."""
    moved = {}
    for key, order in orders.items():
        if key in refused:
            continue
        old = order.status
        if new_status not in TRANSITIONS.get(old, ()):
            refused[key] = IllegalTransition(f"order {order.id} is {old}: it cannot become {new_status}",
                                             status_from=old, status_to=new_status)
            continue
        vetoes = ctx.registry.collect("order_before_transition", session=session, order=order, old_status=old,
                                      new_status=new_status, caller=caller)
        if vetoes:
            refused[key] = Conflict(f"order {order.id} cannot become {new_status}: {'; '.join(vetoes)}",
                                    status_from=old, status_to=new_status)
            continue
        moved[key] = old
    for key in moved:
        set_committed_value(orders[key], "status", new_status)
    hook = ctx.hook.order_status_changed
    for key, old in moved.items():
        if key in refused:
            continue
        try:
            hook(session=session, order=orders[key], old_status=old, new_status=new_status, caller=caller)
        except DomainError as exc:
            refused[key] = exc
