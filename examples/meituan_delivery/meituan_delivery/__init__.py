"""Meituan (美团外卖) delivery as a pharmo2o sales channel, written as a third-party plugin.

Everything it does goes through pharmo2o's public surface: the hooks of
``core.hookspecs``, ``@core.api.operation`` routes, the core's order services
(``core.orders``) and the outbox. It is found through its ``pharmo2o.plugins``
entry point (see ``setup.cfg``); nothing in pharmo2o names it.
"""
from core import Manifest

manifest = Manifest(
    name="meituan_delivery",
    version="0.1.0",
    summary="Meituan (美团外卖) delivery orders: signed order webhook, rider status callback, status push",
    depends=(),
    migrations="migrations",
    hooks="meituan_delivery.hooks",
)
