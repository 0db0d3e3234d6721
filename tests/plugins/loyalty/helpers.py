"""Builders and readers shared by the loyalty plugin's tests."""
from __future__ import annotations

from sqlalchemy import func, select

from core import orders
from core.auth import Caller
from core.models import Order
from core.testing import run_threads, wide_context  # noqa: F401 (used by the tests through this module)
from plugins.loyalty import ledger, services
from plugins.loyalty.models import LedgerEntry, LoyaltyMember, PointsLot
from plugins.loyalty.settings import settings_of
from tests.core.factories import ADMIN, customer, make_plugin, product, receive, store

CLERK = Caller(role="clerk", user_id=7, name="clerk1")
ADMIN2 = Caller(role="admin", user_id=2, name="admin2")

#: a POS channel the way a POS plugin registers one (offline)
pos_channel = make_plugin("test_pos_channel", register_sales_channels=lambda: [
    {"name": "pos", "online": False, "label": "offline POS terminal"}])


def loyalty_ctx(make_ctx, enabled=("loyalty",), extra=(), **settings):
    return make_ctx(enabled=list(enabled), extra_plugins=list(extra),
                    settings={f"loyalty.{k}": v for k, v in settings.items()})


def seed(ctx, *, price=1000, qty=100, **product_kw):
    """A store, an OTC-B product at ``price`` fen with stock, a customer: ``(sid, pid, cid)``."""
    with ctx.transaction() as s:
        st, p, c = store(s), product(s, price_fen=price, **product_kw), customer(s)
        receive(ctx, s, st.id, p.id, qty)
        return st.id, p.id, c.id


def add_product(ctx, sid, *, price=1000, qty=100, **kw):
    with ctx.transaction() as s:
        p = product(s, price_fen=price, **kw)
        receive(ctx, s, sid, p.id, qty)
        return p.id


def new_customer(ctx):
    with ctx.transaction() as s:
        return customer(s).id


def place(ctx, sid, cid, lines, *, redeem=None, channel="web", caller=CLERK, **kw):
    """Place an order; ``lines`` is ``[(product_id, qty), ...]``; returns its id."""
    extra = {"redeem_points": redeem} if redeem is not None else None
    with ctx.transaction() as s:
        order, _ = orders.create_order(ctx, s, store_id=sid, customer_id=cid, channel=channel, fulfilment="pickup",
                                       lines=[{"product_id": p, "quantity": q} for p, q in lines], caller=caller,
                                       extra=extra, **kw)
        return order.id


def pay(ctx, oid):
    with ctx.transaction() as s:
        orders.pay(ctx, s, oid, "cash", {}, CLERK)


def complete(ctx, oid):
    with ctx.transaction() as s:
        orders.fulfil(ctx, s, oid, CLERK)
        code = s.get(Order, oid).pickup_code
        orders.complete(ctx, s, oid, CLERK, pickup_code=code)


def buy(ctx, sid, cid, lines, **kw):
    """Place, pay and complete an online order: its points are usable afterwards."""
    oid = place(ctx, sid, cid, lines, **kw)
    pay(ctx, oid)
    complete(ctx, oid)
    return oid


def refund(ctx, oid, reason="customer returned it"):
    with ctx.transaction() as s:
        orders.refund(ctx, s, oid, ADMIN, reason)


def cancel(ctx, oid):
    with ctx.transaction() as s:
        orders.cancel(ctx, s, oid, CLERK, "changed mind")


def sale(ctx, sid, cid, lines, *, channel="store", payments=None, redeem=None, sold_at=None):
    """A sale recorded after the fact (counter/offline POS); returns the order id."""
    extra = {"redeem_points": redeem} if redeem is not None else None
    with ctx.transaction() as s:
        order, _ = orders.record_sale(ctx, s, store_id=sid, channel=channel, customer_id=cid, caller=CLERK,
                                      lines=[{"product_id": p, "quantity": q} for p, q in lines],
                                      payments=payments, extra=extra, sold_at=sold_at)
        return order.id


def credit(ctx, cid, points, caller=ADMIN2, now=None):
    """Give ``cid`` usable points through a staff adjustment."""
    with ctx.transaction() as s:
        services.adjust(s, settings_of(ctx.config), cid, {"points": points, "reason": "test credit"}, caller,
                        now=now)


def balances(ctx, cid):
    """``(available, pending, held)`` of member ``cid`` (``None`` if not a member), after verifying the ledger."""
    with ctx.session() as s:
        assert ledger.verify(s) == [], ledger.verify(s)
        m = s.get(LoyaltyMember, cid)
        return None if m is None else (m.available, m.pending, m.held)


def tier(ctx, cid):
    with ctx.session() as s:
        return s.get(LoyaltyMember, cid).tier


def entries(ctx, cid=None, kind=None):
    """``[(kind, available, pending, held), ...]`` oldest first."""
    with ctx.session() as s:
        q = select(LedgerEntry).order_by(LedgerEntry.id)
        if cid is not None:
            q = q.where(LedgerEntry.customer_id == cid)
        if kind is not None:
            q = q.where(LedgerEntry.kind == kind)
        return [(e.kind, e.available_delta, e.pending_delta, e.held_delta) for e in s.scalars(q)]


def lots(ctx, cid):
    """``[(points, remaining), ...]`` soonest-expiring first."""
    with ctx.session() as s:
        return [(lot.points, lot.remaining) for lot in s.scalars(
            select(PointsLot).where(PointsLot.customer_id == cid).order_by(PointsLot.expires_at, PointsLot.id))]


def order_count(ctx):
    with ctx.session() as s:
        return s.scalar(select(func.count()).select_from(Order))
