"""The append-only tables refuse change in the database itself (issue #10): raw SQL on a plain connection,
bypassing the ORM's guards, cannot UPDATE, DELETE (one row or all) or — on PostgreSQL — TRUNCATE them
(also through TRUNCATE ... CASCADE of a table they reference), and the row is unchanged afterwards.

Which tables, and where their guards come from:

* core (``core_0001`` row triggers, ``core_0003`` TRUNCATE): ``audit_log``, ``stock_movements``, ``order_events``;
* loyalty (``loyalty_0003``): ``loyalty_ledger``;
* wechat_channel (``wechat_channel_0003``): ``wechat_pay_notifications``;
* pos_sync (``pos_sync_0003``): ``pos_price_history``;
* prescription_review (``prescription_review_0002`` row triggers, ``_0003`` TRUNCATE and fixed columns): the
  documents, items, decisions, access log, keys, dispensings and ban lists refuse UPDATE and DELETE; a
  prescription refuses DELETE and any UPDATE of who and what it names (patient, prescriber, number,
  document, order...), a consumption any UPDATE but ``released_at`` — their workflow columns change, through
  the plugin's conditional updates.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from plugins.wechat_channel.models import PayNotification
from tests.plugins.wechat_channel.fake_wechat import FakeWeChat
from tests.plugins.wechat_channel.helpers import API_KEY, APPID, MCH_ID, SECRET

from .hostile_support import Hostile, make_hostile

FULLY_APPEND_ONLY = ["audit_log", "stock_movements", "order_events", "loyalty_ledger", "wechat_pay_notifications",
                     "rx_documents", "rx_prescription_items", "rx_decisions", "rx_access_log", "rx_prescription_keys",
                     "rx_dispensings", "rx_banlists", "pos_price_history"]
#: kept for ever, but their workflow columns change: (table, a recorded column, a workflow column)
NO_DELETE = [("rx_prescriptions", "patient_id_number", "customer_message"),
             ("rx_consumptions", "quantity", "released_at")]
ALL_TABLES = FULLY_APPEND_ONLY + [t for t, _, _ in NO_DELETE]


@pytest.fixture(scope="module")
def h(pharmo2o_databases, tmp_path_factory) -> Hostile:
    fake = FakeWeChat(appid=APPID, secret=SECRET, mch_id=MCH_ID, api_key=API_KEY).start()
    made = make_hostile(pharmo2o_databases, tmp_path_factory.mktemp("append-only"), fake)
    _seed(made)
    yield made
    made.ctx.dispose()
    fake.stop()


def _seed(h: Hostile) -> None:
    """At least one row in every append-only table, made the way the application makes them."""
    api = h.api
    # prescription: upload, approve, pay, hand over (documents, items, decisions, access log, keys,
    # consumptions, dispensings), plus the order's events, stock movements and audit entries
    order_id = h.held_rx_order()
    up = h.upload(order_id)
    assert up.status_code == 201, up.text
    ok = api.post(f"/api/v1/prescriptions/{up.json['id']}/approve", role="pharmacist", json={"note": "ok"})
    assert ok.status_code == 200, ok.text
    assert api.post(f"/api/v1/orders/{order_id}/pay", role="clerk", json={"provider": "cash"}).status_code == 200
    fulfil = api.post(f"/api/v1/orders/{order_id}/fulfil", role="clerk")
    assert fulfil.status_code == 200, fulfil.text
    assert api.get(f"/api/v1/prescriptions/{up.json['id']}", role="pharmacist").status_code == 200
    entry = {"id": "e1", "generic_name_contains": ["麻黄碱"], "reason": "test"}
    ban = api.post("/api/v1/prescriptions/banlist", json={"format": 1, "version": "test-1", "entries": [entry]})
    assert ban.status_code == 201, ban.text
    # loyalty: a member and a manual adjustment (a ledger entry)
    join = api.post(f"/api/v1/members/{api.customer_id}", role="customer")
    assert join.status_code in (200, 201), join.text
    adj = api.post(f"/api/v1/members/{api.customer_id}/adjustments", json={"points": 10, "reason": "goodwill"})
    assert adj.status_code == 201, adj.text
    # pos_sync: the price list as terminals see it (a version per change)
    from plugins.pos_sync import prices
    prices.refresh(h.ctx, force=True)
    # wechat: a verified notification as the plugin records it
    with h.ctx.transaction() as s:
        s.add(PayNotification(out_trade_no="P2O1-1", transaction_id="4200000001", source="notify",
                              verdict="accepted", raw="<xml><return_code>SUCCESS</return_code></xml>"))
    with h.ctx.session() as s:
        empty = [t for t in ALL_TABLES if not s.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()]
    assert empty == [], f"seeding left these tables empty: {empty}"


def _first(conn, table: str) -> tuple:
    return tuple(conn.execute(text(f"SELECT * FROM {table} ORDER BY 1 LIMIT 1")).one())


def _tamper_value(h: Hostile, table: str, skip: set[str] = frozenset()) -> tuple[str, str]:
    """``(column, SQL expression)`` that really changes a column of ``table``."""
    with h.ctx.session() as s:
        columns = inspect(s.connection()).get_columns(table)
    for col in columns:
        name, kind = col["name"], str(col["type"]).upper()
        if name in skip:
            continue
        if any(k in kind for k in ("CHAR", "TEXT")):
            return name, "'tampered'"
        if "INT" in kind and not name.endswith("_id"):
            return name, f"{name} + 1"
    name = next(c["name"] for c in columns if c["name"] not in skip)
    return name, name  # (the row trigger fires on any UPDATE, whatever it sets)


def _refused(h: Hostile, sql: str, params: dict | None = None) -> str:
    engine = h.ctx.engine
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            with pytest.raises(DBAPIError) as err:
                conn.execute(text(sql), params or {})
        finally:
            trans.rollback()
    message = str(err.value.orig)
    return message


@pytest.mark.parametrize("table", FULLY_APPEND_ONLY)
def test_raw_update_and_delete_are_refused_by_the_database(h, table):
    with h.ctx.engine.connect() as conn:
        row = _first(conn, table)
        count = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    id_col = _primary_key(h, table)
    column, value = _tamper_value(h, table, {id_col})
    key = row[_columns(h, table).index(id_col)]
    assert "append-only" in _refused(h, f"UPDATE {table} SET {column} = {value} WHERE {id_col} = :k", {"k": key})
    assert "append-only" in _refused(h, f"UPDATE {table} SET {column} = {column}")
    assert "append-only" in _refused(h, f"DELETE FROM {table} WHERE {id_col} = :k", {"k": key})
    assert "append-only" in _refused(h, f"DELETE FROM {table}")
    with h.ctx.engine.connect() as conn:
        assert _first(conn, table) == row
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == count


def _primary_key(h: Hostile, table: str) -> str:
    with h.ctx.session() as s:
        return inspect(s.connection()).get_pk_constraint(table)["constrained_columns"][0]


def _columns(h: Hostile, table: str) -> list[str]:
    with h.ctx.session() as s:
        return [c["name"] for c in inspect(s.connection()).get_columns(table)]


@pytest.mark.parametrize("table, recorded, workflow", NO_DELETE)
def test_a_kept_record_refuses_delete_and_changes_to_what_it_records(h, table, recorded, workflow):
    with h.ctx.engine.connect() as conn:
        row = _first(conn, table)
    _refused(h, f"DELETE FROM {table} WHERE id = :k", {"k": row[0]})
    _refused(h, f"DELETE FROM {table}")
    value = "'110105194912310029'" if recorded == "patient_id_number" else f"{recorded} + 1"
    _refused(h, f"UPDATE {table} SET {recorded} = {value} WHERE id = :k", {"k": row[0]})
    _refused(h, f"UPDATE {table} SET {workflow} = {workflow}, {recorded} = {recorded} WHERE id = :k", {"k": row[0]})
    with h.ctx.engine.connect() as conn:  # the workflow column alone may change (rolled back here)
        trans = conn.begin()
        new = "'note'" if workflow == "customer_message" else ":at"
        changed = conn.execute(text(f"UPDATE {table} SET {workflow} = {new} WHERE id = :k"),
                               {"k": row[0], "at": dt.datetime.now(dt.timezone.utc)}).rowcount
        trans.rollback()
        assert changed == 1
        assert _first(conn, table) == row


@pytest.mark.parametrize("table", ALL_TABLES)
def test_truncate_is_refused_on_postgresql(h, table, db_backend):
    if db_backend != "postgresql":
        pytest.skip("SQLite has no TRUNCATE: its DELETE without WHERE fires the row triggers (tested above)")
    with h.ctx.engine.connect() as conn:
        count = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    _refused(h, f"TRUNCATE {table}")  # a referenced table may be refused by its foreign keys first
    assert "append-only" in _refused(h, f"TRUNCATE {table} CASCADE")
    with h.ctx.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == count


@pytest.mark.parametrize("parent", ["stores", "products", "orders", "customers", "users"])
def test_truncate_cascade_from_a_referenced_table_is_refused(h, parent, db_backend):
    """TRUNCATE stores CASCADE would empty the movements (and more) that reference it: refused whole."""
    if db_backend != "postgresql":
        pytest.skip("PostgreSQL only (SQLite has no TRUNCATE)")
    before = h.snapshot()
    assert "append-only" in _refused(h, f"TRUNCATE {parent} CASCADE")
    assert h.snapshot() == before


def test_the_orm_guards_still_refuse_first(h):
    """The application's own guard answers before the database's (a clear Python error, not a driver error)."""
    from core.models import AppendOnlyViolation, AuditEntry
    from plugins.loyalty.models import LedgerAppendOnly, LedgerEntry
    from sqlalchemy import select
    for model, error in ((AuditEntry, AppendOnlyViolation), (LedgerEntry, LedgerAppendOnly)):
        with pytest.raises(error):
            with h.ctx.transaction() as s:
                s.delete(s.scalars(select(model).limit(1)).one())
