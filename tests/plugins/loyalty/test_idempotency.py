"""The same event replayed, or processed by several workers at once, grants points once."""
import datetime as dt

import pytest
from sqlalchemy import func, select

from core.db import utcnow
from core.models import Order
from plugins.loyalty import services
from plugins.loyalty.models import LedgerEntry, LoyaltyMember
from plugins.loyalty.models import LedgerAppendOnly
from plugins.loyalty.settings import settings_of

from .helpers import (CLERK, balances, buy, credit, entries, loyalty_ctx, pay, place, refund, run_threads, sale, seed,
                      wide_context)

WORKERS = 8


def fire(ctx, oid, old, new):
    """Deliver one order event to the plugins again, in its own transaction."""
    with ctx.transaction() as s:
        ctx.hook.order_status_changed(session=s, order=s.get(Order, oid), old_status=old, new_status=new,
                                      caller=CLERK)


def test_replaying_the_payment_event_grants_once(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000)
    credit(ctx, cid, 100)
    oid = place(ctx, sid, cid, [(pid, 2)], redeem=100)
    pay(ctx, oid)
    for _ in range(5):
        fire(ctx, oid, "awaiting_payment", "paid")
    assert balances(ctx, cid) == (0, 19, 0)
    assert [e[0] for e in entries(ctx, cid)] == ["adjustment", "hold", "redeem", "earn"]


def test_replaying_completion_and_vesting_vests_once(make_ctx):
    ctx = loyalty_ctx(make_ctx, return_window_days=3)
    sid, pid, cid = seed(ctx)
    oid = sale(ctx, sid, cid, [(pid, 3)])
    for _ in range(3):
        fire(ctx, oid, "ready", "completed")
    later = utcnow() + dt.timedelta(days=4)
    settings = settings_of(ctx.config)
    assert [services.run_vest(ctx, settings, later)["orders"] for _ in range(3)] == [1, 0, 0]
    assert balances(ctx, cid) == (30, 0, 0)


@pytest.mark.parametrize("first_order", [True, False], ids=["joins-on-this-order", "already-member"])
def test_two_workers_processing_one_payment_grant_once(make_ctx, db_backend, first_order):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000)
    if not first_order:
        credit(ctx, cid, 1)
    core_only = make_ctx(enabled=[], url=ctx.config.database_url)  # the order is paid; the event is not processed
    oid = place(core_only, sid, cid, [(pid, 4)])
    pay(core_only, oid)
    assert balances(ctx, cid) == (None if first_order else (1, 0, 0))
    wide = wide_context(ctx, WORKERS)
    try:
        results, errors = run_threads(WORKERS, lambda i: fire(wide, oid, "awaiting_payment", "paid"))
    finally:
        wide.dispose()
    assert errors == [], f"{db_backend}: {errors[:2]}"
    assert balances(ctx, cid) == (0 if first_order else 1, 40, 0)
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "earn")) == 1
        assert s.scalar(select(func.count()).select_from(LoyaltyMember)) == 1


def test_two_workers_processing_one_refund_claw_back_once(make_ctx, db_backend):
    ctx = loyalty_ctx(make_ctx)
    sid, pid, cid = seed(ctx, price=1000)
    keep = buy(ctx, sid, cid, [(pid, 1)])
    oid = buy(ctx, sid, cid, [(pid, 5)])
    refund(make_ctx(enabled=[], url=ctx.config.database_url), oid)  # refunded; the event is processed below
    assert balances(ctx, cid) == (60, 0, 0)
    wide = wide_context(ctx, WORKERS)
    try:
        results, errors = run_threads(WORKERS, lambda i: fire(wide, oid, "completed", "refunded"))
    finally:
        wide.dispose()
    assert errors == [], f"{db_backend}: {errors[:2]}"
    assert balances(ctx, cid) == (10, 0, 0)
    assert [e[0] for e in entries(ctx, cid)].count("clawback") == 1
    assert keep


def test_the_ledger_is_append_only(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    _sid, _pid, cid = seed(ctx)
    credit(ctx, cid, 10)
    with pytest.raises(LedgerAppendOnly):
        with ctx.transaction() as s:
            s.scalars(select(LedgerEntry)).one().available_delta = 1000
    with pytest.raises(LedgerAppendOnly):
        with ctx.transaction() as s:
            s.delete(s.scalars(select(LedgerEntry)).one())
    assert balances(ctx, cid) == (10, 0, 0)
