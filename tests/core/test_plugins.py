import itertools
import re
from pathlib import Path

import pytest

from core import catalog, hookspecs
from core.auth import Caller
from core.config import Config
from core.errors import PluginError
from core.orders import channels, payment_providers
from core.plugins import ENTRY_POINT_GROUP, Manifest, discover, load_registry, topological_order

from .factories import make_plugin, product, store

BUNDLED = ["wechat_channel", "prescription_review", "loyalty", "pos_sync"]
ROOT = Path(__file__).resolve().parents[2]


def cfg(tmp_path, **data):
    return Config(path=tmp_path / "p.toml", data=data)


def m(name, *deps):
    return Manifest(name=name, version="1", summary=name, depends=deps)


def test_topological_order_puts_dependencies_first_ties_by_name():
    order = topological_order({"c": m("c", "a"), "b": m("b", "c"), "a": m("a"), "z": m("z")})
    assert order == ["a", "c", "b", "z"]


def test_cycle_is_an_error_naming_the_plugins():
    with pytest.raises(PluginError, match=r"cycle: a -> b -> c -> a"):
        topological_order({"a": m("a", "b"), "b": m("b", "c"), "c": m("c", "a")})


def test_missing_dependency_is_an_error_naming_both():
    with pytest.raises(PluginError, match=r"'shop' depends on 'payments'"):
        topological_order({"shop": m("shop", "payments")})


def test_bundled_plugins_are_found_through_entry_points():
    found = discover()
    assert set(BUNDLED) <= set(found)
    for name in BUNDLED:
        info = found[name]
        assert info.manifest.name == name and info.manifest.version and info.manifest.summary
        assert info.migrations_path is not None and info.migrations_path.is_dir()
        assert info.distribution == "pharmo2o"
    from importlib.metadata import entry_points
    assert {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} >= set(BUNDLED)


@pytest.mark.parametrize("subset", [c for n in range(len(BUNDLED) + 1) for c in itertools.combinations(BUNDLED, n)],
                         ids=lambda c: "+".join(c) or "core-only")
def test_every_subset_of_bundled_plugins_loads(tmp_path, subset):
    registry = load_registry(cfg(tmp_path, plugins={"enabled": list(subset)}))
    assert registry.enabled == sorted(subset) or set(registry.enabled) == set(subset)
    assert registry.pm.get_plugin("core") is not None
    for name in BUNDLED:
        assert (registry.pm.get_plugin(name) is not None) == (name in subset)


def test_unknown_enabled_plugin_is_a_clear_error(tmp_path):
    with pytest.raises(PluginError, match=r"'nope' not installed; installed: .*loyalty"):
        load_registry(cfg(tmp_path, plugins={"enabled": ["nope"]}))


def test_enabled_plugin_without_its_dependency_is_refused(tmp_path):
    child = make_plugin("child", depends=["parent"])
    parent = make_plugin("parent")
    with pytest.raises(PluginError, match="'child' depends on 'parent'"):
        load_registry(cfg(tmp_path), extra=[child, parent], enabled=["child"])
    registry = load_registry(cfg(tmp_path), extra=[child, parent], enabled=["child", "parent"])
    assert registry.enabled == ["parent", "child"]


def test_a_plugin_named_core_or_twice_is_refused(tmp_path):
    with pytest.raises(PluginError, match="may not be named 'core'"):
        load_registry(cfg(tmp_path), extra=[make_plugin("core")])
    with pytest.raises(PluginError, match="two plugins are named 'loyalty'"):
        load_registry(cfg(tmp_path), extra=[make_plugin("loyalty")])


def test_core_never_imports_a_plugin():
    pattern = re.compile(r"^\s*(from|import)\s+plugins\b", re.M)
    offenders = [str(p) for p in (ROOT / "core").rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_describe_lists_hooks_each_plugin_implements(tmp_path):
    extra = make_plugin("lister", register_sales_channels=lambda: [{"name": "meituan", "online": True, "label": "美团"}])
    registry = load_registry(cfg(tmp_path), extra=[extra], enabled=["lister"])
    rows = {r["name"]: r for r in registry.describe()}
    assert rows["lister"]["hooks"] == ["register_sales_channels"]
    assert rows["lister"]["enabled"] and not rows["loyalty"]["enabled"]
    assert "product_sale_refusal" in registry.hooks_of("core")


def test_hook_register_sales_channels(tmp_path):
    extra = make_plugin("meituan", register_sales_channels=lambda: [{"name": "meituan", "online": True, "label": "美团"}])
    registry = load_registry(cfg(tmp_path), extra=[extra], enabled=["meituan"])
    assert set(channels(registry)) == {"store", "web", "meituan"}
    clash = make_plugin("clash", register_sales_channels=lambda: [{"name": "web", "online": True, "label": "x"}])
    registry = load_registry(cfg(tmp_path), extra=[clash], enabled=["clash"])
    with pytest.raises(PluginError, match="sales channel 'web' is registered by both 'core' and 'clash'"):
        channels(registry)


def test_hook_register_payment_providers(tmp_path):
    class Voucher:
        name, roles = "voucher", ()

        def capture(self, session, order, payload, caller):
            return {"reference": "v"}
    registry = load_registry(cfg(tmp_path), extra=[make_plugin("vouchers", register_payment_providers=lambda: [Voucher()])],
                             enabled=["vouchers"])
    assert set(payment_providers(registry)) == {"cash", "manual", "voucher"}


def test_hook_startup(tmp_path):
    seen = []
    load_registry(cfg(tmp_path), extra=[make_plugin("boot", startup=lambda registry: seen.append(registry.enabled))],
                  enabled=["boot"])
    assert seen == [["boot"]]


def test_merged_dict_refuses_a_key_claimed_twice(tmp_path):
    a = make_plugin("a", order_request_fields=lambda: {"coupon": (str, "")})
    b = make_plugin("b", order_request_fields=lambda: {"coupon": (str, "")})
    registry = load_registry(cfg(tmp_path), extra=[a, b], enabled=["a", "b"])
    with pytest.raises(PluginError, match="'coupon' is declared by both 'a' and 'b'"):
        registry.merged_dict("order_request_fields", "order field")


def test_hook_product_visible(ctx):
    with ctx.transaction() as s:
        banned, normal = product(s, online_banned=True), product(s)
        anon, staff = Caller(role=None), Caller(role="clerk")
        assert not catalog.visible(ctx.registry, banned, "web", anon)
        assert catalog.visible(ctx.registry, banned, "store", anon)
        assert catalog.visible(ctx.registry, banned, "web", staff)
        assert catalog.visible(ctx.registry, normal, "web", anon)


def test_hook_product_sale_refusal(make_ctx):
    ctx = make_ctx(extra_plugins=[make_plugin(
        "cold", product_sale_refusal=lambda product, channel, caller:
        "cold-chain goods are not delivered" if product.cold_chain and channel == "web" else None)])
    with ctx.transaction() as s:
        p = product(s, cold_chain=True)
        assert catalog.sale_refusals(ctx.registry, p, "web", Caller(role=None)) == ["cold-chain goods are not delivered"]
        assert catalog.sale_refusals(ctx.registry, p, "store", Caller(role=None)) == []
        assert catalog.serialize_product(ctx.registry, p, "web", Caller(role=None))["purchasable"] is False


def test_hook_product_serialize(make_ctx):
    def product_serialize(product, data, channel, caller):
        data["points_multiplier"] = 2
    ctx = make_ctx(extra_plugins=[make_plugin("extend", product_serialize=product_serialize)])
    with ctx.transaction() as s:
        rx = product(s, rx_class="rx", package_insert="用法用量……")
        online = catalog.serialize_product(ctx.registry, rx, "web", Caller(role="customer", customer_id=1))
        counter = catalog.serialize_product(ctx.registry, rx, "store", Caller(role="clerk"))
    assert online["rx_notice"] == catalog.RX_NOTICE and online["package_insert"] is None
    assert online["purchasable"] is False  # no prescription review enabled
    assert counter["package_insert"] == "用法用量……" and "rx_notice" not in counter
    assert online["points_multiplier"] == counter["points_multiplier"] == 2


def test_every_hookspec_is_documented_and_has_a_test():
    specs = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "pharmo2o_spec")]
    assert len(specs) >= 15
    tests_text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    for name in specs:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.strip()) > 40, f"hookspec {name} needs a docstring saying when it runs and how answers combine"
        assert re.search(rf"def test_hook_{name}\b", tests_text), f"hookspec {name} has no test_hook_{name}"


class _BrokenEntryPoint:
    name, value, group, dist = "half_installed", "half_installed:plugin", ENTRY_POINT_GROUP, None

    def load(self):
        raise ModuleNotFoundError("No module named 'half_installed'")


def test_a_broken_plugin_package_stops_only_when_enabled(tmp_path, monkeypatch):
    import core.plugins as plugins_module
    real = plugins_module.entry_points
    monkeypatch.setattr(plugins_module, "entry_points",
                        lambda group: list(real(group=group)) + [_BrokenEntryPoint()])
    registry = load_registry(cfg(tmp_path, plugins={"enabled": ["loyalty"]}))
    assert registry.enabled == ["loyalty"]
    assert any("half_installed" in w and "not enabled" in w for w in registry.warnings)
    with pytest.raises(PluginError, match=r"'half_installed' .* failed to import: No module named"):
        load_registry(cfg(tmp_path, plugins={"enabled": ["half_installed"]}))
