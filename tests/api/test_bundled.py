"""The app builds with every bundled plugin enabled, and its document stays valid."""
from __future__ import annotations

from openapi_spec_validator import validate

BUNDLED = ["wechat_channel", "prescription_review", "loyalty", "pos_sync"]


def test_app_with_every_bundled_plugin(make_api):
    api = make_api(enabled=BUNDLED)
    health = api.get("/api/v1/health", role=None).json
    assert set(health["plugins"]) == set(BUNDLED)
    plugins = {p["name"]: p for p in api.get("/api/v1/plugins", role="clerk").json["items"]}
    assert all(plugins[name]["enabled"] for name in BUNDLED)
    doc = api.get("/api/v1/openapi.json", role=None).json
    validate(doc)
    owners = {r.owner for r in api.app.api.routes}
    assert owners <= {"core", *BUNDLED}
