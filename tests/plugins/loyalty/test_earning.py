"""Earning: eligible amount, multipliers, rounding, pending until completion or the return window."""
import datetime as dt
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from core.db import utcnow
from plugins.loyalty import services
from plugins.loyalty.earning import earning
from plugins.loyalty.ledger import lot_expiry
from plugins.loyalty.models import LoyaltyMember, PointsLot
from plugins.loyalty.settings import Settings, SettingsError, Tier, parse, settings_of
from tests.core.factories import make_plugin

from .helpers import (add_product, balances, buy, complete, entries, lots, loyalty_ctx, new_customer, pay, place,
                      sale, seed)

rx_review = make_plugin("test_rx_review", capabilities=lambda: ["prescription_review"])


def fake_order(lines, total=None, payments=None):
    """An order-shaped object: ``lines`` as ``(line_total_fen, rx_class, sku, category)``."""
    ls = [SimpleNamespace(line_total_fen=t, rx_class=rx, product=SimpleNamespace(sku=sku, category=cat))
          for t, rx, sku, cat in lines]
    return SimpleNamespace(lines=ls, total_fen=sum(l.line_total_fen for l in ls) if total is None else total,
                           extra={"payments": payments} if payments is not None else {})


BASE = Tier("member", 0, 1)


def test_rx_lines_insurance_and_discounts_earn_nothing():
    s = parse({})
    # 30 yuan OTC + 50 yuan Rx, all self-paid: only the OTC line earns
    assert earning(fake_order([(3000, "otc_b", "A", ""), (5000, "rx", "B", "")]), s, BASE).points == 30
    # 10 yuan of insurance on the same order: taken from the eligible lines first
    got = earning(fake_order([(3000, "otc_b", "A", ""), (5000, "rx", "B", "")],
                             payments=[{"method": "medical_insurance", "amount_fen": 1000},
                                       {"method": "cash", "amount_fen": 7000}]), s, BASE)
    assert (got.eligible_fen, got.points) == (2000, 20)
    # a 5 yuan points discount (total 75 yuan) reduces the eligible amount too
    assert earning(fake_order([(3000, "otc_b", "A", ""), (5000, "rx", "B", "")], total=7500), s, BASE).points == 25
    # insurance larger than the OTC part: nothing
    assert earning(fake_order([(3000, "otc_b", "A", "")],
                              payments=[{"method": "medical_insurance", "amount_fen": 3000}]), s, BASE).points == 0
    # an unreadable insurance amount: no points rather than points on insurance money
    assert earning(fake_order([(3000, "otc_b", "A", "")],
                              payments=[{"method": "medical_insurance", "amount_fen": "lots"}]), s, BASE).points == 0
    # configured otherwise: Rx lines and insurance count
    loose = parse({"earn_on_rx": True, "exclude_medical_insurance": False})
    assert earning(fake_order([(3000, "otc_b", "A", ""), (5000, "rx", "B", "")],
                              payments=[{"method": "medical_insurance", "amount_fen": 1000}]), loose, BASE).points == 80


def test_multipliers_and_rounding_floor_once_per_order():
    s = parse({"points_per_yuan": "1.5", "product_multipliers": {"SKU-X": 2},
               "category_multipliers": {"保健品": 3, "vitamins": "0.5"}})
    # 1.99 yuan x 1.5 = 2.985 -> 2 (floored once, per order)
    assert earning(fake_order([(199, "otc_b", "A", "")]), s, BASE).points == 2
    # product multiplier wins over the category's: 10 yuan x 1.5 x 2 = 30
    assert earning(fake_order([(1000, "otc_b", "SKU-X", "保健品")]), s, BASE).points == 30
    # lines 0.99 yuan x3 and 0.99 yuan x0.5 -> (2.97 + 0.495) x 1.5 = 5.1975 -> 5 (per-line flooring would give 4+0)
    assert earning(fake_order([(99, "otc_b", "A", "保健品"), (99, "otc_b", "B", "vitamins")]), s, BASE).points == 5
    # tier multiplier on the whole order: 10 yuan x 1.5 x 1.2 = 18
    assert earning(fake_order([(1000, "otc_b", "A", "")]), s, Tier("silver", 1, "1.2")).points == 18


def test_settings_are_checked_and_name_the_key():
    with pytest.raises(SettingsError, match="loyalty.points_per_yuan"):
        parse({"points_per_yuan": "many"})
    with pytest.raises(SettingsError, match="unknown key"):
        parse({"point_per_yuan": 1})
    with pytest.raises(SettingsError, match="negative_balance"):
        parse({"negative_balance": "sometimes"})
    with pytest.raises(SettingsError, match="lowest tier"):
        parse({"tiers": [{"name": "gold", "min_spend_fen": 100, "multiplier": 2}]})


def test_bad_settings_stop_the_start(make_ctx):
    with pytest.raises(SettingsError, match="return_window_days"):
        loyalty_ctx(make_ctx, return_window_days=-1)


def test_lot_expiry_is_the_end_of_the_month_twelve_months_on_in_local_time():
    s = parse({})  # Asia/Shanghai
    earned = dt.datetime(2026, 1, 15, 3, 0, tzinfo=dt.timezone.utc)
    assert lot_expiry(earned, s) == dt.datetime(2027, 1, 31, 16, 0, tzinfo=dt.timezone.utc)  # 2027-02-01 00:00 +08
    # 20:00 UTC on Jan 31 is already February in Shanghai
    assert lot_expiry(dt.datetime(2026, 1, 31, 20, 0, tzinfo=dt.timezone.utc), s) \
        == dt.datetime(2027, 2, 28, 16, 0, tzinfo=dt.timezone.utc)
    assert lot_expiry(dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), parse({"expiry_months": 1, "timezone": "UTC"})) \
        == dt.datetime(2027, 2, 1, tzinfo=dt.timezone.utc)


def test_online_order_earns_pending_on_payment_and_vests_on_completion(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1250)
    oid = place(ctx, sid, cid, [(pid, 3)])  # 37.50 yuan
    assert balances(ctx, cid) is None  # not a member before paying
    pay(ctx, oid)
    assert balances(ctx, cid) == (0, 37, 0)  # joined on the first paid order, points pending
    complete(ctx, oid)
    assert balances(ctx, cid) == (37, 0, 0)
    assert entries(ctx, cid) == [("earn", 0, 37, 0), ("vest", 37, -37, 0)]
    assert lots(ctx, cid) == [(37, 37)]
    with ctx.session() as s:
        lot = s.scalars(select(PointsLot)).one()
        assert lot.expires_at == lot_expiry(lot.earned_at, settings_of(ctx.config)) > utcnow() + dt.timedelta(days=360)
        assert s.get(LoyaltyMember, cid).joined_via == "order"


def test_online_rx_lines_do_not_earn(make_ctx):
    ctx = loyalty_ctx(make_ctx, extra=[rx_review])
    sid, pid, cid = seed(ctx, price=2000)
    rx = add_product(ctx, sid, price=5000, rx_class="rx")
    buy(ctx, sid, cid, [(pid, 1), (rx, 1)])
    assert balances(ctx, cid) == (20, 0, 0)


def test_without_auto_join_only_members_earn(make_ctx):
    ctx = loyalty_ctx(make_ctx, auto_join=False)
    sid, pid, cid = seed(ctx)
    buy(ctx, sid, cid, [(pid, 1)])
    assert balances(ctx, cid) is None
    from .helpers import CLERK
    with ctx.transaction() as s:
        member, created = services.join(s, settings_of(ctx.config), cid, CLERK)
        assert created and member.joined_via == "explicit"
    with ctx.transaction() as s:
        assert services.join(s, settings_of(ctx.config), cid, CLERK)[1] is False  # joining twice is a no-op
    buy(ctx, sid, cid, [(pid, 2)])
    assert balances(ctx, cid) == (20, 0, 0)


def test_counter_sale_vests_after_the_return_window(make_ctx):
    ctx = loyalty_ctx(make_ctx, return_window_days=7)
    sid, pid, cid = seed(ctx, price=1000)
    rx = add_product(ctx, sid, price=3000, rx_class="rx")
    oid = sale(ctx, sid, cid, [(pid, 4), (rx, 1)],
               payments=[{"method": "medical_insurance", "amount_fen": 1500}, {"method": "cash", "amount_fen": 5500}])
    # 70 yuan: 30 Rx, 15 by insurance -> 25 yuan eligible
    assert balances(ctx, cid) == (0, 25, 0)
    settings = settings_of(ctx.config)
    now = utcnow()
    assert services.run_vest(ctx, settings, now + dt.timedelta(days=6)) == {"orders": 0}
    assert balances(ctx, cid) == (0, 25, 0)
    assert services.run_vest(ctx, settings, now + dt.timedelta(days=7, minutes=1)) == {"orders": 1}
    assert balances(ctx, cid) == (25, 0, 0)
    assert services.run_vest(ctx, settings, now + dt.timedelta(days=8)) == {"orders": 0}  # idempotent
    assert entries(ctx, cid) == [("earn", 0, 25, 0), ("vest", 25, -25, 0)]
    assert oid


def test_counter_sale_with_no_return_window_vests_at_once_and_late_sync_counts_from_the_sale(make_ctx):
    ctx = loyalty_ctx(make_ctx, return_window_days=0)
    sid, pid, cid = seed(ctx)
    sale(ctx, sid, cid, [(pid, 1)])
    assert balances(ctx, cid) == (10, 0, 0)
    ctx7 = loyalty_ctx(make_ctx, return_window_days=7)
    sid, pid, cid = seed(ctx7)
    sale(ctx7, sid, cid, [(pid, 1)], sold_at=utcnow() - dt.timedelta(days=8))  # synced 8 days late
    assert balances(ctx7, cid) == (10, 0, 0)


def test_orders_without_a_customer_are_ignored(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, _cid = seed(ctx)
    buy(ctx, sid, None, [(pid, 1)])
    assert entries(ctx) == []
