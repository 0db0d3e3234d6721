"""The plugin in the system: its configuration (checked, secrets hidden), its tables (migrations match the models,
purge and re-enable), its channel, its commands, and the meta-test of the hooks it declares for others."""
from __future__ import annotations

import datetime as dt
import importlib
import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, update

from core import migrations
from core.db import Base
from core.orders import channels
from plugins.wechat_channel import hookspecs as wechat_hookspecs
from plugins.wechat_channel.models import WechatPayment
from plugins.wechat_channel.settings import SettingsError, parse
from tests.core.clitools import initialised  # noqa: F401  (fixture)

from .helpers import API_KEY, SECRET, TOKEN, AES_KEY, settings

HERE = Path(__file__).parent


def wechat_tables(ctx) -> set[str]:
    return {t for t in inspect(ctx.engine).get_table_names() if t.startswith("wechat_")}


def test_migrations_match_the_models_and_purge_drops_the_tables(make_ctx):
    ctx = make_ctx(enabled=["wechat_channel"])
    importlib.import_module("plugins.wechat_channel.models")
    with ctx.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert [d for d in diffs if "wechat_" in repr(d)] == []
    assert len(wechat_tables(ctx)) == 9
    core_only = make_ctx(enabled=[], url=ctx.config.database_url)
    migrations.downgrade_plugin(core_only, "wechat_channel")
    assert wechat_tables(core_only) == set()
    migrations.upgrade(ctx)
    assert len(wechat_tables(ctx)) == 9


def test_the_wechat_channel_is_online(make_ctx):
    ctx = make_ctx(enabled=["wechat_channel"])
    assert channels(ctx.registry)["wechat"]["online"] is True
    assert "wechat" not in channels(make_ctx(enabled=[]).registry)


def test_settings_refuse_bad_values_naming_the_key_never_the_secret():
    for section, key in (({"message_mode": "aes"}, "wechat.message_mode"), ({"appid": "not-an-appid"}, "wechat.appid"),
                         ({"base_url": "ftp://x"}, "wechat.base_url"), ({"sign_type": "SHA1"}, "wechat.sign_type"),
                         ({"templates": {"shipped": "x"}}, "wechat.templates"), ({"colour": 1}, "colour"),
                         ({"timeout_seconds": 0}, "wechat.timeout_seconds"), ({"mch_id": "12ab"}, "wechat.mch_id"),
                         ({"redis_url": "http://x"}, "wechat.redis_url")):
        with pytest.raises(SettingsError, match=re.escape(key)):
            parse(section)
    with pytest.raises(SettingsError) as info:
        parse({"encoding_aes_key": "short-secret-aes-key"})
    assert "short-secret-aes-key" not in str(info.value) and "value not shown" in str(info.value)
    s = parse({"appid": "wx1234567890", "secret": SECRET, "api_key": API_KEY, "token": TOKEN,
               "encoding_aes_key": AES_KEY, "mch_id": 1230000109})
    assert s.mch_id == "1230000109"  # PHARMO2O_WECHAT__MCH_ID arrives as a number
    for secret in (SECRET, API_KEY, TOKEN, AES_KEY):
        assert secret not in repr(s) and secret not in str(s.public())
    assert s.public()["secret"] == "set" and parse({}).public()["api_key"] == "not set"


def test_a_bad_section_fails_at_start(make_ctx):
    with pytest.raises(SettingsError, match="wechat.message_mode"):
        make_ctx(enabled=["wechat_channel"], settings={"wechat.message_mode": "aes"})


def test_status_shows_the_configuration_without_secrets(make_wx):
    wx = make_wx()
    r = wx.api.get("/api/v1/wechat/status")
    assert r.status_code == 200
    text = r.text
    for secret in (SECRET, API_KEY, TOKEN, AES_KEY):
        assert secret not in text
    assert r.json["settings"]["api_key"] == "set" and r.json["missing"]["refund"] == []
    assert wx.api.get("/api/v1/wechat/status", role="store_manager").status_code == 403
    shop = wx.api.get("/api/v1/wechat/shop", role="customer").json
    assert shop == {"customer_id": wx.api.customer_id, "store_id": wx.api.store_id, "channel": "wechat",
                    "rx_notice": "处方药须凭处方在药师指导下购买和使用",
                    "features": {"loyalty": False, "prescription_upload": False, "wechat_pay": True}}


def test_commands_status_and_reconcile(initialised, fake, certs):
    run = initialised
    conf = {k.split(".", 1)[1]: v for k, v in settings(fake, certs=certs).items()}
    run.update(wechat=conf)
    run.ok("plugins", "enable", "wechat_channel")
    out = run.ok("wechat", "status").stdout
    assert '"api_key": "set"' in out and API_KEY not in out and SECRET not in out and "Pay: ready" in out
    assert "checked 0 pending trade(s): nothing to change" in run.ok("wechat", "reconcile").stdout
    ctx = run.context(enabled=["wechat_channel"])
    from core.testing import build_api_client
    from .helpers import shop
    wx = shop(build_api_client(ctx), fake)
    order = wx.order()
    pay = wx.wechat_pay(order["id"]).json
    fake.mark_paid(pay["out_trade_no"])
    assert "checked 0" in run.ok("wechat", "reconcile").stdout  # placed just now: left to the notification
    with ctx.transaction() as s:
        s.execute(update(WechatPayment).values(created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)))
    assert "checked 1 pending trade(s): 1 accepted" in run.ok("wechat", "reconcile").stdout
    assert wx.order_row(order["id"]).status == "paid"
    run.update(wechat={})
    refused = run("wechat", "reconcile")
    assert refused.exit_code == 1 and "wechat.mch_id" in refused.stderr


def test_jobs_reconcile_and_cleanup(make_wx):
    from core.jobs import jobs_of
    from plugins.wechat_channel.models import InboundMessage, OAuthState
    from plugins.wechat_channel.oauth import cleanup
    from sqlalchemy import func, select
    from .helpers import event_message, post_push, push
    wx = make_wx()
    jobs = {j.name: j for j in jobs_of(wx.ctx.registry)}
    assert {"wechat.reconcile", "wechat.cleanup"} <= set(jobs)
    assert jobs["wechat.reconcile"].run(wx.ctx) == ""  # nothing pending
    post_push(wx.api, push(event_message("o-old", "subscribe")))
    wx.api.client.simulate_get("/wechat/oauth/start")
    assert cleanup(wx.ctx) == 0  # everything is recent
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=8)
    assert cleanup(wx.ctx, now=later) == 2
    with wx.ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage)) == 0
        assert s.scalar(select(func.count()).select_from(OAuthState)) == 0


def test_every_hook_the_plugin_declares_is_documented_and_tested():
    specs = [n for n in dir(wechat_hookspecs) if hasattr(getattr(wechat_hookspecs, n), "pharmo2o_spec")]
    assert specs == ["wechat_event"]
    tests_text = "\n".join(p.read_text(encoding="utf-8") for p in HERE.glob("test_*.py"))
    for name in specs:
        assert len((getattr(wechat_hookspecs, name).__doc__ or "").strip()) > 40
        assert re.search(rf"def test_hook_{name}\b", tests_text)


def test_the_plugin_imports_no_other_plugin():
    root = Path(wechat_hookspecs.__file__).parent
    pattern = re.compile(r"^\s*(from|import)\s+plugins\.(?!wechat_channel)", re.M)
    assert [p.name for p in root.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))] == []
