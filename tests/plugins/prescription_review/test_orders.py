"""Prescription first, then drug, along the order's life: hold, payment re-check, dispensing, reuse."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from core import orders
from core.auth import Caller
from core.errors import Conflict, ValidationFailed
from core.models import AuditEntry, Order
from plugins.prescription_review import services
from plugins.prescription_review.models import Consumption, Dispensing
from plugins.prescription_review.reasons import HOLD_REASON
from plugins.prescription_review.settings import parse

from .helpers import (SHANGHAI, as_token, decide, held, new_customer, order, rx_api, rx_fields,
                      submitted, today, unique_doc, upload)


def _pay(api, oid, role="clerk"):
    total = api.get(f"/api/v1/orders/{oid}").json["total_fen"]
    return api.post(f"/api/v1/orders/{oid}/pay", role=role, json={"provider": "cash", "amount_fen": total})


def _caller(api, role, user_id=None):
    return Caller(role=role, user_id=user_id or api.user_ids[role], store_id=api.store_id, name=role)


def test_rx_orders_are_held_otc_orders_are_not_and_a_held_order_cannot_move_on(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    otc = order(api, [(api.otc, 2)])
    assert otc.status_code == 201 and otc.json["status"] == "awaiting_payment" and otc.json["hold_reasons"] == []
    o = held(api, [(api.rx, 1), (api.otc, 1)])
    assert o["hold_reasons"] == [HOLD_REASON]
    counter = held(api, [(api.rx, 1)], role="clerk", channel="store")  # the counter too: no Rx without review
    assert counter["status"] == "awaiting_review"
    assert _pay(api, o["id"]).status_code == 409
    assert api.post(f"/api/v1/orders/{o['id']}/fulfil", role="clerk").status_code == 409
    with pytest.raises(Conflict, match="wait for a pharmacist"):  # nobody else may release the hold
        with api.ctx.transaction() as s:
            orders.approve_hold(api.ctx, s, o["id"], _caller(api, "store_manager"))
    assert api.get(f"/api/v1/orders/{o['id']}").json["status"] == "awaiting_review"


def test_validity_is_checked_again_at_payment_in_shanghai_time(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 1)])
    issued = today() - dt.timedelta(days=2)
    then = dt.datetime.combine(issued, dt.time(20, 0), SHANGHAI)  # reviewed on the evening of its issue day
    with api.ctx.transaction() as s:
        p, _ = services.submit(api.ctx, s, o["id"], Caller(role="customer", customer_id=api.customer_id),
                               rx_fields([(api.rx, 1)], issue_date=issued), unique_doc(), now=then)
        services.approve(api.ctx, s, p.id, _caller(api, "pharmacist"), now=then + dt.timedelta(minutes=5))
        pid = p.id
    assert api.get(f"/api/v1/orders/{o['id']}").json["status"] == "awaiting_payment"
    r = _pay(api, o["id"])  # two days later: the prescription is no longer valid
    assert r.status_code == 409
    assert f"prescription #{pid} expired on {issued.isoformat()}" in r.json["detail"]
    assert api.get(f"/api/v1/orders/{o['id']}").json["status"] == "awaiting_payment"
    # with the prescriber's extension it is valid three days after issue: payment passes
    o2 = held(api, [(api.rx, 1)])
    with api.ctx.transaction() as s:
        p2, _ = services.submit(api.ctx, s, o2["id"], Caller(role="customer", customer_id=api.customer_id),
                                rx_fields([(api.rx, 1)], issue_date=issued, extension_note="延长3日"),
                                unique_doc(), now=then)
        services.approve(api.ctx, s, p2.id, _caller(api, "pharmacist"), now=then)
    assert _pay(api, o2["id"]).status_code == 200


def test_the_local_day_is_asia_shanghai():
    settings = parse({})
    late_utc = dt.datetime(2026, 11, 25, 16, 30, tzinfo=dt.timezone.utc)  # 00:30 on the 26th in Shanghai
    assert settings.today(late_utc) == dt.date(2026, 11, 26)
    assert parse({"timezone": "UTC"}).today(late_utc) == dt.date(2026, 11, 25)
    fields = rx_fields([(1, 1)], issue_date=dt.date(2026, 11, 25))
    with pytest.raises(ValidationFailed, match="expired"):  # issued the 25th, no extension, now the 26th
        services.parse_submission(fields, settings, settings.today(late_utc))
    assert services.valid_until(settings, dt.date(2026, 11, 25), "延长") == dt.date(2026, 11, 28)
    assert parse({"max_extension_days": 2}).max_extension_days == 2
    with pytest.raises(ValueError, match="unknown key"):
        parse({"max_extention_days": 2})


def test_the_dispenser_is_recorded_and_is_never_the_approving_pharmacist(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o, p = submitted(api)
    assert decide(api, p["id"], "approve").status_code == 200
    assert _pay(api, o["id"]).status_code == 200
    r = api.post(f"/api/v1/orders/{o['id']}/fulfil", role="pharmacist")
    assert r.status_code == 409 and "may not also dispense" in r.json["detail"]
    r = api.post(f"/api/v1/orders/{o['id']}/fulfil", role=None, headers=as_token(api.pharmacist2["token"]))
    assert r.status_code == 200 and r.json["status"] == "ready"
    with api.ctx.session() as s:
        d = s.scalars(select(Dispensing).where(Dispensing.order_id == o["id"])).one()
        assert (d.prescription_id, d.user_id, d.approved_by_user_id) == (
            p["id"], api.pharmacist2["id"], api.user_ids["pharmacist"])
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "prescription.dispense")).one()
        assert entry.after == {"prescription_id": p["id"], "dispensed_by": "user:pharmacist2",
                               "approved_by": "user:pharmacist"}
    # the clerk may dispense another one
    o2, p2 = submitted(api)
    decide(api, p2["id"], "approve")
    _pay(api, o2["id"])
    assert api.post(f"/api/v1/orders/{o2['id']}/fulfil", role="clerk").status_code == 200


def test_validity_is_checked_again_at_dispensing(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o, p = submitted(api)
    assert decide(api, p["id"], "approve").status_code == 200
    assert _pay(api, o["id"]).status_code == 200
    clerk = _caller(api, "clerk")
    with api.ctx.session() as s:
        order_row = s.get(Order, o["id"])
        assert services.dispense_refusal(s, order_row, clerk) is None  # still valid today
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=5)
        refusal = services.dispense_refusal(s, order_row, clerk, now=later)
    assert f"prescription #{p['id']} expired" in refusal and "checked again at dispensing" in refusal


def test_an_approved_prescription_named_on_a_new_order_covers_what_it_has_left(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o1 = held(api, [(api.rx, 2)])
    p = upload(api, o1["id"], items=[(api.rx, 5)]).json
    assert decide(api, p["id"], "approve").status_code == 200
    r = order(api, [(api.rx, 3), (api.otc, 1)], prescription_id=p["id"])
    assert r.status_code == 201 and r.json["status"] == "awaiting_payment" and r.json["hold_reasons"] == []
    o2 = r.json
    r = order(api, [(api.rx, 1)], prescription_id=p["id"])
    assert r.status_code == 422 and "does not cover" in r.json["errors"][0]["message"]
    assert r.json["errors"][0]["field"] == "prescription_id"
    r = order(api, [(api.rx2, 1)], prescription_id=p["id"])
    assert r.status_code == 422 and "substituted" in r.json["errors"][0]["message"]
    # the second order is cancelled unpaid: what it used is free again
    assert api.post(f"/api/v1/orders/{o2['id']}/cancel", role="customer", json={"reason": "重下"}).status_code == 200
    r = order(api, [(api.rx, 1)], prescription_id=p["id"])
    assert r.status_code == 201 and r.json["status"] == "awaiting_payment"
    view = api.get(f"/api/v1/prescriptions/{p['id']}", role="pharmacist").json
    assert view["items"][0]["remaining"] == 2
    with api.ctx.session() as s:
        rows = s.scalars(select(Consumption).where(Consumption.prescription_id == p["id"])
                         .order_by(Consumption.id)).all()
        assert [(c.order_id, c.quantity, c.released_at is not None) for c in rows] == [
            (o1["id"], 2, False), (o2["id"], 3, True), (r.json["id"], 1, False)]
    # someone else's prescription, or one not approved, is refused
    other = new_customer(api)
    r = order(api, [(api.rx, 1)], role=None, headers=as_token(other["token"]), prescription_id=p["id"])
    assert r.status_code == 422 and "another customer" in r.json["errors"][0]["message"]
    o3, pending = submitted(api)
    r = order(api, [(api.rx, 1)], prescription_id=pending["id"])
    assert r.status_code == 422 and "pending, not approved" in r.json["errors"][0]["message"]
    r = order(api, [(api.rx, 1)], prescription_id=999999)
    assert r.status_code == 422 and "does not exist" in r.json["errors"][0]["message"]


def _sale(api, lines, caller, sold_at=None, customer_id=None, **extra):
    """A sale recorded after the fact (the counter, or a POS terminal syncing): ``extra`` as a terminal sends it;
    a sale naming a prescription names its customer (the test customer unless ``customer_id``)."""
    if "prescription_id" in extra and customer_id is None:
        customer_id = api.customer_id
    with api.ctx.transaction() as s:
        o, _short = orders.record_sale(api.ctx, s, store_id=api.store_id, channel="store", caller=caller,
                                       lines=[{"product_id": p, "quantity": q} for p, q in lines],
                                       customer_id=customer_id, extra=extra, sold_at=sold_at)
        return o.id


def test_counter_and_offline_sales_need_a_prescription_approved_online(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    clerk = _caller(api, "clerk")
    assert _sale(api, [(api.otc, 1)], clerk)  # OTC: nothing to check
    with pytest.raises(ValidationFailed, match="prescription review"):
        _sale(api, [(api.rx, 1)], clerk)
    o1 = held(api, [(api.rx, 1)])
    p = upload(api, o1["id"], items=[(api.rx, 3)]).json
    with pytest.raises(ValidationFailed, match="pending, not approved"):
        _sale(api, [(api.rx, 1)], clerk, prescription_id=str(p["id"]))
    decide(api, p["id"], "approve")
    with pytest.raises(Conflict, match="may not also dispense"):  # the approving pharmacist sells it himself
        _sale(api, [(api.rx, 1)], _caller(api, "pharmacist"), prescription_id=str(p["id"]))
    sold = _sale(api, [(api.rx, 2)], clerk, prescription_id=str(p["id"]))  # POS sends the id as text
    with api.ctx.session() as s:
        assert s.get(Order, sold).status == "completed"
        assert s.scalars(select(Dispensing.actor).where(Dispensing.order_id == sold)).one() == "user:clerk"
    with pytest.raises(ValidationFailed, match="does not cover"):
        _sale(api, [(api.rx, 1)], clerk, prescription_id=str(p["id"]))
    # a sale made (offline) after the prescription's validity is refused when it syncs
    o2 = held(api, [(api.rx, 1)])
    p2 = upload(api, o2["id"], items=[(api.rx, 4)]).json
    decide(api, p2["id"], "approve")
    later = dt.datetime.combine(today() + dt.timedelta(days=1), dt.time(9), SHANGHAI)
    with pytest.raises(ValidationFailed, match="not on"):
        _sale(api, [(api.rx, 1)], clerk, prescription_id=p2["id"], sold_at=later.astimezone(dt.timezone.utc))


def test_an_expired_unpaid_approved_order_gives_back_what_it_used(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o, p = submitted(api)
    decide(api, p["id"], "approve")
    assert orders.expire_unpaid(api.ctx, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)) == 1
    with api.ctx.session() as s:
        c = s.scalars(select(Consumption).where(Consumption.order_id == o["id"])).one()
        assert c.released_at is not None
    assert api.get(f"/api/v1/prescriptions/{p['id']}", role="pharmacist").json["items"][0]["remaining"] == 2


def test_without_the_plugin_the_core_refuses_rx_online_and_orders_are_not_held(make_api, tmp_path):
    api = make_api()  # the core alone
    from tests.api.helpers import product, receive
    rx = product(api, rx_class="rx")["id"]
    receive(api, api.store_id, rx, 5)
    r = api.post("/api/v1/orders", role="customer", json={
        "store_id": api.store_id, "channel": "web", "fulfilment": "pickup",
        "lines": [{"product_id": rx, "quantity": 1}]})
    assert r.status_code == 422 and "not enabled" in r.json["detail"]
    r = api.post("/api/v1/orders", role="clerk", json={
        "store_id": api.store_id, "customer_id": api.customer_id, "channel": "store", "fulfilment": "pickup",
        "lines": [{"product_id": rx, "quantity": 1}]})
    assert r.status_code == 201 and r.json["status"] == "awaiting_payment"
    assert api.get("/api/v1/prescriptions", role="pharmacist").status_code == 404


def test_two_sales_racing_for_the_last_covered_unit_one_wins(make_api, tmp_path):
    """Two terminals sell the prescription's last unit from different scanned lots at once: the stock rows
    do not serialize them, the prescription's row lock does (exactly one sale is accepted)."""
    import threading

    from tests.api.helpers import receive
    api = rx_api(make_api, tmp_path)
    receive(api, api.store_id, api.rx, 5, lot_no="LOT-A")
    receive(api, api.store_id, api.rx, 5, lot_no="LOT-B")
    o1 = held(api, [(api.rx, 1)])
    p = upload(api, o1["id"], items=[(api.rx, 2)]).json
    decide(api, p["id"], "approve")  # one unit left
    clerk = _caller(api, "clerk")
    barrier = threading.Barrier(2)
    results = [None, None]

    def go(i):
        barrier.wait()
        try:
            with api.ctx.transaction() as s:
                orders.record_sale(api.ctx, s, store_id=api.store_id, channel="store", caller=clerk,
                                   lines=[{"product_id": api.rx, "quantity": 1, "lot_no": f"LOT-{'AB'[i]}"}],
                                   customer_id=api.customer_id, extra={"prescription_id": str(p["id"])})
            results[i] = "sold"
        except ValidationFailed as exc:
            results[i] = exc.detail

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results, key=str)[1] == "sold" and "does not cover" in sorted(results, key=str)[0], results
    with api.ctx.session() as s:
        used = s.scalars(select(Consumption.quantity).where(Consumption.prescription_id == p["id"],
                                                            Consumption.released_at.is_(None))).all()
    assert sum(used) == 2
