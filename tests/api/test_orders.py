"""Orders over the API: placing (atomic, idempotent), reading (scoped), the state machine."""
from __future__ import annotations

from sqlalchemy import func, select

from core import stock as stock_service
from core.models import Order, StockMovement

from .helpers import fields, order_body, place, product, receive, store


def stocked(api, quantity=10, **fields_):
    p = product(api, **fields_)
    receive(api, api.store_id, p["id"], quantity)
    return p


def test_place_pay_fulfil_complete_a_pickup_order(api):
    a, b = stocked(api, price_fen=1250), stocked(api, price_fen=300)
    r = place(api, [(a["id"], 2), (b["id"], 1)])
    assert r.status_code == 201, r.json
    order = r.json
    assert r.headers["location"] == f"/api/v1/orders/{order['id']}"
    assert order["status"] == "awaiting_payment" and order["total_fen"] == 2800
    assert [line["allocations"][0]["quantity"] for line in order["lines"]] == [2, 1]
    assert "pickup_code" not in order or order["pickup_code"] is None  # staff do not see it
    oid = order["id"]
    r = api.post(f"/api/v1/orders/{oid}/pay", role="clerk", json={"provider": "cash", "amount_fen": 2800})
    assert r.status_code == 200 and r.json["status"] == "paid" and r.json["payment_provider"] == "cash"
    assert api.post(f"/api/v1/orders/{oid}/fulfil", role="pharmacist").json["status"] == "ready"
    code = api.get(f"/api/v1/orders/{oid}", role="customer").json["pickup_code"]
    assert code and len(code) == 6
    r = api.post(f"/api/v1/orders/{oid}/complete", role="clerk", json={"pickup_code": "000000" if code != "000000" else "111111"})
    assert r.status_code == 422 and "pickup_code" in fields(r)
    assert api.get(f"/api/v1/orders/{oid}").json["status"] == "ready"
    r = api.post(f"/api/v1/orders/{oid}/complete", role="clerk", json={})
    assert r.status_code == 422 and "pickup_code" in fields(r)
    r = api.post(f"/api/v1/orders/{oid}/complete", role="clerk", json={"pickup_code": code})
    assert r.status_code == 200 and r.json["status"] == "completed"


def test_an_order_whose_second_line_lacks_stock_leaves_nothing_behind(api):
    a = stocked(api, 5)
    b = stocked(api, 1)
    r = place(api, [(a["id"], 3), (b["id"], 2)])
    assert r.status_code == 409
    assert r.json["type"].endswith("/insufficient-stock")
    assert fields(r) == {"lines[1].quantity": "only 1 available"}
    with api.ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0
        assert s.scalar(select(func.count()).select_from(StockMovement).where(StockMovement.kind == "reservation")) == 0
        assert stock_service.verify(s) == []
    [row] = api.get(f"/api/v1/stores/{api.store_id}/stock", params={"product_id": str(a["id"])}).json["items"]
    assert row["reserved"] == 0 and row["available"] == 5


def test_idempotent_create_same_key_same_body_same_order(api):
    p = stocked(api, 10)
    first = place(api, [(p["id"], 2)], key="checkout-1")
    again = place(api, [(p["id"], 2)], key="checkout-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json["id"] == first.json["id"] and again.headers["idempotent-replayed"] == "true"
    conflict = place(api, [(p["id"], 3)], key="checkout-1")
    assert conflict.status_code == 409 and "Idempotency-Key" in fields(conflict)
    with api.ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
    [row] = api.get(f"/api/v1/stores/{api.store_id}/stock").json["items"]
    assert row["reserved"] == 2
    # the key belongs to its caller: another caller's same key is another order
    other = place(api, [(p["id"], 2)], key="checkout-1", role="store_manager")
    assert other.status_code == 201 and other.json["id"] != first.json["id"]


def test_invalid_idempotency_key_is_422(api):
    p = stocked(api)
    r = place(api, [(p["id"], 1)], key="x" * 121)
    assert r.status_code == 422 and "Idempotency-Key" in fields(r)


def test_illegal_transitions_are_409_and_change_nothing(api):
    p = stocked(api)
    oid = place(api, [(p["id"], 1)]).json["id"]
    r = api.post(f"/api/v1/orders/{oid}/fulfil", role="clerk")
    assert r.status_code == 409 and r.json["type"].endswith("/illegal-transition")
    assert r.json["status_from"] == "awaiting_payment"
    assert api.post(f"/api/v1/orders/{oid}/cancel", role="clerk", json={"reason": "客户不要了"}).json["status"] == "cancelled"
    r = api.post(f"/api/v1/orders/{oid}/pay", role="clerk", json={"provider": "cash"})
    assert r.status_code == 409
    assert api.get(f"/api/v1/orders/{oid}").json["status"] == "cancelled"
    [row] = api.get(f"/api/v1/stores/{api.store_id}/stock").json["items"]
    assert row["reserved"] == 0 and row["on_hand"] == 10


def test_payment_rules(api):
    p = stocked(api, price_fen=500)
    oid = place(api, [(p["id"], 2)]).json["id"]
    r = api.post(f"/api/v1/orders/{oid}/pay", role="clerk", json={"provider": "cash", "amount_fen": 999})
    assert r.status_code == 422 and "amount_fen" in fields(r)
    r = api.post(f"/api/v1/orders/{oid}/pay", role="clerk", json={"provider": "bitcoin"})
    assert r.status_code == 422 and "provider" in fields(r)
    assert api.post(f"/api/v1/orders/{oid}/pay", role="customer", json={"provider": "cash"}).status_code == 403
    assert api.get(f"/api/v1/orders/{oid}").json["status"] == "awaiting_payment"


def test_refund_is_for_managers_and_audited(api):
    p = stocked(api)
    oid = place(api, [(p["id"], 1)]).json["id"]
    api.post(f"/api/v1/orders/{oid}/pay", role="clerk", json={"provider": "cash"})
    assert api.post(f"/api/v1/orders/{oid}/refund", role="clerk", json={"reason": "x"}).status_code == 403
    r = api.post(f"/api/v1/orders/{oid}/refund", role="store_manager", json={"reason": ""})
    assert r.status_code == 422 and "reason" in fields(r)
    r = api.post(f"/api/v1/orders/{oid}/refund", role="store_manager", json={"reason": "质量问题"})
    assert r.status_code == 200 and r.json["status"] == "refunded"
    [entry] = api.get("/api/v1/audit", params={"action": "order.refund"}).json["items"]
    assert entry["entity_id"] == str(oid) and entry["actor"] == "user:store_manager"


def test_customers_order_for_themselves_online(api):
    p = stocked(api)
    body = order_body(api, [(p["id"], 1)], channel="web", customer_id=None)
    r = api.post("/api/v1/orders", role="customer", json=body)
    assert r.status_code == 201, r.json
    assert r.json["customer_id"] == api.customer_id and r.json["pickup_code"]
    other = api.post("/api/v1/customers", role="clerk", json={"name": "别人"}).json["id"]
    r = api.post("/api/v1/orders", role="customer", json=body | {"customer_id": other})
    assert r.status_code == 403 and "customer_id" in fields(r)
    r = api.post("/api/v1/orders", role="customer", json=body | {"channel": "store"})
    assert r.status_code == 422 and "channel" in fields(r)


def test_online_rules_refuse_rx_and_banned_lines(api):
    rx = stocked(api, rx_class="rx")
    banned = stocked(api, online_banned=True)
    body = order_body(api, [(rx["id"], 1), (banned["id"], 1)], channel="web", customer_id=None)
    r = api.post("/api/v1/orders", role="customer", json=body)
    assert r.status_code == 422
    assert set(fields(r)) == {"lines[0].product_id", "lines[1].product_id"}


def test_reading_orders_is_scoped(api):
    p = stocked(api)
    mine = api.post("/api/v1/orders", role="customer",
                    json=order_body(api, [(p["id"], 1)], channel="web", customer_id=None)).json
    other_customer = api.post("/api/v1/customers", role="clerk", json={"name": "别人"}).json["id"]
    theirs = place(api, [(p["id"], 1)], customer_id=other_customer).json
    other_store = store(api)
    receive(api, other_store["id"], p["id"], 5)
    elsewhere = place(api, [(p["id"], 1)], role="admin", store_id=other_store["id"], customer_id=None).json

    def listed(role, **params):
        r = api.get("/api/v1/orders", role=role, params=params or None)
        assert r.status_code == 200, r.json
        return [o["id"] for o in r.json["items"]]

    assert listed("customer") == [mine["id"]]
    assert api.get(f"/api/v1/orders/{theirs['id']}", role="customer").status_code == 404
    assert api.post(f"/api/v1/orders/{theirs['id']}/cancel", role="customer", json={"reason": "x"}).status_code == 404
    assert listed("clerk") == [theirs["id"], mine["id"]]
    assert api.get(f"/api/v1/orders/{elsewhere['id']}", role="clerk").status_code == 403
    assert api.post(f"/api/v1/orders/{elsewhere['id']}/cancel", role="store_manager",
                    json={"reason": "x"}).status_code == 403
    assert api.get("/api/v1/orders", role="clerk", params={"store_id": str(other_store["id"])}).status_code == 403
    assert listed("admin") == [elsewhere["id"], theirs["id"], mine["id"]]
    assert listed("admin", store_id=str(other_store["id"])) == [elsewhere["id"]]
    assert listed("admin", status="cancelled") == []
    r = place(api, [(p["id"], 1)], store_id=other_store["id"])
    assert r.status_code == 403 and "store_id" in fields(r)
    assert api.get(f"/api/v1/orders/{elsewhere['id']}", role="admin").json["status"] == "awaiting_payment"


def test_order_list_pagination(api):
    p = stocked(api, 20)
    ids = [place(api, [(p["id"], 1)]).json["id"] for _ in range(5)]
    page1 = api.get("/api/v1/orders", params={"limit": "3"}).json
    page2 = api.get("/api/v1/orders", params={"limit": "3", "cursor": page1["next_cursor"]}).json
    assert [o["id"] for o in page1["items"] + page2["items"]] == ids[::-1]
    assert page2["next_cursor"] is None


def test_delivery_needs_an_address(api):
    p = stocked(api)
    r = place(api, [(p["id"], 1)], fulfilment="delivery")
    assert r.status_code == 422 and "delivery_address" in fields(r)
    r = place(api, [(p["id"], 1)], fulfilment="delivery", delivery_address="上海市浦东新区")
    oid = r.json["id"]
    api.post(f"/api/v1/orders/{oid}/pay", role="clerk", json={"provider": "manual", "reference": "POS-1"})
    assert api.post(f"/api/v1/orders/{oid}/fulfil", role="clerk").json["status"] == "dispatched"
    assert api.post(f"/api/v1/orders/{oid}/complete", role="clerk", json={}).json["status"] == "completed"


def test_wrong_pickup_codes_lock_the_hand_over_of_that_order_only(api):
    a = stocked(api, 10)
    ids = []
    for _ in range(2):
        oid = place(api, [(a["id"], 1)]).json["id"]
        assert api.post(f"/api/v1/orders/{oid}/pay", role="clerk", json={"provider": "cash"}).status_code == 200
        assert api.post(f"/api/v1/orders/{oid}/fulfil", role="clerk").status_code == 200
        ids.append(oid)
    target, other = ids
    code = api.get(f"/api/v1/orders/{target}", role="customer").json["pickup_code"]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):  # [api] login_max_failures, 5 by default
        r = api.post(f"/api/v1/orders/{target}/complete", role="clerk", json={"pickup_code": wrong})
        assert r.status_code == 422 and "pickup_code" in fields(r)
    r = api.post(f"/api/v1/orders/{target}/complete", role="clerk", json={"pickup_code": code})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # even the right code waits now
    assert api.get(f"/api/v1/orders/{target}").json["status"] == "ready"
    other_code = api.get(f"/api/v1/orders/{other}", role="customer").json["pickup_code"]
    r = api.post(f"/api/v1/orders/{other}/complete", role="clerk", json={"pickup_code": other_code})
    assert r.status_code == 200 and r.json["status"] == "completed"


def test_audit_times_are_iso_8601_text_only(api):
    stocked(api)
    for bad in ("122804703281025", "1700000000", "yesterday", "2026-11-26T09:30:00"):
        r = api.get("/api/v1/audit", params={"until": bad})
        assert r.status_code in (400, 422) and "until" in fields(r), (bad, r.status_code, r.json)
    r = api.get("/api/v1/audit", params={"since": "2000-01-01T00:00:00+08:00", "until": "2999-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json["items"]
    assert api.get("/api/v1/audit", params={"until": "2000-01-01T00:00:00+00:00"}).json["items"] == []
