"""The catalogue, as each channel and caller may see it (through the product hooks)."""
from __future__ import annotations

from sqlalchemy import bindparam

from ... import catalog
from ...errors import NotFound, ValidationFailed
from ...models import Product
from ..operations import EVERYONE, operation
from ..pagination import decode_cursor, page_body
from ..schemas import ChannelQuery, ProductCreate, ProductOut, ProductPage, ProductQuery, ProductUpdate
from ..tokens import Prefetch

__all__ = ["Products", "ProductItem", "ProductDeactivate", "read_channel"]

CHANNEL_NOTE = ("Staff read through the `store` channel unless they pass `channel`; customers through an online "
                "channel (`web` by default), so the online rules apply: banned products are hidden and Rx "
                "products carry the notice and withhold the package insert.")


def read_channel(req, requested: str | None) -> str:
    """The channel whose rules apply to this read; customers may only name an online one."""
    known = req.context.api.sales_channels()
    customer = req.context.caller.role == "customer"
    name = requested or ("web" if customer else "store")
    if name not in known:
        raise ValidationFailed.one("channel", f"unknown channel {name!r}; known: {', '.join(sorted(known))}")
    if customer and not known[name].get("online"):
        online = sorted(n for n, c in known.items() if c.get("online"))
        raise ValidationFailed.one("channel", f"customers read through an online channel: {', '.join(online)}")
    return name


class Products:
    @operation("products.list", roles=EVERYONE, query=ProductQuery, response=ProductPage, tags=("products",),
               summary="List or search products", description=CHANNEL_NOTE)
    def on_get(self, req, resp):
        q, caller, session = req.context.query, req.context.caller, req.context.session
        registry = req.context.ctx.registry
        channel = read_channel(req, q.channel)
        items: list[dict] = []
        after, next_position = decode_cursor(q.cursor), None
        while True:  # fill the page with visible products; the cursor is the last product looked at
            page = catalog.list_products(session, q=q.q, rx_class=q.rx_class, category=q.category, active=q.active,
                                         after=after, limit=q.limit)
            for i, product in enumerate(page.items):
                if not catalog.visible(registry, product, channel, caller):
                    continue
                items.append(catalog.serialize_product(registry, product, channel, caller))
                if len(items) == q.limit:
                    more = i < len(page.items) - 1 or page.next_after is not None
                    next_position = product.id if more else None
                    break
            else:
                if page.next_after is not None:
                    after = page.next_after
                    continue
            break
        resp.media = page_body(items, next_position)

    @operation("products.create", roles=("admin", "store_manager"), body=ProductCreate, response=ProductOut,
               status=201, tags=("products",), summary="Create a product", errors=(422,))
    def on_post(self, req, resp):
        registry = req.context.ctx.registry
        product = catalog.create_product(req.context.session, req.context.body.model_dump(exclude_unset=True),
                                         req.context.caller)
        resp.status = 201
        resp.location = f"/api/v1/products/{product.id}"
        resp.media = catalog.serialize_product(registry, product, "store", req.context.caller)


#: the product row, read in the bearer token's statement (one round trip per product read)
PRODUCT_PREFETCH = Prefetch(catalog.PRODUCT_COLUMNS, Product.id == bindparam("prefetch_product_id"),
                            lambda params: {"prefetch_product_id": params["product_id"]},
                            key=catalog.PRODUCT_COLUMNS.index(Product.__table__.c.id))


class ProductItem:
    @operation("products.get", roles=EVERYONE, query=ChannelQuery, response=ProductOut, tags=("products",),
               summary="Get a product", description=CHANNEL_NOTE, errors=(404,), prefetch=PRODUCT_PREFETCH)
    def on_get(self, req, resp, product_id):
        rc = req.context
        caller, registry = rc.caller, rc.ctx.registry
        channel = read_channel(req, rc.query.channel)
        product = catalog.get_product(rc.session, product_id, connection=rc.connection, values=rc.prefetched)
        if product is None or not catalog.visible(registry, product, channel, caller):
            raise NotFound(f"product {product_id} does not exist")
        resp.media = catalog.serialize_product(registry, product, channel, caller)

    @operation("products.update", roles=("admin", "store_manager"), body=ProductUpdate, response=ProductOut,
               tags=("products",), summary="Update a product", errors=(404,))
    def on_patch(self, req, resp, product_id):
        product = catalog.update_product(req.context.session, product_id,
                                         req.context.body.model_dump(exclude_unset=True), req.context.caller,
                                         may_change_active=_may_deactivate(req))
        resp.media = catalog.serialize_product(req.context.ctx.registry, product, "store", req.context.caller)


def _may_deactivate(req) -> bool:
    """Whether the caller holds ``products.deactivate`` (admins, and roles a plugin grants it to)."""
    api = req.context.api
    op = next(r.operation for r in api.routes if r.operation.id == "products.deactivate")
    return req.context.caller.role in api.roles_of(op)


class ProductDeactivate:
    @operation("products.deactivate", roles=("admin",), response=ProductOut, tags=("products",),
               summary="Deactivate a product (kept for history; no longer sold)", errors=(404,))
    def on_post(self, req, resp, product_id):
        product = catalog.update_product(req.context.session, product_id, {"active": False}, req.context.caller,
                                         may_change_active=True)
        resp.media = catalog.serialize_product(req.context.ctx.registry, product, "store", req.context.caller)
