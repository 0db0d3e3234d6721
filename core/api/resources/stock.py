"""A store's lot stock: on-hand, receipts, adjustments, transfers, movements."""
from __future__ import annotations

from ... import stock
from ...models import StockLot, Store
from ..access import check_store
from ..operations import STAFF, operation
from ..pagination import decode_cursor, page_body
from ..schemas import (AdjustmentCreate, MovementOut, MovementPage, MovementQuery, MovementWithLot, ReceiptCreate,
                       StockPage, StockQuery, TransferCreate, TransferOut)
from .common import dump, get_or_404, lot_out

__all__ = ["Stock", "Receipts", "Adjustments", "Transfers", "Movements"]

SCOPE = "Staff bound to a store act on that store only (403 otherwise)."
MANAGERS = ("admin", "store_manager")


def _with_lot(movement, lot) -> dict:
    return {"movement": dump(MovementOut, movement), "lot": lot_out(lot)}


class Stock:
    @operation("stock.list", roles=STAFF, query=StockQuery, response=StockPage, tags=("stock",),
               summary="On-hand stock per product and lot",
               description="Lots in expiry order with on-hand, reserved, available (sellable now) and an "
                           "expired flag. " + SCOPE, errors=(404,))
    def on_get(self, req, resp, store_id):
        check_store(req.context.caller, store_id)
        q = req.context.query
        rows, next_after = stock.stock_by_product(req.context.session, store_id, product_id=q.product_id,
                                                  after=decode_cursor(q.cursor), limit=q.limit,
                                                  include_empty=q.include_empty)
        items = []
        for product, lots in rows:
            shown = [lot_out(lot) for lot in lots]
            items.append({"product_id": product.id, "sku": product.sku, "generic_name": product.generic_name,
                          "specification": product.specification,
                          "on_hand": sum(x["on_hand"] for x in shown), "reserved": sum(x["reserved"] for x in shown),
                          "available": sum(x["available"] for x in shown), "lots": shown})
        resp.media = page_body(items, next_after)


class Receipts:
    @operation("stock.receive", roles=STAFF, body=ReceiptCreate, response=MovementWithLot, status=201,
               tags=("stock",), summary="Receive goods into a lot", description=SCOPE, errors=(404,))
    def on_post(self, req, resp, store_id):
        check_store(req.context.caller, store_id)
        b, session = req.context.body, req.context.session
        movement = stock.receive(req.context.ctx, session, store_id, b.product_id, b.lot_no, b.expiry, b.quantity,
                                 req.context.caller, reference=b.reference)
        resp.status = 201
        resp.media = _with_lot(movement, session.get(StockLot, movement.lot_id))


class Adjustments:
    @operation("stock.adjust", roles=MANAGERS, body=AdjustmentCreate, response=MovementWithLot, status=201,
               tags=("stock",), summary="Correct a lot's on-hand with a reason (audited)",
               description=SCOPE, errors=(404, 409))
    def on_post(self, req, resp, store_id):
        check_store(req.context.caller, store_id)
        b, session = req.context.body, req.context.session
        movement = stock.adjust(req.context.ctx, session, store_id, b.lot_id, b.delta, b.reason, req.context.caller)
        resp.status = 201
        resp.media = _with_lot(movement, session.get(StockLot, movement.lot_id))


class Transfers:
    @operation("stock.transfer", roles=MANAGERS, body=TransferCreate, response=TransferOut, status=201,
               tags=("stock",), summary="Send units of a lot to another store",
               description="The sending store is the one in the path. " + SCOPE, errors=(404, 409))
    def on_post(self, req, resp, store_id):
        check_store(req.context.caller, store_id)
        b = req.context.body
        out, inn = stock.transfer(req.context.ctx, req.context.session, store_id, b.lot_id, b.to_store_id,
                                  b.quantity, req.context.caller)
        resp.status = 201
        resp.media = {"transfer_out": dump(MovementOut, out), "transfer_in": dump(MovementOut, inn)}


class Movements:
    @operation("stock.movements", roles=STAFF, query=MovementQuery, response=MovementPage, tags=("stock",),
               summary="A store's stock movements, newest first", description=SCOPE, errors=(404,))
    def on_get(self, req, resp, store_id):
        check_store(req.context.caller, store_id)
        q = req.context.query
        get_or_404(req.context.session, Store, store_id, "store")
        page = stock.list_movements(req.context.session, store_id, product_id=q.product_id, kind=q.kind,
                                    before=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([dump(MovementOut, m) for m in page.items], page.next_after)
