"""The reviewed role policy of the plugin's routes, the API document, and the plugin's place in the app."""
from __future__ import annotations

import re

from openapi_spec_validator import validate

from .helpers import rx_api, submitted

STAFF = {"admin", "store_manager", "pharmacist", "clerk"}
READERS = {"pharmacist", "customer"}  # prescriptions are sensitive personal data
POLICY = {  # reviewed: who may call what
    "prescriptions.submit": STAFF | {"customer"},
    "prescriptions.list": READERS, "prescriptions.get": READERS, "prescriptions.document": READERS,
    "prescriptions.access_log": {"admin"},
    "prescriptions.claim": {"pharmacist"}, "prescriptions.approve": {"pharmacist"},
    "prescriptions.reject": {"pharmacist"},
    "prescriptions.reasons": STAFF | {"customer"},
    "prescriptions.banlist.get": STAFF, "prescriptions.banlist.load": {"admin"},
}


def test_every_operation_admits_exactly_its_reviewed_roles(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    _o, p = submitted(api)
    declared = {r.operation.id: set(api.app.api.roles_of(r.operation)) for r in api.app.api.routes
                if r.owner == "prescription_review"}
    assert declared == POLICY
    ids = {"order_id": p["order_id"], "prescription_id": p["id"]}
    for route in api.app.api.routes:
        if route.owner != "prescription_review":
            continue
        path = re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: str(ids[m.group(1)]), route.template)
        assert api.request(route.method, path, role=None).status_code == 401, path
        for role in ("admin", "store_manager", "pharmacist", "clerk", "customer"):
            r = api.request(route.method, path, role=role, json={} if route.method == "POST" else None)
            if role in POLICY[route.operation.id]:  # admitted (the pharmacist is licensed at this store)
                assert r.status_code not in (401, 403) and r.status_code < 500, (route.method, path, role,
                                                                                r.status_code, r.json)
            else:
                assert r.status_code == 403, (route.method, path, role, r.status_code)


def test_the_api_document_describes_the_upload_and_stays_valid(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    doc = api.get("/api/v1/openapi.json", role=None).json
    validate(doc)
    upload = doc["paths"]["/api/v1/orders/{order_id}/prescription"]["post"]
    assert upload["x-plugin"] == "prescription_review"
    schema = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["document"]["format"] == "binary" and "items" in schema["required"]
    assert {"413", "415", "422"} <= set(upload["responses"])
    assert "prescription_id" in doc["components"]["schemas"]["OrderCreate"]["properties"]
    reject = doc["paths"]["/api/v1/prescriptions/{prescription_id}/reject"]["post"]
    assert reject["x-roles"] == ["pharmacist"]


def test_the_plugin_announces_its_capability_and_page(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    assert "prescription_review" in [c for caps in api.ctx.registry.hook.capabilities() for c in caps]
    pages = api.get("/api/v1/console/pages", role="pharmacist").json["items"]
    review = next(p for p in pages if p["id"] == "review")
    assert review["path"] == "/console/review" and review["plugin"] == "prescription_review"
    assert review["script"] == "/console/plugins/prescription_review/review.js"
    assert "review" not in [p["id"] for p in api.get("/api/v1/console/pages", role="clerk").json["items"]]
    r = api.get("/console/plugins/prescription_review/review.js", role=None)
    assert r.status_code == 200 and "export async function render" in r.text
