"""The machinery of ``test_fuzz.py``: a seeded app with every plugin, schemathesis cases per operation and role,
the checks, and the tally of cases tried and failures.

Schemathesis (4.x) loads ``/api/v1/openapi.json`` straight from the Falcon WSGI app
(``schemathesis.openapi.from_wsgi``) and sends every case to it in-process through its
WSGI transport (werkzeug's test client): no server, no sockets, the real middleware,
database and plugins.
"""
from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from dataclasses import dataclass, field

import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error

from core.testing import ApiClient, Shop

ALL_PLUGINS = ["prescription_review", "loyalty", "pos_sync", "wechat_channel"]
#: who the cases are sent as: every staff role, a customer, nobody, and a POS terminal
ROLES = ("admin", "store_manager", "pharmacist", "clerk", "customer", "anonymous", "device")
#: the checks every response must pass (not a 5xx; status code, content type and body as declared)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def mutated_input_refused(ctx, response, case):
    """schemathesis' ``negative_data_rejection``, except for two cases where nothing invalid reached the app:
    413 (a mutated string made the body larger than the limit: refused before it is parsed, which is right),
    and a query/path/header value mutated into an object, which the WSGI transport sends as its Python repr —
    a plain string, valid for a string parameter (seen: ``since`` of the POS catalogue, an unknown cursor) —
    or into an array of one item, which the query string carries as that one plain value (seen: ``q`` of the
    customer search, ``q=-7.7e-139``). An array of several items arrives as a repeated parameter and is
    still checked."""
    if response.status_code == 413:
        return None
    if any(isinstance(value, dict) or (isinstance(value, list) and len(value) == 1)
           for part in (case.query, case.path_parameters, case.headers) for value in (part or {}).values()):
        return None
    return negative_data_rejection(ctx, response, case)


#: mutated (schema-violating) input must be refused with a 4xx, never accepted
NEGATIVE_CHECKS = CHECKS + [mutated_input_refused]

#: generated examples per (operation, role, mode) for a role the operation admits; ``PHARMO2O_FUZZ_EXAMPLES``
#: raises it for a longer run; a role the operation refuses gets a quarter of it (at least 1)
DEFAULT_EXAMPLES = 4


def examples() -> int:
    raw = os.environ.get("PHARMO2O_FUZZ_EXAMPLES", "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_EXAMPLES
    except ValueError:
        raise ValueError(f"PHARMO2O_FUZZ_EXAMPLES must be a whole number, not {raw!r}") from None


def fuzz_seed() -> int:
    raw = os.environ.get("PHARMO2O_FUZZ_SEED", "")
    return int(raw) if raw else int.from_bytes(os.urandom(4), "big")


# ---------------------------------------------------------------------------- seeded data

@dataclass
class Seeded:
    """Rows the fuzzer's path parameters can hit: ``ids[param name] -> [existing ids]``; ``victims`` are the
    rows the operations in :data:`VICTIM_OPERATIONS` may change (never the users whose tokens are sent, the
    terminal that syncs, the home store or the stocked products the other cases order)."""

    api: ApiClient
    ids: dict[str, list] = field(default_factory=dict)
    victims: dict[str, list] = field(default_factory=dict)
    shop: Shop | None = None
    device_secret: str = ""
    device_database_id: str = ""

    def headers(self, role: str, fresh: bool = False) -> dict:
        """The credentials ``role`` sends; ``fresh`` mints a new token (for a case that revokes its own)."""
        if role == "anonymous":
            return {}
        if role == "device":
            return {"Authorization": f"Bearer {self.device_secret}", "X-POS-Database-Id": self.device_database_id}
        if fresh:
            who = {"customer_id": self.api.customer_id} if role == "customer" else {"user_id": self.api.user_ids[role]}
            return {"Authorization": f"Bearer {self.api.token(**who)}"}
        return {"Authorization": f"Bearer {self.api.tokens[role]}"}


def _ok(result, status=(200, 201)):
    assert result.status_code in (status if isinstance(status, tuple) else (status,)), \
        f"seeding failed: {result.status_code} {result.text}"
    return result.json


def seed_data(api: ApiClient) -> Seeded:
    """A second store, products with stock (OTC and Rx), orders in several states, a prescription, a loyalty
    reward, a POS terminal with an offline sale (a stock discrepancy, review flags), and victim rows."""
    from tests.plugins.prescription_review.helpers import form, licence, rx_fields, unique_doc

    shop = Shop(api)
    s = Seeded(api, shop=shop)
    other = _ok(api.post("/api/v1/stores", json={"code": "FZ2", "name": "第二门店", "address": "", "phone": ""}))
    extra = shop.product(rx_class="otc_a", price_fen=990, generic_name="维生素C片")
    s.ids["store_id"] = [api.store_id, other["id"]]
    s.ids["product_id"] = [shop.otc["id"], shop.rx["id"], extra["id"]]
    s.ids["customer_id"] = [api.customer_id]

    licence(api, api.user_ids["pharmacist"], "PH-FUZZ-1")
    # orders: placed by the customer (awaiting payment), paid, ready (fulfilled), held for prescription review
    placed = shop.place_order(role="customer").json
    paid = shop.place_order().json
    shop.pay(paid["id"])
    ready = shop.place_order().json
    shop.pay(ready["id"])
    shop.fulfil(ready["id"])
    held = shop.place_order([(shop.rx["id"], 1)], role="customer").json
    body, ctype = form(rx_fields([(shop.rx["id"], 1)]), unique_doc())
    rx = _ok(api.post(f"/api/v1/orders/{held['id']}/prescription", role="customer", body=body,
                      headers={"Content-Type": ctype}))
    s.ids["order_id"] = [placed["id"], paid["id"], ready["id"], held["id"]]
    s.ids["prescription_id"] = [rx["id"]]

    reward = _ok(api.post("/api/v1/loyalty/rewards", json={
        "product_id": shop.otc["id"], "points_cost": 100, "label": "积分换购"}), 201)
    s.ids["reward_id"] = [reward["id"]]

    # rows the fuzzer may deactivate, revoke or rewrite
    s.victims["user_id"] = [_ok(api.post("/api/v1/users", json={
        "username": f"fuzzvictim{n}", "password": "fuzz-password-1", "role": "clerk",
        "display_name": f"victim {n}", "store_id": api.store_id}), 201)["id"] for n in range(2)]
    s.ids["user_id"] = list(api.user_ids.values()) + s.victims["user_id"]
    s.victims["store_id"] = [other["id"]]
    s.victims["product_id"] = [shop.product(generic_name="可停用药品")["id"]]
    s.victims["device_id"] = [_ok(api.post("/api/v1/pos/devices", json={
        "store_id": api.store_id, "name": "Spare counter"}), 201)["id"]]

    device = _ok(api.post("/api/v1/pos/devices", json={"store_id": api.store_id, "name": "Counter 1"}), 201)
    s.ids["device_id"] = [device["id"]] + s.victims["device_id"]
    s.device_secret = device["secret"]
    s.device_database_id = f"fuzzdb-{uuid.uuid4().hex[:12]}"
    # an offline sale of more than the shelf holds, at a price the catalogue does not know: a stock
    # discrepancy and review flags to resolve
    catalog = _ok(api.get("/api/v1/pos/catalog", role=None, headers=s.headers("device")))
    sold_at = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).isoformat()
    sale = {"client_sale_id": "fuzz-seed-1", "device_seq": 1, "sold_at": sold_at,
            "lines": [{"line_id": "l1", "product_id": extra["id"], "quantity": 80, "unit_price_fen": 1,
                       "price_list_version": catalog["price_list_version"]}],
            "payments": [{"method": "cash", "amount_fen": 80}]}
    _ok(api.request("POST", "/api/v1/pos/sales:batch", json={"sales": [sale]}, headers=s.headers("device")))
    s.ids["discrepancy_id"] = [d["id"] for d in _ok(api.get("/api/v1/pos/discrepancies"))["items"]]
    s.ids["flag_id"] = [f["id"] for f in _ok(api.get("/api/v1/pos/flags"))["items"]]
    s.ids["filepath"] = ["index.html", "app.js"]
    return s


# ---------------------------------------------------------------------------- running

#: mutating operations whose path parameter is always pointed at a victim row when it names a valid id: all
#: roles fuzz one database in turn, and these would otherwise lock the later roles out (or empty the shelves)
VICTIM_OPERATIONS = {
    ("PATCH", "/api/v1/users/{user_id}"): "user_id",
    ("DELETE", "/api/v1/loyalty/staff-links/{user_id}"): "user_id",
    ("POST", "/api/v1/pos/devices/{device_id}/revoke"): "device_id",
    ("POST", "/api/v1/pos/devices/{device_id}/reregister"): "device_id",
    ("PATCH", "/api/v1/stores/{store_id}"): "store_id",
    ("PATCH", "/api/v1/products/{product_id}"): "product_id",
    ("POST", "/api/v1/products/{product_id}/deactivate"): "product_id",
}

@dataclass
class Tally:
    cases: int = 0
    pairs: int = 0  # (operation, role) combinations run
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    slowest: dict[str, float] = field(default_factory=dict)  # operation -> seconds


def load_schema(api: ApiClient):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api.app)


def operations(schema):
    out = []
    for result in schema.get_all_operations():
        out.append(result.ok())
    return out


def admits(operation, role: str) -> bool:
    raw = operation.definition.raw
    if raw.get("x-public"):
        return role == "anonymous"
    return role in raw.get("x-roles", [])


def _valid_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def run_operation(operation, role: str, seeded: Seeded, tally: Tally, n: int, seed_value: int) -> None:
    """``n`` positive and ``n`` negative (mutated) cases of ``operation`` sent as ``role``."""
    revokes_token = operation.path.endswith("/auth/logout")  # each case logs out a token of its own
    params = [p.name for p in operation.path_parameters]
    # the POS batch checks each sale on its own (documented): a malformed sale is answered 200 with that sale
    # "rejected", never the batch refused — so a mutated sale is not a schema-violating request "accepted"
    per_item = operation.definition.raw.get("operationId") == "pos.sales.batch"
    victim = VICTIM_OPERATIONS.get((operation.method.upper(), operation.path))

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(generation_mode=mode)
        checks = CHECKS if mode is GenerationMode.POSITIVE or per_item else NEGATIVE_CHECKS

        @seed(seed_value)
        @settings(max_examples=n, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink],
                  print_blob=False, verbosity=Verbosity.verbose if os.environ.get("PHARMO2O_FUZZ_VERBOSE") else
                  Verbosity.normal)
        @given(case=strategy, data=st.data())
        def fuzz(case, data):
            if mode is GenerationMode.POSITIVE:
                for name in params:
                    known = seeded.ids.get(name) or []
                    if known and name != victim and data.draw(st.booleans(), label=name):
                        case.path_parameters[name] = data.draw(st.sampled_from(known), label=name)
            if victim and _valid_id(case.path_parameters.get(victim)):
                case.path_parameters[victim] = data.draw(st.sampled_from(seeded.victims[victim]), label=victim)
            # the role's credentials go into the case itself: schemathesis re-validates an edited case, so a
            # negative case whose only mutation was the Authorization header counts as the valid one it became
            headers = seeded.headers(role, fresh=revokes_token)
            if headers:
                case.headers = {**(case.headers or {}), **headers}
            tally.cases += 1
            response = case.call()
            tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
            if os.environ.get("PHARMO2O_FUZZ_VERBOSE"):
                print(f"{mode.value} {role} {response.status_code} {response.request.method} {response.request.url}")
            case.validate_response(response, checks=checks)

        try:
            fuzz()
        except Unsatisfiable:  # nothing to mutate (no parameters, no body): no negative case exists
            continue
        except (Exception, BaseExceptionGroup) as exc:  # a failing case: recorded (shrunk) and reported together at the end
            tally.failures.append(f"{operation.method.upper()} {operation.path} as {role} ({mode.value}):\n"
                                  f"{str(exc)[:3000]}")


def fuzz_role(schema, role: str, seeded: Seeded, n: int, seed_value: int) -> Tally:
    tally = Tally()
    started = time.monotonic()
    only = os.environ.get("PHARMO2O_FUZZ_ONLY", "")  # e.g. "GET /api/v1/pos/catalog": replay one operation
    for operation in operations(schema):
        if only and only not in f"{operation.method.upper()} {operation.path}":
            continue
        count = n if admits(operation, role) else max(1, n // 4)
        tally.pairs += 1
        began = time.monotonic()
        run_operation(operation, role, seeded, tally, count, seed_value)
        tally.slowest[f"{operation.method.upper()} {operation.path}"] = time.monotonic() - began
    tally.seconds = time.monotonic() - started
    return tally
