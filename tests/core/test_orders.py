import datetime as dt

import pytest
from sqlalchemy import event, func, select

from core import orders, stock
from core.auth import Caller, SYSTEM
from core.db import utcnow
from core.errors import Conflict, Forbidden, IdempotencyConflict, IllegalTransition, InsufficientStock, ValidationFailed
from core.models import AuditEntry, Order, OrderEvent, Product, StockLot

from .factories import ADMIN, customer, make_plugin, product, receive, store

CLERK = Caller(role="clerk", user_id=7, name="clerk1")


def seed(ctx, qty=10, **product_kw):
    with ctx.transaction() as s:
        st, p, c = store(s), product(s, **product_kw), customer(s)
        receive(ctx, s, st.id, p.id, qty)
        return st.id, p.id, c.id


def place(ctx, sid, pid, cid, qty=2, caller=CLERK, **kw):
    kw.setdefault("channel", "store")
    kw.setdefault("fulfilment", "pickup")
    with ctx.transaction() as s:
        order, created = orders.create_order(ctx, s, store_id=sid, customer_id=cid,
                                             lines=[{"product_id": pid, "quantity": qty}], caller=caller, **kw)
        return order.id, created


def lot_state(ctx, sid, pid):
    with ctx.session() as s:
        return [(lot.on_hand, lot.reserved) for lot in stock.on_hand(s, sid, pid)]


def status(ctx, oid):
    with ctx.session() as s:
        return s.get(Order, oid).status


def test_pickup_lifecycle_with_stock_and_history(ctx):
    sid, pid, cid = seed(ctx)
    oid, created = place(ctx, sid, pid, cid, qty=3)
    assert created and status(ctx, oid) == "awaiting_payment"
    assert lot_state(ctx, sid, pid) == [(10, 3)]
    with ctx.transaction() as s:
        order = orders.pay(ctx, s, oid, "cash", {"amount_fen": 3000}, CLERK)
        assert order.paid_at is not None and order.payment_reference == f"cash:{oid}"
    assert lot_state(ctx, sid, pid) == [(7, 0)]
    with ctx.transaction() as s:
        assert orders.fulfil(ctx, s, oid, CLERK).status == "ready"
        code = s.get(Order, oid).pickup_code
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            orders.complete(ctx, s, oid, CLERK, pickup_code="000000" if code != "000000" else "111111")
    assert err.value.fields[0]["field"] == "pickup_code"
    with ctx.transaction() as s:
        orders.complete(ctx, s, oid, CLERK, pickup_code=code)
    with ctx.session() as s:
        events = s.scalars(select(OrderEvent.new_status).where(OrderEvent.order_id == oid).order_by(OrderEvent.id)).all()
        assert events == ["awaiting_payment", "paid", "ready", "completed"]
        assert stock.verify(s) == []


def test_delivery_goes_through_dispatched_and_needs_an_address(ctx):
    sid, pid, cid = seed(ctx)
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, pid, cid, fulfilment="delivery")
    assert err.value.fields[0]["field"] == "delivery_address"
    oid, _ = place(ctx, sid, pid, cid, fulfilment="delivery", delivery_address="上海市 1 号")
    with ctx.transaction() as s:
        orders.pay(ctx, s, oid, "manual", {"reference": "bank-1"}, CLERK)
        assert orders.fulfil(ctx, s, oid, CLERK).status == "dispatched"
        assert orders.complete(ctx, s, oid, CLERK).status == "completed"


@pytest.mark.parametrize("start, target", [
    ("awaiting_payment", "ready"), ("awaiting_payment", "completed"), ("awaiting_payment", "refunded"),
    ("paid", "cancelled"), ("paid", "awaiting_payment"),
])
def test_illegal_transitions_are_refused(ctx, start, target):
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid)
    if start == "paid":
        with ctx.transaction() as s:
            orders.pay(ctx, s, oid, "cash", {}, CLERK)
    with pytest.raises(IllegalTransition) as err:
        with ctx.transaction() as s:
            orders.transition(ctx, s, orders.get_order(s, oid), target, CLERK)
    assert err.value.status == 409 and target in err.value.detail
    assert status(ctx, oid) == start


def test_terminal_states_allow_nothing():
    assert orders.TRANSITIONS["cancelled"] == frozenset() and orders.TRANSITIONS["refunded"] == frozenset()
    reachable = set().union(*orders.TRANSITIONS.values())
    assert reachable | {"awaiting_review"} == set(orders.TRANSITIONS)


def test_pay_twice_and_wrong_amount(ctx):
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid)
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            orders.pay(ctx, s, oid, "cash", {"amount_fen": 1}, CLERK)
    assert err.value.fields[0]["field"] == "amount_fen"
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            orders.pay(ctx, s, oid, "bitcoin", {}, CLERK)
    assert err.value.fields[0]["field"] == "provider"
    with pytest.raises(Forbidden):
        with ctx.transaction() as s:
            orders.pay(ctx, s, oid, "cash", {}, Caller(role="customer", customer_id=cid))
    with ctx.transaction() as s:
        orders.pay(ctx, s, oid, "cash", {"reference": "r1"}, CLERK)
    with ctx.transaction() as s:  # the same payment again is a no-op, not a second sale
        orders.pay(ctx, s, oid, "cash", {"reference": "r1"}, CLERK)
    with pytest.raises(IllegalTransition):
        with ctx.transaction() as s:
            orders.pay(ctx, s, oid, "cash", {"reference": "r2"}, CLERK)
    assert lot_state(ctx, sid, pid) == [(8, 0)]


def test_cancel_releases_reservation_and_is_audited(ctx):
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid, qty=4)
    with pytest.raises(ValidationFailed):
        with ctx.transaction() as s:
            orders.cancel(ctx, s, oid, CLERK, "")
    with ctx.transaction() as s:
        orders.cancel(ctx, s, oid, CLERK, "customer changed mind")
    assert lot_state(ctx, sid, pid) == [(10, 0)]
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "order.cancel")) == 1


def test_customer_cannot_cancel_someone_elses_order(ctx):
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid)
    with pytest.raises(Exception) as err:
        with ctx.transaction() as s:
            orders.cancel(ctx, s, oid, Caller(role="customer", customer_id=cid + 1000), "mine now")
    assert err.value.status == 404
    assert status(ctx, oid) == "awaiting_payment"


def test_refund_before_handover_returns_stock_after_handover_does_not(ctx):
    sid, pid, cid = seed(ctx)
    a, _ = place(ctx, sid, pid, cid, qty=2)
    b, _ = place(ctx, sid, pid, cid, qty=3, fulfilment="delivery", delivery_address="x")
    with ctx.transaction() as s:
        orders.pay(ctx, s, a, "cash", {}, CLERK)
        orders.pay(ctx, s, b, "cash", {}, CLERK)
        orders.fulfil(ctx, s, b, CLERK)
        orders.complete(ctx, s, b, CLERK)
    assert lot_state(ctx, sid, pid) == [(5, 0)]
    with ctx.transaction() as s:
        orders.refund(ctx, s, a, ADMIN, "out of stock at counter")
        orders.refund(ctx, s, b, ADMIN, "damaged in delivery")
    assert lot_state(ctx, sid, pid) == [(7, 0)]  # only the undelivered 2 came back
    with ctx.session() as s:
        refunds = s.scalars(select(AuditEntry).where(AuditEntry.action == "order.refund")).all()
        assert sorted(e.before["status"] for e in refunds) == ["completed", "paid"]
        assert stock.verify(s) == []


def test_idempotency_key_same_content_same_order_other_content_conflict(ctx):
    sid, pid, cid = seed(ctx)
    a, created_a = place(ctx, sid, pid, cid, qty=2, idempotency_key="key-1")
    b, created_b = place(ctx, sid, pid, cid, qty=2, idempotency_key="key-1")
    assert a == b and created_a and not created_b
    with pytest.raises(IdempotencyConflict) as err:
        place(ctx, sid, pid, cid, qty=3, idempotency_key="key-1")
    assert err.value.fields[0]["field"] == "Idempotency-Key"
    assert lot_state(ctx, sid, pid) == [(10, 2)]
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1


def test_a_retry_gets_its_order_even_when_the_request_would_no_longer_pass(ctx):
    """The key is not read before the write (INSERT ... ON CONFLICT DO NOTHING): a retry that finds the
    stock gone gets its order from the conflict, one whose product was deactivated since gets it from
    the refusal; other content with the key is still a conflict, and nothing is reserved twice."""
    sid, pid, cid = seed(ctx, qty=2)
    first, created = place(ctx, sid, pid, cid, qty=2, idempotency_key="key-r")
    assert created and lot_state(ctx, sid, pid) == [(2, 2)]
    assert place(ctx, sid, pid, cid, qty=2, idempotency_key="key-r") == (first, False)  # no stock left now
    with ctx.transaction() as s:
        s.get(Product, pid).active = False
    assert place(ctx, sid, pid, cid, qty=2, idempotency_key="key-r") == (first, False)
    with pytest.raises(IdempotencyConflict):
        place(ctx, sid, pid, cid, qty=1, idempotency_key="key-r")
    with pytest.raises(ValidationFailed):
        place(ctx, sid, pid, cid, qty=2, idempotency_key="key-other")
    assert lot_state(ctx, sid, pid) == [(2, 2)]
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        assert stock.verify(s) == []


def test_validation_names_every_bad_field_and_writes_nothing(ctx):
    sid, pid, cid = seed(ctx)
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            orders.create_order(ctx, s, store_id=999, customer_id=cid, channel="fax", fulfilment="drone",
                                lines=[{"product_id": pid, "quantity": 0}, {"product_id": "x", "quantity": 1}],
                                caller=CLERK)
    fields = {e["field"] for e in err.value.fields}
    assert {"store_id", "channel", "fulfilment", "lines[0].quantity", "lines[1].product_id"} <= fields
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            orders.create_order(ctx, s, store_id=sid, channel="store", fulfilment="pickup", caller=CLERK,
                                lines=[{"product_id": pid, "quantity": 1}, {"product_id": pid, "quantity": 1}])
    assert err.value.fields[0]["field"] == "lines[1].product_id"
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0


def test_insufficient_stock_on_second_line_rolls_back_first(ctx):
    sid, pid, cid = seed(ctx, qty=10)
    with ctx.transaction() as s:
        p2 = product(s).id
        receive(ctx, s, sid, p2, 1)
    with pytest.raises(InsufficientStock) as err:
        with ctx.transaction() as s:
            orders.create_order(ctx, s, store_id=sid, customer_id=cid, channel="store", fulfilment="pickup",
                                caller=CLERK, lines=[{"product_id": pid, "quantity": 5}, {"product_id": p2, "quantity": 2}])
    assert err.value.fields[0]["field"] == "lines[1].quantity"
    assert lot_state(ctx, sid, pid) == [(10, 0)]
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0


@pytest.mark.parametrize("kw, fragment", [
    ({"online_banned": True}, "ban list"),
    ({"ephedrine": True}, "ephedrine"),
    ({"rx_class": "rx"}, "prescription"),
])
def test_online_channel_refuses_restricted_products(ctx, kw, fragment):
    sid, pid, cid = seed(ctx, **kw)
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, pid, cid, channel="web", caller=Caller(role="customer", customer_id=cid))
    assert fragment in err.value.detail or "not sold" in err.value.detail
    extra = {"buyer_id_number": "11010519491231002X"} if kw.get("ephedrine") else {}
    oid, _ = place(ctx, sid, pid, cid, channel="store", extra=extra)  # the counter may sell it
    assert status(ctx, oid) == "awaiting_payment"


def test_customer_may_only_order_for_themself(ctx):
    sid, pid, cid = seed(ctx)
    with pytest.raises(Forbidden):
        place(ctx, sid, pid, cid, channel="web", caller=Caller(role="customer", customer_id=cid + 1))


def test_hook_capabilities(make_ctx):
    """With a plugin providing prescription review, Rx may be placed online (and is held)."""
    plugin = make_plugin("rx_reviewer", capabilities=lambda: ["prescription_review"],
                         order_hold=lambda session, order, extra, caller:
                         "prescription review" if any(l.rx_class == "rx" for l in order.lines) else None)
    ctx = make_ctx(extra_plugins=[plugin])
    sid, pid, cid = seed(ctx, rx_class="rx")
    oid, _ = place(ctx, sid, pid, cid, channel="web", caller=Caller(role="customer", customer_id=cid))
    assert status(ctx, oid) == "awaiting_review"


def test_hook_order_hold(make_ctx):
    ctx = make_ctx(extra_plugins=[make_plugin(
        "holder", order_hold=lambda session, order, extra, caller: "needs review")])
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid)
    with ctx.session() as s:
        order = s.get(Order, oid)
        assert (order.status, order.hold_reasons) == ("awaiting_review", ["needs review"])
    with pytest.raises(IllegalTransition):
        with ctx.transaction() as s:
            orders.pay(ctx, s, oid, "cash", {}, CLERK)
    with ctx.transaction() as s:
        orders.approve_hold(ctx, s, oid, Caller(role="pharmacist", user_id=3, name="ph"))
    with ctx.transaction() as s:
        assert orders.pay(ctx, s, oid, "cash", {}, CLERK).status == "paid"


def test_hook_order_validate(make_ctx):
    def order_validate(session, order, extra, caller):
        if sum(line.quantity for line in order.lines) > 3:
            return [("lines", "at most 3 packs per order")]
    ctx = make_ctx(extra_plugins=[make_plugin("limit", order_validate=order_validate)])
    sid, pid, cid = seed(ctx)
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, pid, cid, qty=4)
    assert err.value.fields == [{"field": "lines", "message": "at most 3 packs per order"}]
    assert lot_state(ctx, sid, pid) == [(10, 0)]  # the vetoed order's reservation rolled back
    oid, _ = place(ctx, sid, pid, cid, qty=3)
    assert status(ctx, oid) == "awaiting_payment"


def test_hook_order_request_fields(make_ctx):
    def order_price_adjustments(session, order, extra, caller):
        points = extra.get("redeem_points", 0)
        return [{"code": "points", "label": "积分抵扣", "amount_fen": -points}] if points else None
    plugin = make_plugin("points", order_request_fields=lambda: {"redeem_points": (int, 0)},
                         order_price_adjustments=order_price_adjustments)
    ctx = make_ctx(extra_plugins=[plugin])
    fields = ctx.registry.merged_dict("order_request_fields", "order field")
    assert fields["redeem_points"] == (int, 0) and "buyer_id_number" in fields  # the core's own field too
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid, qty=2, extra={"redeem_points": 500})
    with ctx.session() as s:
        order = s.get(Order, oid)
        assert (order.subtotal_fen, order.adjustments_fen, order.total_fen) == (2000, -500, 1500)
        assert [(a.code, a.amount_fen) for a in order.adjustments] == [("points", -500)]
    with pytest.raises(ValidationFailed, match="exceed"):
        place(ctx, sid, pid, cid, qty=1, extra={"redeem_points": 5000})


def test_hook_order_price_adjustments(make_ctx):
    plugin = make_plugin("fee", order_price_adjustments=lambda session, order, extra, caller:
                         [{"code": "delivery", "label": "配送费", "amount_fen": 600}]
                         if order.fulfilment == "delivery" else None)
    ctx = make_ctx(extra_plugins=[plugin])
    sid, pid, cid = seed(ctx)
    a, _ = place(ctx, sid, pid, cid, qty=1, fulfilment="delivery", delivery_address="x")
    b, _ = place(ctx, sid, pid, cid, qty=1)
    with ctx.session() as s:
        assert (s.get(Order, a).total_fen, s.get(Order, b).total_fen) == (1600, 1000)


def test_hook_order_before_transition(make_ctx):
    def order_before_transition(session, order, old_status, new_status, caller):
        if new_status == "paid" and order.note == "blocked":
            return "prescription expired"
    ctx = make_ctx(extra_plugins=[make_plugin("gate", order_before_transition=order_before_transition)])
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid, note="blocked")
    with pytest.raises(Conflict, match="prescription expired"):
        with ctx.transaction() as s:
            orders.pay(ctx, s, oid, "cash", {}, CLERK)
    assert status(ctx, oid) == "awaiting_payment"
    assert lot_state(ctx, sid, pid) == [(10, 2)]


def test_hook_order_status_changed(make_ctx):
    seen = []
    ctx = make_ctx(extra_plugins=[make_plugin(
        "watch", order_status_changed=lambda session, order, old_status, new_status, caller:
        seen.append((order.id, old_status, new_status, caller.actor)))])
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid)
    with ctx.transaction() as s:
        orders.cancel(ctx, s, oid, CLERK, "test")
    assert seen == [(oid, None, "awaiting_payment", "user:clerk1"), (oid, "awaiting_payment", "cancelled", "user:clerk1")]


def test_expire_unpaid_releases_stock(make_ctx):
    ctx = make_ctx(settings={"orders.unpaid_ttl_minutes": 15})
    sid, pid, cid = seed(ctx)
    old, _ = place(ctx, sid, pid, cid, qty=3)
    fresh, _ = place(ctx, sid, pid, cid, qty=1)
    with ctx.transaction() as s:
        s.get(Order, old).expires_at = utcnow() - dt.timedelta(minutes=1)
    assert orders.expire_unpaid(ctx) == 1
    assert orders.expire_unpaid(ctx) == 0  # idempotent
    assert (status(ctx, old), status(ctx, fresh)) == ("cancelled", "awaiting_payment")
    assert lot_state(ctx, sid, pid) == [(10, 1)]


def test_pickup_code_only_shown_to_the_ordering_customer(ctx):
    sid, pid, cid = seed(ctx)
    oid, _ = place(ctx, sid, pid, cid)
    with ctx.session() as s:
        order = s.get(Order, oid)
        assert len(orders.serialize_order(order, Caller(role="customer", customer_id=cid))["pickup_code"]) == 6
        assert "pickup_code" not in orders.serialize_order(order, CLERK)
        assert "pickup_code" not in orders.serialize_order(order, Caller(role="customer", customer_id=cid + 1))


VALID_ID = "11010519491231002X"


def test_resident_id_check_digit():
    from core.default_plugin import valid_resident_id
    assert valid_resident_id(VALID_ID) and valid_resident_id(VALID_ID.lower())
    assert not valid_resident_id("110105194912310021") and not valid_resident_id("12345")


def test_ephedrine_needs_buyer_id_and_at_most_two_packs(ctx):
    sid, pid, cid = seed(ctx, ephedrine=True)
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, pid, cid, qty=3, extra={"buyer_id_number": "bad"})
    assert {e["field"] for e in err.value.fields} == {"lines", "buyer_id_number"}
    oid, _ = place(ctx, sid, pid, cid, qty=2, extra={"buyer_id_number": VALID_ID})
    with ctx.session() as s:
        assert s.get(Order, oid).extra == {"buyer_id_number": VALID_ID}  # kept for the register


def test_configurable_purchase_limits(make_ctx):
    ctx = make_ctx(settings={"limits.product_units_per_order": 5, "limits.product_units_per_customer_per_day": 6})
    sid, pid, cid = seed(ctx, qty=50)
    with pytest.raises(ValidationFailed) as err:
        place(ctx, sid, pid, cid, qty=6)
    assert err.value.fields[0]["field"] == "lines[0].quantity"
    place(ctx, sid, pid, cid, qty=5)
    with pytest.raises(ValidationFailed, match="per customer per day"):
        place(ctx, sid, pid, cid, qty=2)
    place(ctx, sid, pid, cid, qty=1)


def test_record_sale_takes_stock_fefo_and_reports_shortfall(make_ctx):
    seen = []
    ctx = make_ctx(extra_plugins=[make_plugin(
        "watch2", order_status_changed=lambda session, order, old_status, new_status, caller:
        seen.append((old_status, new_status)))])
    sid, pid, cid = seed(ctx, qty=3)
    with ctx.transaction() as s:
        order, short = orders.record_sale(ctx, s, store_id=sid, channel="store", caller=CLERK, customer_id=cid,
                                          lines=[{"product_id": pid, "quantity": 5, "unit_price_fen": 900}],
                                          payments=[{"method": "cash", "amount_fen": 4500}])
        oid = order.id
        assert (order.status, order.total_fen) == ("completed", 4500)
        assert short == [{"line": 0, "product_id": pid, "short": 2}]
    assert seen == [(None, "paid"), ("paid", "ready"), ("ready", "completed")]
    assert lot_state(ctx, sid, pid) == [(-2, 0)]  # the shelf count is now visibly wrong: a discrepancy
    with ctx.session() as s:
        assert stock.verify(s) == []
        assert s.get(Order, oid).extra["payments"][0]["method"] == "cash"


def test_record_sale_uses_the_scanned_lot(ctx):
    sid, pid, cid = seed(ctx, qty=3)
    with ctx.transaction() as s:
        receive(ctx, s, sid, pid, 4, lot_no="SCANNED", days=700)
    with ctx.transaction() as s:
        order, short = orders.record_sale(ctx, s, store_id=sid, channel="store", caller=CLERK,
                                          lines=[{"product_id": pid, "quantity": 2, "lot_no": "SCANNED"}])
        assert short == [] and [a.lot_no for a in order.lines[0].allocations] == ["SCANNED"]


def test_record_sale_refuses_what_a_plugin_would_hold(make_ctx):
    ctx = make_ctx(extra_plugins=[make_plugin("h2", order_hold=lambda session, order, extra, caller:
                                              None if extra.get("rx_ok") else "no approved prescription")])
    sid, pid, cid = seed(ctx)
    with pytest.raises(ValidationFailed, match="no approved prescription"):
        with ctx.transaction() as s:
            orders.record_sale(ctx, s, store_id=sid, channel="store", caller=CLERK,
                               lines=[{"product_id": pid, "quantity": 1}])
    assert lot_state(ctx, sid, pid) == [(10, 0)]


def _sales(pid, n, **kw):
    return [{"lines": [{"product_id": pid, "quantity": 1, "unit_price_fen": 900}], **kw} for _ in range(n)]


def test_record_sales_refuses_each_bad_sale_alone_naming_its_field(ctx):
    sid, pid, cid = seed(ctx, qty=20)
    with ctx.transaction() as s:
        other = product(s).id
        receive(ctx, s, sid, other, 20)
        gone = product(s, active=False).id
    good = {"lines": [{"product_id": pid, "quantity": 1}, {"product_id": other, "quantity": 2}], "customer_id": cid}
    bad = {
        1: ({"lines": [{"product_id": pid, "quantity": 1}], "customer_id": 999999}, "customer_id"),
        2: ({"lines": [{"product_id": pid, "quantity": 1}, {"product_id": pid, "quantity": 1}]}, "lines[1].product_id"),
        3: ({"lines": [{"product_id": pid, "quantity": 0}]}, "lines[0].quantity"),
        4: ({"lines": [{"product_id": str(pid), "quantity": 1}]}, "lines[0].product_id"),
        5: ({"lines": [{"product_id": pid, "quantity": True}]}, "lines[0].quantity"),
        6: ({"lines": []}, "lines"),
        7: ({"lines": [{"product_id": pid, "quantity": 1, "unit_price_fen": -1}]}, "lines[0].unit_price_fen"),
        8: ({"lines": [{"product_id": pid, "quantity": 1}], "customer_id": [cid]}, "customer_id"),
    }
    for extra_bad in ({}, {9: ({"lines": [{"product_id": gone, "quantity": 1}]}, "lines[0].product_id")}):
        cases = {**bad, **extra_bad}  # with an inactive product in the batch every sale is checked on its own
        sales = [dict(good) if i not in cases else cases[i][0] for i in range(len(cases) + 3)]
        with ctx.transaction() as s:
            done = orders.record_sales(ctx, s, store_id=sid, channel="store", caller=CLERK, sales=sales)
            for i, got in enumerate(done):
                if i in cases:
                    assert isinstance(got, ValidationFailed), (i, got)
                    assert cases[i][1] in [f["field"] for f in got.fields], (i, got.fields)
                else:
                    order, short = got
                    assert (order.status, order.customer_id, short) == ("completed", cid, [])
                    assert [(line.product_id, line.quantity) for line in order.lines] == [(pid, 1), (other, 2)]
    with ctx.session() as s:
        assert stock.verify(s) == []


def test_record_sales_hooks_get_persistent_objects_and_their_changes_are_written(make_ctx):
    from sqlalchemy.orm import object_session
    seen, movements = [], []

    def changed(session, order, old_status, new_status, caller):
        assert object_session(order) is session and order in session and not session.is_modified(order)
        assert len(order.lines) == 1 and order.lines[0].quantity in (1, 2)  # loaded with the order: no query
        written = session.scalar(select(Order.status).where(Order.id == order.id))
        steps = session.scalars(select(OrderEvent.new_status).where(OrderEvent.order_id == order.id)
                                .order_by(OrderEvent.id)).all()
        seen.append((order.id, old_status, new_status, (order.status, written, tuple(steps))))
        if new_status == "completed":
            order.note = f"seen {len(seen)}"  # a hook's change: written as an UPDATE

    def moved(session, movement):
        assert object_session(movement) is session and movement.id is not None
        movements.append((movement.id, movement.order_id, movement.on_hand_delta))

    ctx = make_ctx(extra_plugins=[make_plugin("watch3", order_status_changed=changed),
                                  make_plugin("watch4", stock_movement_recorded=moved)])
    sid, pid, _cid = seed(ctx, qty=100)
    with ctx.transaction() as s:
        done = orders.record_sales(ctx, s, store_id=sid, channel="store", caller=CLERK,
                                   sales=[{"lines": [{"product_id": pid, "quantity": 2}]} for _ in range(3)])
        ids = [order.id for order, _short in done]
        assert [a.quantity for order, _ in done for a in order.lines[0].allocations] == [2, 2, 2]
    # every step's hooks ran, in order, for every sale: the order showing the step, its row and
    # events already where the sale ends (written completed at once, with its three events)
    assert [(o, old, new) for o, old, new, _db in seen] == [
        (oid, old, new) for old, new in ((None, "paid"), ("paid", "ready"), ("ready", "completed")) for oid in ids]
    assert all(db == (new, "completed", ("paid", "ready", "completed")) for _o, _old, new, db in seen)
    assert sorted((o, d) for _m, o, d in movements if o is not None) == [(oid, -2) for oid in ids]
    with ctx.session() as s:
        rows = {o.id: o for o in s.scalars(select(Order).where(Order.id.in_(ids)))}
        assert [rows[oid].note for oid in ids] == ["seen 7", "seen 8", "seen 9"]
        assert all(rows[oid].status == "completed" for oid in ids)
        events = s.execute(select(OrderEvent.order_id, OrderEvent.old_status, OrderEvent.new_status)
                           .where(OrderEvent.order_id.in_(ids)).order_by(OrderEvent.id)).all()
        assert sorted(map(str, events)) == sorted(str((oid, old, new)) for oid in ids for old, new in
                                                  ((None, "paid"), ("paid", "ready"), ("ready", "completed")))
        assert stock.verify(s) == [] and lot_state(ctx, sid, pid) == [(94, 0)]



def test_record_sales_statements_do_not_grow_with_the_batch(make_ctx):
    ctx = make_ctx(enabled=["loyalty", "prescription_review", "wechat_channel"])
    sid, pid, cid = seed(ctx, qty=100)

    def statements(n):
        count = [0]
        with ctx.transaction() as s:
            def tick(*_a, **_k):
                count[0] += 1
            event.listen(s.connection(), "before_cursor_execute", tick)
            done = orders.record_sales(ctx, s, store_id=sid, channel="store", caller=CLERK,
                                       sales=[{"lines": [{"product_id": pid, "quantity": 1}]} for _ in range(n)])
            assert all(order.status == "completed" for order, _short in done)
        return count[0]

    statements(1)  # caches warmed (sequence names, ban list)
    assert statements(2) == statements(10) <= 20
