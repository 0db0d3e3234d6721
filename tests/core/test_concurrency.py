"""Races on the last units, on whichever backend the run uses (CI runs both)."""
from sqlalchemy import func, select

from core import orders, stock
from core.errors import InsufficientStock
from core.models import Order
from core.testing import run_threads, wide_context

from .factories import ADMIN, customer, product, receive, store

ATTEMPTS = 60
UNITS = 10


def test_concurrent_checkouts_for_the_last_units_never_oversell(ctx, db_backend):
    with ctx.transaction() as s:
        st, p, c = store(s), product(s), customer(s)
        receive(ctx, s, st.id, p.id, 6, days=40)
        receive(ctx, s, st.id, p.id, UNITS - 6, days=80)
        sid, pid, cid = st.id, p.id, c.id
    wide = wide_context(ctx, ATTEMPTS)

    def checkout(i):
        with wide.transaction() as s:
            order, _ = orders.create_order(wide, s, store_id=sid, customer_id=cid, channel="store",
                                           fulfilment="pickup", lines=[{"product_id": pid, "quantity": 1}],
                                           caller=ADMIN)
            return order.id

    try:
        ok, errors = run_threads(ATTEMPTS, checkout)
    finally:
        wide.dispose()
    assert len(ok) == UNITS, f"{db_backend}: {len(ok)} checkouts succeeded for {UNITS} units"
    assert len(errors) == ATTEMPTS - UNITS
    assert all(isinstance(e, InsufficientStock) for e in errors), {type(e).__name__ for e in errors}
    with ctx.session() as s:
        lots = stock.on_hand(s, sid, pid)
        assert sum(lot.reserved for lot in lots) == UNITS
        assert all(lot.reserved <= lot.on_hand for lot in lots)
        assert s.scalar(select(func.count()).select_from(Order)) == UNITS
        assert stock.verify(s) == []


def test_concurrent_retries_with_one_idempotency_key_make_one_order(ctx):
    with ctx.transaction() as s:
        st, p, c = store(s), product(s), customer(s)
        receive(ctx, s, st.id, p.id, 100)
        sid, pid, cid = st.id, p.id, c.id
    wide = wide_context(ctx, ATTEMPTS)

    def create(i):
        with wide.transaction() as s:
            order, created = orders.create_order(wide, s, store_id=sid, customer_id=cid, channel="store",
                                                 fulfilment="pickup", lines=[{"product_id": pid, "quantity": 2}],
                                                 caller=ADMIN, idempotency_key="retry-me")
            return order.id, created

    try:
        results, errors = run_threads(20, create)
    finally:
        wide.dispose()
    assert errors == []
    assert len({oid for oid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        assert sum(lot.reserved for lot in stock.on_hand(s, sid, pid)) == 2
