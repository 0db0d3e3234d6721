"""Store stock over the API: receipts, on-hand per lot, adjustments (audited), transfers, movements, scoping."""
from __future__ import annotations

import datetime as dt

from core import stock as stock_service
from core.auth import SYSTEM

from .helpers import fields, product, receive, store


def test_receipt_shows_in_on_hand_per_product_and_lot(api):
    p = product(api)
    later = receive(api, api.store_id, p["id"], 10, days=400, lot_no="B-LATE", role="clerk")
    assert later["movement"]["kind"] == "receipt" and later["movement"]["on_hand_delta"] == 10
    assert later["movement"]["actor"] == "user:clerk"
    receive(api, api.store_id, p["id"], 4, days=100, lot_no="A-SOON")
    r = api.get(f"/api/v1/stores/{api.store_id}/stock", role="clerk")
    assert r.status_code == 200
    [row] = r.json["items"]
    assert (row["product_id"], row["on_hand"], row["available"], row["reserved"]) == (p["id"], 14, 14, 0)
    assert [lot["lot_no"] for lot in row["lots"]] == ["A-SOON", "B-LATE"]  # expiry order
    assert all(lot["expired"] is False for lot in row["lots"])


def test_expired_lot_is_flagged_and_not_available(api):
    p = product(api)
    with api.ctx.transaction() as s:  # received long ago, expired yesterday
        stock_service.receive(api.ctx, s, api.store_id, p["id"], "OLD", dt.date.today() - dt.timedelta(days=1), 5,
                              SYSTEM, today=dt.date.today() - dt.timedelta(days=400))
    receive(api, api.store_id, p["id"], 2, lot_no="NEW")
    [row] = api.get(f"/api/v1/stores/{api.store_id}/stock", role="clerk").json["items"]
    lots = {lot["lot_no"]: lot for lot in row["lots"]}
    assert lots["OLD"]["expired"] is True and lots["OLD"]["available"] == 0 and lots["OLD"]["on_hand"] == 5
    assert lots["NEW"]["expired"] is False and lots["NEW"]["available"] == 2
    assert row["on_hand"] == 7 and row["available"] == 2


def test_receipt_of_expired_goods_is_refused(api):
    p = product(api)
    r = api.post(f"/api/v1/stores/{api.store_id}/stock/receipts", json={
        "product_id": p["id"], "lot_no": "X", "expiry": dt.date.today().isoformat(), "quantity": 1})
    assert r.status_code == 422 and "expiry" in fields(r)
    r = api.post(f"/api/v1/stores/{api.store_id}/stock/receipts", json={
        "product_id": p["id"], "lot_no": "X", "expiry": "2099-01-01", "quantity": 0})
    assert r.status_code == 422 and "quantity" in fields(r)


def test_adjustment_needs_a_reason_is_audited_and_cannot_go_below_zero(api):
    p = product(api)
    lot_id = receive(api, api.store_id, p["id"], 5)["lot"]["lot_id"]
    url = f"/api/v1/stores/{api.store_id}/stock/adjustments"
    r = api.post(url, role="store_manager", json={"lot_id": lot_id, "delta": -2})
    assert r.status_code == 422 and "reason" in fields(r)
    r = api.post(url, role="store_manager", json={"lot_id": lot_id, "delta": -9, "reason": "盘点"})
    assert r.status_code == 409 and "delta" in fields(r)
    r = api.post(url, role="store_manager", json={"lot_id": lot_id, "delta": -2, "reason": "破损"})
    assert r.status_code == 201 and r.json["lot"]["on_hand"] == 3
    [entry] = api.get("/api/v1/audit", params={"action": "stock.adjust"}).json["items"]
    assert entry["actor"] == "user:store_manager" and entry["detail"] == "破损"
    assert entry["before"] == {"on_hand": 5} and entry["after"] == {"on_hand": 3}
    assert api.post(url, role="clerk", json={"lot_id": lot_id, "delta": 1, "reason": "x"}).status_code == 403


def test_transfer_moves_units_between_stores(api):
    other = store(api)
    p = product(api)
    lot_id = receive(api, api.store_id, p["id"], 6, lot_no="T1")["lot"]["lot_id"]
    r = api.post(f"/api/v1/stores/{api.store_id}/stock/transfers", role="store_manager",
                 json={"lot_id": lot_id, "to_store_id": other["id"], "quantity": 4})
    assert r.status_code == 201, r.json
    assert r.json["transfer_out"]["on_hand_delta"] == -4 and r.json["transfer_in"]["store_id"] == other["id"]
    there = api.get(f"/api/v1/stores/{other['id']}/stock").json["items"]
    assert there[0]["lots"][0]["lot_no"] == "T1" and there[0]["on_hand"] == 4
    r = api.post(f"/api/v1/stores/{api.store_id}/stock/transfers", role="store_manager",
                 json={"lot_id": lot_id, "to_store_id": other["id"], "quantity": 3})
    assert r.status_code == 409


def test_movements_are_paginated_newest_first_and_filtered(api):
    p, q = product(api), product(api)
    for _ in range(3):
        receive(api, api.store_id, p["id"], 1)
    receive(api, api.store_id, q["id"], 1)
    url = f"/api/v1/stores/{api.store_id}/stock/movements"
    first = api.get(url, role="clerk", params={"limit": "2", "product_id": str(p["id"])}).json
    second = api.get(url, role="clerk", params={"limit": "2", "product_id": str(p["id"]),
                                                "cursor": first["next_cursor"]}).json
    ids = [m["id"] for m in first["items"] + second["items"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True) and second["next_cursor"] is None
    assert all(m["product_id"] == p["id"] for m in first["items"] + second["items"])
    kinds = api.get(url, params={"kind": "receipt"}).json["items"]
    assert len(kinds) == 4


def test_store_bound_staff_cannot_touch_another_stores_stock(api):
    other = store(api)
    p = product(api)
    receive(api, other["id"], p["id"], 3)
    for role in ("clerk", "pharmacist", "store_manager"):
        assert api.get(f"/api/v1/stores/{other['id']}/stock", role=role).status_code == 403
        assert api.get(f"/api/v1/stores/{other['id']}/stock/movements", role=role).status_code == 403
        r = api.post(f"/api/v1/stores/{other['id']}/stock/receipts", role=role, json={
            "product_id": p["id"], "lot_no": "Z", "expiry": "2099-01-01", "quantity": 1})
        assert r.status_code == 403
    assert api.get(f"/api/v1/stores/{other['id']}/stock", role="admin").status_code == 200
    [row] = api.get(f"/api/v1/stores/{other['id']}/stock").json["items"]
    assert row["on_hand"] == 3  # none of the refused receipts landed


def test_unknown_store_is_404(api):
    assert api.get("/api/v1/stores/9999/stock").status_code == 404
    assert api.get("/api/v1/stores/9999/stock/movements").status_code == 404
