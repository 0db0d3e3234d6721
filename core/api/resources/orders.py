"""Orders: placing them (idempotently), reading them, and moving them through the state machine."""
from __future__ import annotations

import math

from ... import orders
from ...errors import Forbidden, ValidationFailed
from .. import throttle
from ..errors import TooManyRequests
from ..access import check_order, check_store, store_scope
from ..operations import EVERYONE, STAFF, operation
from ..pagination import decode_cursor, page_body
from ..schemas import CompleteBody, OrderOut, OrderPage, OrderQuery, PayBody, ReasonBody

__all__ = ["Orders", "OrderItem", "OrderCancel", "OrderPay", "OrderFulfil", "OrderComplete", "OrderRefund"]

MANAGERS = ("admin", "store_manager")
CREATE_DOC = """Reserves stock first-expiring-first; the whole order is refused (and nothing is reserved) when a
line cannot be served. Send an `Idempotency-Key` header to make retries safe: the same key with the same
body returns the same order (200), with a different body a 409. Customers order for themselves on online
channels; store staff for their own store. Plugins add fields to this request (see the schema)."""


def _order_request_model(api):
    return api.order_request_model


def _load(req, order_id: int, *, lock: bool = False):
    """The order, after checking the caller may see it. Transitions lock it here, before the
    service reads it again, so the service never works on a row loaded before the lock."""
    order = orders.get_order(req.context.session, order_id, lock=lock)
    check_order(req.context.caller, order)
    return order


def _answer(req, resp, order) -> None:
    resp.media = orders.serialize_order(order, req.context.caller)


class Orders:
    @operation("orders.create", roles=EVERYONE, body=_order_request_model, response=OrderOut, status=201,
               tags=("orders",), summary="Place an order", description=CREATE_DOC, errors=(403, 409),
               idempotency="model")
    def on_post(self, req, resp):
        api, caller, ctx = req.context.api, req.context.caller, req.context.ctx
        data = req.context.body.model_dump(mode="json")
        extra = {name: data.pop(name) for name in api.order_fields}
        if caller.role == "customer":
            if data["customer_id"] not in (None, caller.customer_id):
                raise Forbidden("customers place orders for themselves only",
                                fields=[{"field": "customer_id", "message": "must be your own id or omitted"}])
            data["customer_id"] = caller.customer_id
            channel = orders.channels(ctx.registry).get(data["channel"])
            if channel is not None and not channel.get("online"):
                raise ValidationFailed.one("channel", f"{data['channel']!r} is not an online channel")
        else:
            check_store(caller, data["store_id"], field="store_id")
        key = req.get_header("Idempotency-Key")
        if key is not None:
            if not 0 < len(key) <= 120 or not key.isprintable():
                raise ValidationFailed.one("Idempotency-Key", "must be 1 to 120 printable characters")
            key = f"{caller.actor}|{key}"  # keys are the caller's own: another caller's never collides
        order, created = orders.create_order(
            ctx, req.context.session, store_id=data["store_id"], channel=data["channel"],
            fulfilment=data["fulfilment"], lines=data["lines"], caller=caller, customer_id=data["customer_id"],
            idempotency_key=key, extra=extra, delivery_address=data["delivery_address"], note=data["note"])
        resp.status = 201 if created else 200
        if not created:
            resp.set_header("Idempotent-Replayed", "true")
        resp.location = f"/api/v1/orders/{order.id}"
        _answer(req, resp, order)

    @operation("orders.list", roles=EVERYONE, query=OrderQuery, response=OrderPage, tags=("orders",),
               summary="List orders, newest first",
               description="Customers see their own orders; staff bound to a store see that store's.")
    def on_get(self, req, resp):
        q, caller = req.context.query, req.context.caller
        store_id, customer_id = q.store_id, q.customer_id
        if caller.role == "customer":
            if customer_id not in (None, caller.customer_id):
                raise Forbidden("customers list their own orders only",
                                fields=[{"field": "customer_id", "message": "must be your own id or omitted"}])
            customer_id = caller.customer_id
        else:
            scope = store_scope(caller)
            if scope is not None:
                if store_id not in (None, scope):
                    check_store(caller, store_id, field="store_id")
                store_id = scope
        page = orders.list_orders(req.context.session, store_id=store_id, customer_id=customer_id, status=q.status,
                                  before=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([orders.serialize_order(o, caller) for o in page.items], page.next_after)


class OrderItem:
    @operation("orders.get", roles=EVERYONE, response=OrderOut, tags=("orders",), summary="Get an order",
               errors=(404,))
    def on_get(self, req, resp, order_id):
        _answer(req, resp, _load(req, order_id))


class OrderCancel:
    @operation("orders.cancel", roles=EVERYONE, body=ReasonBody, response=OrderOut, tags=("orders",),
               summary="Cancel an unpaid order (its reservation is released)", errors=(404, 409))
    def on_post(self, req, resp, order_id):
        _load(req, order_id, lock=True)
        _answer(req, resp, orders.cancel(req.context.ctx, req.context.session, order_id, req.context.caller,
                                         req.context.body.reason))


class OrderPay:
    @operation("orders.pay", roles=STAFF, body=PayBody, response=OrderOut, tags=("orders",),
               summary="Take payment at the counter (cash or manual)",
               description="Providers come from `register_payment_providers`; the amount must equal the total.",
               errors=(404, 409))
    def on_post(self, req, resp, order_id):
        _load(req, order_id, lock=True)
        payload = req.context.body.model_dump(exclude_none=True)
        provider = payload.pop("provider")
        _answer(req, resp, orders.pay(req.context.ctx, req.context.session, order_id, provider, payload,
                                      req.context.caller))


class OrderFulfil:
    @operation("orders.fulfil", roles=STAFF, response=OrderOut, tags=("orders",),
               summary="Mark a paid order ready for pickup or dispatched", errors=(404, 409))
    def on_post(self, req, resp, order_id):
        _load(req, order_id, lock=True)
        _answer(req, resp, orders.fulfil(req.context.ctx, req.context.session, order_id, req.context.caller))


class OrderComplete:
    @operation("orders.complete", roles=STAFF, body=CompleteBody, response=OrderOut, tags=("orders",),
               summary="Hand the order over (pickup orders need the customer's pickup code)", errors=(404, 409))
    def on_post(self, req, resp, order_id):
        # wrong pickup codes are counted per order in the login-throttle table, after the request's unit
        # (it rolls back on the refusal): after [api] login_max_failures the order's hand-over is
        # locked for a while, so a six-digit code cannot be guessed at the counter
        ctx, key = req.context.ctx, f"pickup-code:{order_id}"
        with ctx.session() as session:
            wait = throttle.locked_for(session, key, "")
        if wait is not None:
            seconds = max(1, math.ceil(wait.total_seconds()))
            raise TooManyRequests(f"too many wrong pickup codes for order {order_id}; retry in {seconds} s",
                                  headers={"Retry-After": str(seconds)})
        _load(req, order_id, lock=True)
        try:
            order = orders.complete(ctx, req.context.session, order_id, req.context.caller,
                                    req.context.body.pickup_code)
        except ValidationFailed as exc:
            if any(f.get("field") == "pickup_code" for f in exc.fields):
                def count_failure():
                    with ctx.transaction() as session:
                        throttle.record_failure(session, key, "", throttle.policy(ctx))
                req.context.after_unit.append(count_failure)
            raise
        _answer(req, resp, order)


class OrderRefund:
    @operation("orders.refund", roles=MANAGERS, body=ReasonBody, response=OrderOut, tags=("orders",),
               summary="Refund a paid order (audited)", errors=(404, 409))
    def on_post(self, req, resp, order_id):
        _load(req, order_id, lock=True)
        _answer(req, resp, orders.refund(req.context.ctx, req.context.session, order_id, req.context.caller,
                                         req.context.body.reason))
