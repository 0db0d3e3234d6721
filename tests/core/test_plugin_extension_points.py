"""Two extension points for plugins: hooks a plugin declares for other plugins (``Manifest.hookspecs``) and
notification senders that reach the dispatcher's Context (``notification_senders(ctx)``)."""
from __future__ import annotations

import sys
import types

import pytest
from pluggy import PluginValidationError

from core import Manifest, hookimpl, outbox
from core.config import Config
from core.hookspecs import hookspec
from core.plugins import load_registry


@pytest.fixture
def offering(monkeypatch):
    """A plugin ``coupons`` that offers the hook ``coupon_issued`` to others (specs in its own module)."""
    specs = types.ModuleType("coupons_hookspecs")

    def coupon_issued(code):
        """Observe a coupon code issued by the coupons plugin; return values are collected."""
    specs.coupon_issued = hookspec(coupon_issued)
    monkeypatch.setitem(sys.modules, "coupons_hookspecs", specs)
    plugin = types.ModuleType("coupons")
    plugin.manifest = Manifest(name="coupons", version="1", summary="coupons", hookspecs="coupons_hookspecs")
    return plugin


def listener(name, *, optional=False, depends=()):
    module = types.ModuleType(name)
    module.manifest = Manifest(name=name, version="1", summary=name, depends=tuple(depends))

    def coupon_issued(code):
        return f"{name} saw {code}"
    module.coupon_issued = hookimpl(optionalhook=True)(coupon_issued) if optional else hookimpl(coupon_issued)
    return module


def test_a_plugins_hookspecs_exist_while_it_is_enabled(tmp_path, offering):
    cfg = Config(path=tmp_path / "p.toml", data={})
    strict = listener("strict", depends=["coupons"])
    registry = load_registry(cfg, extra=[offering, strict], enabled=["coupons", "strict"])
    assert registry.hook.coupon_issued(code="C1") == ["strict saw C1"]
    with pytest.raises(PluginValidationError):  # no spec without the offering plugin: a plain impl is refused
        load_registry(cfg, extra=[offering, listener("loose")], enabled=["loose"])
    optional = listener("optional", optional=True)
    registry = load_registry(cfg, extra=[offering, optional], enabled=["optional"])
    assert not hasattr(registry.hook, "coupon_issued") or registry.hook.coupon_issued.spec is None


def test_senders_may_take_the_dispatchers_context(make_ctx):
    seen = []

    def notification_senders(ctx):
        return {"probe": lambda payload: seen.append((payload["n"], ctx.config.database_url))}
    plugin = types.ModuleType("probe")
    plugin.manifest = Manifest(name="probe", version="1", summary="probe")
    plugin.notification_senders = hookimpl(notification_senders)
    ctx = make_ctx(extra_plugins=[plugin])
    with ctx.transaction() as s:
        outbox.enqueue(s, "probe", {"n": 1})
    assert outbox.dispatch(ctx).sent == 1
    assert seen == [(1, ctx.config.database_url)]
