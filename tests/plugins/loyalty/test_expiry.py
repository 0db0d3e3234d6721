"""Expiry by lot: idempotent, safe beside redemptions; the member summary shows what expires soon."""
import datetime as dt

from sqlalchemy import select

from core import orders
from core.db import utcnow
from core.errors import ValidationFailed
from plugins.loyalty import services
from plugins.loyalty.models import PointsLot
from plugins.loyalty.settings import settings_of

from .helpers import (CLERK, add_product, balances, credit, entries, lots, loyalty_ctx, run_threads, seed, wide_context)


def expiries(ctx, cid):
    with ctx.session() as s:
        return list(s.scalars(select(PointsLot.expires_at).where(PointsLot.customer_id == cid)
                              .order_by(PointsLot.expires_at)))


def test_expire_twice_is_the_same_as_once(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    _sid, _pid, cid = seed(ctx)
    now = utcnow()
    credit(ctx, cid, 70, now=now - dt.timedelta(days=200))
    credit(ctx, cid, 30, now=now)
    first, second = expiries(ctx, cid)
    settings = settings_of(ctx.config)
    assert services.run_expire(ctx, settings, first - dt.timedelta(seconds=1)) == {"members": 0, "points": 0}
    assert services.run_expire(ctx, settings, first) == {"members": 1, "points": 70}
    assert services.run_expire(ctx, settings, first + dt.timedelta(days=1)) == {"members": 0, "points": 0}
    assert balances(ctx, cid) == (30, 0, 0)
    assert services.run_expire(ctx, settings, second) == {"members": 1, "points": 30}
    assert services.run_expire(ctx, settings, second) == {"members": 0, "points": 0}
    assert balances(ctx, cid) == (0, 0, 0)
    assert [e[:2] for e in entries(ctx, cid)] == [("adjustment", 70), ("adjustment", 30), ("expire", -70),
                                                  ("expire", -30)]


def test_two_expiry_runs_at_once_expire_once(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    _sid, _pid, cid = seed(ctx)
    credit(ctx, cid, 50)
    at = expiries(ctx, cid)[0]
    wide = wide_context(ctx, 4)
    settings = settings_of(ctx.config)
    try:
        results, errors = run_threads(4, lambda i: services.run_expire(wide, settings, at))
    finally:
        wide.dispose()
    assert errors == []
    assert sorted(r["points"] for r in results) == [0, 0, 0, 50]
    assert balances(ctx, cid) == (0, 0, 0)


def test_expiry_racing_redemptions_never_overdraws(make_ctx, db_backend):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=100_000, qty=10)
    now = utcnow()
    credit(ctx, cid, 500, now=now - dt.timedelta(days=200))  # will expire
    credit(ctx, cid, 300, now=now)  # will not
    soon = expiries(ctx, cid)[0]
    n = 8
    pids = [pid] + [add_product(ctx, sid, price=100_000, qty=10) for _ in range(n - 1)]  # no shared stock lock
    wide = wide_context(ctx, n + 1)
    settings = settings_of(ctx.config)

    def work(i):
        if i == 0:
            return ("expire", services.run_expire(wide, settings, soon)["points"])
        with wide.transaction() as s:
            orders.create_order(wide, s, store_id=sid, customer_id=cid, channel="store", fulfilment="pickup",
                                lines=[{"product_id": pids[i], "quantity": 1}], caller=CLERK,
                                extra={"redeem_points": 200})
        return ("held", 200)

    try:
        results, errors = run_threads(n, work)
    finally:
        wide.dispose()
    assert all(isinstance(e, ValidationFailed) for e in errors), errors
    held = sum(v for k, v in results if k == "held")
    expired = sum(v for k, v in results if k == "expire")
    available, pending, held_now = balances(ctx, cid)  # verifies ledger, balances and lots
    assert available >= 0 and held_now == held and available + held + expired == 800, (db_backend, results)


def test_summary_shows_balances_tier_and_points_expiring_soon(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    _sid, _pid, cid = seed(ctx)
    now = utcnow()
    credit(ctx, cid, 70, now=now - dt.timedelta(days=360))
    credit(ctx, cid, 30, now=now)
    soon = expiries(ctx, cid)[0]
    settings = settings_of(ctx.config)
    with ctx.session() as s:
        view = services.summary(s, settings, cid, within_days=30, now=soon - dt.timedelta(days=10))
        assert (view["available"], view["pending"], view["held"], view["tier"]) == (100, 0, 0, "member")
        assert view["expiring"]["points"] == 70 and view["expiring"]["lots"][0]["expires_at"] == soon.isoformat()
        assert services.summary(s, settings, cid, within_days=5, now=soon - dt.timedelta(days=10))["expiring"]["points"] == 0
        # past expiry, before the job ran: not shown as available
        assert services.summary(s, settings, cid, now=soon + dt.timedelta(hours=1))["available"] == 30
    assert lots(ctx, cid) == [(70, 70), (30, 30)]
