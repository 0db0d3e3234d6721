"""The role x endpoint matrix: every route of the app, every role, refused exactly where the policy says.

``POLICY`` is the reviewed statement of who may call what; the test fails when
a route is added without an entry, when a declaration drifts from it, and
when a request is not refused (401 without a token, 403 for a role outside
it) or is refused although admitted.
"""
from __future__ import annotations

import re

import pytest

from core.testing import API_ROLES

from .helpers import place, product, receive

STAFF = {"admin", "store_manager", "pharmacist", "clerk"}
ALL = STAFF | {"customer"}
ADMIN = {"admin"}
MANAGERS = {"admin", "store_manager"}
PUBLIC = None

POLICY: dict[str, set[str] | None] = {
    "meta.health": PUBLIC, "meta.openapi": PUBLIC, "meta.docs": PUBLIC, "auth.token": PUBLIC,
    "meta.plugins": STAFF,
    "auth.logout": ALL, "auth.me": ALL,
    "stores.list": ALL, "stores.get": ALL, "stores.create": ADMIN, "stores.update": MANAGERS,
    "products.list": ALL, "products.get": ALL,
    "products.create": MANAGERS, "products.update": MANAGERS, "products.deactivate": ADMIN,
    "products.import": MANAGERS,
    "customers.list": STAFF, "customers.create": STAFF, "customers.get": ALL,
    "users.list": ADMIN, "users.create": ADMIN, "users.get": ADMIN, "users.update": ADMIN,
    "stock.list": STAFF, "stock.receive": STAFF, "stock.movements": STAFF,
    "stock.adjust": MANAGERS, "stock.transfer": MANAGERS,
    "orders.create": ALL, "orders.list": ALL, "orders.get": ALL, "orders.cancel": ALL,
    "orders.pay": STAFF, "orders.fulfil": STAFF, "orders.complete": STAFF, "orders.refund": MANAGERS,
    "audit.list": ADMIN,
    "plugins.configuration": ADMIN, "plugins.enable": ADMIN, "plugins.disable": ADMIN,
    "reports.sales": MANAGERS, "reports.near_expiry": MANAGERS, "reports.order_queue": MANAGERS,
    "console.pages": STAFF, "meta.channels": STAFF,
}


def concrete(template: str, ids: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: str(ids[m.group(1)]), template)


@pytest.fixture
def world(api):
    """Rows every path id can point at, all inside the callers' own scope."""
    p = product(api)
    receive(api, api.store_id, p["id"], 10)
    order = place(api, [(p["id"], 1)]).json
    ids = {"store_id": api.store_id, "product_id": p["id"], "customer_id": api.customer_id,
           "user_id": api.user_ids["clerk"], "order_id": order["id"]}
    return api, ids


def test_every_route_has_a_policy_entry_and_declares_exactly_it(api):
    declared = {r.operation.id: r for r in api.app.api.routes}
    unlisted = {op_id: ("public" if r.operation.public else sorted(api.app.api.roles_of(r.operation)))
                for op_id, r in declared.items() if op_id not in POLICY}
    assert not unlisted, f"routes without a reviewed POLICY entry (declared roles shown): {unlisted}"
    gone = sorted(set(POLICY) - set(declared))
    assert not gone, f"POLICY lists operations the app no longer has: {gone}"
    drift = {}
    for op_id, route in declared.items():
        expected = POLICY[op_id]
        actual = None if route.operation.public else set(api.app.api.roles_of(route.operation))
        if actual != expected:
            drift[op_id] = {"policy": sorted(expected) if expected else "public",
                            "declared": sorted(actual) if actual else "public"}
    assert not drift, f"declared roles differ from the reviewed POLICY: {drift}"


@pytest.mark.parametrize("role", [None, *API_ROLES])
def test_role_matrix(world, role):
    api, ids = world
    wrong = []
    for route in api.app.api.routes:
        expected = POLICY[route.operation.id]
        if route.operation.id == "auth.logout" and role is not None and role in (expected or ()):
            continue  # admitted logout would revoke the token the rest of the matrix uses; tested in test_auth
        r = api.request(route.method, concrete(route.template, ids), role=role, json={} if route.method != "GET" else None)
        if expected is None:
            ok = r.status_code not in (401, 403)
        elif role is None:
            ok = r.status_code == 401 and r.json["type"].endswith("/unauthorized")
        elif role in expected:
            ok = r.status_code not in (401, 403) and r.status_code < 500
        else:
            ok = r.status_code == 403 and r.json["type"].endswith("/forbidden")
        if not ok:
            wrong.append(f"{route.method} {route.template} as {role}: {r.status_code} {r.text[:120]}")
    assert not wrong, "\n".join(wrong)


def test_hook_register_permissions(make_api):
    """A plugin can admit more roles to an operation, never fewer."""
    from .plugins import make_plugin
    plugin = make_plugin("clerk_refunds", register_permissions=lambda: {"orders.refund": ["clerk"]})
    api = make_api(extra_plugins=[plugin])
    route = next(r for r in api.app.api.routes if r.operation.id == "orders.refund")
    assert set(api.app.api.roles_of(route.operation)) == {"admin", "store_manager", "clerk"}
    doc = api.get("/api/v1/openapi.json", role=None).json
    assert "clerk" in doc["paths"]["/api/v1/orders/{order_id}/refund"]["post"]["x-roles"]
    r = api.post("/api/v1/orders/1/refund", role="clerk", json={"reason": "x"})
    assert r.status_code == 404  # admitted now: past the role check, no such order
    assert api.post("/api/v1/orders/1/refund", role="pharmacist", json={"reason": "x"}).status_code == 403
