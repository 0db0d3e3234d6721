"""Customers and staff users."""
from __future__ import annotations

from .helpers import fields, store


def test_staff_register_and_find_customers(api):
    r = api.post("/api/v1/customers", role="clerk", json={"name": "李四", "phone": "13912345678",
                                                          "store_id": api.store_id})
    assert r.status_code == 201 and r.headers["location"] == f"/api/v1/customers/{r.json['id']}"
    cid = r.json["id"]
    assert api.get(f"/api/v1/customers/{cid}", role="pharmacist").json["name"] == "李四"
    found = api.get("/api/v1/customers", role="clerk", params={"q": "1391234"}).json["items"]
    assert [c["id"] for c in found] == [cid]
    r = api.post("/api/v1/customers", role="clerk", json={"phone": "not a phone"})
    assert r.status_code == 422 and "phone" in fields(r)
    r = api.post("/api/v1/customers", role="clerk", json={"store_id": 999})
    assert r.status_code == 422 and "store_id" in fields(r)


def test_customer_reads_only_their_own_record(api):
    other = api.post("/api/v1/customers", role="clerk", json={"name": "王五"}).json
    assert api.get(f"/api/v1/customers/{api.customer_id}", role="customer").json["id"] == api.customer_id
    assert api.get(f"/api/v1/customers/{other['id']}", role="customer").status_code == 404
    assert api.get("/api/v1/customers", role="customer").status_code == 403


def test_admin_manages_users(api):
    s = store(api)
    r = api.post("/api/v1/users", json={"username": "yaoshi.zhang", "password": "long-enough-pw", "role": "pharmacist",
                                        "store_id": s["id"], "licence_number": "YS-001",
                                        "licence_expiry": "2030-12-31"})
    assert r.status_code == 201, r.json
    user = r.json
    assert "password" not in user and "password_hash" not in user
    assert user["licence_expiry"] == "2030-12-31" and user["store_id"] == s["id"]
    assert api.get(f"/api/v1/users/{user['id']}").json == user
    r = api.patch(f"/api/v1/users/{user['id']}", json={"display_name": "张药师", "role": "store_manager"})
    assert r.json["display_name"] == "张药师" and r.json["role"] == "store_manager"
    listed = api.get("/api/v1/users", params={"role": "store_manager"}).json["items"]
    assert {u["username"] for u in listed} == {"store_manager", "yaoshi.zhang"}


def test_user_validation_names_fields(api):
    r = api.post("/api/v1/users", json={"username": "a", "password": "short", "role": "janitor"})
    assert r.status_code == 422
    assert {"username", "password", "role"} <= set(fields(r))
    r = api.post("/api/v1/users", json={"username": "clerk", "password": "long-enough-pw", "role": "clerk"})
    assert r.status_code == 422 and "username" in fields(r)
    r = api.patch(f"/api/v1/users/{api.user_ids['clerk']}", json={"licence_expiry": "31/12/2030"})
    assert r.status_code == 422 and "licence_expiry" in fields(r)
    assert api.patch("/api/v1/users/9999", json={"display_name": "x"}).status_code == 404


def test_new_user_can_log_in(api):
    api.post("/api/v1/users", json={"username": "newclerk", "password": "long-enough-pw", "role": "clerk",
                                    "store_id": api.store_id})
    r = api.client.simulate_post("/api/v1/auth/token", json={"username": "newclerk", "password": "long-enough-pw"})
    assert r.status_code == 200 and r.json["role"] == "clerk"
