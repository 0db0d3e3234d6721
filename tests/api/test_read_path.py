"""The read path of the API: read-only units run without a transaction and refuse to write;
a bearer token is resolved with its user or customer in one statement."""
from __future__ import annotations

import pytest
from sqlalchemy import event, func, select, text

from core.api import tokens
from core.api.middleware import ReadOnlyViolation, read_engine, read_unit
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
    event.listen(read_engine(ctx.engine), "before_cursor_execute", listener)
    try:
        with read_unit(ctx) as s:
            s.scalar(select(func.count()).select_from(Product))
    finally:
        event.remove(read_engine(ctx.engine), "before_cursor_execute", listener)
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
        event.listen(read_engine(ctx.engine), "before_cursor_execute", listener)
        try:
            caller, digest = tokens.resolve(s, api.tokens["store_manager"])
        finally:
            event.remove(read_engine(ctx.engine), "before_cursor_execute", listener)
        assert len(statements) == 1 and digest == tokens.token_hash(api.tokens["store_manager"])
        assert (caller.role, caller.user_id, caller.store_id) == (
            "store_manager", api.user_ids["store_manager"], api.store_id)
        customer, _ = tokens.resolve(s, api.tokens["customer"])
        assert (customer.role, customer.customer_id) == ("customer", api.customer_id)
        assert tokens.resolve(s, "not-a-token") is None
        assert tokens.resolve(s, "x" * 201) is None


def _statements(engine):
    seen = []
    listener = lambda conn, cursor, statement, *a: seen.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    return seen, lambda: event.remove(engine, "before_cursor_execute", listener)


def test_product_read_is_one_statement_on_one_pool_checkout(api):
    """GET /products/{id}: the token with its user and the product in one statement (Prefetch), on
    the one connection the request checked out; no transaction, no statement on the writing engine."""
    created = api.post("/api/v1/products", json={"sku": "RP-1", "generic_name": "布洛芬", "approval_number": "国药准字H10900089",
                                                 "rx_class": "otc_a", "price_fen": 100}).json
    checkouts = []
    on_checkout = lambda *a: checkouts.append(1)  # noqa: E731
    event.listen(api.ctx.engine.pool, "checkout", on_checkout)
    read, stop_read = _statements(read_engine(api.ctx.engine))
    written, stop_written = _statements(api.ctx.engine)
    try:
        got = api.get(f"/api/v1/products/{created['id']}", role="clerk")
        missing = api.get("/api/v1/products/999999", role="clerk")
        refused = api.get(f"/api/v1/products/{created['id']}", role=None,
                          headers={"Authorization": "Bearer not-a-token"})
    finally:
        stop_read(), stop_written()
        event.remove(api.ctx.engine.pool, "checkout", on_checkout)
    assert got.status_code == 200 and got.json == created
    assert missing.status_code == 404 and refused.status_code == 401 and "RP-1" not in refused.text
    assert [s.split()[0].upper() for s in read] == ["SELECT"] * 3 and written == []
    assert all("api_tokens" in s and "products" in s for s in read)
    assert len(checkouts) == 3  # one per request


def test_a_prefetched_product_is_the_same_answer_as_a_read_one(api):
    """Every role and channel gets from the one-statement read what the separate read gives."""
    from core.api.resources import products as resource
    created = api.post("/api/v1/products", json={"sku": "RP-3", "generic_name": "阿莫西林胶囊", "approval_number": "国药准字H10900089",
                                                 "rx_class": "rx", "price_fen": 900, "package_insert": "全文"}).json
    banned = api.post("/api/v1/products", json={"sku": "RP-4", "generic_name": "复方甘草片", "approval_number": "国药准字H10900089",
                                                "rx_class": "otc_a", "price_fen": 300, "online_banned": True}).json
    cases = [(role, pid, channel) for role in ("admin", "clerk", "customer") for pid in (created["id"], banned["id"], 424242)
             for channel in (None, "web", "store")]

    def answers():
        out = []
        for role, pid, channel in cases:
            r = api.get(f"/api/v1/products/{pid}", role=role, params={"channel": channel} if channel else None)
            out.append((r.status_code, r.json if r.status_code == 200 else r.json["type"]))
        return out
    with_prefetch = answers()
    op = resource.ProductItem.on_get.__pharmo2o_operation__
    try:
        object.__setattr__(op, "prefetch", None)
        without = answers()
    finally:
        object.__setattr__(op, "prefetch", resource.PRODUCT_PREFETCH)
    assert with_prefetch == without
    assert {s for s, _ in with_prefetch} == {200, 404, 422}


def test_get_product_attaches_as_if_the_session_had_loaded_it(ctx):
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import object_session

    from core.catalog import get_product
    with ctx.transaction() as s:
        p = Product(sku="RP-2", generic_name="对乙酰氨基酚", approval_number="国药准字H10900089", rx_class="otc_b",
                    price_fen=250)
        s.add(p)
        s.flush()
        pid, updated = p.id, p.updated_at
    with read_unit(ctx) as s:
        product = get_product(s, pid)
        state = sa_inspect(product)
        assert state.persistent and object_session(product) is s and not s.dirty and not state.expired_attributes
        assert (product.sku, product.price_fen, product.rx_class, product.updated_at) == ("RP-2", 250, "otc_b", updated)
        assert product.updated_at.tzinfo is not None
        assert get_product(s, pid) is product and s.get(Product, pid) is product  # the identity map holds it
        assert get_product(s, pid + 1000) is None
        product.price_fen = 1  # a change is a change: refused at flush like any other in a read-only unit
        with pytest.raises(ReadOnlyViolation):
            s.flush()


def test_a_read_only_units_statements_are_checked_on_every_path(ctx):
    """The write refusal sees raw driver SQL and executemany too, and leaves the writing engine alone."""
    with read_unit(ctx) as s:
        conn = s.connection()
        with pytest.raises(ReadOnlyViolation):
            conn.exec_driver_sql("UPDATE stores SET name = 'x'")
        with pytest.raises(ReadOnlyViolation):
            conn.execute(Store.__table__.insert(), [{"code": "M1", "name": "a"}, {"code": "M2", "name": "b"}])
    with ctx.transaction() as s:
        s.add(Store(code="W1", name="写"))
    with ctx.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Store).where(Store.code.in_(["M1", "M2", "W1"]))) == 1


# ------------------------------------------------------------------ hooks called directly

class _Spec:
    from core.hookspecs import hookspec

    @hookspec
    def probe(self, value):
        """A hook for these tests."""


def _registry_with(*plugins):
    from core.plugins import DirectHook, make_plugin_manager
    pm = make_plugin_manager()
    pm.add_hookspecs(_Spec)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"p{i}")
    return pm, DirectHook(pm, "probe")


def test_direct_hook_answers_as_pluggy_does():
    from core.hookspecs import hookimpl

    class A:
        @hookimpl
        def probe(self, value):
            return ("a", value)

    class B:
        @hookimpl(tryfirst=True)
        def probe(self, value):
            return None

    class C:
        @hookimpl(trylast=True)
        def probe(self, value):
            return ("c", value)

    class D:
        @hookimpl
        def probe(self, value):
            return ("d", value)

    pm, direct = _registry_with(A(), B(), C(), D())
    assert direct(value=1) == pm.hook.probe(value=1) == [("d", 1), ("a", 1), ("c", 1)]
    pm.register(type("E", (), {"probe": hookimpl(lambda self, value: ("e", value))})(), name="late")
    assert direct(value=2) == pm.hook.probe(value=2) == [("e", 2), ("d", 2), ("a", 2), ("c", 2)]

    class Boom:
        @hookimpl
        def probe(self, value):
            raise KeyError("boom")

    pm.register(Boom(), name="boom")
    with pytest.raises(KeyError, match="boom"):
        direct(value=3)


def test_direct_hook_leaves_wrappers_and_tracing_to_pluggy():
    from core.hookspecs import hookimpl

    class A:
        @hookimpl
        def probe(self, value):
            return value

    class Wrap:
        @hookimpl(wrapper=True)
        def probe(self, value):
            result = yield
            return [r * 10 for r in result]

    pm, direct = _registry_with(A(), Wrap())
    assert direct(value=2) == pm.hook.probe(value=2) == [20]

    pm2, direct2 = _registry_with(A())
    calls = []
    undo = pm2.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name), lambda *a: None)
    assert direct2(value=5) == [5] and calls == ["probe"]
    undo()
    assert direct2(value=6) == [6] and calls == ["probe"]


def test_the_read_engine_follows_the_engines_pool(ctx):
    """After ctx.engine.dispose() (a new pool), read-only units use the new pool, not the disposed one."""
    ro = read_engine(ctx.engine)
    assert ro.pool is ctx.engine.pool and ro.dialect is ctx.engine.dialect
    ctx.engine.dispose()
    assert ro.pool is ctx.engine.pool
    with read_unit(ctx) as s:
        assert s.scalar(select(func.count()).select_from(Store)) >= 0


def test_token_expiry_and_revocation_are_exact_in_sql(api):
    """The live-token checks run in the statement: valid until the microsecond it expires, never after,
    and a revoked token is refused on its next lookup, product prefetch or not."""
    import datetime as dt

    from core.api.resources.products import PRODUCT_PREFETCH
    from core.models import User
    with api.ctx.transaction() as s:
        issued = tokens.issue_user_token(s, s.get(User, api.user_ids["clerk"]), dt.timedelta(hours=1))
    at, tick = issued.expires_at, dt.timedelta(microseconds=1)
    with read_unit(api.ctx) as s:
        assert tokens.resolve(s, issued.token, now=at - tick) is not None
        assert tokens.resolve(s, issued.token, now=at) is None
        assert tokens.resolve(s, issued.token, now=at + tick) is None
        assert tokens.resolve_with(s, issued.token, PRODUCT_PREFETCH, {"product_id": 1}, now=at) == (None, None)
        assert tokens.resolve_with(s, issued.token, PRODUCT_PREFETCH, {"product_id": 1}, now=at - tick)[0] is not None
    with api.ctx.transaction() as s:
        assert tokens.revoke(s, tokens.token_hash(issued.token))
    with read_unit(api.ctx) as s:
        assert tokens.resolve(s, issued.token, now=at - tick) is None
    r = api.client.simulate_get("/api/v1/products/1", headers={"Authorization": f"Bearer {issued.token}"})
    assert r.status_code == 401
