"""core.bulk's own parts: the JSON rows PostgreSQL's set-based writes send, and objects made
persistent without the unit of work (the POS upload and order placement paths test them end to end)."""
import datetime as dt
import json

import pytest
from sqlalchemy.exc import InvalidRequestError, StatementError
from sqlalchemy.orm import attributes, make_transient_to_detached

from core import bulk
from core.models import OrderAllocation, OrderLine, StockMovement

from .factories import store

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


def _audit_row(n):
    return {"at": dt.datetime.now(dt.timezone.utc), "actor": "test", "action": f"pipelined.{n}", "entity": "test",
            "entity_id": str(n), "before": None, "after": {"n": n}, "detail": ""}


def test_pipelined_writes_land_in_order_and_python_goes_on_meanwhile(ctx):
    from core.models import AuditEntry, Store
    from sqlalchemy import select
    with ctx.transaction() as session:
        st = store(session)
        session.flush()
        conn = session.connection()
        with bulk.pipelined(conn) as writes:
            writes.insert(AuditEntry.__table__, [_audit_row(1), _audit_row(2)])
            writes.update(Store.__table__, [{"id": st.id, "name": "改名的门店"}])
            writes.insert(AuditEntry.__table__, [])  # nothing to send
            worked = sum(range(1000))  # Python work while the server works (no statement of its own)
        assert worked == 499500
        got = session.execute(select(AuditEntry.action).where(AuditEntry.action.like("pipelined.%"))
                              .order_by(AuditEntry.id)).scalars().all()
        assert got == ["pipelined.1", "pipelined.2"]
        session.expire_all()
        assert session.get(Store, st.id).name == "改名的门店"


def test_a_failed_pipelined_write_raises_as_sqlalchemy_raises_it(ctx):
    from sqlalchemy.exc import IntegrityError
    from core.models import Store
    with ctx.transaction() as session:
        st = store(session)
        session.flush()
        now = dt.datetime.now(dt.timezone.utc)
        twin = {"code": st.code, "name": "twin", "address": "", "phone": "", "active": True, "created_at": now,
                "updated_at": now}  # the same code: UNIQUE
        savepoint = session.begin_nested()
        with pytest.raises(IntegrityError) as caught:
            with bulk.pipelined(session.connection()) as writes:
                writes.insert(Store.__table__, [twin])
        savepoint.rollback()
        assert "code" in str(caught.value.orig)
        assert session.get(Store, st.id).code == st.code  # the transaction goes on after the SAVEPOINT


def test_a_statement_inside_a_pipelined_block_is_refused_not_left_without_its_result(ctx, db_backend):
    from sqlalchemy import select
    from core.models import Store
    if db_backend != "postgresql":
        pytest.skip("SQLite writes at once: there is no pipeline to misuse")
    with ctx.transaction() as session:
        st = store(session)
        session.flush()
        with pytest.raises(StatementError) as caught:
            with bulk.pipelined(session.connection()):
                session.execute(select(Store.id)).all()  # would have read no rows: refused
        assert isinstance(caught.value.orig, bulk.PipelineMisuse)
        assert session.execute(select(Store.id).where(Store.id == st.id)).scalar_one() == st.id  # usable again


def test_insert_values_stores_what_a_sqlalchemy_insert_stores(ctx):
    """The set-based INSERT (SQLite: the driver's executemany with SQLAlchemy's own bind processors;
    PostgreSQL: one JSON document) stores the same values an ORM or Core insert stores: a time in
    another zone as the same UTC text, JSON with the same content (PostgreSQL's ``json`` keeps the
    text as sent, and the bulk path writes a JSON ``None`` as SQL NULL: read back, both are ``None``)."""
    from sqlalchemy import insert, text
    from core.models import AuditEntry
    table = AuditEntry.__table__
    when = dt.datetime(2026, 11, 26, 8, 30, 15, 123456, tzinfo=UTC8)
    row = {"at": when, "actor": "test", "action": "bulk.same", "entity": "product", "entity_id": None,
           "before": None, "after": {"名称": "布洛芬", "n": [1, 2.5, None, True]}, "detail": "行\n2"}
    with ctx.transaction() as session:
        conn = session.connection()
        bulk.insert_values(conn, table, [dict(row, entity_id="bulk")])
        conn.execute(insert(table), [dict(row, entity_id="core")])
        stored = {r[0]: r[1:] for r in conn.execute(text(
            "SELECT entity_id, CAST(at AS TEXT), actor, action, entity, detail, CAST(before AS TEXT), "
            "CAST(after AS TEXT) FROM audit_log WHERE action = 'bulk.same'"))}
        assert set(stored) == {"bulk", "core"}
        assert stored["bulk"][:5] == stored["core"][:5]  # the time's stored text, the strings
        as_json = [[json.loads(v) if v is not None else None for v in stored[k][5:]] for k in ("bulk", "core")]
        assert as_json[0] == as_json[1] == [None, row["after"]]
        if conn.dialect.name == "sqlite":
            assert stored["bulk"] == stored["core"]  # the very text, through SQLAlchemy's own processors
        back = session.query(AuditEntry).filter_by(action="bulk.same", entity_id="bulk").one()
        assert back.at == when and back.at.utcoffset() == dt.timedelta(0) and back.after == row["after"]
