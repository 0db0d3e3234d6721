"""The console's pages hook, the navigation endpoint and the files the console is served from."""
from __future__ import annotations

import types
from pathlib import Path

import pytest

from core import Manifest, hookimpl
from core.api import create_app
from core.console import CORE_PAGES, collect_pages, pages_for
from core.errors import PluginError

from . import fixture_plugin

STAFF = ("admin", "store_manager", "pharmacist", "clerk")


def page_plugin(name, pages):
    module = types.ModuleType(f"tests_console_{name}")
    module.__file__ = str(Path(__file__).parent / "fixture_plugin" / "__init__.py")
    module.manifest = Manifest(name=name, version="1.0", summary=name)

    def register_console_pages():
        return pages
    module.register_console_pages = hookimpl(register_console_pages)
    return module


def ids(pages):
    return [p["id"] for p in pages]


def test_hook_register_console_pages(make_ctx):
    ctx = make_ctx(extra_plugins=[fixture_plugin])
    pages = collect_pages(ctx.registry)
    by_id = {p["id"]: p for p in pages}
    assert set(by_id) == {p["id"] for p in CORE_PAGES} | {"rx-review"}
    plugin_page = by_id["rx-review"]
    assert plugin_page == {"id": "rx-review", "title": "Rx review queue", "roles": ["admin", "pharmacist"],
                           "section": "Pharmacy", "order": 25, "plugin": "console_fixture",
                           "path": "/console/rx-review", "script": "/console/plugins/console_fixture/review.js"}
    assert by_id["orders"]["plugin"] == "core" and by_id["orders"]["script"] == "/console/static/pages/orders.js"
    # navigation order: by order, a section's pages kept together where its first page falls
    assert ids(pages) == ["dashboard", "orders", "stock", "rx-review", "catalogue", "stores", "users", "plugins",
                          "audit"]
    assert ids(pages_for(ctx.registry, "pharmacist")) == ["orders", "stock", "rx-review"]
    assert ids(pages_for(ctx.registry, "clerk")) == ["orders", "stock"]
    assert ids(pages_for(ctx.registry, "store_manager")) == ["dashboard", "orders", "stock", "catalogue"]
    assert pages_for(ctx.registry, "customer") == []

    # a disabled plugin is not asked: its page disappears with it
    assert "rx-review" not in ids(collect_pages(make_ctx().registry))


def test_a_page_id_given_twice_names_both_plugins(make_ctx):
    ctx = make_ctx(extra_plugins=[page_plugin("shadow", [{"id": "orders", "title": "Mine", "roles": ["clerk"],
                                                           "script": "x.js"}])])
    with pytest.raises(PluginError, match="console page 'orders' is registered by both 'core' and 'shadow'"):
        collect_pages(ctx.registry)


@pytest.mark.parametrize("page, message", [
    ({"id": "Bad Id", "title": "t", "roles": ["clerk"], "script": "a.js"}, "id 'Bad Id' must be a slug"),
    ({"id": "ok", "title": "", "roles": ["clerk"], "script": "a.js"}, "title must be a non-empty string"),
    ({"id": "ok", "title": "t", "roles": ["customer"], "script": "a.js"}, "roles \\['customer'\\] must be"),
    ({"id": "ok", "title": "t", "roles": ["clerk"], "script": "../../etc/passwd.js"}, "script '../../etc/passwd.js'"),
    ({"id": "ok", "title": "t", "roles": ["clerk"], "script": "/abs.js"}, "must be a relative path"),
    ({"id": "ok", "title": "t", "roles": ["clerk"], "script": "a.js", "colour": "red"}, "unknown key"),
    ({"id": "static", "title": "t", "roles": ["clerk"], "script": "a.js"}, "not one of"),
])
def test_a_malformed_page_stops_the_app_naming_the_plugin(make_ctx, page, message):
    ctx = make_ctx(extra_plugins=[page_plugin("sloppy", [page])])
    with pytest.raises(PluginError, match=f"console page of plugin 'sloppy'.*{message}"):
        create_app(ctx)


def test_navigation_endpoint_lists_the_pages_of_the_callers_role(api):
    for role in STAFF:
        r = api.get("/api/v1/console/pages", role=role)
        assert r.status_code == 200
        expected = [p["id"] for p in collect_pages(api.ctx.registry) if role in p["roles"]]
        assert ids(r.json["items"]) == expected
        assert all(role in p["roles"] for p in r.json["items"])
    assert ids(api.get("/api/v1/console/pages", role="clerk").json["items"]) == ["orders", "stock"]
    r = api.get("/api/v1/console/pages", role="customer")
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert api.get("/api/v1/console/pages", role=None).status_code == 401


def test_navigation_without_the_plugin_has_no_plugin_page(make_api):
    api = make_api()
    assert ids(api.get("/api/v1/console/pages", role="pharmacist").json["items"]) == ["orders", "stock"]
    assert api.get("/console/plugins/console_fixture/review.js", role=None).status_code == 404


def test_channels_endpoint(api):
    r = api.get("/api/v1/channels", role="clerk")
    assert r.status_code == 200
    assert {c["name"]: c["online"] for c in r.json["items"]} == {"store": False, "web": True}
    assert api.get("/api/v1/channels", role="customer").status_code == 403


# ------------------------------------------------------------------- files

def test_shell_is_served_for_the_console_and_each_page_with_a_strict_policy(api):
    for path in ("/console", "/console/", "/console/orders", "/console/rx-review", "/console/anything-else"):
        r = api.get(path, role=None)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/console/static/app.js">' in r.text
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
    assert api.get("/console/Not%20A%20Page", role=None).status_code == 404


def test_core_assets_with_types_etags_and_no_escape(api):
    r = api.get("/console/static/lib.js", role=None)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert api.get("/console/static/lib.js", role=None, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert api.get("/console/static/console.css", role=None).headers["content-type"].startswith("text/css")
    assert api.get("/console/static/pages/orders.js", role=None).status_code == 200
    for bad in ("/console/static/../pages.py", "/console/static/..%2Fpages.py", "/console/static/pages/../../web.py",
                "/console/static/nope.js", "/console/static/.hidden.js", "/console/static/pages"):
        r = api.get(bad, role=None)
        assert r.status_code == 404, bad
        assert r.headers["content-type"] == "application/problem+json"


def test_plugin_assets_come_from_the_plugins_console_folder_only(api):
    r = api.get("/console/plugins/console_fixture/review.js", role=None)
    assert r.status_code == 200 and "Rx review queue" in r.text
    for bad in ("/console/plugins/console_fixture/__init__.py", "/console/plugins/console_fixture/../__init__.py",
                "/console/plugins/loyalty/anything.js", "/console/plugins/nope/review.js"):
        assert api.get(bad, role=None).status_code == 404, bad


def test_every_core_page_script_exists_and_imports_only_from_this_origin(api):
    static = Path(__file__).resolve().parents[2] / "core" / "console" / "static"
    for page in CORE_PAGES:
        assert (static / page["script"]).is_file(), page["script"]
    for path in static.rglob("*.js"):
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, path
        assert "localStorage" not in text, f"{path}: the token belongs in sessionStorage"
        assert "innerHTML" not in text, f"{path}: build nodes, never parse HTML"
    html = (static / "index.html").read_text(encoding="utf-8")
    assert "http" not in html.replace('"/console/', "")
