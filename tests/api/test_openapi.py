"""The API document: valid OpenAPI 3.1, every route in it, plugin fields and routes included; the offline docs page."""
from __future__ import annotations

import re
from typing import Annotated

from openapi_spec_validator import validate
from pydantic import Field

from core.api import operation
from core.api.openapi import openapi_path

from .helpers import fields, order_body, product, receive
from .plugins import make_plugin


def test_document_is_valid_openapi_31(api):
    r = api.get("/api/v1/openapi.json", role=None)
    assert r.status_code == 200
    doc = r.json
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_appears_with_its_roles_and_problem_responses(api):
    doc = api.get("/api/v1/openapi.json", role=None).json
    routes = api.app.api.routes
    assert len(routes) >= 37
    for route in routes:
        op = doc["paths"][openapi_path(route.template)][route.method.lower()]
        assert op["operationId"] == route.operation.id
        roles = list(api.app.api.roles_of(route.operation))
        if route.operation.public:
            assert op["security"] == [] and op["x-public"] is True
        else:
            assert op["x-roles"] == roles and op["security"] == [{"bearerAuth": []}]
            assert "**Roles:** " + ", ".join(roles) in op["description"]
            assert {"401", "403"} <= set(op["responses"])
            assert op["responses"]["403"]["content"]["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"}
        for name in re.findall(r"\{(\w+)", route.template):
            assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"])
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == {(openapi_path(r.template), r.method.lower()) for r in routes}
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_request_bodies_and_query_parameters_come_from_the_schemas(api):
    doc = api.get("/api/v1/openapi.json", role=None).json
    create = doc["paths"]["/api/v1/products"]["post"]
    schema = doc["components"]["schemas"]["ProductCreate"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ProductCreate"}
    assert {"sku", "generic_name", "approval_number", "rx_class", "price_fen"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    listing = doc["paths"]["/api/v1/products"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {"q", "rx_class", "category", "limit", "cursor", "channel"} <= names
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])


def points_plugin():
    def order_request_fields():
        return {"points_to_redeem": (Annotated[int, Field(ge=0, description="loyalty points to spend")], 0)}

    def order_price_adjustments(session, order, extra, caller):
        points = extra.get("points_to_redeem", 0)
        if points:
            return [{"code": "points", "label": f"{points} points", "amount_fen": -points}]
        return None

    def order_validate(session, order, extra, caller):
        if extra.get("points_to_redeem", 0) > 1000:
            return [("points_to_redeem", "at most 1000 points per order")]
        return None

    class Balance:
        @operation("points.balance", roles=("customer",), summary="My points", tags=("points",))
        def on_get(self, req, resp):
            resp.media = {"customer_id": req.context.caller.customer_id, "points": 42}

    return make_plugin("points", order_request_fields=order_request_fields,
                       order_price_adjustments=order_price_adjustments, order_validate=order_validate,
                       register_routes=lambda: [("/api/v1/points/balance", Balance())])


def test_hook_register_routes(make_api):
    """A plugin's routes and order fields show in the document and work."""
    api = make_api(extra_plugins=[points_plugin()])
    doc = api.get("/api/v1/openapi.json", role=None).json
    validate(doc)
    create = doc["paths"]["/api/v1/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    order_schema = doc["components"]["schemas"][create["$ref"].rsplit("/", 1)[1]]
    assert order_schema["properties"]["points_to_redeem"]["description"] == "loyalty points to spend"
    assert order_schema["properties"]["points_to_redeem"]["minimum"] == 0
    balance = doc["paths"]["/api/v1/points/balance"]["get"]
    assert balance["x-plugin"] == "points" and balance["x-roles"] == ["customer"]
    assert api.get("/api/v1/points/balance", role="customer").json == {"customer_id": api.customer_id, "points": 42}
    assert api.get("/api/v1/points/balance", role="clerk").status_code == 403

    p = product(api, price_fen=1000)
    receive(api, api.store_id, p["id"], 5)
    r = api.post("/api/v1/orders", role="clerk", json=order_body(api, [(p["id"], 1)], points_to_redeem=300))
    assert r.status_code == 201, r.json
    assert r.json["total_fen"] == 700 and r.json["extra"]["points_to_redeem"] == 300
    assert r.json["adjustments"] == [{"code": "points", "label": "300 points", "amount_fen": -300}]
    r = api.post("/api/v1/orders", role="clerk", json=order_body(api, [(p["id"], 1)], points_to_redeem="300"))
    assert r.status_code == 422 and set(fields(r)) == {"points_to_redeem"}
    r = api.post("/api/v1/orders", role="clerk", json=order_body(api, [(p["id"], 1)], points_to_redeem=5000))
    assert r.status_code == 422 and fields(r) == {"points_to_redeem": "at most 1000 points per order"}
    [row] = api.get(f"/api/v1/stores/{api.store_id}/stock").json["items"]
    assert row["reserved"] == 1  # the refused orders reserved nothing


def test_without_the_plugin_the_field_is_unknown(api):
    doc = api.get("/api/v1/openapi.json", role=None).json
    assert "points_to_redeem" not in doc["components"]["schemas"]["OrderCreate"]["properties"]
    p = product(api)
    r = api.post("/api/v1/orders", role="clerk", json=order_body(api, [(p["id"], 1)], points_to_redeem=1))
    assert r.status_code == 422 and fields(r)["points_to_redeem"] == "unknown field"


def test_docs_page_is_self_contained(api):
    r = api.get("/api/docs", role=None)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert "@import" not in html and "fetch(" not in html
    assert '"operationId": "orders.create"' in html  # the document is embedded, no network needed
    assert "/*__OPENAPI__*/null" not in html
    script = html.split("<script>", 1)[1]
    assert "</script>" in script and script.index("</script>") > script.index("orders.create")
