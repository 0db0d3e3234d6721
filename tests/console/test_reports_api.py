"""The dashboard's report endpoints: sales per local day, store and channel; near-expiry value; the open queue."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from core import stock as stock_service
from core.auth import SYSTEM
from core.db import utcnow
from core.models import Order

from tests.api.helpers import fields, product, receive, store

from .seed import seed_world

SHANGHAI = ZoneInfo("Asia/Shanghai")
REFUSED = ("pharmacist", "clerk", "customer")


def _order(api, store_id, product_id, qty, *, channel="store", role=None):
    role = role or ("customer" if channel == "web" else "admin")
    body = {"store_id": store_id, "channel": channel, "fulfilment": "pickup",
            "lines": [{"product_id": product_id, "quantity": qty}]}
    r = api.post("/api/v1/orders", role=role, json=body)
    assert r.status_code == 201, r.json
    return r.json


def _paid(api, store_id, product_id, qty, when, *, channel="store"):
    order = _order(api, store_id, product_id, qty, channel=channel)
    r = api.post(f"/api/v1/orders/{order['id']}/pay", json={"provider": "cash"})
    assert r.status_code == 200, r.json
    with api.ctx.transaction() as s:
        s.execute(update(Order).where(Order.id == order["id"]).values(paid_at=when, created_at=when))
    return r.json


@pytest.fixture
def sales(api):
    """Paid orders placed around Shanghai's midnight, in two stores, online and in store."""
    s2 = store(api)
    p = product(api, price_fen=1000)
    receive(api, api.store_id, p["id"], 100)
    receive(api, s2["id"], p["id"], 100)
    midnight = dt.datetime.combine(utcnow().astimezone(SHANGHAI).date(), dt.time(0), tzinfo=SHANGHAI)
    today = midnight.date()
    made = {
        "today_store": _paid(api, api.store_id, p["id"], 2, midnight + dt.timedelta(minutes=1)),
        "yesterday_web": _paid(api, api.store_id, p["id"], 3, midnight - dt.timedelta(minutes=1), channel="web"),
        "store2_10d": _paid(api, s2["id"], p["id"], 1, midnight - dt.timedelta(days=10)),
        "old": _paid(api, api.store_id, p["id"], 7, midnight - dt.timedelta(days=40)),
    }
    refunded = _paid(api, api.store_id, p["id"], 5, midnight + dt.timedelta(minutes=2))
    assert api.post(f"/api/v1/orders/{refunded['id']}/refund", json={"reason": "wrong item"}).status_code == 200
    _order(api, api.store_id, p["id"], 4)  # placed, never paid: not a sale
    return api, s2, today, made


def test_sales_per_local_day_store_and_channel(sales):
    api, s2, today, _made = sales
    r = api.get("/api/v1/reports/sales", params={"days": 30})
    assert r.status_code == 200, r.json
    body = r.json
    assert body["timezone"] == "Asia/Shanghai" and body["days"] == 30
    assert body["today"] == today.isoformat()
    assert body["start"] == (today - dt.timedelta(days=29)).isoformat()
    rows = {(x["date"], x["store_id"], x["channel"]): (x["orders"], x["total_fen"], x["online"]) for x in body["rows"]}
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    assert rows == {
        (today.isoformat(), api.store_id, "store"): (1, 2000, False),
        (yesterday, api.store_id, "web"): (1, 3000, True),  # 23:59 local is still yesterday, though 15:59 UTC
        ((today - dt.timedelta(days=10)).isoformat(), s2["id"], "store"): (1, 1000, False),
    }  # the refunded, the unpaid and the 40-day-old orders are not there
    assert body["today_totals"] == {"orders": 1, "total_fen": 2000, "online_fen": 0, "offline_fen": 2000}
    assert body["period_totals"] == {"orders": 3, "total_fen": 6000, "online_fen": 3000, "offline_fen": 3000}
    assert {c["name"]: c["online"] for c in body["channels"]} == {"store": False, "web": True}
    assert [s["id"] for s in body["stores"]] == [api.store_id, s2["id"]]
    assert api.get("/api/v1/reports/sales", params={"days": 1}).json["period_totals"]["orders"] == 1
    assert api.get("/api/v1/reports/sales", params={"days": 60}).json["period_totals"]["total_fen"] == 13000


def test_sales_of_a_channel_no_longer_registered_are_kept_and_marked(sales):
    api, _s2, _today, made = sales
    with api.ctx.transaction() as s:  # e.g. the plugin that provided the channel was disabled
        s.execute(update(Order).where(Order.id == made["today_store"]["id"]).values(channel="meituan"))
    body = api.get("/api/v1/reports/sales").json
    [row] = [x for x in body["rows"] if x["channel"] == "meituan"]
    assert row["online"] is None and row["total_fen"] == 2000
    assert {"name": "meituan", "label": "meituan (not registered now)", "online": None} in body["channels"]


def test_a_store_manager_sees_their_store_only(sales):
    api, s2, _today, _made = sales
    body = api.get("/api/v1/reports/sales", role="store_manager").json
    assert {x["store_id"] for x in body["rows"]} == {api.store_id}
    assert [s["id"] for s in body["stores"]] == [api.store_id]
    r = api.get("/api/v1/reports/sales", role="store_manager", params={"store_id": s2["id"]})
    assert r.status_code == 403 and "store_id" in fields(r)
    one = api.get("/api/v1/reports/sales", params={"store_id": s2["id"]}).json
    assert {x["store_id"] for x in one["rows"]} == {s2["id"]}


@pytest.mark.parametrize("path", ["/api/v1/reports/sales", "/api/v1/reports/near-expiry",
                                  "/api/v1/reports/order-queue"])
def test_reports_are_for_managers_only_and_check_their_parameters(api, path):
    for role in REFUSED:
        r = api.get(path, role=role)
        assert r.status_code == 403, role
        assert r.headers["content-type"] == "application/problem+json"
    assert api.get(path, role=None).status_code == 401
    assert api.get(path, role="store_manager").status_code == 200
    r = api.get(path, params={"store_id": "x"})
    assert r.status_code == 422 and "store_id" in fields(r)
    r = api.get(path, params={"store_id": 999})
    assert r.status_code == 422 and "store_id" in fields(r)
    r = api.get(path, params={"colour": "red"})
    assert r.status_code == 422 and "colour" in fields(r)


@pytest.mark.parametrize("days", ["0", "367", "ten"])
def test_sales_days_out_of_range_is_refused_naming_it(api, days):
    r = api.get("/api/v1/reports/sales", params={"days": days})
    assert r.status_code == 422 and "days" in fields(r)


def test_near_expiry_lists_lots_and_values_per_store(api):
    s2 = store(api)
    ibu = product(api, price_fen=2250)
    vitc = product(api, price_fen=450)
    receive(api, api.store_id, ibu["id"], 20, days=45, lot_no="NEAR")
    receive(api, api.store_id, ibu["id"], 100, days=400, lot_no="FAR")
    receive(api, s2["id"], vitc["id"], 10, days=60, lot_no="S2-NEAR")
    empty = receive(api, api.store_id, vitc["id"], 3, days=20, lot_no="EMPTY")
    assert api.post(f"/api/v1/stores/{api.store_id}/stock/adjustments", json={
        "lot_id": empty["lot"]["lot_id"], "delta": -3, "reason": "破损"}).status_code == 201
    with api.ctx.transaction() as s:
        stock_service.receive(api.ctx, s, api.store_id, vitc["id"], "OLD", dt.date.today() - dt.timedelta(days=3), 5,
                              SYSTEM, today=dt.date.today() - dt.timedelta(days=300))
    body = api.get("/api/v1/reports/near-expiry").json
    assert body["days"] == 90
    assert [(i["lot_no"], i["expired"], i["value_fen"]) for i in body["items"]] == [
        ("OLD", True, 2250), ("NEAR", False, 45000), ("S2-NEAR", False, 4500)]  # by expiry; FAR and EMPTY left out
    old = body["items"][0]
    assert old["days_left"] == -3 and old["on_hand"] == 5 and old["sku"] == vitc["sku"]
    by_store = {x["store_id"]: x for x in body["by_store"]}
    assert by_store[api.store_id] == {"store_id": api.store_id, "expired_lots": 1, "expired_units": 5,
                                      "expired_fen": 2250, "near_lots": 1, "near_units": 20, "near_fen": 45000}
    assert by_store[s2["id"]]["near_fen"] == 4500 and by_store[s2["id"]]["expired_fen"] == 0
    assert (body["expired_fen"], body["near_fen"], body["truncated"]) == (2250, 49500, False)
    assert [i["lot_no"] for i in api.get("/api/v1/reports/near-expiry", params={"days": 50}).json["items"]] == \
        ["OLD", "NEAR"]
    mine = api.get("/api/v1/reports/near-expiry", role="store_manager").json
    assert {i["store_id"] for i in mine["items"]} == {api.store_id} and mine["near_fen"] == 45000
    r = api.get("/api/v1/reports/near-expiry", params={"days": 0})
    assert r.status_code == 422 and "days" in fields(r)


def test_order_queue_counts_ages_and_the_longest_waiting_reviews(api):
    world = seed_world(api, history=False)
    body = api.get("/api/v1/reports/order-queue").json
    statuses = {x["status"]: x for x in body["statuses"]}
    assert {k: v["count"] for k, v in statuses.items()} == {
        "awaiting_review": 1, "awaiting_payment": 1, "paid": 2, "ready": 1, "dispatched": 1}
    assert 42 * 60 <= statuses["paid"]["oldest_age_seconds"] < 50 * 60  # waiting since payment
    assert 130 * 60 <= statuses["awaiting_review"]["oldest_age_seconds"] < 140 * 60
    assert {x["label"]: x["count"] for x in body["review_ages"]} == {
        "under 15 min": 0, "15-60 min": 0, "1-4 h": 1, "over 4 h": 0}
    [held] = body["awaiting_review"]
    assert held["id"] == world.orders["review"]["id"] and held["hold_reasons"] == ["prescription needs pharmacist review"]
    assert {(x["store_id"], x["status"]) for x in body["by_store"]} == {
        (api.store_id, s) for s in ("awaiting_review", "awaiting_payment", "paid", "ready", "dispatched")}
    other = api.get("/api/v1/reports/order-queue", params={"store_id": world.store2["id"]}).json
    assert all(x["count"] == 0 for x in other["statuses"]) and other["awaiting_review"] == []
