"""Refunds: proportional clawback, redeemed points given back, never twice; tiers follow."""
import datetime as dt

import pytest
from sqlalchemy import select

from core.db import utcnow
from core.models import Order
from plugins.loyalty import services
from plugins.loyalty.models import LedgerEntry
from plugins.loyalty.settings import settings_of

from .helpers import (CLERK, balances, buy, credit, entries, lots, loyalty_ctx, pay, place, refund, seed, tier)

TIERS = [{"name": "member", "min_spend_fen": 0, "multiplier": 1},
         {"name": "silver", "min_spend_fen": 10_000, "multiplier": 2}]


def test_refund_claws_back_earned_and_gives_back_redeemed_once(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000)
    credit(ctx, cid, 300)
    oid = buy(ctx, sid, cid, [(pid, 5)], redeem=200)  # pays 48 yuan, earns 48
    assert balances(ctx, cid) == (148, 0, 0)
    refund(ctx, oid)
    assert balances(ctx, cid) == (300, 0, 0)
    assert entries(ctx, cid)[-2:] == [("clawback", -48, 0, 0), ("return", 200, 0, 0)]
    for _ in range(3):  # the refund event replayed
        with ctx.transaction() as s:
            ctx.hook.order_status_changed(session=s, order=s.get(Order, oid), old_status="completed",
                                          new_status="refunded", caller=CLERK)
    assert balances(ctx, cid) == (300, 0, 0)
    assert len(entries(ctx, cid)) == 7  # adjustment, hold, redeem, earn, vest, clawback, return
    assert lots(ctx, cid) == [(300, 300), (48, 0)]


def test_refund_before_completion_takes_the_points_from_pending(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000)
    oid = place(ctx, sid, cid, [(pid, 2)])
    pay(ctx, oid)
    assert balances(ctx, cid) == (0, 20, 0)
    refund(ctx, oid)
    assert balances(ctx, cid) == (0, 0, 0)
    settings = settings_of(ctx.config)
    assert services.run_vest(ctx, settings, utcnow() + dt.timedelta(days=400)) == {"orders": 0}
    assert balances(ctx, cid) == (0, 0, 0)


def test_partial_refunds_are_proportional_and_add_up_to_the_whole(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000)
    credit(ctx, cid, 90)
    oid = buy(ctx, sid, cid, [(pid, 3)], redeem=90)  # pays 2910 fen, earns 29
    assert balances(ctx, cid) == (29, 0, 0)
    settings = settings_of(ctx.config)
    results = []
    for ref, amount in (("r1", 970), ("r1", 970), ("r2", 970), ("r3", 970)):  # r1 twice: processed once
        with ctx.transaction() as s:
            results.append(services.refund(s, settings, s.get(Order, oid), "test", ref=ref, refunded_fen=amount))
    # a third each: 29/3 = 9.67 -> 10, then 19.33 -> 19 (9 more), then the rest (10); redeemed 90 -> 30 each
    assert [r and (r["clawed_back"], r["returned"]) for r in results] == [(10, 30), None, (9, 30), (10, 30)]
    assert balances(ctx, cid) == (90, 0, 0)


@pytest.mark.parametrize("policy, expected", [("forbid", (0, 0, 0)), ("allow", (-31, 0, 0))])
def test_refund_of_points_already_spent_follows_the_policy(make_ctx, policy, expected):
    ctx = loyalty_ctx(make_ctx, negative_balance=policy)
    sid, pid, cid = seed(ctx, price=1000)
    first = buy(ctx, sid, cid, [(pid, 5)])  # earns 50
    buy(ctx, sid, cid, [(pid, 1)], redeem=40)  # spends 40 of them, earns 9
    assert balances(ctx, cid) == (19, 0, 0)
    refund(ctx, first)  # 50 to claw back, 19 there
    assert balances(ctx, cid) == expected
    with ctx.session() as s:
        claw = s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "clawback")).one()
        assert (claw.available_delta, claw.written_off) == ((-19, 31) if policy == "forbid" else (-50, 0))
    oid = buy(ctx, sid, cid, [(pid, 10)])  # earns 100: a debt is repaid first
    assert balances(ctx, cid) == (expected[0] + 100, 0, 0)
    assert lots(ctx, cid)[-1] == (100, expected[0] + 100)
    assert oid


def test_tier_goes_up_with_spend_and_down_after_a_refund(make_ctx):
    ctx = loyalty_ctx(make_ctx, tiers=TIERS)
    sid, pid, cid = seed(ctx, price=6000)
    buy(ctx, sid, cid, [(pid, 1)])
    assert tier(ctx, cid) == "member" and balances(ctx, cid) == (60, 0, 0)
    second = buy(ctx, sid, cid, [(pid, 1)])  # 120 yuan in 12 months: silver from now on
    assert tier(ctx, cid) == "silver" and balances(ctx, cid) == (120, 0, 0)
    third = buy(ctx, sid, cid, [(pid, 1)])  # earned at silver: x2
    assert balances(ctx, cid) == (240, 0, 0)
    refund(ctx, second)  # 180 - 60 = 120 yuan still counts: silver stays
    assert tier(ctx, cid) == "silver"
    refund(ctx, third)  # 60 yuan left: back to member
    assert tier(ctx, cid) == "member"
    assert balances(ctx, cid) == (60, 0, 0)


def test_spend_leaves_the_rolling_window(make_ctx):
    ctx = loyalty_ctx(make_ctx, tiers=TIERS)
    sid, pid, cid = seed(ctx, price=10_000)
    buy(ctx, sid, cid, [(pid, 1)])
    assert tier(ctx, cid) == "silver"
    settings = settings_of(ctx.config)
    assert services.run_tiers(ctx, settings, utcnow() + dt.timedelta(days=300)) == {"members": 1, "changed": 0}
    assert services.run_tiers(ctx, settings, utcnow() + dt.timedelta(days=366)) == {"members": 1, "changed": 1}
    assert tier(ctx, cid) == "member"
