"""Meituan's rider/delivery callbacks move the order through the core's state machine, idempotently."""
from __future__ import annotations


def accepted(meituan, **kw) -> tuple[str, int]:
    r = meituan.send_order(meituan.order(**kw))
    assert r.status_code == 201, r.text
    return r.json["meituan_order_id"], r.json["order_id"]


def test_rider_pickup_and_delivery_dispatch_then_complete_the_order(shop, meituan):
    mt_id, order_id = accepted(meituan)
    rider = meituan.status(mt_id, "rider_assigned", rider_name="王师傅", rider_phone="13900001111")
    assert rider.status_code == 200, rider.text
    assert (rider.json["delivery_status"], rider.json["order_status"], rider.json["rider_name"]) == (
        "rider_assigned", "paid", "王师傅")
    picked = meituan.status(mt_id, "picked_up")
    assert (picked.json["delivery_status"], picked.json["order_status"]) == ("picked_up", "dispatched")
    delivered = meituan.status(mt_id, "delivered")
    assert (delivered.json["delivery_status"], delivered.json["order_status"]) == ("delivered", "completed")
    assert shop.order(order_id)["status"] == "completed"

    again = meituan.status(mt_id, "delivered")  # Meituan retries callbacks: nothing changes
    assert again.status_code == 200 and again.json["order_status"] == "completed"
    late = meituan.status(mt_id, "picked_up")  # a late callback never moves it back
    assert (late.json["delivery_status"], late.json["order_status"]) == ("delivered", "completed")
    assert shop.outbox("meituan.order_status") == []  # Meituan is not told what it did itself


def test_delivered_without_a_pickup_callback_still_completes(shop, meituan):
    mt_id, order_id = accepted(meituan)
    assert meituan.status(mt_id, "delivered").json["order_status"] == "completed"


def test_a_cancellation_refunds_and_returns_undelivered_goods_to_stock(shop, meituan):
    before = shop.available(shop.otc["id"])
    mt_id, order_id = accepted(meituan)
    assert shop.available(shop.otc["id"]) == before - 2
    r = meituan.status(mt_id, "cancelled", reason="顾客取消")
    assert (r.json["delivery_status"], r.json["order_status"]) == ("cancelled", "refunded")
    assert shop.available(shop.otc["id"]) == before  # never left the store
    audit = shop.api.get("/api/v1/audit", params={"action": "order.refund"}).json["items"]
    assert audit[0]["actor"] == "system" and "cancelled on Meituan: 顾客取消" in audit[0]["detail"]


def test_a_cancellation_after_pickup_refunds_without_restocking(shop, meituan):
    before = shop.available(shop.otc["id"])
    mt_id, _ = accepted(meituan)
    meituan.status(mt_id, "picked_up")
    assert meituan.status(mt_id, "cancelled").json["order_status"] == "refunded"
    assert shop.available(shop.otc["id"]) == before - 2  # the rider took it: not sellable again


def test_callbacks_are_signed_and_validated(shop, meituan):
    mt_id, order_id = accepted(meituan)
    body = {"order_id": mt_id, "status": "picked_up"}
    assert meituan.post("/meituan/delivery-status", body, signature="").status_code == 401
    assert meituan.post("/meituan/delivery-status", body, secret="wrong-secret-0123456789").status_code == 401
    unknown = meituan.status("MT-NOT-HERE", "picked_up")
    assert unknown.status_code == 404 and unknown.json["errors"][0]["field"] == "order_id"
    bad = meituan.status(mt_id, "teleported")
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "status"
    assert shop.order(order_id)["status"] == "paid"  # the refused callbacks dispatched nothing
