"""core.bulk's own parts: the JSON rows PostgreSQL's set-based writes send, and objects made
persistent without the unit of work (the POS upload and order placement paths test them end to end)."""
import datetime as dt
import json

import pytest
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import attributes, make_transient_to_detached

from core import bulk
from core.models import OrderAllocation, OrderLine, StockMovement

UTC8 = dt.timezone(dt.timedelta(hours=8))


def movement(created_at):
    return {"store_id": 1, "product_id": 2, "lot_id": 3, "kind": "sale", "on_hand_delta": -1, "reserved_delta": 0,
            "reason": "", "order_id": None, "reference": None, "actor": "pos:1", "created_at": created_at}


def test_json_rows_write_times_as_isoformat_and_refuse_a_naive_one():
    times = [dt.datetime(2026, 11, 25, 21, 40, 41, 705899, tzinfo=dt.timezone.utc),
             dt.datetime(2026, 11, 25, 21, 40, 41, tzinfo=dt.timezone.utc),  # no microseconds
             dt.datetime(2026, 11, 26, 5, 40, 41, 7, tzinfo=UTC8)]
    rows = [movement(t) for t in times]
    written = json.loads(bulk._json_rows(StockMovement.__table__, tuple(rows[0]), rows))
    assert [r["created_at"] for r in written] == [t.isoformat() for t in times]
    assert written[0] == {**movement(None), "created_at": times[0].isoformat()}
    allocation = {"order_line_id": 1, "lot_id": 2, "lot_no": "L1", "expiry": dt.date(2027, 1, 31), "quantity": 3}
    assert json.loads(bulk._json_rows(OrderAllocation.__table__, tuple(allocation), [allocation]))[0]["expiry"] \
        == "2027-01-31"
    naive = [movement(times[0]), movement(dt.datetime(2026, 11, 25, 21, 40))]
    with pytest.raises(ValueError, match="naive datetime .* stock_movements.created_at"):
        bulk._json_rows(StockMovement.__table__, tuple(naive[0]), naive)


def line(**values):
    return bulk.loaded(OrderLine, {"id": 5, "order_id": 1, "product_id": 1, "quantity": 1, "unit_price_fen": 1,
                                   "line_total_fen": 1, "rx_class": "otc_a", "product_name": "x", **values})


def test_an_object_is_made_detached_as_sqlalchemy_would():
    ours, theirs = line(), line()
    bulk._to_detached(ours)
    make_transient_to_detached(theirs)
    a, b = attributes.instance_state(ours), attributes.instance_state(theirs)
    assert a.key == b.key == (OrderLine, (5,), None)
    assert (a.committed_state, a.expired_attributes, a.modified, a.unloaded) == \
        (b.committed_state, b.expired_attributes, b.modified, b.unloaded)
    assert a.unloaded == {"allocations", "order", "product"}  # loaded on first access, as after a query
    with pytest.raises(InvalidRequestError):  # no longer transient: refused, as SQLAlchemy refuses it
        bulk._to_detached(ours)
    ours, theirs = line(id=None), line(id=None)  # no primary key value: the general way, whatever it does
    bulk._to_detached(ours)
    make_transient_to_detached(theirs)
    assert attributes.instance_state(ours).key == attributes.instance_state(theirs).key
