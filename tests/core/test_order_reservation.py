"""Placing an order reserves every line in one locking read (stock.reserve_fefo_many) and builds the
order in memory: the figures of bench/orders.py rest on these staying true."""
import threading

import pytest
from sqlalchemy import event, select

from core import orders, stock
from core.auth import Caller
from core.errors import InsufficientStock
from core.models import Order, OrderAllocation, OrderLine, StockLot, StockMovement
from core.testing import run_threads, wide_context

from .factories import customer, make_plugin, product, receive, store

CLERK = Caller(role="clerk", user_id=7, name="clerk1")


def three_products(ctx):
    """A store and three products: p0 in lots of 2 (soon) and 10 (later), p1 in one lot, p2 in lots of 1, 1, 5."""
    with ctx.transaction() as s:
        st, c = store(s), customer(s)
        ps = [product(s, price_fen=100 * (i + 1)) for i in range(3)]
        receive(ctx, s, st.id, ps[0].id, 10, lot_no="P0-LATE", days=300)
        receive(ctx, s, st.id, ps[0].id, 2, lot_no="P0-SOON", days=30)
        receive(ctx, s, st.id, ps[1].id, 6, lot_no="P1", days=100)
        receive(ctx, s, st.id, ps[2].id, 5, lot_no="P2-C", days=90)
        receive(ctx, s, st.id, ps[2].id, 1, lot_no="P2-A", days=10)
        receive(ctx, s, st.id, ps[2].id, 1, lot_no="P2-B", days=20)
        return st.id, [p.id for p in ps], c.id


def test_reserve_many_is_fefo_per_product_in_the_order_asked(make_ctx):
    seen = []
    ctx = make_ctx(extra_plugins=[make_plugin("observer", stock_movement_recorded=lambda session, movement: seen.append(
        (movement.id, movement.kind, movement.reserved_delta)))])
    sid, (p0, p1, p2), _c = three_products(ctx)
    with ctx.transaction() as s:
        taken = stock.reserve_fefo_many(ctx, s, sid, [(p2, 3, "a"), (p0, 3, "b"), (p1, 1, "c")], order_id=None,
                                        actor="t")
        assert [[(lot.lot_no, q) for lot, q in t] for t in taken] == [
            [("P2-A", 1), ("P2-B", 1), ("P2-C", 1)], [("P0-SOON", 2), ("P0-LATE", 1)], [("P1", 1)]]
    seen = [m for m in seen if m[1] == "reservation"]
    assert len(seen) == 6 and all(mid is not None for mid, _kind, _q in seen)  # flushed before the hook
    assert [q for _m, _k, q in seen] == [1, 1, 1, 2, 1, 1]
    with ctx.session() as s:
        assert stock.verify(s) == []
        assert {lot.lot_no: lot.reserved for lot in s.scalars(select(StockLot))} == {
            "P0-LATE": 1, "P0-SOON": 2, "P1": 1, "P2-A": 1, "P2-B": 1, "P2-C": 1}


def test_reserve_many_refuses_the_first_short_line_and_reserves_nothing(ctx):
    sid, (p0, p1, p2), _c = three_products(ctx)
    with pytest.raises(InsufficientStock) as err:
        with ctx.transaction() as s:
            stock.reserve_fefo_many(ctx, s, sid, [(p0, 12, "lines[0].quantity"), (p1, 7, "lines[1].quantity"),
                                                  (p2, 99, "lines[2].quantity")], order_id=None, actor="t")
    assert err.value.fields == [{"field": "lines[1].quantity", "message": "only 6 available"}]
    with ctx.session() as s:
        assert s.scalars(select(StockMovement.kind).where(StockMovement.kind == "reservation")).all() == []
        assert all(lot.reserved == 0 for lot in s.scalars(select(StockLot)))


def test_a_placed_order_answers_from_memory_what_the_database_holds(ctx):
    sid, (p0, p1, p2), cid = three_products(ctx)
    with ctx.transaction() as s:
        order, created = orders.create_order(ctx, s, store_id=sid, customer_id=cid, channel="store",
                                             fulfilment="pickup", caller=CLERK,
                                             lines=[{"product_id": p0, "quantity": 3}, {"product_id": p2, "quantity": 2},
                                                    {"product_id": p1, "quantity": 1}])
        answered = orders.serialize_order(order)
    assert created and answered["subtotal_fen"] == answered["total_fen"] == 3 * 100 + 2 * 300 + 200
    with ctx.session() as s:
        stored = orders.serialize_order(s.get(Order, order.id))
    assert answered == stored
    assert [[a["lot_no"] for a in line["allocations"]] for line in stored["lines"]] == [
        ["P0-SOON", "P0-LATE"], ["P2-A", "P2-B"], ["P1"]]
    assert stored["status"] == "awaiting_payment" and stored["expires_at"] is not None


def test_placing_a_three_line_order_runs_a_bounded_number_of_statements(ctx):
    """One read of the lots for all lines, one statement per table written: not one round trip per
    line, lot and movement (37 statements per HTTP order before; see bench/orders.py), no read of the
    idempotency key before the write (ON CONFLICT DO NOTHING) and no SAVEPOINT."""
    sid, (p0, p1, p2), cid = three_products(ctx)
    statements = []
    event.listen(ctx.engine, "before_cursor_execute",
                 lambda conn, cur, stmt, params, context, many: statements.append(stmt))
    with ctx.transaction() as s:
        orders.create_order(ctx, s, store_id=sid, customer_id=cid, channel="store", fulfilment="pickup",
                            caller=CLERK, idempotency_key="k-1",
                            lines=[{"product_id": p0, "quantity": 3}, {"product_id": p2, "quantity": 3},
                                   {"product_id": p1, "quantity": 1}])
    # SQLite numbers the rows of a multi-row insert itself (one max(id) read, then one executemany)
    numbering = [q for q in statements if q.startswith("SELECT max(")]
    assert len(numbering) <= (3 if ctx.engine.dialect.name == "sqlite" else 0)
    reads = [q for q in statements if q.lstrip().upper().startswith("SELECT") and q not in numbering]
    assert len([q for q in reads if "FROM stock_lots" in q]) == 1
    assert len([q for q in reads if "FROM products" in q]) == 1  # with the store and the customer
    assert not [q for q in reads if "FROM stores" in q or "FROM customers" in q]
    assert not [q for q in reads if "FROM orders" in q or "FROM order_" in q]  # nothing read back
    assert not [q for q in statements if "SAVEPOINT" in q.upper()]
    # products (store, customer), order, lines, lots, lots update, movements, allocations, event; on
    # PostgreSQL the order goes in with its lines and the lots' update with the movements (CTEs)
    body = [q for q in statements if q.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")
            and q not in numbering]
    assert len(body) <= (8 if ctx.engine.dialect.name == "sqlite" else 6), "\n".join(statements)
    with ctx.session() as s:
        assert s.scalar(select(OrderLine.id).limit(1)) is not None
        assert len(s.scalars(select(OrderAllocation)).all()) == 6


def test_lots_read_before_the_lock_are_read_again_under_it(ctx):
    """A lot loaded earlier in the transaction (unlocked) is refreshed by the locking read, so a
    reservation committed meanwhile by someone else is seen: no overselling from a stale copy."""
    if ctx.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers from BEGIN IMMEDIATE on: no stale copy is possible")
    sid, (p0, _p1, _p2), _c = three_products(ctx)
    with ctx.transaction() as s:
        stale = {lot.lot_no: lot for lot in s.scalars(select(StockLot).where(StockLot.product_id == p0))}
        assert stale["P0-LATE"].reserved == 0

        def other():
            with ctx.transaction() as s2:
                stock.reserve_fefo(ctx, s2, sid, p0, 11, order_id=None, actor="other")
        t = threading.Thread(target=other)
        t.start()
        t.join()
        with pytest.raises(InsufficientStock) as err:
            stock.reserve_fefo(ctx, s, sid, p0, 2, order_id=None, actor="t")
        assert err.value.extra["available"] == 1
    with ctx.session() as s:
        assert stock.verify(s) == []


def test_orders_of_the_same_products_in_opposite_orders_never_deadlock(ctx):
    """Every order locks its lots in (product, expiry) order whatever the order of its lines: two
    checkouts of A+B and B+A wait for each other, never deadlock (PostgreSQL would break one)."""
    with ctx.transaction() as s:
        st, c = store(s), customer(s)
        a, b = product(s), product(s)
        for p in (a, b):
            receive(ctx, s, st.id, p.id, 100, days=50)
            receive(ctx, s, st.id, p.id, 100, days=90)
        sid, cid, ids = st.id, c.id, (a.id, b.id)
    wide = wide_context(ctx, 20)

    def checkout(i):
        first, second = ids if i % 2 else ids[::-1]
        with wide.transaction() as s:
            order, _ = orders.create_order(wide, s, store_id=sid, customer_id=cid, channel="store",
                                           fulfilment="pickup", caller=CLERK,
                                           lines=[{"product_id": first, "quantity": 3},
                                                  {"product_id": second, "quantity": 4}])
            return order.id

    try:
        ok, errors = run_threads(20, checkout)
    finally:
        wide.dispose()
    assert errors == [] and len(ok) == 20
    with ctx.session() as s:
        assert sum(lot.reserved for lot in s.scalars(select(StockLot))) == 20 * 7
        assert stock.verify(s) == []
