"""WeChat Pay: the unified order and its JS-SDK parameters, notifications (signatures, appid, mch_id, amounts,
replays, concurrent duplicates, late payments), the provider, refunds, trade closing and reconciliation."""
from __future__ import annotations

import datetime as dt

import pytest
import xmltodict
from sqlalchemy import func, select, update

from core.models import AuditEntry, Customer, OrderEvent, OutboxMessage
from plugins.wechat_channel.models import PayNotification, WechatPayment, WechatRefund
from plugins.wechat_channel.signing import verify
from tests.api.helpers import product, receive

from .fake_wechat import sign
from .helpers import API_KEY, APPID, run_threads


def answer(result) -> dict:
    return xmltodict.parse(result.text)["xml"]


def paid_events(ctx, order_id) -> int:
    with ctx.session() as s:
        return s.scalar(select(func.count()).select_from(OrderEvent).where(
            OrderEvent.order_id == order_id, OrderEvent.new_status == "paid"))


def verdicts(ctx) -> list[str]:
    with ctx.session() as s:
        return list(s.scalars(select(PayNotification.verdict).order_by(PayNotification.id)))


def prepay(wx, order_id, ip="203.0.113.9"):
    r = wx.api.client.simulate_post(f"/api/v1/orders/{order_id}/wechat-pay", remote_addr=ip,
                                    headers=wx.api.headers("customer"))
    assert r.status_code == 200, r.json
    return r.json


def test_pinned_wechat_pay_signature_vectors():
    """WeChat's documented example signs the same with wechatpy and verifies with the plugin (MD5 and HMAC)."""
    params = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000", "body": "test",
              "nonce_str": "ibuaiVcKdpRxkhJA"}
    key = "192006250b4c09247ec02edce69f6a2d"
    assert sign(params, key) == "9A0A8659F005D6984697E2CA0A9CF3B7"
    assert sign(params, key, "HMAC-SHA256") == "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    assert verify({**params, "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}, key)
    assert verify({**params, "sign_type": "HMAC-SHA256", "sign": sign({**params, "sign_type": "HMAC-SHA256"}, key,
                                                                         "HMAC-SHA256")}, key)
    assert not verify({**params, "sign": "9A0A8659F005D6984697E2CA0A9CF3B8"}, key)
    assert not verify({**params, "sign_type": "HMAC-SHA256", "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}, key)
    assert not verify({**params, "sign_type": "SHA1", "sign": "x"}, key) and not verify(params, key)


def test_a_customer_pays_and_the_notification_marks_the_order_paid_once(wx):
    order = wx.order()
    assert order["total_fen"] == 2500
    pay = prepay(wx, order["id"])
    trade = wx.fake.orders[pay["out_trade_no"]]
    assert (trade["total_fee"], trade["spbill_create_ip"], trade["openid"], trade["trade_type"]) == (
        "2500", "203.0.113.9", "o-customer-1", "JSAPI")
    assert trade["notify_url"] == "https://shop.example.com/wechat/pay/notify"
    assert trade["out_trade_no"] == pay["out_trade_no"] == f"P2O{order['id']}-1"
    expires = dt.datetime.strptime(trade["time_expire"], "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert expires <= dt.datetime.fromisoformat(order["expires_at"])  # never payable past the reservation
    js = pay["js_params"]
    assert js["package"] == f"prepay_id={trade['prepay_id']}"
    assert js["appId"] == APPID and js["signType"] == "MD5"
    assert js["paySign"] == sign({k: v for k, v in js.items() if k != "paySign"}, API_KEY)
    assert prepay(wx, order["id"])["out_trade_no"] == pay["out_trade_no"]  # the live prepay is reused
    assert len(wx.fake.orders) == 1

    xml = wx.fake.notification(pay["out_trade_no"])
    r = wx.notify(xml)
    assert r.status_code == 200 and answer(r)["return_code"] == "SUCCESS"
    row = wx.order_row(order["id"])
    assert (row.status, row.payment_provider) == ("paid", "wechat")
    assert row.payment_reference == wx.fake.orders[pay["out_trade_no"]]["transaction_id"]
    for _ in range(3):  # WeChat repeats it until it hears SUCCESS, and again later
        assert answer(wx.notify(xml))["return_code"] == "SUCCESS"
    assert paid_events(wx.ctx, order["id"]) == 1
    assert verdicts(wx.ctx) == ["accepted", "duplicate", "duplicate", "duplicate"]
    with wx.ctx.session() as s:
        assert s.scalar(select(PayNotification.raw).limit(1)) == xml  # stored as received
    again = wx.wechat_pay(order["id"])
    assert again.status_code == 409 and "paid" in again.json["detail"]


def test_hmac_sha256_unified_order_js_params_and_notification(make_wx):
    wx = make_wx(sign_type="HMAC-SHA256")
    order = wx.order()
    pay = prepay(wx, order["id"])
    assert wx.fake.orders[pay["out_trade_no"]]["sign_type"] == "HMAC-SHA256"  # the fake checked our signature
    js = pay["js_params"]
    assert js["signType"] == "HMAC-SHA256"
    assert js["paySign"] == sign({k: v for k, v in js.items() if k != "paySign"}, API_KEY, "HMAC-SHA256")
    r = wx.notify(wx.fake.notification(pay["out_trade_no"]))
    assert answer(r)["return_code"] == "SUCCESS" and wx.order_row(order["id"]).status == "paid"


def test_forged_tampered_and_foreign_notifications_are_refused(wx):
    order = wx.order()
    pay = prepay(wx, order["id"])
    no = pay["out_trade_no"]
    forged = wx.fake.notification(no, key="0" * 32)  # signed without our key
    assert wx.notify(forged).status_code == 400 and answer(wx.notify(forged))["return_code"] == "FAIL"
    tampered = wx.fake.notification(no).replace("<total_fee>2500</total_fee>", "<total_fee>1</total_fee>")
    assert "<total_fee>1</total_fee>" in tampered
    assert wx.notify(tampered).status_code == 400
    hmac_forged = wx.fake.notification(no, sign_type="HMAC-SHA256", key="f" * 32)
    assert wx.notify(hmac_forged).status_code == 400
    assert wx.notify(wx.fake.notification(no, appid="wx0000000000000000")).status_code == 400
    assert wx.notify(wx.fake.notification(no, mch_id="1900000001")).status_code == 400
    assert wx.notify("<xml><return_code>SUCCESS").status_code == 400  # malformed
    unsigned = wx.fake.notification(no).split("<sign>")[0] + "</xml>"
    assert wx.notify(unsigned).status_code == 400
    assert wx.order_row(order["id"]).status == "awaiting_payment" and verdicts(wx.ctx) == []
    # signed by WeChat but for another amount: not accepted, recorded and audited
    other = wx.notify(wx.fake.notification(no, total_fee=1, cash_fee=1))
    assert other.status_code == 200 and answer(other)["return_code"] == "FAIL"
    assert wx.order_row(order["id"]).status == "awaiting_payment"
    assert verdicts(wx.ctx) == ["amount_mismatch"]
    with wx.ctx.session() as s:
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.entity_id == str(order["id"]))
                        .order_by(AuditEntry.id.desc()).limit(1)) == "wechat.payment.amount_mismatch"
    unknown = wx.notify(wx.fake.notification(no, out_trade_no="P2O999-1"))
    assert answer(unknown)["return_code"] == "FAIL"
    assert answer(wx.notify(wx.fake.notification(no)))["return_code"] == "SUCCESS"  # the genuine one still works
    assert wx.order_row(order["id"]).status == "paid"


def test_concurrent_duplicate_notifications_pay_the_order_once(wx):
    order = wx.order()
    no = prepay(wx, order["id"])["out_trade_no"]
    xml = wx.fake.notification(no)
    results, errors = run_threads(8, lambda i: wx.notify(xml))
    assert errors == []
    assert [answer(r)["return_code"] for r in results] == ["SUCCESS"] * 8
    assert paid_events(wx.ctx, order["id"]) == 1
    assert sorted(verdicts(wx.ctx)) == ["accepted"] + ["duplicate"] * 7
    with wx.ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.kind == "wechat.template")) == 1  # one "paid" message queued


def test_paying_is_refused_unless_the_order_awaits_payment_and_is_the_callers(make_wx):
    wx = make_wx(enabled=["wechat_channel", "prescription_review"])
    api = wx.api
    rx = product(api, rx_class="rx", generic_name="阿莫西林胶囊", price_fen=3000)
    receive(api, api.store_id, rx["id"], 10)
    held = wx.order([(rx["id"], 1)])
    assert held["status"] == "awaiting_review"
    r = wx.wechat_pay(held["id"])
    assert r.status_code == 409 and "awaiting_review" in r.json["detail"] and "prescription" in r.json["detail"]
    assert wx.wechat_pay(held["id"], role="clerk").status_code == 403
    other = api.post("/api/v1/customers", role="clerk", json={"name": "李四", "openid": "o-other"}).json["id"]
    token = api.token(customer_id=other)
    r = api.client.simulate_post(f"/api/v1/orders/{held['id']}/wechat-pay",
                                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404
    with wx.ctx.transaction() as s:
        s.execute(update(Customer).where(Customer.id == api.customer_id).values(openid=None))
    r = wx.wechat_pay(wx.order()["id"])
    assert r.status_code == 403 and "WeChat" in r.json["detail"]
    assert wx.fake.orders == {}


def test_unconfigured_pay_is_a_503_naming_the_keys(make_wx):
    wx = make_wx(mch_id="", api_key="")
    r = wx.wechat_pay(wx.order()["id"])
    assert r.status_code == 503 and "wechat.mch_id" in r.json["detail"] and "wechat.api_key" in r.json["detail"]


def test_staff_cannot_mark_an_order_paid_by_wechat_without_wechat(wx):
    order = wx.order()
    r = wx.api.post(f"/api/v1/orders/{order['id']}/pay", role="clerk", json={"provider": "wechat"})
    assert r.status_code == 409 and "confirmed by WeChat" in r.json["detail"]
    assert wx.order_row(order["id"]).status == "awaiting_payment"


def test_a_payment_the_order_cannot_take_is_refunded(wx):
    order = wx.order()
    no = prepay(wx, order["id"])["out_trade_no"]
    r = wx.api.post(f"/api/v1/orders/{order['id']}/cancel", role="customer", json={"reason": "changed my mind"})
    assert r.status_code == 200
    assert answer(wx.notify(wx.fake.notification(no)))["return_code"] == "SUCCESS"  # WeChat must stop retrying
    assert wx.order_row(order["id"]).status == "cancelled"
    assert verdicts(wx.ctx) == ["late"]
    wx.dispatch()
    refund = wx.fake.refunds[f"{no}R"]
    assert (refund["total_fee"], refund["refund_fee"]) == ("2500", "2500")
    assert refund["transaction_id"] == wx.fake.orders[no]["transaction_id"]
    with wx.ctx.session() as s:
        assert s.scalar(select(WechatRefund.status)) == "requested"
        assert s.scalar(select(WechatPayment.status)) == "refund_due"


def test_refunding_a_wechat_paid_order_goes_through_wechat_refund(wx):
    order = wx.order()
    no = prepay(wx, order["id"])["out_trade_no"]
    wx.notify(wx.fake.notification(no))
    r = wx.api.post(f"/api/v1/orders/{order['id']}/refund", role="store_manager", json={"reason": "damaged box"})
    assert r.status_code == 200 and r.json["status"] == "refunded"
    assert wx.fake.refunds == {}  # sent after commit, from the outbox
    wx.dispatch()
    refund = wx.fake.refunds[f"{no}R"]
    assert (refund["total_fee"], refund["refund_fee"]) == ("2500", "2500")
    assert refund["transaction_id"] == wx.fake.orders[no]["transaction_id"]
    wx.dispatch()  # the "refunded" template follows WeChat's acceptance
    assert [t["template_id"] for t in wx.fake.templates] == ["TPL-PAID", "TPL-REFUND"]
    view = wx.api.get(f"/api/v1/orders/{order['id']}/wechat-payments", role="clerk").json
    assert view["payments"][0]["status"] == "paid" and view["refunds"][0]["status"] == "requested"


def test_refund_of_a_wechat_paid_order_is_refused_without_the_merchant_certificate(make_wx):
    wx = make_wx(with_certs=False)
    order = wx.order()
    wx.notify(wx.fake.notification(prepay(wx, order["id"])["out_trade_no"]))
    r = wx.api.post(f"/api/v1/orders/{order['id']}/refund", role="store_manager", json={"reason": "x"})
    assert r.status_code == 409 and "wechat.cert_path" in r.json["detail"]
    assert wx.order_row(order["id"]).status == "paid"


def test_cancelling_closes_the_open_wechat_trade(wx):
    order = wx.order()
    no = prepay(wx, order["id"])["out_trade_no"]
    wx.api.post(f"/api/v1/orders/{order['id']}/cancel", role="customer", json={"reason": "too slow"})
    wx.dispatch()
    assert wx.fake.orders[no]["state"] == "CLOSED"
    with wx.ctx.session() as s:
        assert s.scalar(select(WechatPayment.status)) == "closed"


def test_reconcile_settles_a_missed_notification_and_closes_expired_trades(wx):
    from plugins.wechat_channel import payments
    from plugins.wechat_channel.settings import settings_of
    paid, idle = wx.order(), wx.order([(wx.otc, 1)])
    paid_no = prepay(wx, paid["id"])["out_trade_no"]
    idle_no = prepay(wx, idle["id"])["out_trade_no"]
    wx.fake.mark_paid(paid_no)  # the customer paid; the notification never arrived
    settings = settings_of(wx.ctx.config)
    assert payments.reconcile(wx.ctx, settings)["checked"] == 0  # too recent: left to the notification
    summary = payments.reconcile(wx.ctx, settings, older_than=dt.timedelta(0))
    assert summary == {"checked": 2, "errors": 0, "accepted": 1, "pending": 1}
    assert wx.order_row(paid["id"]).status == "paid"
    with wx.ctx.transaction() as s:  # the idle trade's prepay ran out
        s.execute(update(WechatPayment).where(WechatPayment.out_trade_no == idle_no)
                  .values(prepay_expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)))
    assert payments.reconcile(wx.ctx, settings, older_than=dt.timedelta(0)) == {"checked": 1, "errors": 0,
                                                                                 "closed": 1}
    assert wx.fake.orders[idle_no]["state"] == "CLOSED"
    assert answer(wx.notify(wx.fake.notification(paid_no)))["return_code"] == "SUCCESS"  # late copy: duplicate
    assert paid_events(wx.ctx, paid["id"]) == 1
    with wx.ctx.session() as s:
        assert s.scalar(select(WechatPayment.confirmed_via).where(WechatPayment.out_trade_no == paid_no)) == "query"


def test_hook_register_payment_providers_wechat(wx):
    from core.orders import payment_providers
    providers = payment_providers(wx.ctx.registry)
    assert providers["wechat"].roles == () and {"cash", "manual", "wechat"} <= set(providers)


@pytest.mark.parametrize("field", ["appid", "mch_id"])
def test_a_unified_order_answer_for_another_account_is_refused(wx, field, monkeypatch):
    original = wx.fake._unifiedorder

    def other_account(q, body):
        status, text, ctype, headers = original(q, body)
        data = xmltodict.parse(text)["xml"]
        data.pop("sign")
        data[field] = "wx99999999other" if field == "appid" else "1999999999"
        from wechatpy.pay.utils import dict_to_xml
        return status, dict_to_xml(data, sign(data, API_KEY)), ctype, headers
    monkeypatch.setattr(wx.fake, "_unifiedorder", other_account)
    r = wx.wechat_pay(wx.order()["id"])
    assert r.status_code == 502
    with wx.ctx.session() as s:
        assert s.scalar(select(WechatPayment.status)) == "closed"


def test_a_payment_another_plugin_vetoes_is_refunded_not_lost(make_wx):
    from tests.core.factories import make_plugin
    veto = make_plugin("rx_expiry", order_before_transition=lambda session, order, old_status, new_status, caller:
                       "the prescription expired before payment" if new_status == "paid" else None)
    wx = make_wx(extra_plugins=[veto])
    order = wx.order()
    no = prepay(wx, order["id"])["out_trade_no"]
    r = wx.notify(wx.fake.notification(no))
    assert r.status_code == 200 and answer(r)["return_code"] == "SUCCESS"  # handled: WeChat stops retrying
    assert wx.order_row(order["id"]).status == "awaiting_payment" and verdicts(wx.ctx) == ["late"]
    with wx.ctx.session() as s:
        refund = s.scalars(select(WechatRefund)).one()
        assert "prescription expired" in refund.reason
        assert s.scalar(select(WechatPayment.status)) == "refund_due"
    wx.dispatch()
    assert f"{no}R" in wx.fake.refunds
