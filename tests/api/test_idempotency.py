"""Idempotency-Key on mutating endpoints other than order create: the stored answer is replayed."""
from __future__ import annotations

from sqlalchemy import func, select

from core.models import IdempotencyRecord, StockMovement, Store

from .helpers import fields, product


def count(api, model):
    with api.ctx.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_same_key_same_request_replays_the_first_answer(api):
    key = {"Idempotency-Key": "create-store-1"}
    first = api.post("/api/v1/stores", json={"code": "K1", "name": "门店"}, headers=key)
    again = api.post("/api/v1/stores", json={"name": "门店", "code": "K1"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["idempotent-replayed"] == "true"
    assert count(api, Store) == 2  # HOME and K1, once


def test_same_key_other_request_is_409(api):
    key = {"Idempotency-Key": "k"}
    api.post("/api/v1/stores", json={"code": "K1", "name": "门店"}, headers=key)
    r = api.post("/api/v1/stores", json={"code": "K2", "name": "门店"}, headers=key)
    assert r.status_code == 409 and "Idempotency-Key" in fields(r)
    r = api.patch(f"/api/v1/stores/{api.store_id}", json={"name": "x"}, headers=key)
    assert r.status_code == 409
    assert count(api, Store) == 2


def test_keys_belong_to_their_caller(api):
    key = {"Idempotency-Key": "shared"}
    assert api.post("/api/v1/customers", role="clerk", json={"name": "甲"}, headers=key).status_code == 201
    r = api.post("/api/v1/customers", role="pharmacist", json={"name": "甲"}, headers=key)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers


def test_a_refused_request_stores_nothing_and_the_key_stays_usable(api):
    p = product(api)
    url = f"/api/v1/stores/{api.store_id}/stock/receipts"
    key = {"Idempotency-Key": "receipt-1"}
    bad = {"product_id": p["id"], "lot_no": "L1", "expiry": "2000-01-01", "quantity": 5}
    assert api.post(url, json=bad, headers=key).status_code == 422
    assert count(api, IdempotencyRecord) == 0
    good = bad | {"expiry": "2099-01-01"}
    first = api.post(url, json=good, headers=key)
    again = api.post(url, json=good, headers=key)
    assert first.status_code == again.status_code == 201 and again.json == first.json
    assert count(api, StockMovement) == 1
    [row] = api.get(f"/api/v1/stores/{api.store_id}/stock").json["items"]
    assert row["on_hand"] == 5


def test_two_concurrent_requests_with_one_key_make_one_change(api):
    import threading

    from core.models import Customer
    barrier = threading.Barrier(2)
    results = []

    def send():
        barrier.wait()
        results.append(api.post("/api/v1/customers", role="clerk", json={"name": "并发"},
                                headers={"Idempotency-Key": "race-1"}))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r in results)
    assert statuses in ([201, 201], [201, 409]), [r.text for r in results]
    if statuses == [201, 201]:
        assert results[0].json == results[1].json  # the second was a replay
    assert count(api, Customer) == 2  # the fixture's customer and one more
