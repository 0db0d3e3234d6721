"""Stores and products: CRUD, search, pagination, and what each channel shows a customer."""
from __future__ import annotations

from core.catalog import RX_NOTICE

from .helpers import fields, product, store


def test_store_create_get_update_and_list(api):
    s = store(api, address="北京市朝阳区", phone="010-12345678")
    assert s["code"].startswith("S") and s["active"] is True and s["address"] == "北京市朝阳区"
    r = api.get(f"/api/v1/stores/{s['id']}", role="clerk")
    assert r.json == s
    r = api.patch(f"/api/v1/stores/{s['id']}", json={"name": "新名字", "active": False})
    assert r.status_code == 200 and r.json["name"] == "新名字" and r.json["active"] is False
    codes = [x["code"] for x in api.get("/api/v1/stores").json["items"]]
    assert codes == ["HOME", s["code"]]
    # customers only see active stores
    assert [x["code"] for x in api.get("/api/v1/stores", role="customer").json["items"]] == ["HOME"]
    assert api.get(f"/api/v1/stores/{s['id']}", role="customer").status_code == 404


def test_duplicate_store_code_is_422(api):
    r = api.post("/api/v1/stores", json={"code": "HOME", "name": "again"})
    assert r.status_code == 422 and "code" in fields(r)


def test_store_manager_updates_only_their_store(api):
    other = store(api)
    assert api.patch(f"/api/v1/stores/{api.store_id}", role="store_manager", json={"phone": "123"}).status_code == 200
    r = api.patch(f"/api/v1/stores/{other['id']}", role="store_manager", json={"phone": "123"})
    assert r.status_code == 403
    assert api.get(f"/api/v1/stores/{other['id']}").json["phone"] == ""


def test_store_manager_may_not_close_or_reopen_their_store(api):
    r = api.patch(f"/api/v1/stores/{api.store_id}", role="store_manager", json={"phone": "555", "active": False})
    assert r.status_code == 403 and "active" in fields(r)
    s = api.get(f"/api/v1/stores/{api.store_id}").json
    assert s["active"] is True and s["phone"] == ""  # nothing of the refused change was written
    # restating the current value is no change, and an admin may close and reopen
    r = api.patch(f"/api/v1/stores/{api.store_id}", role="store_manager", json={"phone": "555", "active": True})
    assert r.status_code == 200 and r.json["phone"] == "555"
    assert api.patch(f"/api/v1/stores/{api.store_id}", json={"active": False}).json["active"] is False
    r = api.patch(f"/api/v1/stores/{api.store_id}", role="store_manager", json={"active": True})
    assert r.status_code == 403
    assert api.patch(f"/api/v1/stores/{api.store_id}", json={"active": True}).json["active"] is True


def test_product_create_get_update_deactivate(api):
    p = product(api, barcode="6901234567890", specification="0.3g*24粒")
    assert p["price_fen"] == 1250 and p["active"] and p["purchasable"] and p["package_insert"] == "说明书全文"
    r = api.patch(f"/api/v1/products/{p['id']}", json={"price_fen": 1300, "brand_name": "新品牌"})
    assert r.status_code == 200 and r.json["price_fen"] == 1300 and r.json["brand_name"] == "新品牌"
    r = api.post(f"/api/v1/products/{p['id']}/deactivate")
    assert r.status_code == 200 and r.json["active"] is False and r.json["purchasable"] is False
    # customers no longer see it; staff still do
    assert api.get(f"/api/v1/products/{p['id']}", role="customer").status_code == 404
    assert api.get(f"/api/v1/products/{p['id']}", role="clerk").json["active"] is False
    assert api.post("/api/v1/products/999/deactivate").status_code == 404


def test_product_rules_of_the_service_name_the_field(api):
    product(api, sku="DUP")
    r = api.post("/api/v1/products", json={"sku": "DUP", "generic_name": "x", "approval_number": "国药准字H20000009",
                                           "rx_class": "otc_a", "price_fen": 1})
    assert r.status_code == 422 and "sku" in fields(r)
    r = api.post("/api/v1/products", json={"sku": "N1", "generic_name": "x", "approval_number": "国药准字H20000009",
                                           "rx_class": "otc_a", "price_fen": -1})
    assert r.status_code == 422 and "price_fen" in fields(r)


def test_search_and_filters(api):
    a = product(api, generic_name="阿莫西林胶囊", rx_class="rx", category="抗生素", barcode="6900000000011")
    b = product(api, generic_name="布洛芬片", brand_name="芬必得", category="解热镇痛")
    c = product(api, generic_name="维生素C片", sku="VITC-100", category="维生素", rx_class="otc_a")

    def ids(**params):
        r = api.get("/api/v1/products", role="clerk", params=params)
        assert r.status_code == 200, r.json
        return [x["id"] for x in r.json["items"]]

    assert ids(q="阿莫西林") == [a["id"]]
    assert ids(q="芬必得") == [b["id"]]
    assert ids(q="vitc") == [c["id"]]
    assert ids(q="6900000000011") == [a["id"]]
    assert ids(q="100%") == []  # LIKE wildcards are literal
    assert ids(rx_class="rx") == [a["id"]]
    assert ids(category="维生素") == [c["id"]]
    assert ids(rx_class="otc_b", category="解热镇痛") == [b["id"]]


def test_pagination_walks_every_row_once(api):
    made = [product(api)["id"] for _ in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        r = api.get("/api/v1/products", params=params)
        assert r.status_code == 200
        assert len(r.json["items"]) <= 2
        seen += [x["id"] for x in r.json["items"]]
        pages += 1
        cursor = r.json["next_cursor"]
        if cursor is None:
            break
    assert seen == made and pages == 3


def test_customer_reads_follow_the_online_rules(api):
    banned = product(api, generic_name="注射用青霉素", online_banned=True)
    ephedrine = product(api, generic_name="复方盐酸伪麻黄碱缓释胶囊", ephedrine=True)
    rx = product(api, generic_name="阿莫西林胶囊", rx_class="rx")
    otc = product(api, generic_name="布洛芬片")
    items = {x["id"]: x for x in api.get("/api/v1/products", role="customer").json["items"]}
    assert set(items) == {rx["id"], otc["id"]}
    assert items[rx["id"]]["rx_notice"] == RX_NOTICE
    assert items[rx["id"]]["package_insert"] is None
    assert items[rx["id"]]["purchasable"] is False  # no prescription review enabled
    assert items[otc["id"]]["package_insert"] == "说明书全文" and items[otc["id"]]["purchasable"] is True
    assert api.get(f"/api/v1/products/{banned['id']}", role="customer").status_code == 404
    assert api.get(f"/api/v1/products/{ephedrine['id']}", role="customer").status_code == 404
    r = api.get(f"/api/v1/products/{rx['id']}", role="customer")
    assert r.status_code == 200 and r.json["package_insert"] is None
    # staff see everything, with the full insert, through the store channel
    staff = {x["id"]: x for x in api.get("/api/v1/products", role="pharmacist").json["items"]}
    assert set(staff) == {banned["id"], ephedrine["id"], rx["id"], otc["id"]}
    assert staff[rx["id"]]["package_insert"] == "说明书全文" and "rx_notice" not in staff[rx["id"]]


def test_customer_pages_are_filled_past_hidden_products(api):
    visible = []
    for i in range(6):
        p = product(api, online_banned=(i % 2 == 0))
        if i % 2:
            visible.append(p["id"])
    r = api.get("/api/v1/products", role="customer", params={"limit": "2"})
    assert [x["id"] for x in r.json["items"]] == visible[:2]
    r2 = api.get("/api/v1/products", role="customer", params={"limit": "2", "cursor": r.json["next_cursor"]})
    assert [x["id"] for x in r2.json["items"]] == visible[2:]
    assert r2.json["next_cursor"] is None


def test_customers_must_read_through_an_online_channel(api):
    r = api.get("/api/v1/products", role="customer", params={"channel": "store"})
    assert r.status_code == 422 and "channel" in fields(r)
    r = api.get("/api/v1/products", role="clerk", params={"channel": "martian"})
    assert r.status_code == 422 and "channel" in fields(r)
    assert api.get("/api/v1/products", role="customer", params={"channel": "web"}).status_code == 200


def test_staff_may_preview_a_channel(api):
    rx = product(api, rx_class="rx")
    r = api.get(f"/api/v1/products/{rx['id']}", role="clerk", params={"channel": "web"})
    assert r.json["rx_notice"] == RX_NOTICE
    assert r.json["package_insert"] == "说明书全文"  # staff keep the insert


def test_product_writes_are_audited(api):
    p = product(api)
    api.patch(f"/api/v1/products/{p['id']}", json={"price_fen": 999})
    r = api.get("/api/v1/audit", params={"entity": "product", "entity_id": str(p["id"])})
    assert [e["action"] for e in r.json["items"]] == ["product.update", "product.create"]
    assert r.json["items"][0]["after"] == {"price_fen": 999}


def test_times_are_iso_8601_utc_in_one_style(api):
    s = store(api)
    p = product(api)
    for stamp in (s["created_at"], s["updated_at"], p["updated_at"]):
        assert stamp.endswith("+00:00"), stamp
