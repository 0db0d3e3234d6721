"""The review: the queue, reading a prescription (logged), claims, who may decide, approve and reject."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from core.models import AuditEntry, OutboxMessage, StockLot
from core.outbox import dispatch
from plugins.prescription_review import services
from plugins.prescription_review.models import (AccessLog, Decision, Prescription, PrescriptionKey,
                                                RecordIsAppendOnly)
from tests.api.helpers import store

from .helpers import (add_pharmacist, as_token, decide, held, licence, new_customer, rx_api, submitted, today,
                      unique_doc, upload)


def _access(api, pid):
    with api.ctx.session() as s:
        return [(a.action, a.actor, a.role) for a in s.scalars(
            select(AccessLog).where(AccessLog.prescription_id == pid).order_by(AccessLog.id))]


def test_the_queue_is_oldest_first_with_waiting_time_and_scoped_to_the_store(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    ids = [submitted(api)[1]["id"] for _ in range(3)]
    with api.ctx.transaction() as s:  # make the first one wait longest (submitted an hour ago)
        s.execute(update(Prescription).where(Prescription.id == ids[0]).values(
            submitted_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)))
    assert decide(api, ids[1], "approve").status_code == 200
    r = api.get("/api/v1/prescriptions", role="pharmacist", params={"status": "pending"})
    assert r.status_code == 200
    items = r.json["items"]
    assert [i["id"] for i in items] == [ids[0], ids[2]]
    assert items[0]["waiting_seconds"] >= 3600 > items[1]["waiting_seconds"]
    assert items[0]["patient_name"] == "王**" and items[0]["rx_lines"] == 1 and items[0]["expired"] is False
    page = api.get("/api/v1/prescriptions", role="pharmacist", params={"status": "pending", "limit": "1"}).json
    assert [i["id"] for i in page["items"]] == [ids[0]]
    nxt = api.get("/api/v1/prescriptions", role="pharmacist",
                  params={"status": "pending", "limit": "1", "cursor": page["next_cursor"]}).json
    assert [i["id"] for i in nxt["items"]] == [ids[2]] and nxt["next_cursor"] is None
    assert [i["id"] for i in api.get("/api/v1/prescriptions", role="pharmacist").json["items"]] == ids
    # another store's pharmacist sees none of them and may not ask for this store
    away = store(api)
    far = add_pharmacist(api, "far", store_id=away["id"])
    assert api.request("GET", "/api/v1/prescriptions", headers=as_token(far["token"])).json["items"] == []
    r = api.request("GET", "/api/v1/prescriptions", headers=as_token(far["token"]),
                    params={"store_id": str(api.store_id)})
    assert r.status_code == 403
    # a pharmacist bound to no store picks one
    roaming = add_pharmacist(api, "roaming")
    api.patch(f"/api/v1/users/{roaming['id']}", json={"store_id": None})
    r = api.request("GET", "/api/v1/prescriptions", headers=as_token(roaming["token"]),
                    params={"store_id": str(away["id"])})
    assert r.status_code == 200 and r.json["items"] == []
    # nobody else reads the queue; a bad status is named
    for role in ("admin", "store_manager", "clerk"):
        assert api.get("/api/v1/prescriptions", role=role).status_code == 403
    r = api.get("/api/v1/prescriptions", role="pharmacist", params={"status": "lost"})
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "status"


def test_customers_list_and_read_only_their_own(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    _o, mine = submitted(api)
    other = new_customer(api)
    o2 = held(api, [(api.rx, 1)], role="clerk", customer_id=other["id"])
    theirs = upload(api, o2["id"], role="clerk").json
    listed = api.get("/api/v1/prescriptions", role="customer").json["items"]
    assert [i["id"] for i in listed] == [mine["id"]]
    r = api.get(f"/api/v1/prescriptions/{theirs['id']}", role="customer")
    assert r.status_code == 404
    assert api.get(f"/api/v1/prescriptions/{theirs['id']}/document", role="customer").status_code == 404
    assert _access(api, theirs["id"]) == []  # a refused read leaves no trace of data shown
    view = api.get(f"/api/v1/prescriptions/{mine['id']}", role="customer").json
    assert view["patient"]["id_number"] == "110***********002X"  # masked for the customer
    assert "decisions" not in view or view["decisions"] is None
    assert "problems" not in view and "claim" not in view and view["decided_by"] is None


def test_every_read_of_a_prescription_or_its_document_is_logged(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    doc = unique_doc()
    _o, p = submitted(api, document=doc)
    pid = p["id"]
    assert _access(api, pid) == []  # the upload answer shows no personal data, so it is not a read
    r = api.get(f"/api/v1/prescriptions/{pid}", role="pharmacist", headers={"X-Request-Id": "req-view-1"})
    assert r.status_code == 200 and r.json["patient"]["id_number"].endswith("002X")
    r = api.get(f"/api/v1/prescriptions/{pid}/document", role="pharmacist")
    assert r.status_code == 200 and r.content == doc
    assert r.headers["content-type"] == "image/jpeg" and r.headers["cache-control"] == "no-store, private"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = api.get(f"/api/v1/prescriptions/{pid}/document", role="customer")
    assert r.status_code == 200 and r.content == doc
    api.get(f"/api/v1/prescriptions/{pid}", role="customer")
    for role in ("admin", "store_manager", "clerk"):  # staff who are not pharmacists never read it
        assert api.get(f"/api/v1/prescriptions/{pid}", role=role).status_code == 403
        assert api.get(f"/api/v1/prescriptions/{pid}/document", role=role).status_code == 403
    assert api.get(f"/api/v1/prescriptions/{pid}", role=None).status_code == 401
    assert _access(api, pid) == [("view", "user:pharmacist", "pharmacist"),
                                 ("document", "user:pharmacist", "pharmacist"),
                                 ("document", "customer:1", "customer"), ("view", "customer:1", "customer")]
    with api.ctx.session() as s:
        first = s.scalars(select(AccessLog).where(AccessLog.prescription_id == pid).order_by(AccessLog.id)).first()
        assert first.request_id == "req-view-1"
    log = api.get(f"/api/v1/prescriptions/{pid}/access-log").json["items"]  # admins audit the log itself
    assert [(a["action"], a["actor"]) for a in log][:2] == [("view", "user:pharmacist"),
                                                           ("document", "user:pharmacist")]
    assert api.get(f"/api/v1/prescriptions/{pid}/access-log", role="pharmacist").status_code == 403


def test_only_a_pharmacist_with_a_current_licence_of_the_store_decides(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    _o, p = submitted(api)
    pid = p["id"]
    for role in ("admin", "store_manager", "clerk", "customer"):
        for action in ("claim", "approve", "reject"):
            r = decide(api, pid, action, role=role)
            assert r.status_code == 403, (role, action, r.json)
    expired = add_pharmacist(api, "expired", "PH-OLD", expiry=today() - dt.timedelta(days=1))
    unlicensed = add_pharmacist(api, "unlicensed", None)
    away = store(api)
    elsewhere = add_pharmacist(api, "elsewhere", "PH-FAR", store_id=away["id"])
    storeless = add_pharmacist(api, "storeless", "PH-NONE")
    api.patch(f"/api/v1/users/{storeless['id']}", json={"store_id": None})
    for who, why in ((expired, "not current"), (unlicensed, "no pharmacist licence"),
                     (elsewhere, f"registered at store {away['id']}"), (storeless, "not registered at a store")):
        for action in ("claim", "approve", "reject"):
            r = decide(api, pid, action, headers=as_token(who["token"]))
            assert r.status_code == 403 and why in r.json["detail"], (who, action, r.json)
    licence(api, expired["id"], "PH-OLD", today())  # expiring today is still current
    r = decide(api, pid, "approve", headers=as_token(expired["token"]))
    assert r.status_code == 200, r.json
    with api.ctx.session() as s:
        d = s.scalars(select(Decision).where(Decision.prescription_id == pid, Decision.action == "approve")).one()
        assert (d.user_id, d.licence_number, d.store_id) == (expired["id"], "PH-OLD", api.store_id)


def test_a_claim_keeps_other_pharmacists_off_until_it_expires(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    _o, p = submitted(api)
    pid = p["id"]
    r = decide(api, pid, "claim")
    assert r.status_code == 200 and r.json["mine"] is True and r.json["actor"] == "user:pharmacist"
    other = as_token(api.pharmacist2["token"])
    r = decide(api, pid, "claim", headers=other)
    assert r.status_code == 409 and r.json["claimed_by"] == "user:pharmacist"
    r = decide(api, pid, "approve", headers=other)
    assert r.status_code == 409 and "being reviewed by user:pharmacist" in r.json["detail"]
    assert decide(api, pid, "claim").status_code == 200  # renewing one's own
    view = api.get(f"/api/v1/prescriptions/{pid}", role=None, headers=other).json
    assert view["claim"]["actor"] == "user:pharmacist" and view["claim"]["mine"] is False
    with api.ctx.transaction() as s:  # the lease ran out
        s.execute(text("UPDATE rx_claims SET expires_at = :t"),
                  {"t": (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)).replace(tzinfo=None)
                   if api.ctx.engine.dialect.name == "sqlite" else
                   dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)})
    r = decide(api, pid, "claim", headers=other)
    assert r.status_code == 200 and r.json["actor"] == "user:pharmacist2"
    r = decide(api, pid, "approve", headers=other)
    assert r.status_code == 200
    assert decide(api, pid, "claim").status_code == 409  # decided: nothing to claim
    with api.ctx.session() as s:
        actions = s.scalars(select(Decision.action).where(Decision.prescription_id == pid)
                            .order_by(Decision.id)).all()
    assert actions == ["submit", "claim", "claim", "claim", "approve"]


def test_approval_releases_the_order_for_payment_and_is_audited(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o, p = submitted(api, [(api.rx, 2), (api.otc, 1)])
    assert api.post(f"/api/v1/orders/{o['id']}/pay", role="clerk",
                    json={"provider": "cash", "amount_fen": o["total_fen"]}).status_code == 409  # still held
    r = decide(api, p["id"], "approve", note="剂量合适")
    assert r.status_code == 200, r.json
    assert r.json["status"] == "approved" and r.json["order"]["status"] == "awaiting_payment"
    assert r.json["items"][0]["remaining"] == 0 and r.json["decided_by"] == "user:pharmacist"
    assert decide(api, p["id"], "approve").status_code == 409
    assert decide(api, p["id"], "reject").status_code == 409
    with api.ctx.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "prescription.approve")).one()
        assert (entry.actor, entry.entity, entry.entity_id) == ("user:pharmacist", "prescription", str(p["id"]))
        assert entry.after["licence_number"] == "PH-0001" and entry.detail == "剂量合适"
        keys = s.scalars(select(PrescriptionKey.key).where(PrescriptionKey.prescription_id == p["id"])).all()
        assert sorted(k.split(":")[0] for k in keys) == ["document", "number"]
        msg = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == services.NOTIFY_KIND)).one()
        assert msg.payload["event"] == "prescription.approved" and msg.payload["customer_id"] == api.customer_id
    r = api.post(f"/api/v1/orders/{o['id']}/pay", role="clerk", json={"provider": "cash", "amount_fen": o["total_fen"]})
    assert r.status_code == 200 and r.json["status"] == "paid"


def test_approval_is_refused_with_reason_codes_when_the_rules_fail(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o, p = submitted(api, [(api.rx, 1)])
    with api.ctx.transaction() as s:  # it was issued three days ago without an extension: now expired
        s.execute(update(Prescription).where(Prescription.id == p["id"]).values(
            issue_date=today() - dt.timedelta(days=3), valid_until=today() - dt.timedelta(days=3)))
    view = api.get(f"/api/v1/prescriptions/{p['id']}", role="pharmacist").json
    assert [x["code"] for x in view["problems"]] == ["expired"] and view["valid_today"] is False
    r = decide(api, p["id"], "approve")
    assert r.status_code == 422 and r.json["reason_codes"] == ["expired"] and "expired" in r.json["detail"]
    r = decide(api, p["id"], "reject", reason_code="expired")
    assert r.status_code == 200 and r.json["customer_message"].startswith("处方已超过有效期")
    assert r.json["order"]["status"] == "cancelled"


def test_rejection_cancels_the_order_releases_stock_notifies_and_allows_a_new_order(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)

    def reserved():
        with api.ctx.session() as s:
            return s.scalar(select(StockLot.reserved).where(StockLot.product_id == api.rx))

    doc = unique_doc()
    o, p = submitted(api, [(api.rx, 3)], document=doc)
    assert reserved() == 3
    r = decide(api, p["id"], "reject", reason_code="not_authentic")
    assert r.status_code == 200
    assert r.json["status"] == "rejected" and r.json["reason_code"] == "not_authentic"
    assert r.json["order"]["status"] == "cancelled" and reserved() == 0
    r = decide(api, p["id"], "reject", reason_code="nonsense")
    assert r.status_code in (409, 422)
    customer_view = api.get(f"/api/v1/prescriptions/{p['id']}", role="customer").json
    assert customer_view["customer_message"] == "无法核实处方的真实性，请提交医疗机构开具的有效处方。"
    assert customer_view["reason_label"] == "Prescription cannot be verified"
    with api.ctx.session() as s:
        msg = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == services.NOTIFY_KIND)).one()
        assert msg.payload["event"] == "prescription.rejected" and msg.payload["order_id"] == o["id"]
        assert msg.payload["text"] == customer_view["customer_message"]
        assert msg.payload["reason_code"] == "not_authentic"
        actions = {e.action for e in s.scalars(select(AuditEntry))}
        assert {"prescription.reject", "order.cancel"} <= actions
    # the customer orders again and resubmits (the same photo, the same number: never approved, so fine)
    o2 = held(api, [(api.rx, 3)])
    r = upload(api, o2["id"], document=doc)
    assert r.status_code == 201, r.json
    # 'other' needs words for the customer; a custom message replaces the standard text
    r = decide(api, r.json["id"], "reject", reason_code="other")
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "message"
    o3 = held(api, [(api.rx, 1)])
    p3 = upload(api, o3["id"]).json
    r = decide(api, p3["id"], "reject", reason_code="inappropriate", message="请先咨询医生确认剂量")
    assert r.json["customer_message"] == "请先咨询医生确认剂量"


def test_rejection_messages_go_out_through_the_outbox_to_whichever_plugin_sends_them(make_api, tmp_path):
    from tests.api.plugins import make_plugin
    sent = []
    channel = make_plugin("fake_channel", notification_senders=lambda: {services.NOTIFY_KIND: sent.append})
    api = rx_api(make_api, tmp_path)
    _o, p = submitted(api)
    decide(api, p["id"], "reject", reason_code="illegible")
    assert dispatch(api.ctx).failed == 1 and sent == []  # no channel plugin enabled: kept and retried
    from core.context import Context
    ctx = Context.create(api.ctx.config, extra_plugins=[channel],
                         enabled=["prescription_review", "fake_channel"])
    try:
        with ctx.transaction() as s:
            s.execute(update(OutboxMessage).values(next_attempt_at=dt.datetime.now(dt.timezone.utc)))
        assert dispatch(ctx).sent == 1
    finally:
        ctx.dispose()
    assert [m["event"] for m in sent] == ["prescription.rejected"]
    assert sent[0]["customer_id"] == api.customer_id and sent[0]["reason_code"] == "illegible"


def test_cancelling_a_held_order_withdraws_its_pending_prescription(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o, p = submitted(api)
    assert api.post(f"/api/v1/orders/{o['id']}/cancel", role="customer", json={"reason": "不要了"}).status_code == 200
    view = api.get(f"/api/v1/prescriptions/{p['id']}", role="pharmacist").json
    assert view["status"] == "withdrawn" and view["decisions"][-1]["action"] == "withdraw"
    assert decide(api, p["id"], "approve").status_code == 409
    queue = api.get("/api/v1/prescriptions", role="pharmacist", params={"status": "pending"}).json["items"]
    assert queue == []


@pytest.mark.parametrize("actions", [("approve", "approve"), ("approve", "reject"), ("reject", "reject")])
def test_two_pharmacists_deciding_at_once_exactly_one_wins(make_api, tmp_path, actions):
    api = rx_api(make_api, tmp_path)
    o, p = submitted(api)
    tokens = [api.tokens["pharmacist"], api.pharmacist2["token"]]
    barrier = threading.Barrier(2)
    results = [None, None]

    def go(i):
        barrier.wait()
        results[i] = decide(api, p["id"], actions[i], headers=as_token(tokens[i]))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 409], [(r.status_code, r.json) for r in results]
    winner = next(i for i, r in enumerate(results) if r.status_code == 200)
    loser = results[1 - winner]
    assert "already" in loser.json["detail"] or "meanwhile" in loser.json["detail"]
    with api.ctx.session() as s:
        decided = s.scalars(select(Decision).where(Decision.prescription_id == p["id"],
                                                   Decision.action.in_(("approve", "reject")))).all()
        assert len(decided) == 1
        assert s.get(Prescription, p["id"]).status == ("approved" if actions[winner] == "approve" else "rejected")
        assert len(s.scalars(select(AuditEntry).where(AuditEntry.action.like("prescription.%"))).all()) == 1
    final = api.get(f"/api/v1/orders/{o['id']}").json["status"]
    assert final == ("awaiting_payment" if actions[winner] == "approve" else "cancelled")


def test_the_conditional_update_alone_refuses_the_second_decision(make_api, tmp_path):
    """The guard is in the SQL (UPDATE ... WHERE status = 'pending'), not only in the checks before it:
    a decider whose checks passed on a stale read still changes nothing."""
    from core.auth import Caller
    from core.errors import Conflict
    from core.models import User
    api = rx_api(make_api, tmp_path)
    _o, p = submitted(api)
    first = Caller(role="pharmacist", user_id=api.user_ids["pharmacist"], store_id=api.store_id, name="pharmacist")
    with api.ctx.transaction() as s1:
        services.reject(api.ctx, s1, p["id"], first, "illegible")
    second = Caller(role="pharmacist", user_id=api.pharmacist2["id"], store_id=api.store_id, name="pharmacist2")
    with pytest.raises(Conflict, match="decided meanwhile"):
        with api.ctx.transaction() as s:
            services._set_status(s, s.get(Prescription, p["id"]), "approved", s.get(User, api.pharmacist2["id"]),
                                 second, dt.datetime.now(dt.timezone.utc))
    with api.ctx.session() as s:
        assert s.get(Prescription, p["id"]).status == "rejected"


def test_the_review_record_is_append_only(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    _o, p = submitted(api)
    assert decide(api, p["id"], "approve").status_code == 200
    with pytest.raises(RecordIsAppendOnly):
        with api.ctx.transaction() as s:
            s.scalars(select(Decision)).first().note = "rewritten"
    with pytest.raises(RecordIsAppendOnly):
        with api.ctx.transaction() as s:
            s.get(Prescription, p["id"]).patient_name = "someone else"
    with pytest.raises(RecordIsAppendOnly):
        with api.ctx.transaction() as s:
            s.delete(s.get(Prescription, p["id"]))
    for sql in ("DELETE FROM rx_prescriptions", "DELETE FROM rx_decisions", "UPDATE rx_decisions SET note = 'x'",
                "DELETE FROM rx_access_log", "UPDATE rx_documents SET size_bytes = 1",
                "DELETE FROM rx_prescription_keys"):
        with pytest.raises(DBAPIError, match="append-only"):
            with api.ctx.engine.begin() as conn:
                conn.execute(text(sql))
    with api.ctx.session() as s:
        assert s.get(Prescription, p["id"]).status == "approved"


def test_purging_the_plugin_refuses_while_prescriptions_are_within_the_retention_period(make_api, tmp_path):
    from core import migrations
    from core.context import Context
    api = rx_api(make_api, tmp_path)
    submitted(api)
    disabled = Context.create(api.ctx.config, enabled=[])
    try:
        with pytest.raises(Exception, match="at least 5 years"):
            migrations.downgrade_plugin(disabled, "prescription_review")
        assert "prescription_review" in migrations.current_branches(disabled)
    finally:
        disabled.dispose()
    with api.ctx.session() as s:
        assert len(s.scalars(select(Prescription)).all()) == 1
