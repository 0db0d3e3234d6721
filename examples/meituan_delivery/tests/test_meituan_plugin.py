"""The package is a plugin from outside: found through its entry point, listed like a bundled plugin
with the hooks it implements, on its own Alembic branch, with its own CLI commands and console page."""
from __future__ import annotations

import json
from importlib.metadata import distribution, entry_points
from pathlib import Path

import tomli_w
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect

import core
import meituan_delivery
from core import migrations
from core.cli import cli
from core.db import Base
from core.plugins import ENTRY_POINT_GROUP, discover
from meituan_delivery.models import MeituanOrder

HOOKS = ["notification_senders", "order_price_adjustments", "order_status_changed", "product_sale_refusal",
         "register_commands", "register_console_pages", "register_payment_providers", "register_routes",
         "register_sales_channels", "startup"]


def test_found_through_its_own_distributions_entry_point():
    info = discover()["meituan_delivery"]
    assert info.distribution == "pharmo2o-meituan-delivery"
    assert info.module is meituan_delivery and info.manifest is meituan_delivery.manifest
    [ep] = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "meituan_delivery"]
    assert ep.value == "meituan_delivery" and ep.dist.name == "pharmo2o-meituan-delivery"
    assert ep in distribution("pharmo2o-meituan-delivery").entry_points
    # installed from its own folder, outside pharmo2o's packages
    pharmo2o_root = Path(core.__file__).resolve().parent.parent
    here = Path(meituan_delivery.__file__).resolve()
    assert not here.is_relative_to(pharmo2o_root / "core") and not here.is_relative_to(pharmo2o_root / "plugins")


def test_pharmo2o_itself_never_names_it():
    pharmo2o_root = Path(core.__file__).resolve().parent.parent
    for package in ("core", "plugins"):
        for path in (pharmo2o_root / package).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".cfg", ".toml", ".js", ".json", ".html"}:
                assert "meituan_delivery" not in path.read_text(encoding="utf-8", errors="replace"), path
    setup = (pharmo2o_root / "setup.cfg").read_text(encoding="utf-8")
    assert "meituan" not in setup  # not one of pharmo2o's entry points


def test_the_api_lists_it_like_a_bundled_plugin_with_its_hooks(make_api):
    api = make_api(enabled=["meituan_delivery", "loyalty"])
    rows = {row["name"]: row for row in api.get("/api/v1/plugins", role="clerk").json["items"]}
    mine, bundled = rows["meituan_delivery"], rows["loyalty"]
    assert mine.keys() == bundled.keys()
    assert (mine["version"], mine["enabled"], mine["licensed"], mine["depends"]) == ("0.1.0", True, True, [])
    assert mine["hooks"] == HOOKS
    assert "meituan" in {c["name"] for c in api.get("/api/v1/channels").json["items"]}
    owners = {route.template: route.owner for route in api.app.api.routes}
    assert owners["/meituan/orders"] == owners["/api/v1/meituan/orders"] == "meituan_delivery"
    assert "/meituan/orders" in api.get("/api/v1/openapi.json", role=None).json["paths"]


def _config(tmp_path, url: str, enabled: list[str]) -> Path:
    path = tmp_path / "pharmo2o.toml"
    path.write_text(tomli_w.dumps({"database_url": url, "plugins": {"enabled": enabled},
                                   "meituan": {"secret": "cli-secret-0123456789"}}), encoding="utf-8")
    return path


def test_pharmo2o_plugins_list_shows_it_with_its_hooks(tmp_path, monkeypatch):
    monkeypatch.delenv("PHARMO2O_PLUGINS", raising=False)
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}", ["meituan_delivery"])
    listed = CliRunner().invoke(cli, ["--config", str(config), "plugins", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    row = next(p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "meituan_delivery")
    assert row["enabled"] and row["hooks"] == HOOKS
    table = CliRunner().invoke(cli, ["--config", str(config), "plugins", "list"]).stdout
    line = next(ln for ln in table.splitlines() if ln.startswith("meituan_delivery "))
    assert "0.1.0" in line and "yes" in line
    assert "meituan_delivery: " + ", ".join(HOOKS) in table  # the hooks of each enabled plugin


def test_its_cli_commands_arrive_when_enabled(plugin_api, tmp_path, meituan, monkeypatch):
    monkeypatch.delenv("PHARMO2O_PLUGINS", raising=False)
    mt_id = meituan.send_order().json["meituan_order_id"]
    config = _config(tmp_path, plugin_api.ctx.config.database_url, ["meituan_delivery"])
    listed = CliRunner().invoke(cli, ["--config", str(config), "meituan", "orders"])
    assert listed.exit_code == 0, listed.output
    assert mt_id in listed.stdout and "accepted" in listed.stdout
    signed = CliRunner().invoke(cli, ["--config", str(config), "meituan", "sign", "-"], input=b'{"a":1}')
    assert signed.stdout.strip() == "X-Meituan-Signature: " + __import__("meituan_delivery.signing").signing.sign(
        "cli-secret-0123456789", b'{"a":1}')
    without = _config(tmp_path, plugin_api.ctx.config.database_url, [])
    assert CliRunner().invoke(cli, ["--config", str(without), "meituan", "orders"]).exit_code == 2


def test_its_own_alembic_branch_goes_up_and_down_leaving_the_core(make_ctx):
    ctx = make_ctx(enabled=["meituan_delivery"])
    assert migrations.branch_heads(ctx.registry)["meituan_delivery"] == "meituan_delivery_0001"
    assert migrations.current_branches(ctx) == {"core", "meituan_delivery"}
    assert "meituan_orders" in inspect(ctx.engine).get_table_names()
    with ctx.engine.connect() as conn:  # the migration creates exactly the model's table
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert [d for d in diffs if "meituan_orders" in repr(d)] == []
    assert MeituanOrder.__table__.name == "meituan_orders"

    core_only = make_ctx(enabled=[], url=ctx.config.database_url)  # disabled first, then its data removed
    migrations.downgrade_plugin(core_only, "meituan_delivery")
    assert migrations.current_branches(core_only) == {"core"}
    tables = set(inspect(core_only.engine).get_table_names())
    assert "meituan_orders" not in tables and {"orders", "stores"} <= tables
    assert migrations.upgrade(ctx) == ["core", "meituan_delivery"]
    assert "meituan_orders" in inspect(ctx.engine).get_table_names()


def test_its_console_page_is_served_while_enabled(plugin_api):
    pages = {p["id"]: p for p in plugin_api.get("/api/v1/console/pages", role="store_manager").json["items"]}
    assert pages["meituan"]["title"] == "Meituan deliveries"
    script = plugin_api.client.simulate_get("/console/plugins/meituan_delivery/deliveries.js")
    assert script.status_code == 200 and "export async function render" in script.text
    assert "meituan" not in {p["id"] for p in plugin_api.get("/api/v1/console/pages", role="pharmacist").json["items"]}
