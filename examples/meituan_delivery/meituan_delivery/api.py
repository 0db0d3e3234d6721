"""The plugin's routes (mounted through ``register_routes``).

::

    POST /meituan/orders                      Meituan's new-order webhook (signed; no bearer token)
    POST /meituan/delivery-status             Meituan's rider/delivery callback (signed)
    GET  /api/v1/meituan/orders               linked orders, newest first (staff; store staff see their store's)
    GET  /api/v1/orders/{order_id}/meituan    the Meituan side of one order (staff)

The webhooks read the raw body (``raw_body=True``): the signature is checked
over the exact bytes before anything is parsed; then the body is validated
strictly, and a bad field is a 422 naming it (``items[1].quantity``).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from core.api import STAFF, operation
from core.api.access import check_order, store_scope
from core.api.errors import MalformedJson
from core.api.operations import pydantic_fields, read_json_body
from core.api.pagination import decode_cursor, page_body
from core.api.resources.common import ID, V1
from core.api.schemas import Out, PageQuery, page_of
from core.errors import NotFound, ValidationFailed
from core.listing import keyset
from core.models import Order

from .models import DELIVERY_STATUSES, MeituanOrder
from .service import accept_order, apply_delivery_status
from .settings import settings_of
from .signing import HEADER, verify

__all__ = ["routes"]

TAGS = ("meituan",)
SIGNED = (f"Signed by Meituan: `{HEADER}` is the hex HMAC-SHA256 of the exact body with the shared secret "
          "([meituan] secret); a missing or wrong signature is a 401 and nothing is read.")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Str = lambda n: Annotated[str, Field(min_length=1, max_length=n)]  # noqa: E731


class MeituanItem(_In):
    sku: Str(64) = Field(description="the pharmo2o product SKU (Meituan's app_food_code)")
    quantity: Annotated[int, Field(ge=1, le=10_000)]


class MeituanRecipient(_In):
    name: Str(100)
    phone: Str(40)
    address: Str(400)


class MeituanOrderIn(_In):
    order_id: Str(64) = Field(description="Meituan's order id: a retried webhook with it makes no second order")
    app_poi_code: Str(64) = Field(description="Meituan's shop code ([meituan.shops] maps it to a store code)")
    items: Annotated[list[MeituanItem], Field(min_length=1, max_length=100)]
    total_fen: Annotated[int, Field(ge=0, le=10**10, description="what the customer paid Meituan, in fen")]
    recipient: MeituanRecipient
    caution: Annotated[str, Field(max_length=500)] | None = Field(None, description="the customer's note")


class MeituanAcceptedOut(Out):
    order_id: int = Field(description="the pharmo2o order")
    meituan_order_id: str
    status: str = Field(description="the pharmo2o order status (paid once accepted)")
    total_fen: int
    replayed: bool = Field(description="true when this webhook had already been accepted")


class DeliveryStatusIn(_In):
    order_id: Str(64) = Field(description="Meituan's order id")
    status: Literal["rider_assigned", "picked_up", "delivered", "cancelled"]
    rider_name: Annotated[str, Field(max_length=100)] | None = None
    rider_phone: Annotated[str, Field(max_length=40)] | None = None
    reason: Annotated[str, Field(max_length=300)] | None = Field(None, description="why it was cancelled")


class MeituanOrderOut(Out):
    meituan_order_id: str
    order_id: int
    order_status: str
    store_id: int
    app_poi_code: str
    delivery_status: Literal[DELIVERY_STATUSES]  # type: ignore[valid-type]
    meituan_total_fen: int
    rider_name: str | None
    rider_phone: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


MeituanOrderPage = page_of(MeituanOrderOut, "MeituanOrderPage")


class MeituanOrderQuery(PageQuery):
    delivery_status: Literal[DELIVERY_STATUSES] | None = None  # type: ignore[valid-type]


def _signed_body(req, model: type[_In]) -> tuple[_In, bytes]:
    secret = settings_of(req.context.ctx.config).require_secret()
    raw = read_json_body(req)
    verify(secret, raw, req.get_header(HEADER))
    try:
        return model.model_validate_json(raw or b"{}", strict=True), raw
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise MalformedJson("the body is not valid JSON") from None
        fields = pydantic_fields(exc)
        raise ValidationFailed("; ".join(f"{f['field']}: {f['message']}" for f in fields), fields=fields) from None


def _out(link: MeituanOrder, order: Order) -> dict:
    return {"meituan_order_id": link.meituan_order_id, "order_id": order.id, "order_status": order.status,
            "store_id": order.store_id, "app_poi_code": link.app_poi_code, "delivery_status": link.delivery_status,
            "meituan_total_fen": link.meituan_total_fen, "rider_name": link.rider_name,
            "rider_phone": link.rider_phone, "created_at": link.created_at.isoformat(),
            "updated_at": link.updated_at.isoformat()}


class OrderWebhook:
    @operation("meituan.order_webhook", public=True, raw_body=True, body=MeituanOrderIn,
               response=MeituanAcceptedOut, tags=TAGS, idempotency="model", errors=(401, 409, 503),
               summary="Meituan's new-order webhook: a paid delivery order",
               description=SIGNED + " The order is placed on channel `meituan` for delivery, its stock reserved "
                                    "first-expiring-first, and marked paid (the customer paid Meituan).")
    def on_post(self, req, resp):
        ctx = req.context.ctx
        data, raw = _signed_body(req, MeituanOrderIn)
        accepted = accept_order(ctx, req.context.session, settings_of(ctx.config), data.model_dump(), raw)
        resp.status = 200 if accepted.replayed else 201
        resp.media = {"order_id": accepted.order.id, "meituan_order_id": accepted.link.meituan_order_id,
                      "status": accepted.order.status, "total_fen": accepted.order.total_fen,
                      "replayed": accepted.replayed}


class DeliveryStatusCallback:
    @operation("meituan.delivery_status", public=True, raw_body=True, body=DeliveryStatusIn,
               response=MeituanOrderOut, tags=TAGS, idempotency="none", errors=(401, 404, 409, 503),
               summary="Meituan's rider/delivery callback",
               description=SIGNED + " `picked_up` dispatches the order, `delivered` completes it, `cancelled` "
                                    "refunds it; repeating a callback changes nothing.")
    def on_post(self, req, resp):
        data, _raw = _signed_body(req, DeliveryStatusIn)
        link, order = apply_delivery_status(req.context.ctx, req.context.session, data.model_dump())
        resp.media = _out(link, order)


class MeituanOrders:
    @operation("meituan.orders", roles=STAFF, query=MeituanOrderQuery, response=MeituanOrderPage, tags=TAGS,
               summary="Meituan orders, newest first (store staff: their store's)")
    def on_get(self, req, resp):
        q, session = req.context.query, req.context.session
        stmt = select(MeituanOrder).join(Order, Order.id == MeituanOrder.order_id)
        scope = store_scope(req.context.caller)
        if scope is not None:
            stmt = stmt.where(Order.store_id == scope)
        if q.delivery_status is not None:
            stmt = stmt.where(MeituanOrder.delivery_status == q.delivery_status)
        page = keyset(session, stmt, MeituanOrder.id, after=decode_cursor(q.cursor), limit=q.limit, descending=True)
        resp.media = page_body([_out(link, session.get(Order, link.order_id)) for link in page.items],
                               page.next_after)


class OrderMeituan:
    @operation("meituan.order", roles=STAFF, response=MeituanOrderOut, tags=TAGS, errors=(404,),
               summary="The Meituan side of an order")
    def on_get(self, req, resp, order_id):
        session = req.context.session
        order = session.get(Order, order_id)
        if order is None:
            raise NotFound(f"order {order_id} does not exist")
        check_order(req.context.caller, order)
        link = session.scalars(select(MeituanOrder).where(MeituanOrder.order_id == order_id)).one_or_none()
        if link is None:
            raise NotFound(f"order {order_id} did not come from Meituan")
        resp.media = _out(link, order)


def routes() -> list[tuple[str, object]]:
    return [
        ("/meituan/orders", OrderWebhook()),
        ("/meituan/delivery-status", DeliveryStatusCallback()),
        (f"{V1}/meituan/orders", MeituanOrders()),
        (f"{V1}/orders/{{order_id:{ID}}}/meituan", OrderMeituan()),
    ]
