"""Meituan's new-order webhook: signed, validated field by field, idempotent, a paid delivery order."""
from __future__ import annotations

import threading

from sqlalchemy import func, select

from core.models import Order

from meituan_calls import SECRET, SHOP, MeituanClient


def order_count(shop) -> int:
    with shop.ctx.session() as s:
        return s.scalar(select(func.count()).select_from(Order))


def fields(result) -> dict:
    return {e["field"]: e["message"] for e in result.json.get("errors", [])}


def test_a_signed_order_becomes_a_paid_delivery_order_of_the_mapped_store(shop, meituan):
    before = shop.available(shop.otc["id"])
    body = meituan.order([(shop.otc, 3)], total_fen=3500, caution="不要辣")  # Meituan's price: 3 x 1250 - 250
    r = meituan.send_order(body)
    assert r.status_code == 201, r.text
    assert r.json["replayed"] is False and r.json["status"] == "paid" and r.json["total_fen"] == 3500

    order = shop.order(r.json["order_id"])
    assert (order["channel"], order["fulfilment"], order["store_id"]) == ("meituan", "delivery", shop.store_id)
    assert order["payment_provider"] == "meituan" and order["note"] == "不要辣"
    assert "漕溪北路88号" in order["delivery_address"]
    assert order["subtotal_fen"] == 3750 and order["adjustments"] == [
        {"code": "meituan_price", "label": "Meituan price difference", "amount_fen": -250}]
    assert shop.available(shop.otc["id"]) == before - 3  # sold from stock, first-expiring lot first

    link = shop.api.get(f"/api/v1/orders/{order['id']}/meituan", role="clerk").json
    assert (link["meituan_order_id"], link["app_poi_code"], link["delivery_status"]) == (
        body["order_id"], SHOP, "accepted")


def test_bad_or_missing_signatures_are_refused_and_write_nothing(shop, meituan):
    body = meituan.order()
    for kwargs, message in [({"signature": ""}, "is required"), ({"secret": "someone-else-0123456789"}, "does not match"),
                            ({"signature": "00" * 32}, "does not match")]:
        r = meituan.send_order(body, **kwargs)
        assert r.status_code == 401, (kwargs, r.text)
        assert r.json["type"] == "urn:pharmo2o:meituan_delivery:bad-signature"
        assert message in fields(r)["X-Meituan-Signature"]
    from meituan_delivery.signing import sign
    tampered = dict(body, total_fen=1)  # signed for the original body, sent with another
    import json
    r = meituan.post("/meituan/orders", tampered, signature=sign(SECRET, json.dumps(body, ensure_ascii=False).encode()))
    assert r.status_code == 401
    assert order_count(shop) == 0


def test_without_a_configured_secret_the_webhooks_are_unavailable(make_api):
    from core.testing import Shop
    shop = Shop(make_api(enabled=["meituan_delivery"]))
    r = MeituanClient(shop).send_order()
    assert r.status_code == 503 and "[meituan] secret" in r.json["detail"]
    assert order_count(shop) == 0


def test_a_retried_webhook_makes_one_order_and_a_changed_one_is_refused(shop, meituan):
    body = meituan.order()
    first = meituan.send_order(body)
    again = meituan.send_order(body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == {**first.json, "replayed": True}
    changed = meituan.send_order({**body, "total_fen": body["total_fen"] + 1})
    assert changed.status_code == 409 and fields(changed) == {"order_id": "already accepted with other content"}
    assert order_count(shop) == 1


def test_concurrent_deliveries_of_one_webhook_make_one_order(shop, meituan):
    body, results = meituan.order(), []

    def deliver():
        results.append(meituan.send_order(body))
    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 200, 200, 201], [r.text for r in results]  # one made it, the others replayed it
    assert len({r.json["order_id"] for r in results if r.status_code < 300}) == 1
    assert order_count(shop) == 1
    assert len(shop.api.get("/api/v1/meituan/orders").json["items"]) == 1


def test_bad_fields_are_named(shop, meituan):
    cases = [
        ({"items": [{"sku": "NOPE", "quantity": 1}]}, "items[0].sku", "no product with SKU 'NOPE'"),
        ({"items": [{"sku": shop.otc["sku"], "quantity": 0}]}, "items[0].quantity", None),
        ({"items": [{"sku": shop.otc["sku"], "quantity": "2"}]}, "items[0].quantity", None),
        ({"app_poi_code": "mt-unknown"}, "app_poi_code", "maps to no open store"),
        ({"recipient": None}, "recipient", None),
        ({"total_fen": -1}, "total_fen", None),
        ({"coupon": "x"}, "coupon", "unknown field"),
    ]
    for change, field, message in cases:
        r = meituan.send_order({**meituan.order(), **change})
        assert r.status_code == 422, (change, r.text)
        assert field in fields(r), (change, r.json)
        if message:
            assert message in fields(r)[field]
    assert meituan.send_order(b"{not json").status_code == 400
    assert order_count(shop) == 0


def test_prescription_drugs_and_missing_stock_are_refused_naming_the_item(shop, meituan):
    rx = meituan.send_order(meituan.order([(shop.otc, 1), (shop.rx, 1)]))
    assert rx.status_code == 422
    assert list(fields(rx)) == ["items[1].sku"]  # every plugin's reason is reported; this plugin's among them
    assert "prescription drugs are not sold through Meituan delivery" in fields(rx)["items[1].sku"]
    short = meituan.send_order(meituan.order([(shop.otc, 51)]))  # the kit stocks 50
    assert short.status_code == 409 and "items[0].quantity" in fields(short)
    assert order_count(shop) == 0 and shop.available(shop.otc["id"]) == 50


def test_staff_cannot_take_payments_with_the_meituan_provider(shop):
    order = shop.place_order(channel="store").json
    r = shop.pay(order["id"], provider="meituan", expect=403)
    assert "provider" in fields(r)
    assert shop.order(order["id"])["status"] == "awaiting_payment"


def test_staff_list_meituan_orders_of_their_store(shop, meituan):
    meituan.send_order()
    listed = shop.api.get("/api/v1/meituan/orders", role="store_manager")
    assert listed.status_code == 200 and len(listed.json["items"]) == 1
    assert shop.api.get("/api/v1/meituan/orders", role="customer").status_code == 403
    other = shop.place_order().json
    assert shop.api.get(f"/api/v1/orders/{other['id']}/meituan").status_code == 404
