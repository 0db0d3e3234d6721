"""Enabling and disabling plugins through the API (admins): configuration, migrations and audit, like the CLI."""
from __future__ import annotations

import tomllib

import pytest

from core import migrations

from tests.api.helpers import fields
from tests.api.plugins import make_plugin

from . import fixture_plugin


def configured_file(api) -> list[str]:
    return tomllib.loads(api.ctx.config.path.read_text(encoding="utf-8"))["plugins"]["enabled"]


def test_configuration_says_what_runs_and_what_is_configured(api):
    r = api.get("/api/v1/plugins/configuration")
    assert r.status_code == 200
    assert (r.json["running"], r.json["configured"], r.json["restart_required"]) == (
        ["console_fixture"], ["console_fixture"], False)
    assert r.json["configurable"] is True and r.json["license_state"] == "none"


def test_enable_creates_the_tables_writes_the_configuration_and_audits(api):
    r = api.post("/api/v1/plugins/enable", json={"names": ["loyalty"]})
    assert r.status_code == 200, r.json
    body = r.json
    assert body["enabled"] == ["loyalty"] and body["already"] == [] and "loyalty" in body["migrated"]
    assert sorted(body["configured"]) == ["console_fixture", "loyalty"] and body["running"] == ["console_fixture"]
    assert body["restart_required"] is True and "restart the server" in body["message"]
    assert sorted(configured_file(api)) == ["console_fixture", "loyalty"]
    assert "loyalty" in migrations.current_branches(api.ctx)
    [entry] = api.get("/api/v1/audit", params={"action": "plugin.enable"}).json["items"]
    assert (entry["actor"], entry["entity_id"]) == ("user:admin", "loyalty")
    assert api.get("/api/v1/plugins/configuration").json["restart_required"] is True
    again = api.post("/api/v1/plugins/enable", json={"names": ["loyalty"]}).json
    assert again["enabled"] == [] and again["already"] == ["loyalty"] and again["message"].startswith("already")


def test_disable_keeps_the_data_and_audits(api):
    r = api.post("/api/v1/plugins/disable", json={"names": ["console_fixture"]})
    assert r.status_code == 200, r.json
    assert r.json["disabled"] == ["console_fixture"] and r.json["configured"] == []
    assert configured_file(api) == []
    [entry] = api.get("/api/v1/audit", params={"action": "plugin.disable"}).json["items"]
    assert entry["actor"] == "user:admin" and entry["detail"] == "data kept"
    assert api.post("/api/v1/plugins/disable", json={"names": ["console_fixture"]}).json["not_enabled"] == \
        ["console_fixture"]


def test_refusals_name_the_field(make_api):
    parent = make_plugin("parent")
    child = make_plugin("child")
    child.manifest = type(child.manifest)(name="child", version="1", summary="child", depends=("parent",))
    api = make_api(extra_plugins=[parent, child])
    r = api.post("/api/v1/plugins/disable", json={"names": ["parent"]})
    assert r.status_code == 409 and "child" in fields(r)["names"]
    r = api.post("/api/v1/plugins/enable", json={"names": ["no_such_plugin"]})
    assert r.status_code == 422 and "no_such_plugin" in fields(r)["names"]
    for body in ({}, {"names": []}, {"names": ["../x"]}, {"names": "loyalty"}):
        r = api.post("/api/v1/plugins/enable", json=body)
        assert r.status_code == 422 and any(k.startswith("names") for k in fields(r)), body
    api.ctx.config.env_plugins = ["parent", "child"]  # PHARMO2O_PLUGINS fixes the set
    r = api.post("/api/v1/plugins/enable", json={"names": ["loyalty"]})
    assert r.status_code == 409 and "PHARMO2O_PLUGINS" in fields(r)["names"]
    assert api.get("/api/v1/plugins/configuration").json["configurable"] is False
    assert api.get("/api/v1/audit", params={"entity": "plugin"}).json["items"] == []


@pytest.mark.parametrize("role", ["store_manager", "pharmacist", "clerk", "customer"])
def test_only_admins_change_plugins(api, role):
    for path in ("/api/v1/plugins/enable", "/api/v1/plugins/disable"):
        r = api.post(path, role=role, json={"names": ["loyalty"]})
        assert r.status_code == 403, (path, role)
    assert api.get("/api/v1/plugins/configuration", role=role).status_code == 403
    assert "loyalty" not in migrations.current_branches(api.ctx)
    assert api.post("/api/v1/plugins/enable", role=None, json={"names": ["loyalty"]}).status_code == 401


def test_the_plugin_list_shows_version_licence_and_hooks(api):
    rows = {p["name"]: p for p in api.get("/api/v1/plugins", role="clerk").json["items"]}
    fixture = rows["console_fixture"]
    assert (fixture["version"], fixture["enabled"], fixture["licensed"]) == (fixture_plugin.manifest.version, True, True)
    assert fixture["hooks"] == ["capabilities", "order_hold", "register_console_pages"]
