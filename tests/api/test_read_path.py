"""The read path of the API: read-only units run without a transaction and refuse to write;
a bearer token is resolved with its user or customer in one statement."""
from __future__ import annotations

import pytest
from sqlalchemy import event, func, select, text

from core.api import tokens
from core.api.middleware import ReadOnlyViolation, read_unit
from core.models import Product, Store


def test_read_unit_reads(ctx):
    with ctx.transaction() as s:
        s.add(Store(code="R1", name="读门店"))
    with read_unit(ctx) as s:
        assert s.scalar(select(Store.name).where(Store.code == "R1")) == "读门店"


def test_read_unit_refuses_orm_and_sql_writes(ctx):
    with read_unit(ctx) as s:
        s.add(Store(code="R2", name="x"))
        with pytest.raises(ReadOnlyViolation):
            s.flush()
    with read_unit(ctx) as s:
        with pytest.raises(ReadOnlyViolation):
            s.execute(text("DELETE FROM stores"))
        with pytest.raises(ReadOnlyViolation):
            s.execute(text("  insert into stores (code, name, address) values ('R3', 'y', '')"))
    with ctx.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Store).where(Store.code.in_(["R2", "R3"]))) == 0


def test_read_unit_opens_no_transaction(ctx):
    seen = []
    listener = lambda conn, cursor, statement, *a: seen.append(statement.split()[0].upper())
    event.listen(ctx.engine, "before_cursor_execute", listener)
    try:
        with read_unit(ctx) as s:
            s.scalar(select(func.count()).select_from(Product))
    finally:
        event.remove(ctx.engine, "before_cursor_execute", listener)
    assert seen == ["SELECT"]  # no BEGIN, no ROLLBACK statement


def test_get_runs_read_only_and_post_still_commits(api):
    created = api.post("/api/v1/stores", json={"code": "RP1", "name": "读写"})
    assert created.status_code == 201, created.text
    got = api.get(f"/api/v1/stores/{created.json['id']}")
    assert got.status_code == 200 and got.json["code"] == "RP1"


def test_token_resolves_to_the_current_role_and_store_in_one_statement(api):
    ctx = api.ctx
    statements = []
    listener = lambda conn, cursor, statement, *a: statements.append(statement)
    with read_unit(ctx) as s:
        event.listen(ctx.engine, "before_cursor_execute", listener)
        try:
            caller, digest = tokens.resolve(s, api.tokens["store_manager"])
        finally:
            event.remove(ctx.engine, "before_cursor_execute", listener)
        assert len(statements) == 1 and digest == tokens.token_hash(api.tokens["store_manager"])
        assert (caller.role, caller.user_id, caller.store_id) == (
            "store_manager", api.user_ids["store_manager"], api.store_id)
        customer, _ = tokens.resolve(s, api.tokens["customer"])
        assert (customer.role, customer.customer_id) == ("customer", api.customer_id)
        assert tokens.resolve(s, "not-a-token") is None
        assert tokens.resolve(s, "x" * 201) is None
