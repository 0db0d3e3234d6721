"""Small builders of domain rows for the core's tests."""
from __future__ import annotations

import datetime as dt
import itertools

from core import catalog, people, stock
from core.auth import Caller

ADMIN = Caller(role="admin", user_id=1, name="admin")
_seq = itertools.count(1)


def store(session, **kw):
    n = next(_seq)
    return people.create_store(session, {"code": f"S{n}", "name": f"Store {n}", **kw}, ADMIN)


def product(session, **kw):
    n = next(_seq)
    data = {"sku": f"SKU{n}", "generic_name": f"药品{n}", "approval_number": f"国药准字H{20000000 + n:08d}",
            "rx_class": "otc_b", "price_fen": 1000}
    data.update(kw)
    return catalog.create_product(session, data, ADMIN)


def customer(session, **kw):
    return people.create_customer(session, {"name": "张三", **kw}, ADMIN)


def receive(ctx, session, store_id, product_id, qty, lot_no=None, days=365, today=None):
    return stock.receive(ctx, session, store_id, product_id, lot_no or f"L{next(_seq)}",
                         dt.date.today() + dt.timedelta(days=days), qty, ADMIN, today=today)


def make_plugin(name: str, depends=(), **hooks):
    """An in-memory plugin module named ``name`` implementing ``hooks`` (plain functions)."""
    import types

    from core import Manifest, hookimpl

    module = types.ModuleType(f"test_plugin_{name}")
    module.manifest = Manifest(name=name, version="0.0.1", summary=f"test plugin {name}", depends=tuple(depends))
    for hook_name, fn in hooks.items():
        fn.__name__ = hook_name
        setattr(module, hook_name, hookimpl(fn))
    return module
