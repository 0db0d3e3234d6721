"""A small chain for the console tests, built through the API as staff and customers would, with
some orders moved into the past so that the dashboard has 30 days to show."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import update

from core import stock as stock_service
from core.auth import SYSTEM
from core.db import utcnow
from core.models import Order

from tests.api.helpers import product, receive, store


@dataclass
class World:
    store2: dict
    rx: dict
    otc: dict
    vitc: dict
    orders: dict[str, dict] = field(default_factory=dict)
    pickup_code: str = ""


def _order(api, role, lines, *, channel="store", fulfilment="pickup", store_id=None, address=None):
    body = {"store_id": store_id or api.store_id, "channel": channel, "fulfilment": fulfilment,
            "lines": [{"product_id": p, "quantity": q} for p, q in lines]}
    if role != "customer":
        body["customer_id"] = api.customer_id
    if address:
        body["delivery_address"] = address
    r = api.post("/api/v1/orders", role=role, json=body)
    assert r.status_code == 201, r.json
    return r.json


def _pay(api, order, role="clerk"):
    r = api.post(f"/api/v1/orders/{order['id']}/pay", role=role if order["store_id"] == api.store_id else "admin",
                 json={"provider": "cash", "amount_fen": order["total_fen"]})
    assert r.status_code == 200, r.json
    return r.json


def _step(api, order, action, json=None, role="clerk"):
    r = api.post(f"/api/v1/orders/{order['id']}/{action}", role=role if order["store_id"] == api.store_id else "admin",
                 json=json)
    assert r.status_code == 200, r.json
    return r.json


def _move(api, order_id, *, created=None, paid=None, updated=None):
    values = {}
    if created is not None:
        values["created_at"] = created
    if paid is not None:
        values["paid_at"] = paid
    if updated is not None:
        values["updated_at"] = updated
    with api.ctx.transaction() as s:
        s.execute(update(Order).where(Order.id == order_id).values(**values))


def seed_world(api, *, history: bool = True) -> World:
    now = utcnow()
    s2 = store(api, name="仁和大药房（浦东店）", address="上海市浦东新区张杨路500号")
    rx = product(api, sku="YP100101", generic_name="阿莫西林胶囊", brand_name="阿莫仙", specification="0.25g×24粒",
                 approval_number="国药准字H13023961", rx_class="rx", price_fen=1580, category="抗感染")
    otc = product(api, sku="YP200101", barcode="6901234567892", generic_name="布洛芬缓释胶囊", brand_name="芬必得",
                  specification="0.3g×20粒", approval_number="国药准字H10900089", rx_class="otc_b", price_fen=2250,
                  category="解热镇痛")
    vitc = product(api, sku="YP300101", generic_name="维生素C片", specification="0.1g×100片",
                   approval_number="国药准字H41020712", rx_class="otc_a", price_fen=450, category="维生素")
    receive(api, api.store_id, otc["id"], 100, days=400, lot_no="IBU-2027A")
    receive(api, api.store_id, otc["id"], 20, days=45, lot_no="IBU-NEAR")
    receive(api, api.store_id, rx["id"], 50, days=300, lot_no="AMX-2026")
    receive(api, api.store_id, vitc["id"], 60, days=500, lot_no="VC-LONG")
    receive(api, s2["id"], otc["id"], 30, days=60, lot_no="IBU-S2")
    receive(api, s2["id"], vitc["id"], 40, days=700, lot_no="VC-S2")
    with api.ctx.transaction() as s:  # received long ago, expired last week: on hand but not sellable
        stock_service.receive(api.ctx, s, api.store_id, vitc["id"], "VC-EXPIRED", dt.date.today() - dt.timedelta(days=7),
                              5, SYSTEM, today=dt.date.today() - dt.timedelta(days=400))
    world = World(store2=s2, rx=rx, otc=otc, vitc=vitc)
    o = world.orders

    o["new"] = _order(api, "clerk", [(vitc["id"], 2)])
    o["review"] = _order(api, "customer", [(rx["id"], 1)], channel="web")
    assert o["review"]["status"] == "awaiting_review"
    o["prepare"] = _pay(api, _order(api, "customer", [(otc["id"], 2)], channel="web"))
    o["deliver"] = _pay(api, _order(api, "customer", [(vitc["id"], 3)], channel="web", fulfilment="delivery",
                                    address="上海市徐汇区漕溪北路100号 3楼"))
    ready = _order(api, "customer", [(otc["id"], 1), (vitc["id"], 1)], channel="web")
    world.pickup_code = ready["pickup_code"]
    _pay(api, ready)
    o["ready"] = _step(api, ready, "fulfil")
    o["dispatched"] = _step(api, _pay(api, _order(api, "customer", [(vitc["id"], 1)], channel="web",
                                                   fulfilment="delivery", address="上海市徐汇区天钥桥路1号")), "fulfil")
    _move(api, o["review"]["id"], created=now - dt.timedelta(hours=2, minutes=10))
    _move(api, o["prepare"]["id"], paid=now - dt.timedelta(minutes=42))
    _move(api, o["deliver"]["id"], paid=now - dt.timedelta(minutes=18))
    _move(api, o["new"]["id"], created=now - dt.timedelta(minutes=3))

    if history:  # completed sales over the last 30 days, in both stores and on both kinds of channel
        for days_ago, store_id, channel, qty in [(0, api.store_id, "store", 3), (0, s2["id"], "store", 2),
                                                 (1, api.store_id, "web", 2), (3, api.store_id, "store", 4),
                                                 (7, s2["id"], "store", 1), (12, api.store_id, "web", 5),
                                                 (20, s2["id"], "store", 3), (28, api.store_id, "store", 2)]:
            role = "customer" if channel == "web" else ("clerk" if store_id == api.store_id else "admin")
            order = _order(api, role, [(vitc["id"], qty)], channel=channel, store_id=store_id)
            order = _pay(api, order)
            order = _step(api, order, "fulfil")
            with api.ctx.session() as s:  # the code the customer would show at the counter
                code = s.get(Order, order["id"]).pickup_code
            order = _step(api, order, "complete", json={"pickup_code": code})
            when = now - dt.timedelta(days=days_ago, minutes=30)
            _move(api, order["id"], created=when, paid=when, updated=when)
    return world
