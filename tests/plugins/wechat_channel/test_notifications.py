"""Template messages: queued in the order's transaction, sent from the outbox after commit, retried with backoff,
never twice for one (order, event); the shared access token refreshed once when WeChat rejects it."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select, update

from core import orders
from core.auth import Caller
from core.models import OutboxMessage
from plugins.wechat_channel.models import Follower, TemplateSend

from .helpers import event_message, post_push, push

CLERK = Caller(role="clerk", user_id=99, name="clerk")


def sent(fake) -> list[tuple[str, str]]:
    return [(t["template_id"], t["touser"]) for t in fake.templates]


def send_rows(ctx) -> dict[str, tuple]:
    with ctx.session() as s:
        return {r.dedupe_key.split(":")[1]: (r.status, r.last_error) for r in s.scalars(select(TemplateSend))}


def paid_order(wx) -> dict:
    order = wx.order()
    pay = wx.wechat_pay(order["id"]).json
    wx.notify(wx.fake.notification(pay["out_trade_no"]))
    return order


def test_order_events_send_their_template_once(wx):
    order = paid_order(wx)
    assert wx.fake.templates == []  # nothing leaves before the dispatcher runs, after commit
    assert wx.dispatch().sent == 1
    first = wx.fake.templates[0]
    assert (first["template_id"], first["touser"]) == ("TPL-PAID", "o-customer-1")
    assert first["url"] == f"https://shop.example.com/h5/#/orders/{order['id']}"
    assert first["data"]["keyword2"]["value"] == "¥25.00"
    wx.api.post(f"/api/v1/orders/{order['id']}/fulfil", role="clerk")
    wx.dispatch()
    ready = wx.fake.templates[1]
    code = wx.order_row(order["id"]).pickup_code
    assert ready["template_id"] == "TPL-READY" and ready["data"]["keyword2"]["value"] == f"取货码 {code}"
    assert wx.dispatch().sent == 0 and len(wx.fake.templates) == 2
    # at-least-once delivery hands a message over again (a dispatcher died after sending): not sent twice
    with wx.ctx.transaction() as s:
        s.execute(update(OutboxMessage).values(status="pending", next_attempt_at=OutboxMessage.created_at))
    assert wx.dispatch().sent == 2
    assert sent(wx.fake) == [("TPL-PAID", "o-customer-1"), ("TPL-READY", "o-customer-1")]
    assert send_rows(wx.ctx) == {"paid": ("sent", None), "ready": ("sent", None)}


def test_delivery_orders_get_the_dispatched_message(wx):
    order = wx.order(fulfilment="delivery")
    wx.notify(wx.fake.notification(wx.wechat_pay(order["id"]).json["out_trade_no"]))
    wx.api.post(f"/api/v1/orders/{order['id']}/fulfil", role="clerk")
    wx.dispatch()
    assert [t for t, _ in sent(wx.fake)] == ["TPL-PAID", "TPL-SHIP"]
    assert wx.fake.templates[1]["data"]["keyword2"]["value"] == "上海市黄浦区南京东路1号"


def test_a_rolled_back_order_sends_nothing(wx):
    with pytest.raises(RuntimeError):
        with wx.ctx.transaction() as s:
            orders.pay(wx.ctx, s, wx.order()["id"], "cash", {}, CLERK)
            raise RuntimeError("the request failed after the change")
    wx.dispatch()
    assert wx.fake.templates == []


def test_counter_orders_and_customers_without_wechat_get_none(wx):
    order = wx.order(role="clerk", customer_id=wx.api.customer_id, channel="store")
    wx.api.post(f"/api/v1/orders/{order['id']}/pay", role="clerk", json={"provider": "cash"})
    wx.dispatch()
    assert wx.fake.templates == []


def test_an_unsubscribed_follower_is_skipped_not_retried(wx):
    post_push(wx.api, push(event_message("o-customer-1", "unsubscribe")))
    paid_order(wx)
    assert wx.dispatch().sent == 1
    assert wx.fake.templates == [] and send_rows(wx.ctx) == {"paid": ("skipped", "unsubscribed")}


def test_a_rejected_token_is_refreshed_once_and_the_message_sent(wx):
    paid_order(wx)
    wx.dispatch()
    assert wx.fake.token_fetches == 1
    wx.fake.revoke_tokens()  # e.g. someone fetched a token with the same AppSecret elsewhere
    wx.api.post(f"/api/v1/orders/{wx.fake.templates[0]['url'].rsplit('/', 1)[1]}/fulfil", role="clerk")
    assert wx.dispatch().sent == 1
    assert wx.fake.token_fetches == 2 and len(wx.fake.templates) == 2


def test_a_token_wechat_keeps_rejecting_is_retried_later_not_in_a_loop(wx, monkeypatch):
    paid_order(wx)
    monkeypatch.setattr(wx.fake, "_token", _always_rejected_token(wx.fake))
    result = wx.dispatch()
    assert (result.sent, result.failed) == (0, 1)
    assert wx.fake.token_fetches == 2  # the first token, and one refresh: then give up for this attempt
    assert send_rows(wx.ctx)["paid"][0] == "failed"
    with wx.ctx.session() as s:
        msg = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "wechat.template")).one()
        assert msg.status == "pending" and msg.attempts == 1 and "40001" in msg.last_error


def _always_rejected_token(fake):
    original = fake._token

    def token(q, body):
        answer = original(q, body)
        fake.revoke_tokens()
        return answer
    return token


def test_no_answer_after_sending_is_never_resent(make_wx):
    wx = make_wx(timeout_seconds=0.5)
    paid_order(wx)
    wx.fake.template_hang = 1.0  # WeChat received it but the answer never came in time
    assert wx.dispatch().sent == 1
    assert send_rows(wx.ctx)["paid"][0] == "unknown"
    wx.fake.template_hang = 0
    with wx.ctx.transaction() as s:
        s.execute(update(OutboxMessage).values(status="pending", next_attempt_at=OutboxMessage.created_at))
    wx.dispatch()
    deadline = time.monotonic() + 5
    while not wx.fake.templates and time.monotonic() < deadline:  # WeChat finishes the slow one
        time.sleep(0.05)
    assert len(wx.fake.templates) == 1  # the one WeChat got late, never a second


def test_permanent_wechat_refusals_are_not_retried(wx):
    paid_order(wx)
    wx.dispatch()  # fetch a token first
    wx.fake.template_errors.append({"errcode": 43004, "errmsg": "require subscribe"})
    wx.api.post(f"/api/v1/orders/{wx.fake.templates[0]['url'].rsplit('/', 1)[1]}/fulfil", role="clerk")
    assert wx.dispatch().sent == 1
    assert send_rows(wx.ctx)["ready"] == ("skipped", "43004: the user does not follow the account")
    wx.fake.template_errors.append({"errcode": 45047, "errmsg": "out of response count limit"})
    with wx.ctx.transaction() as s:
        s.execute(update(TemplateSend).where(TemplateSend.event == "ready").values(status="failed"))
        s.execute(update(OutboxMessage).values(status="pending", next_attempt_at=OutboxMessage.created_at))
    result = wx.dispatch()
    assert result.failed == 1 and send_rows(wx.ctx)["ready"][0] == "failed"  # a transient error: retried later


def test_a_follower_row_is_not_needed(wx):
    with wx.ctx.session() as s:
        assert s.get(Follower, "o-customer-1") is None
    paid_order(wx)
    wx.dispatch()
    assert len(wx.fake.templates) == 1


# ------------------------------------------------------------------ prescription decisions

def upload_prescription(wx, order_id, rx_id):
    """The customer's multipart upload to prescription_review, as the H5 page sends it."""
    import datetime as dt
    import json

    import requests
    from .test_h5_browser import png
    today = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=8)).date().isoformat()
    prepared = requests.Request("POST", "http://x/", files={"document": ("rx.png", png(order_id), "image/png")}, data={
        "patient_name": "张三", "patient_id_number": "11010519491231002X", "relationship": "self",
        "prescriber": "李医生", "institution": "上海市第一人民医院", "prescription_number": f"RX-{order_id}",
        "issue_date": today, "items": json.dumps([{"product_id": rx_id, "quantity": 1}])}).prepare()
    r = wx.api.client.simulate_post(f"/api/v1/orders/{order_id}/prescription", body=prepared.body, headers={
        **wx.api.headers("customer"), "Content-Type": prepared.headers["Content-Type"]})
    assert r.status_code == 201, r.json
    return r.json["id"]


def licensed(wx):
    import datetime as dt
    r = wx.api.patch(f"/api/v1/users/{wx.api.user_ids['pharmacist']}", json={
        "licence_number": "执业药师0001", "licence_expiry": (dt.date.today() + dt.timedelta(days=90)).isoformat()})
    assert r.status_code == 200, r.json


def test_prescription_decisions_arrive_as_review_templates_with_the_pharmacists_words(make_wx):
    from tests.api.helpers import product, receive
    wx = make_wx(enabled=["wechat_channel", "prescription_review"])
    rx = product(wx.api, rx_class="rx", generic_name="阿莫西林胶囊", price_fen=3000)
    receive(wx.api, wx.api.store_id, rx["id"], 10)
    licensed(wx)
    approved, rejected = wx.order([(rx["id"], 1)]), wx.order([(rx["id"], 1)])
    p1, p2 = upload_prescription(wx, approved["id"], rx["id"]), upload_prescription(wx, rejected["id"], rx["id"])
    assert wx.api.post(f"/api/v1/prescriptions/{p1}/approve", role="pharmacist", json={}).status_code == 200
    r = wx.api.post(f"/api/v1/prescriptions/{p2}/reject", role="pharmacist",
                    json={"reason_code": "illegible", "message": "照片模糊，请重新拍摄"})
    assert r.status_code == 200, r.json
    wx.dispatch()
    by_order = {int(t["url"].rsplit("/", 1)[1]): t for t in wx.fake.templates}
    assert by_order[approved["id"]]["template_id"] == "TPL-RXOK"
    assert by_order[rejected["id"]]["template_id"] == "TPL-RXNO"
    assert by_order[rejected["id"]]["data"]["keyword2"]["value"] == "照片模糊，请重新拍摄"
    assert len(wx.fake.templates) == 2  # the status changes did not send a second copy
    with wx.ctx.session() as s:
        kinds = sorted(m.kind for m in s.scalars(select(OutboxMessage)))
    assert kinds == ["customer.notify", "customer.notify"]


def test_without_a_review_plugin_that_notifies_the_status_changes_send_them(make_wx):
    from tests.core.factories import make_plugin
    held = make_plugin("manual_review", order_hold=lambda session, order, extra, caller: "manual review")
    wx = make_wx(extra_plugins=[held])
    first, second = wx.order(), wx.order()
    with wx.ctx.transaction() as s:
        orders.approve_hold(wx.ctx, s, first["id"], CLERK, reason="checked")
        orders.cancel(wx.ctx, s, second["id"], CLERK, "处方与订单不符")
    wx.dispatch()
    assert [t["template_id"] for t in wx.fake.templates] == ["TPL-RXOK", "TPL-RXNO"]
    assert wx.fake.templates[1]["data"]["keyword2"]["value"] == "处方与订单不符"
