"""Redemption: held on placement, spent on payment, released on cancel; never an overdraft."""
import datetime as dt

import pytest
from sqlalchemy import select

from core import orders
from core.db import utcnow
from core.errors import ValidationFailed
from core.models import Order
from plugins.loyalty import services
from plugins.loyalty.models import PointsLot
from plugins.loyalty.settings import settings_of

from .helpers import (CLERK, add_product, balances, cancel, credit, entries, lots, loyalty_ctx, new_customer,
                      order_count, pay, place, pos_channel, run_threads, sale, seed, wide_context)


def refused(excinfo, field="redeem_points"):
    return [f["field"] for f in excinfo.value.fields] == [field]


def test_points_are_held_then_spent_on_payment(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000)
    credit(ctx, cid, 500)
    oid = place(ctx, sid, cid, [(pid, 3)], redeem=200)
    with ctx.session() as s:
        order = s.get(Order, oid)
        assert (order.subtotal_fen, order.adjustments_fen, order.total_fen) == (3000, -200, 2800)
        assert [(a.code, a.amount_fen) for a in order.adjustments] == [("loyalty_points", -200)]
    assert balances(ctx, cid) == (300, 0, 200)
    pay(ctx, oid)
    # spent; the order earns on the 28 yuan actually paid
    assert balances(ctx, cid) == (300, 28, 0)
    assert entries(ctx, cid) == [("adjustment", 500, 0, 0), ("hold", -200, 0, 200), ("redeem", 0, 0, -200),
                                 ("earn", 0, 28, 0)]


def test_cancel_and_unpaid_expiry_release_the_hold(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx)
    credit(ctx, cid, 300)
    oid = place(ctx, sid, cid, [(pid, 1)], redeem=100)
    cancel(ctx, oid)
    assert balances(ctx, cid) == (300, 0, 0)
    assert lots(ctx, cid) == [(300, 300)]
    oid2 = place(ctx, sid, cid, [(pid, 1)], redeem=300)
    assert balances(ctx, cid) == (0, 0, 300)
    assert orders.expire_unpaid(ctx, now=utcnow() + dt.timedelta(hours=2)) == 1
    assert balances(ctx, cid) == (300, 0, 0)
    assert [e[0] for e in entries(ctx, cid)] == ["adjustment", "hold", "release", "hold", "release"]
    assert oid2


def test_a_short_balance_refuses_the_order_and_changes_nothing(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx)
    credit(ctx, cid, 99)
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, cid, [(pid, 1)], redeem=100)
    assert refused(err) and "only 99 points" in err.value.detail
    assert balances(ctx, cid) == (99, 0, 0)
    assert order_count(ctx) == 0
    stranger = new_customer(ctx)  # not a member at all
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, stranger, [(pid, 1)], redeem=1)
    assert refused(err)


@pytest.mark.parametrize("redeem, why", [(-5, "whole number"), ("100", "whole number"), (True, "whole number"),
                                         (1001, "at most 1000 points")])
def test_bad_requests_are_refused_naming_redeem_points(make_ctx, redeem, why):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000)
    credit(ctx, cid, 5000)
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, cid, [(pid, 1)], redeem=redeem)
    assert refused(err) and why in err.value.detail
    assert balances(ctx, cid) == (5000, 0, 0)


def test_points_do_not_pay_for_rx_lines_and_need_a_customer(make_ctx):
    ctx = loyalty_ctx(make_ctx, max_redeem_percent=50)
    sid, pid, cid = seed(ctx, price=1000)
    rx = add_product(ctx, sid, price=9000, rx_class="rx")
    credit(ctx, cid, 5000)
    with pytest.raises(ValidationFailed) as err:  # 50% of the 10 yuan OTC line = 500 fen at most
        place(ctx, sid, cid, [(pid, 1), (rx, 1)], redeem=501, channel="store")
    assert refused(err) and "at most 500 points" in err.value.detail
    place(ctx, sid, cid, [(pid, 1), (rx, 1)], redeem=500, channel="store")
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, None, [(pid, 1)], redeem=10, channel="store")
    assert refused(err)
    assert balances(ctx, cid) == (4500, 0, 500)


def test_no_redemption_on_sales_recorded_after_the_fact_or_on_pos(make_ctx):
    ctx = loyalty_ctx(make_ctx, extra=[pos_channel])
    sid, pid, cid = seed(ctx)
    credit(ctx, cid, 500)
    for channel in ("pos", "store"):
        with pytest.raises(ValidationFailed) as err:
            sale(ctx, sid, cid, [(pid, 1)], channel=channel, redeem=100)
        assert refused(err) and "offline POS" in err.value.detail
    with pytest.raises(ValidationFailed) as err:  # a POS channel order placed online-style is refused too
        place(ctx, sid, cid, [(pid, 1)], redeem=100, channel="pos")
    assert refused(err) and "'pos'" in err.value.detail
    assert order_count(ctx) == 0 and balances(ctx, cid) == (500, 0, 0)
    sale(ctx, sid, cid, [(pid, 1)], channel="pos")  # without redemption the sale goes through and earns
    assert balances(ctx, cid) == (500, 10, 0)


def test_the_soonest_expiring_points_are_used_first(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=10_000)
    now = utcnow()
    credit(ctx, cid, 100, now=now - dt.timedelta(days=200))  # expires ~6 months sooner than the next
    credit(ctx, cid, 100, now=now)
    place(ctx, sid, cid, [(pid, 1)], redeem=150)
    assert lots(ctx, cid) == [(100, 0), (100, 50)]


def test_a_hold_released_after_its_lot_expired_does_not_revive_the_points(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx)
    credit(ctx, cid, 100)
    oid = place(ctx, sid, cid, [(pid, 1)], redeem=60)
    with ctx.session() as s:
        expiry = s.scalars(select(PointsLot.expires_at)).one()
    with ctx.transaction() as s:  # the order is cancelled only after the lot's expiry
        services.release(s, settings_of(ctx.config), s.get(Order, oid), "test", now=expiry + dt.timedelta(hours=1))
    assert balances(ctx, cid) == (0, 0, 0)
    assert [e[:2] for e in entries(ctx, cid)][-3:] == [("hold", -60), ("release", 60), ("expire", -100)]


def test_replaying_the_placement_hooks_holds_once(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx)
    credit(ctx, cid, 100)
    oid = place(ctx, sid, cid, [(pid, 1)], redeem=40)
    for _ in range(3):
        with ctx.transaction() as s:
            order = s.get(Order, oid)
            ctx.hook.order_price_adjustments(session=s, order=order, extra={"redeem_points": 40}, caller=CLERK)
            ctx.hook.order_status_changed(session=s, order=order, old_status="awaiting_payment", new_status="cancelled",
                                          caller=CLERK)
    assert balances(ctx, cid) == (100, 0, 0)
    assert [e[0] for e in entries(ctx, cid)] == ["adjustment", "hold", "release"]


def test_racing_redemptions_never_overdraw(make_ctx, db_backend):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000, qty=10)
    credit(ctx, cid, 1000)
    n = 16
    # one product each: the stock locks of a shared product would serialize the orders before the points do
    pids = [pid] + [add_product(ctx, sid, price=1000, qty=10) for _ in range(n - 1)]
    wide = wide_context(ctx, n)

    def redeem(i):
        with wide.transaction() as s:
            order, _ = orders.create_order(wide, s, store_id=sid, customer_id=cid, channel="store",
                                           fulfilment="pickup", lines=[{"product_id": pids[i], "quantity": 1}],
                                           caller=CLERK, extra={"redeem_points": 300})
            return order.id

    try:
        ok, errors = run_threads(n, redeem)
    finally:
        wide.dispose()
    assert len(ok) == 3, f"{db_backend}: {len(ok)} redemptions of 300 succeeded on 1000 points"
    assert len(errors) == n - 3 and all(isinstance(e, ValidationFailed) for e in errors), errors[:3]
    assert balances(ctx, cid) == (100, 0, 900)
    assert order_count(ctx) == 3


def test_points_stay_held_while_an_order_waits_for_review(make_ctx):
    from tests.core.factories import make_plugin
    review = make_plugin("test_review", order_hold=lambda session, order, extra, caller: "pharmacist review")
    ctx = loyalty_ctx(make_ctx, extra=[review])
    sid, pid, cid = seed(ctx)
    credit(ctx, cid, 100)
    held = place(ctx, sid, cid, [(pid, 1)], redeem=60, channel="store")
    rejected = place(ctx, sid, cid, [(pid, 1)], redeem=40, channel="store")
    assert balances(ctx, cid) == (0, 0, 100)
    with ctx.transaction() as s:
        assert s.get(Order, held).status == "awaiting_review"
        orders.approve_hold(ctx, s, held, CLERK, "prescription ok")
    cancel(ctx, rejected)
    pay(ctx, held)
    assert balances(ctx, cid) == (40, 9, 0)  # 60 spent, 40 released; 9.40 yuan paid -> 9 points pending
