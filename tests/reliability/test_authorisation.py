"""Issue #10, authorisation: every endpoint x role x ownership, with all four bundled plugins enabled.

* ``test_every_operation_has_a_reviewed_policy_and_an_ownership_verdict`` - every operation of
  ``/api/v1/openapi.json`` has its roles in the reviewed policy (the core's in tests/api/test_roles.py,
  the plugins' in :data:`authz_support.PLUGIN_POLICY`) and is either exercised by a row of
  :data:`TABLE` or named in :data:`UNSCOPED` with the reason it owns nothing: a new endpoint without
  an authorisation row fails here.
* ``test_plugin_role_matrix`` - every plugin route, every role (and no token): 401/403 exactly where
  the policy says (the core's routes: tests/api/test_roles.py).
* ``test_ownership_table`` - each row is one caller doing one thing to something that is not theirs
  (another customer's order, points or prescription; another store's stock, orders, terminals; a
  revoked terminal; a clerk or an unlicensed pharmacist deciding a prescription; a dead token) and
  asserts the exact status and problem type AND that no table of the database changed. A few rows
  are the owner doing the same thing (admitted), so the refusals are not the app refusing everything.

The rule the table pins: an object addressed by id that belongs to another *customer* is a 404 for a
customer (its existence is not leaked); a request that asks, in a parameter, to act for someone else
(``customer_id``, ``store_id``) is a 403 naming nothing secret; staff bound to a store get 403 for
another store's stock, orders, reports, prescriptions, terminals, discrepancies and flags (pos_sync
answered 404 there until this table; the core's rule, core.api.access, is 403); a missing, unknown, expired or
revoked token or the token of a deactivated user is a 401; a revoked or cloned terminal a 403
``pos-device-refused``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dc_field

import pytest
from sqlalchemy import func, select

from tests.api.test_roles import POLICY as CORE_POLICY

from .authz_support import (
    ALL_PLUGINS,
    PLUGIN_POLICY,
    World,
    build_world,
    diff,
    multipart,
    pos_sale,
    upload_sales,
    world_api,
    world_settings,
)

POLICY = {**CORE_POLICY, **PLUGIN_POLICY}
P = "https://pharmo2o.dev/problems/"
UNAUTH, FORBID, NOTFOUND, INVALID, REFUSED = "unauthorized", "forbidden", "not-found", "validation", \
    "pos-device-refused"


@dataclass
class Row:
    """``who`` calls ``method path`` (``{name}`` from :attr:`World.ids`); expects ``status`` (+ problem ``kind``)."""

    who: str | None
    method: str
    path: str
    status: int
    kind: str | None = None
    json: dict | None = None
    params: dict | None = None
    upload: list | None = None  # a prescription upload: [(id name of product, quantity)]
    field: str | None = None  # the field the problem names
    changes: frozenset = dc_field(default_factory=frozenset)  # tables a refusal is allowed to write (by design)
    says: str | None = None  # a piece of the problem's detail: refused for the reason the row is about
    why: str = ""

    @property
    def label(self) -> str:
        return f"{self.who} {self.method} {self.path} -> {self.status}"


R = Row
CANCEL = {"reason": "not mine"}
REJECT = {"reason_code": "illegible", "message": "看不清"}
ORDER = {"channel": "web", "fulfilment": "pickup", "lines": [{"product_id": 0, "quantity": 1}]}  # product set later
NOTE = {"note": "checked"}
RX_ORDER = {"store_id": "{store1}", "channel": "web", "fulfilment": "pickup",
            "lines": [{"product_id": "{rx}", "quantity": 1}]}

TABLE: list[Row] = [
    # ------------------------------------------------------------------ tokens
    R(None, "GET", "/api/v1/orders", 401, UNAUTH),
    R("garbage", "GET", "/api/v1/orders/{order_a}", 401, UNAUTH),
    R("expired_token", "GET", "/api/v1/users", 401, UNAUTH, why="an admin token past its expiry"),
    R("expired_cust_a", "POST", "/api/v1/orders/{order_a}/cancel", 401, UNAUTH, json=CANCEL),
    R("revoked_cust_a", "GET", "/api/v1/orders/{order_a}", 401, UNAUTH, why="logged out"),
    R("revoked_cust_a", "POST", "/api/v1/orders/{order_a}/cancel", 401, UNAUTH, json=CANCEL),
    R("pharm_inactive", "POST", "/api/v1/prescriptions/{rx_b}/approve", 401, UNAUTH, json={},
      why="a deactivated pharmacist's token still stored"),
    R("pharm_inactive", "GET", "/api/v1/prescriptions/{rx_b}/document", 401, UNAUTH),
    R("dev1", "GET", "/api/v1/orders", 401, UNAUTH, why="a terminal secret is not an API token"),
    R("dev1", "GET", "/api/v1/stores/{store1}/stock", 401, UNAUTH),
    R("admin", "GET", "/api/v1/pos/catalog", 401, UNAUTH, why="a staff token is not a terminal secret"),
    R("admin", "POST", "/api/v1/pos/sales:batch", 401, UNAUTH, json={"sales": []}),
    R("cust_a", "POST", "/api/v1/pos/sales:batch", 401, UNAUTH, json={"sales": []}),
    R("dev_unknown", "GET", "/api/v1/pos/catalog", 401, UNAUTH),
    # ------------------------------------------------- customer A and customer B's things
    R("cust_a", "GET", "/api/v1/orders/{order_a}", 200, why="control: A's own order"),
    R("cust_a", "GET", "/api/v1/orders/{order_b}", 404, NOTFOUND),
    R("cust_a", "POST", "/api/v1/orders/{order_b}/cancel", 404, NOTFOUND, json=CANCEL),
    R("cust_a", "POST", "/api/v1/orders/{order_b}/pay", 403, FORBID, json={"provider": "cash"}),
    R("cust_a", "POST", "/api/v1/orders/{order_b}/wechat-pay", 404, NOTFOUND),
    R("cust_a", "GET", "/api/v1/orders/{order_b}/wechat-payments", 403, FORBID),
    R("cust_a", "POST", "/api/v1/orders/{order_b}/fulfil", 403, FORBID),
    R("cust_a", "POST", "/api/v1/orders/{order_b}/complete", 403, FORBID, json={"pickup_code": "123456"}),
    R("cust_a", "POST", "/api/v1/orders/{order_b}/refund", 403, FORBID, json=CANCEL),
    R("cust_a", "POST", "/api/v1/orders", 403, FORBID, json={**ORDER, "store_id": "{store1}", "customer_id": "{cust_b}"},
      field="customer_id"),
    R("cust_a", "POST", "/api/v1/orders", 403, FORBID, field="customer_id",
      json={**ORDER, "store_id": "{store1}", "customer_id": "{cust_b}", "redeem_points": 100},
      why="redeeming B's points"),
    R("cust_a", "GET", "/api/v1/orders", 403, FORBID, params={"customer_id": "{cust_b}"}, field="customer_id"),
    R("cust_a", "GET", "/api/v1/customers/{cust_b}", 404, NOTFOUND),
    R("cust_a", "GET", "/api/v1/customers", 403, FORBID),
    R("cust_a", "POST", "/api/v1/orders/{order_rx_b}/prescription", 404, NOTFOUND, upload=[("rx", 1)]),
    R("cust_a", "GET", "/api/v1/prescriptions/{rx_b}", 404, NOTFOUND),
    R("cust_a", "GET", "/api/v1/prescriptions/{rx_b}/document", 404, NOTFOUND),
    R("cust_a", "GET", "/api/v1/members/{cust_a}", 200, why="control: A's own points"),
    R("cust_a", "GET", "/api/v1/members/{cust_b}", 404, NOTFOUND),
    R("cust_a", "GET", "/api/v1/members/{cust_b}/ledger", 404, NOTFOUND),
    R("cust_a", "POST", "/api/v1/members/{cust_b}", 404, NOTFOUND, why="enrolling B"),
    R("cust_a", "POST", "/api/v1/members/{cust_b}/adjustments", 403, FORBID, json={"points": 100, "reason": "x"}),
    R("cust_a", "POST", "/api/v1/members/{cust_a}/adjustments", 403, FORBID, json={"points": 100, "reason": "x"},
      why="crediting oneself"),
    R("cust_a", "GET", "/api/v1/stores/{store1}/stock", 403, FORBID),
    R("cust_a", "GET", "/api/v1/wechat/status", 403, FORBID),
    R("cust_a", "GET", "/api/v1/prescriptions/{rx_b}/access-log", 403, FORBID),
    # --------------------------------------------------- prescriptions: who reads, who decides
    R("cust_b", "GET", "/api/v1/prescriptions/{rx_b}/document", 200, changes=frozenset({"rx_access_log"}),
      why="control: the patient (the customer who owns the order)"),
    R("pharm1", "GET", "/api/v1/prescriptions/{rx_b}/document", 200, why="control: a pharmacist of its store"),
    R("clerk1", "GET", "/api/v1/prescriptions/{rx_b}/document", 403, FORBID, says="admitted: pharmacist, customer"),
    R("manager1", "GET", "/api/v1/prescriptions/{rx_b}/document", 403, FORBID),
    R("admin", "GET", "/api/v1/prescriptions/{rx_b}/document", 403, FORBID),
    R("pharm2", "GET", "/api/v1/prescriptions/{rx_b}/document", 403, FORBID, says="may not act on store",
      why="a pharmacist of another store"),
    R("pharm2", "GET", "/api/v1/prescriptions/{rx_b}", 403, FORBID),
    R("clerk1", "GET", "/api/v1/prescriptions/{rx_b}", 403, FORBID),
    R("clerk1", "GET", "/api/v1/prescriptions", 403, FORBID),
    R("pharm1", "GET", "/api/v1/prescriptions", 403, FORBID, params={"store_id": "{store2}"}),
    R("pharm1", "GET", "/api/v1/prescriptions/{rx_b}/access-log", 403, FORBID),
    R("clerk1", "POST", "/api/v1/prescriptions/{rx_b}/approve", 403, FORBID, json={}),
    R("clerk1", "POST", "/api/v1/prescriptions/{rx_b}/reject", 403, FORBID, json=REJECT),
    R("clerk1", "POST", "/api/v1/prescriptions/{rx_b}/claim", 403, FORBID),
    R("manager1", "POST", "/api/v1/prescriptions/{rx_b}/approve", 403, FORBID, json={}),
    R("admin", "POST", "/api/v1/prescriptions/{rx_b}/approve", 403, FORBID, json={}),
    R("cust_b", "POST", "/api/v1/prescriptions/{rx_b}/approve", 403, FORBID, json={}, why="the patient herself"),
    R("pharm_expired", "POST", "/api/v1/prescriptions/{rx_b}/approve", 403, FORBID, json={}, says="not current"),
    R("pharm_expired", "POST", "/api/v1/prescriptions/{rx_b}/reject", 403, FORBID, json=REJECT, says="not current"),
    R("pharm_expired", "POST", "/api/v1/prescriptions/{rx_b}/claim", 403, FORBID, says="not current"),
    R("pharm_unlicensed", "POST", "/api/v1/prescriptions/{rx_b}/approve", 403, FORBID, json={},
      says="no pharmacist licence number"),
    R("pharm2", "POST", "/api/v1/prescriptions/{rx_b}/approve", 403, FORBID, json={},
      says="your licence is registered at store", why="licensed, but at another store"),
    R("pharm2", "POST", "/api/v1/prescriptions/{rx_b}/claim", 403, FORBID, says="registered at store"),
    R("pharm1", "POST", "/api/v1/prescriptions/{rx_s2}/reject", 403, FORBID, json=REJECT, says="registered at store"),
    R("clerk2", "POST", "/api/v1/orders/{order_rx_b}/prescription", 403, FORBID, upload=[("rx", 1)],
      why="a clerk of store 2 uploading to store 1's order"),
    R("cust_a", "POST", "/api/v1/orders", 422, INVALID, field="prescription_id", says="belongs to another customer",
      json={**RX_ORDER, "prescription_id": "{rx_s2}"}, why="A ordering Rx on B's approved prescription"),
    R("clerk1", "POST", "/api/v1/orders", 422, INVALID, field="prescription_id", says="belongs to another customer",
      json={**RX_ORDER, "channel": "store", "customer_id": "{cust_a}", "prescription_id": "{rx_s2}"}),
    R("clerk1", "POST", "/api/v1/orders", 422, INVALID, field="prescription_id", says="name that customer",
      json={**RX_ORDER, "channel": "store", "prescription_id": "{rx_s2}"},
      why="a counter order naming no customer on B's prescription (was accepted: hole fixed)"),
    # ------------------------------------------- staff of store 1 on store 2 (stock, orders, users)
    R("manager1", "GET", "/api/v1/stores/{store1}/stock", 200, why="control: own store"),
    R("manager1", "GET", "/api/v1/stores/{store2}/stock", 403, FORBID, says="may not act on store"),
    R("clerk1", "GET", "/api/v1/stores/{store2}/stock", 403, FORBID),
    R("clerk1", "POST", "/api/v1/stores/{store2}/stock/receipts", 403, FORBID,
      json={"product_id": "{otc}", "lot_no": "X1", "expiry": "2099-01-01", "quantity": 5}),
    R("manager1", "POST", "/api/v1/stores/{store2}/stock/adjustments", 403, FORBID,
      json={"lot_id": "{lot2_otc}", "delta": -5, "reason": "count"}),
    R("manager1", "POST", "/api/v1/stores/{store1}/stock/adjustments", 422, INVALID, field="lot_id",
      json={"lot_id": "{lot2_otc}", "delta": -5, "reason": "count"}, why="store 2's lot through store 1's path"),
    R("manager1", "POST", "/api/v1/stores/{store2}/stock/transfers", 403, FORBID,
      json={"lot_id": "{lot2_otc}", "to_store_id": "{store1}", "quantity": 5}),
    R("manager1", "POST", "/api/v1/stores/{store1}/stock/transfers", 422, INVALID, field="lot_id",
      json={"lot_id": "{lot2_otc}", "to_store_id": "{store2}", "quantity": 5}, why="store 2's lot from store 1"),
    R("manager1", "GET", "/api/v1/stores/{store2}/stock/movements", 403, FORBID),
    R("manager1", "PATCH", "/api/v1/stores/{store2}", 403, FORBID, json={"name": "taken over"}),
    R("manager1", "GET", "/api/v1/orders/{order_s2}", 403, FORBID, says="may not act on store"),
    R("clerk1", "GET", "/api/v1/orders/{order_s2}", 403, FORBID),
    R("clerk1", "POST", "/api/v1/orders/{order_s2}/cancel", 403, FORBID, json=CANCEL),
    R("clerk1", "POST", "/api/v1/orders/{order_s2}/pay", 403, FORBID, json={"provider": "cash"}),
    R("clerk1", "POST", "/api/v1/orders/{order_s2_paid}/fulfil", 403, FORBID),
    R("clerk1", "POST", "/api/v1/orders/{order_s2_paid}/complete", 403, FORBID, json={"pickup_code": "000000"}),
    R("manager1", "POST", "/api/v1/orders/{order_s2_paid}/refund", 403, FORBID, json=CANCEL),
    R("clerk1", "GET", "/api/v1/orders", 403, FORBID, params={"store_id": "{store2}"}, field="store_id"),
    R("clerk1", "POST", "/api/v1/orders", 403, FORBID, field="store_id",
      json={**ORDER, "channel": "store", "store_id": "{store2}", "customer_id": "{cust_b}"}),
    R("clerk1", "GET", "/api/v1/orders/{order_s2}/wechat-payments", 403, FORBID),
    R("manager1", "GET", "/api/v1/users", 403, FORBID),
    R("manager1", "GET", "/api/v1/users/{user_clerk2}", 403, FORBID),
    R("manager1", "PATCH", "/api/v1/users/{user_clerk2}", 403, FORBID, json={"active": False}),
    R("manager1", "POST", "/api/v1/users", 403, FORBID,
      json={"username": "mole", "password": "test-password-1", "role": "clerk", "display_name": "m"}),
    R("manager1", "GET", "/api/v1/reports/sales", 403, FORBID, params={"store_id": "{store2}"}),
    R("manager1", "GET", "/api/v1/reports/near-expiry", 403, FORBID, params={"store_id": "{store2}"}),
    R("manager1", "GET", "/api/v1/reports/order-queue", 403, FORBID, params={"store_id": "{store2}"}),
    R("manager1", "GET", "/api/v1/audit", 403, FORBID),
    R("manager1", "PATCH", "/api/v1/products/{otc}", 403, FORBID, json={"active": False}, field="active",
      why="deactivating is the admin's (products.deactivate): not through a PATCH of one store's manager"),
    R("manager1", "POST", "/api/v1/products/{otc}/deactivate", 403, FORBID),
    # ------------------------------------------------- POS: terminals and their managers
    R("dev1", "GET", "/api/v1/pos/catalog", 200, changes=frozenset({"pos_devices"}), why="control"),
    R("dev_revoked", "GET", "/api/v1/pos/catalog", 403, REFUSED, says="is revoked"),
    R("dev_revoked", "POST", "/api/v1/pos/sales:batch", 403, REFUSED, json={"sales": "SALE"}),
    R("dev1_clone", "GET", "/api/v1/pos/catalog", 403, REFUSED, changes=frozenset({"pos_sale_flags"}),
      says="another terminal database",
      why="dev1's secret from another terminal database: refused and flagged for review"),
    R("dev1_clone", "POST", "/api/v1/pos/sales:batch", 403, REFUSED, json={"sales": "SALE"},
      changes=frozenset({"pos_sale_flags"})),
    R("clerk1", "GET", "/api/v1/pos/devices", 403, FORBID),
    R("manager1", "GET", "/api/v1/pos/devices", 403, FORBID, params={"store_id": "{store2}"}),
    R("manager1", "POST", "/api/v1/pos/devices", 403, FORBID, json={"store_id": "{store2}", "name": "Mole"}),
    R("manager1", "GET", "/api/v1/pos/devices/{dev2}", 403, FORBID, says="their own store"),
    R("manager1", "POST", "/api/v1/pos/devices/{dev2}/revoke", 403, FORBID, json={"reason": "x"}),
    R("manager1", "POST", "/api/v1/pos/devices/{dev2}/reregister", 403, FORBID),
    R("manager1", "GET", "/api/v1/pos/discrepancies", 403, FORBID, params={"store_id": "{store2}"}),
    R("manager1", "POST", "/api/v1/pos/discrepancies/{disc_s2}/resolve", 403, FORBID, json=NOTE),
    R("manager1", "GET", "/api/v1/pos/flags", 403, FORBID, params={"store_id": "{store2}"}),
    R("manager1", "POST", "/api/v1/pos/flags/{flag_s2}/review", 403, FORBID, json=NOTE),
    R("manager1", "GET", "/api/v1/pos/sync-status", 403, FORBID, params={"store_id": "{store2}"}),
    # ---------------------------------------------------------- loyalty: no self-credit
    R("admin2", "POST", "/api/v1/members/{cust_staffer}/adjustments", 403, FORBID,
      json={"points": 1000, "reason": "bonus"}, says="is linked to customer",
      why="an admin crediting the customer account linked to them"),
    R("admin2", "POST", "/api/v1/members/{cust_staffer}/adjustments", 403, FORBID,
      json={"points": -10, "reason": "fix"}, why="nor debiting it"),
    R("admin2", "DELETE", "/api/v1/loyalty/staff-links/{user_admin2}", 403, FORBID, says="their own customer account",
      why="an admin removing their own link (to credit themselves next)"),
    R("manager1", "POST", "/api/v1/members/{cust_a}/adjustments", 403, FORBID, json={"points": 1, "reason": "x"}),
    R("clerk1", "POST", "/api/v1/loyalty/staff-links", 403, FORBID,
      json={"user_id": "{user_clerk2}", "customer_id": "{cust_a}"}),
    R("manager1", "POST", "/api/v1/loyalty/rewards", 403, FORBID, json={"product_id": "{otc}", "points_cost": 1}),
]

#: operations that own nothing per customer or per store (chain-wide or one's own session), with why; every
#: other operation must be exercised by a TABLE row (a new endpoint fails until it has one or a reason here)
UNSCOPED = {
    "meta.health": "public", "meta.openapi": "public", "meta.docs": "public", "auth.token": "public (login)",
    "auth.logout": "revokes the caller's own token only", "auth.me": "the caller's own identity",
    "meta.plugins": "chain-wide", "meta.channels": "chain-wide", "console.pages": "chain-wide",
    "stores.list": "chain-wide (customers see active stores only)", "stores.get": "chain-wide",
    "stores.create": "admin only (role matrix)",
    "products.list": "chain-wide catalogue", "products.get": "chain-wide catalogue",
    "products.create": "chain-wide catalogue (role matrix)",
    "products.import": "chain-wide catalogue (and test_only_an_admin_withdraws_a_product_chain_wide)",
    "customers.create": "staff register customers chain-wide",
    "plugins.configuration": "admin only", "plugins.enable": "admin only", "plugins.disable": "admin only",
    "loyalty.rewards.list": "chain-wide", "loyalty.rewards.get": "chain-wide", "loyalty.rewards.update": "admin",
    "loyalty.staff_links.list": "admin only",
    "prescriptions.reasons": "reference data", "prescriptions.banlist.get": "reference data",
    "prescriptions.banlist.load": "admin only",
    "wechat.callback_verify": "public, signed by WeChat", "wechat.callback": "public, signed by WeChat",
    "wechat.pay_notify": "public, signed by WeChat Pay", "wechat.oauth_start": "public (sign-in)",
    "wechat.oauth_callback": "public, single-use state", "wechat.oauth_exchange": "public, single-use code",
    "wechat.h5": "public files", "wechat.h5_asset": "public files",
    "wechat.shop": "the caller's own customer record",
}


@pytest.fixture(scope="module")
def world(pharmo2o_databases, tmp_path_factory) -> World:
    """One world for the module's read-mostly tests (refusals change nothing; what the admitted calls of a
    test change is nobody else's concern); the role matrix, whose admitted calls do change it, has its own."""
    api = world_api(pharmo2o_databases, tmp_path_factory.mktemp("authz"))
    try:
        yield build_world(api)
    finally:
        api.ctx.dispose()


@pytest.fixture
def own_world(make_api, tmp_path) -> World:
    return build_world(make_api(enabled=ALL_PLUGINS, settings=world_settings(tmp_path)))


def _fill(value, ids):
    """``"{name}"`` placeholders in a JSON body or query become the world's ids (ints in bodies)."""
    if isinstance(value, str):
        m = re.fullmatch(r"\{(\w+)\}", value)
        return ids[m.group(1)] if m else value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _operation(api, method: str, path: str):
    """The operation id a concrete path is routed to."""
    _resource, _methods, _params, template = api.app._router.find(path)
    op = api.app.api.operation_for(template, method)
    assert op is not None, f"no operation for {method} {path}"
    return op.id


def _send(w: World, row: Row):
    ids = w.ids
    path = row.path.format(**ids)
    body = headers = None
    json = _fill(row.json, ids) if row.json is not None else None
    if json is not None and json.get("lines") and json["lines"][0]["product_id"] == 0:
        json["lines"] = [{"product_id": ids["otc"], "quantity": 1}]
    if json is not None and json.get("sales") == "SALE":
        json["sales"] = [pos_sale([(ids["otc"], 1, 500)])]
    if row.upload is not None:
        body, headers = multipart([(ids[name], q) for name, q in row.upload])
    params = {k: str(v) for k, v in _fill(row.params, ids).items()} if row.params else None
    method = row.method
    if json is None and body is None and method in ("POST", "PATCH"):
        json = {}
    return w.request(row.who, method, path, json=json, body=body, headers=headers, params=params)


def test_every_operation_has_a_reviewed_policy_and_an_ownership_verdict(world):
    api = world.api
    doc = api.get("/api/v1/openapi.json", role=None).json
    ops = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            ops[op["operationId"]] = (method.upper(), path, None if op["x-public"] else set(op["x-roles"]))
    unlisted = sorted(set(ops) - set(POLICY))
    assert not unlisted, f"operations without a reviewed role policy: {unlisted}"
    drift = {op_id: (sorted(roles or ()), sorted(POLICY[op_id] or ())) for op_id, (_m, _p, roles) in ops.items()
             if roles != POLICY[op_id]}
    assert not drift, f"documented roles differ from the reviewed policy (documented, reviewed): {drift}"
    covered = {_operation(api, row.method, row.path.format(**world.ids)) for row in TABLE}
    orphans = sorted(set(ops) - covered - set(UNSCOPED))
    assert not orphans, f"operations with neither an ownership row in TABLE nor a reason in UNSCOPED: {orphans}"
    stale = sorted((set(UNSCOPED) & covered) | (set(UNSCOPED) - set(ops)))
    assert not stale, f"UNSCOPED entries that are covered by TABLE or no longer exist: {stale}"


def test_ownership_table(world):
    w = world
    wrong = []
    current = w.snapshot()
    for row in TABLE:
        before = current
        r = _send(w, row)
        current = w.snapshot()
        problems = []
        if r.status_code != row.status:
            problems.append(f"status {r.status_code}: {r.text[:300]}")
        elif row.kind is not None:
            ptype = (r.json or {}).get("type", "")
            if ptype != P + row.kind:
                problems.append(f"problem type {ptype!r}, expected {P + row.kind!r}")
            if r.headers.get("content-type", "").split(";")[0] != "application/problem+json":
                problems.append(f"content type {r.headers.get('content-type')}")
            if row.field and row.field not in [e.get("field") for e in r.json.get("errors", [])]:
                problems.append(f"the problem does not name {row.field!r}: {r.json}")
            if row.says and row.says not in (r.json or {}).get("detail", ""):
                problems.append(f"refused for another reason than {row.says!r}: {r.json.get('detail')}")
        if row.status >= 400:
            changed = {t: d for t, d in diff(before, current).items() if t not in row.changes}
            if changed:
                problems.append(f"the refused request changed the database: {changed}")
        if problems:
            wrong.append(f"{row.label} ({row.why}): " + "; ".join(problems))
    assert not wrong, f"{len(wrong)} of {len(TABLE)} rows wrong:\n" + "\n".join(wrong)


def test_plugin_role_matrix(own_world):
    """Every plugin route, every role: no token 401, a role outside the policy 403, a role inside never
    401/403/5xx (the ids point at store 1 and customer B, so an admitted customer meets 404, not 403)."""
    w, api = own_world, own_world.api
    ids = {"order_id": w.ids["order_b"], "customer_id": w.ids["cust_a"], "prescription_id": w.ids["rx_b"],
           "device_id": w.ids["dev1"], "discrepancy_id": w.ids["disc_s2"], "flag_id": w.ids["flag_s2"],
           "reward_id": 999999, "user_id": 999999, "filepath": "index.html"}
    wrong, checked = [], 0
    for route in api.app.api.routes:
        if route.owner == "core":
            continue  # tests/api/test_roles.py
        expected = POLICY[route.operation.id]
        if expected is None or expected == {"device"}:
            continue  # public, or a terminal's own credentials (the TABLE's rows)
        path = re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: str(ids[m.group(1)]), route.template)
        for role in (None, "admin", "store_manager", "pharmacist", "clerk", "customer"):
            checked += 1
            r = api.request(route.method, path, role=role, json={} if route.method in ("POST", "PATCH") else None)
            if role is None:
                ok = r.status_code == 401 and r.json["type"] == P + UNAUTH
            elif role in expected:
                ok = r.status_code not in (401, 403) and r.status_code < 500
            else:
                ok = r.status_code == 403 and r.json["type"] == P + FORBID
            if not ok:
                wrong.append(f"{route.method} {route.template} as {role}: {r.status_code} {r.text[:160]}")
    assert checked > 150
    assert not wrong, "\n".join(wrong)


def test_lists_show_only_what_is_the_callers(world):
    """Listing never reaches past ownership: a customer's orders and prescriptions, a store's orders,
    prescriptions, terminals, discrepancies, flags and reports, a terminal's catalogue and stock."""
    w, ids = world, world.ids

    def items(who, path, **params):
        r = w.request(who, "GET", path, params={k: str(v) for k, v in params.items()} or None)
        assert r.status_code == 200, (who, path, r.text[:300])
        return r.json["items"]

    mine = items("cust_a", "/api/v1/orders")
    assert {o["id"] for o in mine} == {ids["order_a"]} and {o["customer_id"] for o in mine} == {ids["cust_a"]}
    theirs = items("cust_b", "/api/v1/orders", store_id=ids["store2"])
    assert theirs and {o["customer_id"] for o in theirs} == {ids["cust_b"]}
    assert {o["store_id"] for o in theirs} == {ids["store2"]}
    assert items("cust_a", "/api/v1/prescriptions") == []
    assert {p["id"] for p in items("cust_b", "/api/v1/prescriptions")} == {ids["rx_b"], ids["rx_s2"]}
    for who, store in (("clerk1", "store1"), ("manager1", "store1"), ("clerk2", "store2")):
        listed = items(who, "/api/v1/orders")
        assert listed and {o["store_id"] for o in listed} == {ids[store]}, who
    assert {p["id"] for p in items("pharm1", "/api/v1/prescriptions")} == {ids["rx_b"]}
    assert {p["id"] for p in items("pharm2", "/api/v1/prescriptions")} == {ids["rx_s2"]}
    assert {d["id"] for d in items("manager1", "/api/v1/pos/devices")} == {ids["dev1"], ids["dev_revoked"]}
    assert items("manager1", "/api/v1/pos/discrepancies") == []
    assert {f["store_id"] for f in items("manager1", "/api/v1/pos/flags")} <= {ids["store1"]}
    assert ids["flag_s2"] in {f["id"] for f in items("manager2", "/api/v1/pos/flags")}
    assert [d["id"] for d in items("manager2", "/api/v1/pos/discrepancies")] == [ids["disc_s2"]]
    status = w.request("manager1", "GET", "/api/v1/pos/sync-status").json["items"]
    assert {d["device_id"] for d in status} <= {ids["dev1"], ids["dev_revoked"]}
    for report in ("sales", "near-expiry", "order-queue"):
        r = w.request("manager1", "GET", f"/api/v1/reports/{report}")
        assert r.status_code == 200 and [s["id"] for s in r.json["stores"]] == [ids["store1"]], (report, r.text[:300])
        assert {row["store_id"] for row in r.json.get("by_store", [])} <= {ids["store1"]}, report
    admin_queue = w.request("admin", "GET", "/api/v1/reports/order-queue").json
    assert {s["id"] for s in admin_queue["stores"]} == {ids["store1"], ids["store2"]}  # the control: all stores

    def pull(who, since=None):
        """Every page of a terminal's pull: (first page, lots)."""
        pages = []
        while True:
            r = w.request(who, "GET", "/api/v1/pos/catalog", params={"since": since} if since else None)
            assert r.status_code == 200, r.text[:300]
            pages.append(r.json)
            since = r.json["next_cursor"]
            if not r.json["has_more"]:
                return pages[0], pages[-1]["next_cursor"], [lot for p in pages for lot in p["stock"]]

    first, _cursor, lots = pull("dev1")
    assert first["store_id"] == ids["store1"] and lots
    with w.ctx.session() as s:
        from core.models import StockLot
        lot_stores = {s.get(StockLot, lot["lot_id"]).store_id for lot in lots}
    assert lot_stores == {ids["store1"]}
    # store 2's cursor in store 1's terminal: a full resync of store 1, never store 2's rows
    _first, cursor2, _lots = pull("dev2")
    again, _cursor, lots_again = pull("dev1", cursor2)
    assert again["reset"] is True and again["store_id"] == ids["store1"]
    assert {lot["lot_id"] for lot in lots_again} == {lot["lot_id"] for lot in lots}


def test_a_terminal_sells_only_for_its_own_store(world):
    """A sale naming another store is rejected and stored nowhere; a sale scanning another store's lot
    number is booked in the terminal's own store (a discrepancy there), never touching the other store."""
    from core.models import Order, StockLot, StockMovement
    from plugins.pos_sync.models import PosSale
    w, ids = world, world.ids

    def store2_stock():
        with w.ctx.session() as s:
            lots = sorted((l.id, l.on_hand, l.reserved) for l in s.scalars(
                select(StockLot).where(StockLot.store_id == ids["store2"])))
            moves = s.scalar(select(func.count()).select_from(StockMovement)
                             .where(StockMovement.store_id == ids["store2"]))
        return lots, moves

    before = store2_stock()
    with w.ctx.session() as s:
        sales_before = s.scalar(select(func.count()).select_from(PosSale))
    foreign = pos_sale([(ids["otc"], 1, 500)], store_id=ids["store2"])
    r = upload_sales(w, "dev1", [foreign])
    assert r.status_code == 200 and r.json["results"][0]["status"] == "rejected", r.text
    assert "store_id" in r.json["results"][0]["reason"]
    with w.ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(PosSale)) == sales_before  # stored nowhere

    scanned = pos_sale([(ids["otc"], 2, 500, w.lot2_otc_no)])  # store 2's lot number, scanned at store 1
    r = upload_sales(w, "dev1", [scanned])
    result = r.json["results"][0]
    assert r.status_code == 200 and result["status"] == "accepted", r.text
    with w.ctx.session() as s:
        order = s.get(Order, result["order_id"])
        assert order.store_id == ids["store1"]
        taken = s.scalars(select(StockMovement).where(StockMovement.order_id == order.id)).all()
        assert taken and {m.store_id for m in taken} == {ids["store1"]}
    assert store2_stock() == before


def test_only_an_admin_withdraws_a_product_chain_wide(world):
    """``products.deactivate`` is the admin's: a store manager may edit products but not withdraw or restore
    one through a PATCH or a CSV import either (each refused, nothing written); the admin may."""
    w = world
    sku = w.request("admin", "GET", "/api/v1/products/{otc}").json["sku"]
    before = w.snapshot()
    r = w.request("manager1", "PATCH", "/api/v1/products/{otc}", json={"active": False, "brand_name": "改名"})
    assert r.status_code == 403 and r.json["type"] == P + FORBID, r.text
    assert [e["field"] for e in r.json["errors"]] == ["active"]
    r = w.request("manager1", "POST", "/api/v1/products/import", body=f"sku,active\n{sku},false\n".encode(),
                  headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and (r.json["updated"], r.json["failed"]) == (0, 1), r.text
    assert r.json["errors"][0]["field"] == "active"
    assert diff(before, w.snapshot()) == {}
    r = w.request("manager1", "PATCH", "/api/v1/products/{otc}", json={"active": True, "brand_name": "改名"})
    assert r.status_code == 200 and r.json["brand_name"] == "改名", r.text  # unchanged `active` is no withdrawal
    r = w.request("admin", "PATCH", "/api/v1/products/{otc}", json={"active": False})
    assert r.status_code == 200 and r.json["active"] is False
    r = w.request("manager1", "PATCH", "/api/v1/products/{otc}", json={"active": True})
    assert r.status_code == 403, r.text  # nor restore it
    r = w.request("admin", "POST", "/api/v1/products/import", body=f"sku,active\n{sku},true\n".encode(),
                  headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json["updated"] == 1, r.text
    assert w.request("clerk1", "GET", "/api/v1/products/{otc}").json["active"] is True


def test_no_answer_reveals_a_secret(world):
    """No GET of any route (core and plugins), for any caller, carries the WeChat secrets, a terminal's
    secret, another caller's token or a password hash."""
    from core.models import User

    from .authz_support import WECHAT
    w, api = world, world.api
    ids = {"order_id": w.ids["order_a"], "customer_id": w.ids["cust_a"], "prescription_id": w.ids["rx_b"],
           "device_id": w.ids["dev1"], "discrepancy_id": w.ids["disc_s2"], "flag_id": w.ids["flag_s2"],
           "reward_id": 1, "user_id": w.ids["user_clerk2"], "filepath": "index.html", "store_id": w.ids["store1"],
           "product_id": w.ids["otc"]}
    with w.ctx.session() as s:
        hashes = [u.password_hash for u in s.scalars(select(User))]
    secrets = [WECHAT[k] for k in ("secret", "api_key", "encoding_aes_key", "token")]
    secrets += [secret for secret, _db in w.terminals.values()] + [w.bearer["cust_b"], w.bearer["pharm2"]] + hashes
    leaks, seen = [], 0
    for route in api.app.api.routes:
        if route.method != "GET":
            continue
        path = re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: str(ids[m.group(1)]), route.template)
        for who in ("admin", "manager1", "pharm1", "clerk1", "cust_a"):
            r = w.request(who, "GET", path)
            seen += r.status_code == 200
            text = r.content.decode("utf-8", "replace") if r.content else ""
            leaks += [f"{who} GET {path}: {s[:12]}..." for s in secrets if s in text]
    assert seen > 100 and not leaks, leaks


def test_a_prescription_serves_its_own_customer_only(world):
    """An approved prescription (B's, at store 2) is used by B's sales only: a terminal's sale naming no
    customer or customer A is rejected and consumes nothing; B buying at store 1's terminal is accepted."""
    from plugins.prescription_review.models import Consumption
    w, ids = world, world.ids

    def used():
        with w.ctx.session() as s:
            return sorted(s.scalars(select(Consumption.quantity).where(
                Consumption.prescription_id == ids["rx_s2"], Consumption.released_at.is_(None))))

    before = used()
    for extra, reason in (({}, "name that customer"), ({"customer_id": ids["cust_a"]}, "another customer")):
        sale = pos_sale([(ids["rx"], 1, 2600)], prescription_id=str(ids["rx_s2"]), **extra)
        result = upload_sales(w, "dev1", [sale]).json["results"][0]
        assert result["status"] == "rejected" and reason in result["reason"], result
    assert used() == before
    sale = pos_sale([(ids["rx"], 1, 2600)], prescription_id=str(ids["rx_s2"]), customer_id=ids["cust_b"])
    result = upload_sales(w, "dev1", [sale]).json["results"][0]
    assert result["status"] == "accepted", result
    assert used() == sorted(before + [1])
