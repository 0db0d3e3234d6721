"""Builders for the pos_sync tests: a store with stock, a registered terminal, offline sales."""
from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field

from core.auth import Caller
from core.db import utcnow
from plugins.pos_sync import devices, prices, sales
from tests.core.factories import ADMIN, customer, product, receive, store

_seq = itertools.count(1)
FAST = {"pos_sync.price_check_seconds": 0, "pos_sync.catalog_settle_seconds": 0}


def pos_ctx(make_ctx, enabled=("pos_sync",), extra_plugins=(), settings=None):
    return make_ctx(enabled=list(enabled), extra_plugins=list(extra_plugins), settings={**FAST, **(settings or {})})


def manager_of(store_id: int) -> Caller:
    return Caller(role="store_manager", user_id=50 + store_id, store_id=store_id, name=f"mgr{store_id}")


@dataclass
class Shop:
    store_id: int
    product_ids: list[int]
    customer_id: int
    device_id: int
    secret: str
    database_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def device(self, ctx):
        return devices.authenticate(ctx, self.secret, self.database_id)


def shop(ctx, *, products=3, stock=50, price=1000, **product_kw) -> Shop:
    with ctx.transaction() as s:
        st = store(s)
        pids = []
        for _ in range(products):
            p = product(s, price_fen=price, **product_kw)
            if stock:
                receive(ctx, s, st.id, p.id, stock, days=400)
            pids.append(p.id)
        c = customer(s)
        dev, creds = devices.register(s, store_id=st.id, name="Counter 1", caller=ADMIN)
        return Shop(st.id, pids, c.id, dev.id, creds.secret)


def register(ctx, store_id, name="Counter 2") -> tuple[int, str]:
    with ctx.transaction() as s:
        dev, creds = devices.register(s, store_id=store_id, name=name, caller=ADMIN)
        return dev.id, creds.secret


def version(ctx) -> int:
    return prices.refresh(ctx, force=True)


def sale(lines, *, seq=None, sold_at=None, pv=1, payments=None, **extra) -> dict:
    """``lines``: ``[(product_id, quantity, unit_price_fen), ...]`` (+ optional lot_no as 4th item)."""
    body_lines = []
    for item in lines:
        pid, qty, price = item[:3]
        line = {"line_id": uuid.uuid4().hex, "product_id": pid, "quantity": qty, "unit_price_fen": price,
                "price_list_version": pv}
        if len(item) > 3:
            line["lot_no"] = item[3]
        body_lines.append(line)
    total = sum(l["quantity"] * l["unit_price_fen"] for l in body_lines)
    return {"client_sale_id": uuid.uuid4().hex, "device_seq": next(_seq) if seq is None else seq,
            "sold_at": (sold_at or utcnow() - dt.timedelta(minutes=5)).isoformat(), "lines": body_lines,
            "payments": payments if payments is not None else [{"method": "cash", "amount_fen": total}], **extra}


def upload(ctx, sh: Shop, batch, **body):
    return sales.upload(ctx, sh.device(ctx), {"sales": batch, **body})


def statuses(answer) -> list[str]:
    return [r["status"] for r in answer["results"]]
