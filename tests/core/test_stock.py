import datetime as dt

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from core import stock
from core.errors import InsufficientStock, ValidationFailed
from core.models import AppendOnlyViolation, AuditEntry, StockMovement

from .factories import ADMIN, make_plugin, product, receive, store

TODAY = dt.date.today()


def setup_rows(ctx):
    with ctx.transaction() as s:
        st, p = store(s), product(s)
        return st.id, p.id


def test_receipt_creates_lot_and_movement(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        stock.receive(ctx, s, sid, pid, "A1", TODAY + dt.timedelta(days=200), 12, ADMIN)
        stock.receive(ctx, s, sid, pid, "A1", TODAY + dt.timedelta(days=200), 3, ADMIN)
    with ctx.session() as s:
        [lot] = stock.on_hand(s, sid, pid)
        assert (lot.lot_no, lot.on_hand, lot.reserved) == ("A1", 15, 0)
        kinds = s.scalars(select(StockMovement.kind).order_by(StockMovement.id)).all()
        assert kinds == ["receipt", "receipt"]
        assert stock.verify(s) == []


@pytest.mark.parametrize("kwargs, field", [
    ({"quantity": 0}, "quantity"),
    ({"quantity": -3}, "quantity"),
    ({"lot_no": "  "}, "lot_no"),
    ({"expiry": TODAY}, "expiry"),
    ({"expiry": TODAY - dt.timedelta(days=1)}, "expiry"),
    ({"product_id": 999999}, "product_id"),
])
def test_receipt_refusals_name_the_field(ctx, kwargs, field):
    sid, pid = setup_rows(ctx)
    args = {"store_id": sid, "product_id": pid, "lot_no": "B1", "expiry": TODAY + dt.timedelta(days=30), "quantity": 5}
    args.update(kwargs)
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            stock.receive(ctx, s, caller=ADMIN, **args)
    assert err.value.fields[0]["field"] == field
    with ctx.session() as s:
        assert stock.on_hand(s, sid) == []


def test_same_lot_with_other_expiry_is_refused(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        stock.receive(ctx, s, sid, pid, "C1", TODAY + dt.timedelta(days=30), 5, ADMIN)
    with pytest.raises(ValidationFailed, match="recorded with expiry"):
        with ctx.transaction() as s:
            stock.receive(ctx, s, sid, pid, "C1", TODAY + dt.timedelta(days=31), 5, ADMIN)


def test_fefo_takes_first_expiring_and_never_expired(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        # a lot received last year that has expired on the shelf since
        receive(ctx, s, sid, pid, 50, lot_no="OLD", days=-10, today=TODAY - dt.timedelta(days=400))
        receive(ctx, s, sid, pid, 4, lot_no="LATE", days=300)
        receive(ctx, s, sid, pid, 3, lot_no="SOON", days=20)
    with ctx.transaction() as s:
        taken = stock.reserve_fefo(ctx, s, sid, pid, 5, order_id=None, actor="t")
        assert [(lot.lot_no, q) for lot, q in taken] == [("SOON", 3), ("LATE", 2)]
    with pytest.raises(InsufficientStock) as err:
        with ctx.transaction() as s:
            stock.reserve_fefo(ctx, s, sid, pid, 3, order_id=None, actor="t")
    assert err.value.extra["available"] == 2  # the 50 expired units never count


def test_only_expired_stock_is_not_sellable(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        receive(ctx, s, sid, pid, 10, lot_no="EXP", days=-1, today=TODAY - dt.timedelta(days=30))
    with pytest.raises(InsufficientStock):
        with ctx.transaction() as s:
            stock.reserve_fefo(ctx, s, sid, pid, 1, order_id=None, actor="t")


def test_adjustment_needs_reason_is_audited_and_cannot_go_below_unreserved(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        lot_id = receive(ctx, s, sid, pid, 5).lot_id
        stock.reserve_fefo(ctx, s, sid, pid, 2, order_id=None, actor="t")
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            stock.adjust(ctx, s, sid, lot_id, -1, "  ", ADMIN)
    assert err.value.fields[0]["field"] == "reason"
    with pytest.raises(InsufficientStock):
        with ctx.transaction() as s:
            stock.adjust(ctx, s, sid, lot_id, -4, "broken box", ADMIN)
    with ctx.transaction() as s:
        stock.adjust(ctx, s, sid, lot_id, -3, "broken box", ADMIN)
    with ctx.session() as s:
        [lot] = stock.on_hand(s, sid, pid)
        assert (lot.on_hand, lot.reserved) == (2, 2)
        [entry] = s.scalars(select(AuditEntry).where(AuditEntry.action == "stock.adjust")).all()
        assert entry.before == {"on_hand": 5} and entry.after == {"on_hand": 2}
        assert entry.detail == "broken box" and entry.actor == "user:admin"


def test_adjustment_of_a_lot_of_another_store_is_refused(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        other = store(s).id
        lot_id = receive(ctx, s, sid, pid, 5).lot_id
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            stock.adjust(ctx, s, other, lot_id, 1, "found", ADMIN)
    assert err.value.fields[0]["field"] == "lot_id"


def test_transfer_moves_lot_with_expiry(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        other = store(s).id
        lot_id = receive(ctx, s, sid, pid, 8, lot_no="T1", days=90).lot_id
    with ctx.transaction() as s:
        stock.transfer(ctx, s, sid, lot_id, other, 5, ADMIN)
    with pytest.raises(InsufficientStock):
        with ctx.transaction() as s:
            stock.transfer(ctx, s, sid, lot_id, other, 4, ADMIN)
    with ctx.session() as s:
        [src] = stock.on_hand(s, sid, pid)
        [dst] = stock.on_hand(s, other, pid)
        assert (src.on_hand, dst.on_hand, dst.lot_no, dst.expiry) == (3, 5, "T1", src.expiry)
        assert stock.verify(s) == []


def test_verify_detects_counter_drift(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        lot_id = receive(ctx, s, sid, pid, 8).lot_id
    with ctx.transaction() as s:
        s.execute(text("UPDATE stock_lots SET on_hand = 99 WHERE id = :i"), {"i": lot_id})
    with ctx.session() as s:
        assert stock.verify(s) == [{"lot_id": lot_id, "on_hand": 99, "reserved": 0,
                                    "movements_on_hand": 8, "movements_reserved": 0}]


def test_movements_are_append_only_in_orm_and_database(ctx):
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        mid = receive(ctx, s, sid, pid, 8).id
    with pytest.raises(AppendOnlyViolation):
        with ctx.transaction() as s:
            s.get(StockMovement, mid).reason = "rewritten"
    for sql in ("UPDATE stock_movements SET reason = 'x' WHERE id = :i", "DELETE FROM stock_movements WHERE id = :i",
                "DELETE FROM audit_log WHERE id > :i"):
        with pytest.raises((DBAPIError, IntegrityError)):
            with ctx.transaction() as s:
                s.execute(text(sql), {"i": mid if "stock" in sql else 0})
    with ctx.session() as s:
        assert s.get(StockMovement, mid).reason == ""


def test_hook_stock_movement_recorded(make_ctx):
    seen = []

    def stock_movement_recorded(session, movement):
        seen.append((movement.kind, movement.on_hand_delta, movement.reserved_delta))
        if movement.reason == "veto":
            raise RuntimeError("observer refuses")

    ctx = make_ctx(extra_plugins=[make_plugin("observer", stock_movement_recorded=stock_movement_recorded)])
    sid, pid = setup_rows(ctx)
    with ctx.transaction() as s:
        lot_id = receive(ctx, s, sid, pid, 4).lot_id
        stock.reserve_fefo(ctx, s, sid, pid, 1, order_id=None, actor="t")
    assert seen == [("receipt", 4, 0), ("reservation", 0, 1)]
    with pytest.raises(RuntimeError):
        with ctx.transaction() as s:
            stock.adjust(ctx, s, sid, lot_id, 1, "veto", ADMIN)
    with ctx.session() as s:
        assert stock.on_hand(s, sid, pid)[0].on_hand == 4  # the vetoed change rolled back
