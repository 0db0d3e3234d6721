"""CSV product import over HTTP: the CLI's importer, per-row errors numbered as in the whole file."""
from __future__ import annotations

import pytest

from tests.api.helpers import fields, product

HEADER = "sku,generic_name,approval_number,rx_class,price_fen,barcode\n"
CSV = {"Content-Type": "text/csv; charset=utf-8"}


def send(api, text, role="store_manager", **params):
    return api.post("/api/v1/products/import", role=role, body=text.encode("utf-8"), headers=CSV,
                    params={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()})


def test_rows_are_created_updated_or_refused_each_on_its_own(api):
    existing = product(api, sku="KEEP-1", price_fen=100)
    text = HEADER + ("NEW-1,对乙酰氨基酚片,国药准字H11020000,otc_a,350,6901234567001\n"
                     "BAD-1,坏行,国药准字X1,otc_b,10,\n"
                     "KEEP-1,,,,275,\n"
                     "BAD-2,价格,国药准字H11020001,otc_b,12.5,\n")
    r = send(api, text, row_offset=100)
    assert r.status_code == 200, r.json
    body = r.json
    assert (body["rows"], body["created"], body["updated"], body["failed"], body["dry_run"]) == (4, 1, 1, 2, False)
    assert [(e["row"], e["sku"], e["field"]) for e in body["errors"]] == [
        (103, "BAD-1", "approval_number"), (105, "BAD-2", "price_fen")]  # rows as numbered in the whole file
    assert api.get(f"/api/v1/products/{existing['id']}").json["price_fen"] == 275
    [created] = api.get("/api/v1/products", params={"q": "NEW-1"}).json["items"]
    assert created["barcode"] == "6901234567001" and created["rx_class"] == "otc_a"
    actors = {e["actor"] for e in api.get("/api/v1/audit", params={"entity": "product"}).json["items"]}
    assert "user:store_manager" in actors  # each row audited like a create/update


def test_dry_run_reports_and_saves_nothing(api):
    r = send(api, HEADER + "DRY-1,维生素C片,国药准字H41020712,otc_a,450,\n", dry_run=True)
    assert r.status_code == 200 and (r.json["created"], r.json["dry_run"]) == (1, True)
    assert api.get("/api/v1/products", params={"q": "DRY-1"}).json["items"] == []


def test_a_bad_file_is_refused_naming_what_is_wrong(api):
    r = send(api, "sku,colour\nA,red\n")
    assert r.status_code == 422 and "header" in fields(r) and "'colour'" in fields(r)["header"]
    r = send(api, "   \n")
    assert r.status_code == 422 and "body" in fields(r)
    r = api.post("/api/v1/products/import", role="admin", json={"sku": "A"})
    assert r.status_code == 415 and r.json["type"].endswith("/unsupported-media-type")
    r = send(api, HEADER, row_offset=-1)
    assert r.status_code == 422 and "row_offset" in fields(r)


def test_a_body_over_the_limit_is_refused(make_api):
    from . import fixture_plugin
    api = make_api(extra_plugins=[fixture_plugin], settings={"api.max_body_bytes": 300})
    r = send(api, HEADER + "X-1,名称,国药准字H11020000,otc_a,350,\n" * 10)
    assert r.status_code == 413 and r.json["type"].endswith("/payload-too-large")


@pytest.mark.parametrize("role, status", [("admin", 200), ("store_manager", 200), ("pharmacist", 403),
                                          ("clerk", 403), ("customer", 403), (None, 401)])
def test_who_may_import(api, role, status):
    assert send(api, HEADER, role=role).status_code == status
