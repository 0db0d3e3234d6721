"""The core's REST resources and the table of their routes."""
from __future__ import annotations

from .auth import Logout, Me, Token
from .audit import Audit
from .common import ID, V1
from .console import Channels, ConsolePages
from .imports import ProductImport
from .meta import Docs, Health, OpenApi, Plugins
from .orders import OrderCancel, OrderComplete, OrderFulfil, OrderItem, OrderPay, OrderRefund, Orders
from .people import CustomerItem, Customers, StoreItem, Stores, UserItem, Users
from .plugin_admin import PluginConfiguration, PluginDisable, PluginEnable
from .products import ProductDeactivate, ProductItem, Products
from .reports import NearExpiryReport, OrderQueueReport, SalesReport
from .stock import Adjustments, Movements, Receipts, Stock, Transfers

__all__ = ["core_routes"]


def core_routes() -> list[tuple[str, object, str | None]]:
    """``(uri_template, resource, suffix)`` of every core route (new resource objects each call)."""
    store = f"{V1}/stores/{{store_id:{ID}}}"
    order = f"{V1}/orders/{{order_id:{ID}}}"
    return [
        (f"{V1}/health", Health(), None),
        (f"{V1}/plugins", Plugins(), None),
        (f"{V1}/openapi.json", OpenApi(), None),
        ("/api/docs", Docs(), None),
        (f"{V1}/auth/token", Token(), None),
        (f"{V1}/auth/logout", Logout(), None),
        (f"{V1}/auth/me", Me(), None),
        (f"{V1}/stores", Stores(), None),
        (store, StoreItem(), None),
        (f"{store}/stock", Stock(), None),
        (f"{store}/stock/receipts", Receipts(), None),
        (f"{store}/stock/adjustments", Adjustments(), None),
        (f"{store}/stock/transfers", Transfers(), None),
        (f"{store}/stock/movements", Movements(), None),
        (f"{V1}/products", Products(), None),
        (f"{V1}/products/{{product_id:{ID}}}", ProductItem(), None),
        (f"{V1}/products/{{product_id:{ID}}}/deactivate", ProductDeactivate(), None),
        (f"{V1}/customers", Customers(), None),
        (f"{V1}/customers/{{customer_id:{ID}}}", CustomerItem(), None),
        (f"{V1}/users", Users(), None),
        (f"{V1}/users/{{user_id:{ID}}}", UserItem(), None),
        (f"{V1}/orders", Orders(), None),
        (order, OrderItem(), None),
        (f"{order}/cancel", OrderCancel(), None),
        (f"{order}/pay", OrderPay(), None),
        (f"{order}/fulfil", OrderFulfil(), None),
        (f"{order}/complete", OrderComplete(), None),
        (f"{order}/refund", OrderRefund(), None),
        (f"{V1}/audit", Audit(), None),
        (f"{V1}/products/import", ProductImport(), None),
        (f"{V1}/plugins/configuration", PluginConfiguration(), None),
        (f"{V1}/plugins/enable", PluginEnable(), None),
        (f"{V1}/plugins/disable", PluginDisable(), None),
        (f"{V1}/reports/sales", SalesReport(), None),
        (f"{V1}/reports/near-expiry", NearExpiryReport(), None),
        (f"{V1}/reports/order-queue", OrderQueueReport(), None),
        (f"{V1}/console/pages", ConsolePages(), None),
        (f"{V1}/channels", Channels(), None),
    ]
