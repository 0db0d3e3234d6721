"""The plugin in the system: alone, beside every other plugin, disabled, purged, and its commands."""
import datetime as dt

import tomli_w
from sqlalchemy import inspect

from core import migrations, orders
from core.db import utcnow
from core.models import Order
from tests.core.clitools import initialised, run  # noqa: F401  (fixtures)

from .helpers import (ADMIN2, balances, buy, credit, loyalty_ctx, pay, place, sale, seed)

ALL = ["loyalty", "pos_sync", "prescription_review", "wechat_channel"]


def loyalty_tables(ctx):
    return {t for t in inspect(ctx.engine).get_table_names() if t.startswith("loyalty_")}


def test_disabled_the_core_is_unaffected(make_ctx):
    ctx = make_ctx(enabled=[])
    assert loyalty_tables(ctx) == set()
    assert "redeem_points" not in ctx.registry.merged_dict("order_request_fields", "order field")
    sid, pid, cid = seed(ctx, price=1000)
    oid = buy(ctx, sid, cid, [(pid, 2)], redeem=100)  # an unknown extra field changes nothing
    with ctx.session() as s:
        order = s.get(Order, oid)
        assert (order.status, order.total_fen, order.adjustments) == ("completed", 2000, [])
    with ctx.transaction() as s:
        orders.refund(ctx, s, oid, ADMIN2, "returned")


def test_beside_every_other_plugin(make_ctx):
    ctx = loyalty_ctx(make_ctx, enabled=ALL)
    assert "redeem_points" in ctx.registry.merged_dict("order_request_fields", "order field")
    sid, pid, cid = seed(ctx, price=1000)
    credit(ctx, cid, 50)
    buy(ctx, sid, cid, [(pid, 2)], redeem=50)
    assert balances(ctx, cid) == (19, 0, 0)  # 50 spent, 19.50 yuan paid


def test_purge_drops_its_tables_and_enable_brings_them_back(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    assert len(loyalty_tables(ctx)) == 7
    core_only = make_ctx(enabled=[], url=ctx.config.database_url)
    migrations.downgrade_plugin(core_only, "loyalty")
    assert loyalty_tables(core_only) == set()
    migrations.upgrade(ctx)
    assert len(loyalty_tables(ctx)) == 7


def test_commands_vest_expire_tiers_verify(initialised):
    run = initialised
    run.update(loyalty={"return_window_days": 2})
    run.ok("plugins", "enable", "loyalty")
    ctx = run.context(enabled=["loyalty"])
    sid, pid, cid = seed(ctx, price=1000)
    sale(ctx, sid, cid, [(pid, 3)])
    assert balances(ctx, cid) == (0, 30, 0)
    later = (utcnow() + dt.timedelta(days=3)).isoformat()
    assert "vested the points of 1 order(s)" in run.ok("loyalty", "vest", "--now", later).stdout
    assert "vested the points of 0 order(s)" in run.ok("loyalty", "vest", "--now", later).stdout
    far = (utcnow() + dt.timedelta(days=800)).isoformat()
    assert "expired 30 point(s) of 1 member(s)" in run.ok("loyalty", "expire", "--now", far).stdout
    assert "expired 0 point(s) of 0 member(s)" in run.ok("loyalty", "expire", "--now", far).stdout
    assert "0 of 1 member(s) changed tier" in run.ok("loyalty", "tiers").stdout
    assert "agree" in run.ok("loyalty", "verify").stdout
    bad = run("loyalty", "expire", "--now", "2027-01-01T00:00:00")
    assert bad.exit_code == 2 and "time zone" in bad.stderr
    assert balances(ctx, cid) == (0, 0, 0)


def test_offline_pos_sales_uploaded_through_pos_sync_earn_once(make_ctx):
    from tests.plugins.pos_sync import helpers as pos
    ctx = pos.pos_ctx(make_ctx, enabled=("pos_sync", "loyalty"), settings={"loyalty.return_window_days": 7})
    sh = pos.shop(ctx, products=1, price=1000)
    pos.version(ctx)
    pid = sh.product_ids[0]
    sold = pos.sale([(pid, 5, 1000)], customer_id=sh.customer_id,
                    payments=[{"method": "medical_insurance", "amount_fen": 2000}, {"method": "cash", "amount_fen": 3000}])
    for _ in range(3):  # lost responses: the terminal uploads the same sale again
        result = pos.upload(ctx, sh, [sold])
    assert balances(ctx, sh.customer_id) == (0, 30, 0), result  # 50 yuan, 20 by insurance
    refused = pos.upload(ctx, sh, [pos.sale([(pid, 1, 1000)], customer_id=sh.customer_id, redeem_points=10)])
    assert "redeem" in str(refused)
    assert balances(ctx, sh.customer_id) == (0, 30, 0)
