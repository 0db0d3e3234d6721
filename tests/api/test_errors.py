"""Every refusal is a problem+json 4xx naming the field; the unexpected is a logged 500 with a request id."""
from __future__ import annotations

import json
import logging

import pytest

from core.api import operation
from core.api.logs import JsonFormatter
from core.errors import PluginError

from .helpers import fields, product
from .plugins import make_plugin

PROBLEM = "application/problem+json"


def assert_problem(r, status, slug=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json
    assert {"type", "title", "status", "detail", "request_id"} <= set(body)
    assert body["status"] == status
    assert body["request_id"] == r.headers["x-request-id"]
    if slug:
        assert body["type"] == f"https://pharmo2o.dev/problems/{slug}"
    return body


def test_malformed_json_is_400(api):
    r = api.post("/api/v1/stores", body='{"code": "A1", "name": ')
    assert_problem(r, 400, "malformed-json")


def test_a_whitespace_body_is_malformed_json_not_an_empty_change(api):
    store = api.post("/api/v1/stores", json={"code": "WS1", "name": "一店"}).json
    for body in (" ", "\n", "\t \r\n"):  # found by the API fuzzer: PATCH with " " answered 200
        r = api.patch(f"/api/v1/stores/{store['id']}", body=body)
        assert_problem(r, 400, "malformed-json")
    assert api.patch(f"/api/v1/stores/{store['id']}").status_code == 200  # no body: nothing to change


def test_non_object_body_is_422(api):
    r = api.post("/api/v1/stores", json=[1, 2])
    assert_problem(r, 422, "validation")
    assert "body" in fields(r)


def test_wrong_types_are_refused_strictly_naming_the_field(api):
    r = api.post("/api/v1/products", json={"sku": "X1", "generic_name": "阿莫西林", "approval_number": "国药准字H20000001",
                                           "rx_class": "rx", "price_fen": "500"})
    assert_problem(r, 422, "validation")
    assert set(fields(r)) == {"price_fen"}
    r = api.post("/api/v1/products", json={"sku": "X1", "generic_name": "阿莫西林", "approval_number": "国药准字H20000001",
                                           "rx_class": "rx", "price_fen": 5.0, "ephedrine": 1})
    assert set(fields(r)) == {"price_fen", "ephedrine"}


def test_unknown_and_missing_fields_are_named(api):
    r = api.post("/api/v1/stores", json={"name": "门店", "colour": "red"})
    body = assert_problem(r, 422)
    assert fields(r) == {"code": "is required", "colour": "unknown field"}
    assert "code" in body["detail"] and "colour" in body["detail"]


def test_nested_field_names_use_paths(api):
    r = api.post("/api/v1/orders", role="clerk", json={
        "store_id": api.store_id, "channel": "store", "fulfilment": "pickup",
        "lines": [{"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": "2"}]})
    assert_problem(r, 422)
    assert set(fields(r)) == {"lines[1].quantity"}


def test_service_rules_come_back_as_422_with_the_field(api):
    r = api.post("/api/v1/products", json={"sku": "X1", "generic_name": "阿莫西林", "approval_number": "H20000001",
                                           "rx_class": "rx", "price_fen": 500})
    assert_problem(r, 422)
    assert set(fields(r)) == {"approval_number"}


def test_oversized_body_is_413_and_writes_nothing(make_api):
    api = make_api(settings={"api.max_body_bytes": 2048})
    big = {"code": "BIG", "name": "x" * 4000}
    r = api.post("/api/v1/stores", json=big)
    assert_problem(r, 413, "payload-too-large")
    assert api.get("/api/v1/stores").json["items"][-1]["code"] == "HOME"


def test_default_body_limit_is_one_mebibyte(api):
    r = api.post("/api/v1/stores", body=b'{"code": "' + b"x" * (1024 * 1024) + b'"}',
                 headers={"Content-Type": "application/json"})
    assert_problem(r, 413)


def test_non_json_body_is_415(api):
    r = api.post("/api/v1/stores", body="code=A1&name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(r, 415, "unsupported-media-type")


@pytest.mark.parametrize("path", ["/api/v1/orders/abc", "/api/v1/orders/0", "/api/v1/orders/-1",
                                  "/api/v1/orders/99999999999999999999999", "/api/v1/orders/1.5",
                                  "/api/v1/products/1e3", "/api/v1/nothing-here"])
def test_bad_ids_and_unknown_paths_are_404(api, path):
    assert_problem(api.get(path), 404, "not-found")


def test_missing_row_is_404(api):
    r = api.get("/api/v1/orders/424242")
    assert_problem(r, 404, "not-found")
    assert "424242" in r.json["detail"]


def test_wrong_method_is_405(api):
    r = api.request("DELETE", "/api/v1/stores", role="admin")
    assert_problem(r, 405, "method-not-allowed")


def test_bad_query_parameters_are_422_naming_them(api):
    for params, name in (({"limit": "abc"}, "limit"), ({"limit": "500"}, "limit"), ({"limit": "0"}, "limit"),
                         ({"colour": "red"}, "colour"), ({"cursor": "not-a-cursor"}, "cursor"),
                         ({"rx_class": "opium"}, "rx_class")):
        r = api.get("/api/v1/products", params=params)
        assert_problem(r, 422)
        assert name in fields(r), params


def test_request_id_is_echoed_when_sane_and_generated_otherwise(api):
    assert api.get("/api/v1/health", role=None, headers={"X-Request-Id": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = api.get("/api/v1/health", role=None, headers={"X-Request-Id": "bad id\n<script>"}).headers["x-request-id"]
    assert generated != "bad id\n<script>" and len(generated) == 32


def crash_plugin():
    class Boom:
        @operation("test.boom", roles=("admin",), summary="Always fails")
        def on_post(self, req, resp):
            from core.models import Store
            req.context.session.add(Store(code="PARTIAL", name="written before the crash"))
            req.context.session.flush()
            raise RuntimeError("secret internal detail")
    return make_plugin("crashy", register_routes=lambda: [("/api/v1/test/boom", Boom())])


def test_unexpected_error_is_500_with_request_id_logged_with_traceback_and_rolled_back(make_api, caplog):
    api = make_api(extra_plugins=[crash_plugin()])
    with caplog.at_level(logging.ERROR, logger="pharmo2o.api"):
        r = api.post("/api/v1/test/boom", headers={"X-Request-Id": "req-500"})
    body = assert_problem(r, 500, "internal")
    assert body["request_id"] == "req-500" and "req-500" in body["detail"]
    assert "secret internal detail" not in r.text
    record = next(rec for rec in caplog.records if rec.levelno == logging.ERROR)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-500"
    assert "RuntimeError: secret internal detail" in line["traceback"]
    codes = [s["code"] for s in api.get("/api/v1/stores").json["items"]]
    assert "PARTIAL" not in codes


def test_a_plugin_responder_without_declared_roles_is_refused_at_start(make_ctx):
    class Open:
        def on_get(self, req, resp):
            resp.media = {}
    plugin = make_plugin("undeclared", register_routes=lambda: [("/api/v1/open", Open())])
    ctx = make_ctx(extra_plugins=[plugin])
    from core.api import create_app
    with pytest.raises(PluginError, match=r"GET /api/v1/open \(undeclared\).*declare the roles"):
        create_app(ctx)


def test_a_plugin_may_not_take_a_core_route(make_ctx):
    class Mine:
        @operation("test.stores", roles=("admin",))
        def on_get(self, req, resp):
            resp.media = {}
    plugin = make_plugin("greedy", register_routes=lambda: [("/api/v1/stores", Mine())])
    from core.api import create_app
    with pytest.raises(PluginError, match="/api/v1/stores of plugin 'greedy' is already registered"):
        create_app(make_ctx(extra_plugins=[plugin]))


def test_unknown_role_in_a_declaration_is_refused():
    with pytest.raises(ValueError, match="unknown role"):
        operation("x.y", roles=("janitor",))
    with pytest.raises(ValueError, match="declare the roles"):
        operation("x.z")


def test_product_and_store_ids_must_be_real_in_bodies(api):
    r = api.post(f"/api/v1/stores/{api.store_id}/stock/receipts", json={
        "product_id": 777, "lot_no": "L1", "expiry": "2099-01-01", "quantity": 1})
    assert_problem(r, 422)
    assert "product_id" in fields(r)
    r = api.post(f"/api/v1/stores/{api.store_id}/stock/receipts", json={
        "product_id": product(api)["id"], "lot_no": "L1", "expiry": "01/01/2099", "quantity": 1})
    assert "expiry" in fields(r)


def test_a_failing_commit_is_the_answer_not_a_success(make_api):
    from sqlalchemy import event

    class Doomed:
        @operation("test.doomed", roles=("admin",), summary="Writes, then the commit fails")
        def on_post(self, req, resp):
            from core.models import Store
            session = req.context.session
            session.add(Store(code="DOOMED", name="never committed"))

            def refuse(_session):
                raise RuntimeError("commit refused")
            event.listen(session, "before_commit", refuse, once=True)
            resp.status = 201
            resp.media = {"ok": True}
    api = make_api(extra_plugins=[make_plugin("doomed", register_routes=lambda: [("/api/v1/test/doomed", Doomed())])])
    r = api.post("/api/v1/test/doomed")
    assert_problem(r, 500, "internal")
    assert "ok" not in r.json
    assert "DOOMED" not in [s["code"] for s in api.get("/api/v1/stores").json["items"]]
