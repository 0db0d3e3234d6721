"""Builders for the API tests: rows made through the API itself (as a client would)."""
from __future__ import annotations

import datetime as dt
import itertools

_seq = itertools.count(1)


def product(api, role="admin", **fields) -> dict:
    n = next(_seq)
    body = {"sku": f"SKU-{n}", "generic_name": f"布洛芬缓释胶囊{n}", "brand_name": f"品牌{n}",
            "approval_number": f"国药准字H{20000000 + n:08d}", "rx_class": "otc_b", "price_fen": 1250,
            "category": "解热镇痛", "package_insert": "说明书全文"}
    body.update(fields)
    r = api.post("/api/v1/products", role=role, json=body)
    assert r.status_code == 201, r.json
    return r.json


def store(api, **fields) -> dict:
    n = next(_seq)
    r = api.post("/api/v1/stores", json={"code": f"S{n}", "name": f"门店{n}", **fields})
    assert r.status_code == 201, r.json
    return r.json


def receive(api, store_id, product_id, quantity, *, days=365, lot_no=None, role="admin") -> dict:
    expiry = (dt.date.today() + dt.timedelta(days=days)).isoformat()
    r = api.post(f"/api/v1/stores/{store_id}/stock/receipts", role=role, json={
        "product_id": product_id, "lot_no": lot_no or f"LOT{next(_seq)}", "expiry": expiry, "quantity": quantity})
    assert r.status_code == 201, r.json
    return r.json


def order_body(api, lines, **fields) -> dict:
    body = {"store_id": api.store_id, "customer_id": api.customer_id, "channel": "store", "fulfilment": "pickup",
            "lines": [{"product_id": pid, "quantity": q} for pid, q in lines]}
    body.update(fields)
    return body


def place(api, lines, role="clerk", key=None, **fields):
    headers = {"Idempotency-Key": key} if key else None
    return api.post("/api/v1/orders", role=role, json=order_body(api, lines, **fields), headers=headers)


def fields(result) -> dict[str, str]:
    """``{field: message}`` of a problem response."""
    return {e["field"]: e["message"] for e in result.json.get("errors", [])}
