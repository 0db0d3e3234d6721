"""The loyalty API, through the app as a client sees it."""
import re

from openapi_spec_validator import validate

from tests.api.helpers import fields, order_body, product, receive

from .helpers import complete, pay


def loyalty_api(make_api, **settings):
    api = make_api(enabled=["loyalty"], settings={f"loyalty.{k}": v for k, v in settings.items()})
    p = product(api, price_fen=1000)
    receive(api, api.store_id, p["id"], 100)
    api.pid = p["id"]
    return api


def credit(api, points, customer_id=None, role="admin", **kw):
    return api.post(f"/api/v1/members/{customer_id or api.customer_id}/adjustments", role=role,
                    json={"points": points, "reason": "welcome gift"}, **kw)


def member(api, role="customer", customer_id=None, **kw):
    return api.get(f"/api/v1/members/{customer_id or api.customer_id}", role=role, **kw)


def test_redeem_points_is_in_the_order_schema(make_api):
    api = loyalty_api(make_api)
    doc = api.get("/api/v1/openapi.json", role=None).json
    validate(doc)
    field = doc["components"]["schemas"]["OrderCreate"]["properties"]["redeem_points"]
    assert field["anyOf"][0]["minimum"] == 0 and "held" in field["description"]
    routes = {(r.template, r.method) for r in api.app.api.routes if r.owner == "loyalty"}
    assert ("/api/v1/members/{customer_id:int(min=1, max=9223372036854775807)}", "GET") in routes
    assert len(routes) == 11


def test_a_customer_orders_with_points_and_reads_balance_and_ledger(make_api):
    api = loyalty_api(make_api)
    assert member(api).status_code == 404  # not a member yet
    r = api.post(f"/api/v1/members/{api.customer_id}", role="customer")
    assert r.status_code == 201 and r.json["tier"] == "member" and r.json["available"] == 0
    assert api.post(f"/api/v1/members/{api.customer_id}", role="clerk").status_code == 200  # already
    assert credit(api, 300).status_code == 201
    r = api.post("/api/v1/orders", role="customer",
                 json=order_body(api, [(api.pid, 2)], channel="web", customer_id=None, redeem_points="100"))
    assert r.status_code == 422 and set(fields(r)) == {"redeem_points"}  # strict: a string is not a number
    r = api.post("/api/v1/orders", role="customer",
                 json=order_body(api, [(api.pid, 2)], channel="web", customer_id=None, redeem_points=1000))
    assert r.status_code == 422 and "only 300 points" in fields(r)["redeem_points"]
    r = api.post("/api/v1/orders", role="customer",
                 json=order_body(api, [(api.pid, 2)], channel="web", customer_id=None, redeem_points=100))
    assert r.status_code == 201, r.json
    assert r.json["total_fen"] == 1900 and r.json["adjustments"][0]["code"] == "loyalty_points"
    view = member(api).json
    assert (view["available"], view["pending"], view["held"]) == (200, 0, 100)
    pay(api.ctx, r.json["id"])
    complete(api.ctx, r.json["id"])
    view = member(api, params={"within_days": "400"}).json
    assert (view["available"], view["pending"], view["held"]) == (219, 0, 0)
    assert view["expiring"]["points"] == 219 and len(view["expiring"]["lots"]) == 2
    page = api.get(f"/api/v1/members/{api.customer_id}/ledger", role="customer", params={"limit": "3"}).json
    assert [e["kind"] for e in page["items"]] == ["vest", "earn", "redeem"] and page["next_cursor"]
    rest = api.get(f"/api/v1/members/{api.customer_id}/ledger", role="customer",
                   params={"cursor": page["next_cursor"]}).json
    assert [e["kind"] for e in rest["items"]] == ["hold", "adjustment"] and rest["next_cursor"] is None
    assert "actor" not in rest["items"][0]
    only = api.get(f"/api/v1/members/{api.customer_id}/ledger", role="clerk", params={"kind": "earn"}).json
    assert [e["pending_delta"] for e in only["items"]] == [19]


def test_members_are_private_to_the_customer(make_api):
    api = loyalty_api(make_api)
    other = api.post("/api/v1/customers", role="clerk", json={"name": "王五"}).json["id"]
    assert credit(api, 10, customer_id=other).status_code == 201
    assert member(api, customer_id=other).status_code == 404
    assert api.get(f"/api/v1/members/{other}/ledger", role="customer").status_code == 404
    assert api.post(f"/api/v1/members/{other}", role="customer").status_code == 404
    assert member(api, role="pharmacist", customer_id=other).json["available"] == 10
    assert member(api, role=None, customer_id=other).status_code == 401
    assert api.get("/api/v1/members/999999", role="clerk").status_code == 404


def test_adjustments_admin_only_audited_idempotent_and_never_on_ones_own_account(make_api):
    api = loyalty_api(make_api)
    for role in ("clerk", "store_manager", "customer"):
        assert credit(api, 100, role=role).status_code == 403
    r = api.post(f"/api/v1/members/{api.customer_id}/adjustments", json={"points": 100})
    assert r.status_code == 422 and "reason" in fields(r)
    first = credit(api, 100, headers={"Idempotency-Key": "gift-1"})
    again = credit(api, 100, headers={"Idempotency-Key": "gift-1"})
    assert first.status_code == 201 and again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert member(api).json["available"] == 100
    audit = api.get("/api/v1/audit", params={"action": "loyalty.adjust"}).json["items"]
    assert [(a["actor"], a["detail"]) for a in audit] == [("user:admin", "welcome gift")]
    r = api.post("/api/v1/loyalty/staff-links", json={"user_id": api.user_ids["admin"], "customer_id": api.customer_id})
    assert r.status_code == 201
    r = credit(api, 100)
    assert r.status_code == 403 and "own loyalty account" in r.json["detail"]
    r = api.request("DELETE", f"/api/v1/loyalty/staff-links/{api.user_ids['admin']}", role="admin")
    assert r.status_code == 403
    links = api.get("/api/v1/loyalty/staff-links").json["items"]
    assert [(l["user_id"], l["customer_id"]) for l in links] == [(api.user_ids["admin"], api.customer_id)]
    assert member(api).json["available"] == 100


def test_rewards_refuse_rx_and_otc_a_and_customers_see_only_available_ones(make_api):
    api = loyalty_api(make_api)
    rx = product(api, rx_class="rx")
    otc_a = product(api, rx_class="otc_a")
    for p in (rx, otc_a):
        r = api.post("/api/v1/loyalty/rewards", json={"product_id": p["id"], "points_cost": 100})
        assert r.status_code == 422 and "can never be rewards" in fields(r)["product_id"]
    gift = product(api, rx_class="otc_b")
    assert api.post("/api/v1/loyalty/rewards", role="store_manager",
                    json={"product_id": gift["id"], "points_cost": 100}).status_code == 403
    r = api.post("/api/v1/loyalty/rewards", json={"product_id": gift["id"], "points_cost": 100, "label": "小礼品"})
    assert r.status_code == 201 and r.json["available"] is True
    rid = r.json["id"]
    assert [x["id"] for x in api.get("/api/v1/loyalty/rewards", role="customer").json["items"]] == [rid]
    assert api.patch(f"/api/v1/products/{gift['id']}", json={"rx_class": "otc_a"}).status_code == 200
    assert api.get("/api/v1/loyalty/rewards", role="customer").json["items"] == []
    assert api.get(f"/api/v1/loyalty/rewards/{rid}", role="customer").status_code == 404
    staff_view = api.get(f"/api/v1/loyalty/rewards/{rid}", role="clerk").json
    assert staff_view["available"] is False and "OTC-A" in staff_view["unavailable_reason"]
    r = api.patch(f"/api/v1/loyalty/rewards/{rid}", json={"points_cost": 150})
    assert r.status_code == 200 and r.json["points_cost"] == 150


def test_without_the_plugin_there_are_no_member_routes_or_order_field(make_api):
    api = make_api()
    assert api.get(f"/api/v1/members/{api.customer_id}", role="clerk").status_code == 404
    doc = api.get("/api/v1/openapi.json", role=None).json
    assert "redeem_points" not in doc["components"]["schemas"]["OrderCreate"]["properties"]
    r = api.post("/api/v1/orders", role="clerk", json=order_body(api, [(1, 1)], redeem_points=1))
    assert r.status_code == 422 and fields(r)["redeem_points"] == "unknown field"


def test_concurrent_order_requests_redeeming_one_balance_never_overdraw(make_api, db_backend):
    from .helpers import run_threads
    api = loyalty_api(make_api)
    credit(api, 1000)
    n = 10
    pids = [api.pid]  # one product each: a shared product's stock lock would serialize the requests anyway
    for _ in range(n - 1):
        p = product(api, price_fen=1000)
        receive(api, api.store_id, p["id"], 10)
        pids.append(p["id"])

    def order(i):
        return api.post("/api/v1/orders", role="customer", json=order_body(
            api, [(pids[i], 5)], channel="web", customer_id=None, redeem_points=300)).status_code

    statuses, errors = run_threads(n, order)
    assert errors == []
    assert sorted(statuses) == [201] * 3 + [422] * (n - 3), (db_backend, statuses)
    view = member(api).json
    assert (view["available"], view["held"]) == (100, 900)


STAFF = {"admin", "store_manager", "pharmacist", "clerk"}
POLICY = {  # reviewed: who may call what
    "loyalty.members.get": STAFF | {"customer"}, "loyalty.members.join": STAFF | {"customer"},
    "loyalty.ledger.list": STAFF | {"customer"}, "loyalty.adjustments.create": {"admin"},
    "loyalty.rewards.list": STAFF | {"customer"}, "loyalty.rewards.get": STAFF | {"customer"},
    "loyalty.rewards.create": {"admin"}, "loyalty.rewards.update": {"admin"},
    "loyalty.staff_links.list": {"admin"}, "loyalty.staff_links.create": {"admin"},
    "loyalty.staff_links.delete": {"admin"},
}


def test_every_loyalty_operation_admits_exactly_its_reviewed_roles(make_api):
    api = loyalty_api(make_api)
    declared = {r.operation.id: set(api.app.api.roles_of(r.operation)) for r in api.app.api.routes
                if r.owner == "loyalty"}
    assert declared == POLICY
    for route in api.app.api.routes:
        if route.owner != "loyalty":
            continue
        path = re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: str(api.customer_id if m.group(1) == "customer_id" else 1),
                      route.template)
        assert api.request(route.method, path, role=None).status_code == 401, path
        for role in ("admin", "store_manager", "pharmacist", "clerk", "customer"):
            status = api.request(route.method, path, role=role, json={}).status_code
            if role in POLICY[route.operation.id]:
                assert status != 403, (route.method, path, role, status)
            else:
                assert status == 403, (route.method, path, role, status)
