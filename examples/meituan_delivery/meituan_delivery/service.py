"""What Meituan's calls do to pharmo2o's orders, through the core's order services only.

::

    order webhook      -> core.orders.create_order(channel="meituan", fulfilment="delivery")
                          (stock reserved FEFO, every plugin's order hooks run)
                       -> core.orders.pay(provider="meituan")   the customer already paid Meituan
    rider_assigned     -> rider recorded (the order stays paid: the store is preparing it)
    picked_up          -> core.orders.fulfil   paid -> dispatched
    delivered          -> core.orders.complete dispatched -> completed (fulfilled first if needed)
    cancelled          -> core.orders.refund   paid/dispatched/completed -> refunded

Each call is idempotent: the Meituan order id is the key, a callback repeating
the current state changes nothing, and a webhook retried with the same body
answers with the same order.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import orders
from core.auth import Caller
from core.db import utcnow
from core.errors import Conflict, DomainError, NotFound, ValidationFailed
from core.models import Order, Product, Store

from .models import MeituanOrder
from .settings import Settings

__all__ = ["CHANNEL", "PROVIDER", "MEITUAN", "accept_order", "apply_delivery_status", "Accepted"]

CHANNEL = "meituan"
PROVIDER = "meituan"
#: who Meituan's calls act as (the order's created_by, the movements' actor)
MEITUAN = Caller(role="system", name="meituan")


@dataclass(frozen=True)
class Accepted:
    order: Order
    link: MeituanOrder
    replayed: bool


def is_meituan(caller: Caller | None) -> bool:
    return caller is not None and caller.role == MEITUAN.role and caller.name == MEITUAN.name


def _link(session: Session, meituan_order_id: str, *, lock: bool = False) -> MeituanOrder | None:
    stmt = select(MeituanOrder).where(MeituanOrder.meituan_order_id == meituan_order_id)
    return session.scalars(stmt.with_for_update() if lock else stmt).one_or_none()


def accept_order(ctx, session: Session, settings: Settings, data: dict, raw: bytes) -> Accepted:
    """Turn a Meituan order (already paid on Meituan) into a paid delivery order of the mapped store."""
    digest = hashlib.sha256(raw).hexdigest()
    mt_id = data["order_id"]
    existing = _link(session, mt_id)
    if existing is not None:
        return _replay(session, existing, digest)
    code = settings.store_code(data["app_poi_code"])
    store = session.scalars(select(Store).where(Store.code == code)).one_or_none()
    if store is None or not store.active:
        raise ValidationFailed.one("app_poi_code", f"shop {data['app_poi_code']!r} maps to no open store ({code!r})")
    lines, errors = [], []
    for i, item in enumerate(data["items"]):
        product = session.scalars(select(Product).where(Product.sku == item["sku"])).one_or_none()
        if product is None:
            errors.append({"field": f"items[{i}].sku", "message": f"no product with SKU {item['sku']!r}"})
            continue
        lines.append({"product_id": product.id, "quantity": item["quantity"]})
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), fields=errors)
    recipient = data["recipient"]
    try:
        order, created = orders.create_order(
            ctx, session, store_id=store.id, channel=CHANNEL, fulfilment="delivery", lines=lines, caller=MEITUAN,
            idempotency_key=f"meituan:{mt_id}", extra={"meituan_total_fen": data["total_fen"]},
            delivery_address=f"{recipient['address']} ({recipient['name']} {recipient['phone']})",
            note=data.get("caution"))
    except DomainError as exc:  # name Meituan's fields (items[0].sku), not the core's (lines[0].product_id)
        if not exc.fields:
            raise
        fields = [{**f, "field": _meituan_field(f["field"])} for f in exc.fields]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        raise type(exc)(detail, fields=fields, **exc.extra) from None
    if not created:  # a concurrent twin of this webhook committed first
        return Accepted(order, _link(session, mt_id), True)
    if order.status != "awaiting_payment":
        raise Conflict(f"Meituan order {mt_id} would wait for review ({'; '.join(order.hold_reasons)}); "
                       "Meituan orders must be payable at once", fields=[{"field": "items", "message": "needs review"}])
    orders.pay(ctx, session, order.id, PROVIDER, {"reference": mt_id}, MEITUAN)
    link = MeituanOrder(meituan_order_id=mt_id, order_id=order.id, app_poi_code=data["app_poi_code"],
                        delivery_status="accepted", meituan_total_fen=data["total_fen"], body_sha256=digest)
    session.add(link)
    session.flush()
    return Accepted(order, link, False)


def _meituan_field(field: str) -> str:
    """``lines[2].product_id`` -> ``items[2].sku``: the webhook's items map one to one to the order's lines."""
    if field == "lines":
        return "items"
    if field.startswith("lines["):
        return "items[" + field[len("lines["):].replace("].product_id", "].sku")
    return field


def _replay(session: Session, link: MeituanOrder, digest: str) -> Accepted:
    if link.body_sha256 != digest:
        raise Conflict(f"Meituan order {link.meituan_order_id} was already accepted with a different body",
                       fields=[{"field": "order_id", "message": "already accepted with other content"}])
    return Accepted(session.get(Order, link.order_id), link, True)


def apply_delivery_status(ctx, session: Session, data: dict) -> tuple[MeituanOrder, Order]:
    """Apply a rider/delivery callback to the linked order (a repeated callback changes nothing)."""
    link = _link(session, data["order_id"], lock=True)
    if link is None:
        raise NotFound(f"no Meituan order {data['order_id']!r} was accepted here",
                       fields=[{"field": "order_id", "message": "unknown Meituan order"}])
    order = orders.get_order(session, link.order_id, lock=True)
    status = data["status"]
    if status == "rider_assigned":
        link.rider_name, link.rider_phone = data.get("rider_name"), data.get("rider_phone")
    elif status == "picked_up":
        if order.status == "paid":
            orders.fulfil(ctx, session, order.id, MEITUAN)
    elif status == "delivered":
        if order.status == "paid":
            orders.fulfil(ctx, session, order.id, MEITUAN)
        if order.status == "dispatched":
            orders.complete(ctx, session, order.id, MEITUAN)
    elif status == "cancelled":
        if order.status != "refunded":
            orders.refund(ctx, session, order.id, MEITUAN, f"cancelled on Meituan: {data.get('reason') or 'no reason given'}")
    if _progress(status) >= _progress(link.delivery_status):  # a late callback never moves it back
        link.delivery_status = status
    link.updated_at = utcnow()
    session.flush()
    return link, order


def _progress(status: str) -> int:
    return {"accepted": 0, "rider_assigned": 1, "picked_up": 2, "delivered": 3, "cancelled": 4}[status]
