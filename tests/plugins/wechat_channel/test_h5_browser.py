"""The H5 shop end to end in headless Chromium at a phone's size: WeChat sign-in through the fake WeChat,
store, search, Rx notice, cart, checkout for delivery and pickup, WeChat Pay through a stub WeixinJSBridge
(the fake WeChat then sends the signed notification), prescription upload and approval, orders, points.

Screenshots go to ``tests/plugins/wechat_channel/screenshots/`` (or ``$PHARMO2O_SCREENSHOTS``).
"""
from __future__ import annotations

import datetime as dt
import os
import re
import struct
import zlib
from pathlib import Path

import pytest

from tests.api.helpers import product, receive
from core.testing import LiveServer

from .fake_wechat import sign
from .helpers import API_KEY, event_message, post_push, push, shop

PHONE = {"width": 390, "height": 844}
SHOTS = Path(os.environ.get("PHARMO2O_SCREENSHOTS", Path(__file__).parent / "screenshots"))
UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN")
# What WeChat's in-app browser provides; in the test it asks the fake WeChat to confirm the payment.
STUB_BRIDGE = """
window.WeixinJSBridge = {
  invoke(name, params, callback) {
    if (name !== 'getBrandWCPayRequest') return callback({err_msg: name + ':fail'});
    window.fakeWechatPay(params).then((answer) => callback({err_msg: 'get_brand_wcpay_request:' + answer}));
  },
};
"""


class Holder:
    """A WSGI app set after the server has its port (the configuration needs the site's URL first)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


def png(shade: int = 0) -> bytes:
    """A small valid PNG (the prescription photo); another ``shade`` is another document."""
    raw = b"".join(b"\x00" + bytes([200, 220, shade % 256]) * 8 for _ in range(8))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Phone:
    def __init__(self, page, name):
        self.page, self.name, self.errors, self.urls = page, name, [], []
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}")
                if msg.type == "error" and "Failed to load resource" not in msg.text else None)
        page.on("request", lambda req: self.urls.append(req.url))

    def ready(self, what: str):
        self.page.wait_for_selector(f"main[data-ready='{what}']")

    def shot(self, label: str) -> Path:
        path = SHOTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def no_sideways_scroll(self):
        assert self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


@pytest.fixture
def h5(fake, browser, certs, request):
    """A live server with the shop (wechat_channel, prescription_review, loyalty) and a phone on it."""
    holder = Holder()
    server = LiveServer(holder)
    from core.testing import build_api_client
    from .helpers import settings
    make_api_settings = settings(fake, base_url=server.url, certs=certs)
    api = build_api_client(request.getfixturevalue("make_ctx")(
        enabled=["wechat_channel", "prescription_review", "loyalty"], settings=make_api_settings))
    holder.app = api.app
    wx = shop(api, fake, openid=None)
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  user_agent=UA, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    page = context.new_page()
    paid = []

    def fake_wechat_pay(params):
        """The customer confirms in WeChat: check what the page passed as WeChat would, then WeChat Pay notifies."""
        unsigned = {k: v for k, v in params.items() if k != "paySign"}
        assert params["paySign"] == sign(unsigned, API_KEY, params["signType"]), "bad paySign"
        trade = fake.order_by_prepay(params["package"].split("=", 1)[1])
        answer = fake.notify(trade["out_trade_no"])
        assert answer.status_code == 200 and "SUCCESS" in answer.text
        paid.append(trade["out_trade_no"])
        return "ok"
    page.expose_function("fakeWechatPay", fake_wechat_pay)
    page.add_init_script(STUB_BRIDGE)
    phone = Phone(page, request.node.name)
    yield wx, server, phone, paid
    context.close()
    server.stop()


def test_sign_in_browse_buy_pay_and_see_points(h5):
    wx, server, phone, paid = h5
    api, page, fake = wx.api, phone.page, wx.fake
    rx = product(api, rx_class="rx", generic_name="布洛芬片", specification="0.2g×24片", price_fen=1800,
                 package_insert="处方药说明书")
    receive(api, api.store_id, rx["id"], 10)
    # the customer scanned the store's QR code and follows the account: bound to the store
    post_push(api, push(event_message("o-h5-buyer", "subscribe", key="qrscene_store:HOME")))
    fake.next_user = {"openid": "o-h5-buyer", "unionid": "u-h5-buyer"}

    page.goto(server.url + "/h5/")  # -> /wechat/oauth/start -> (fake) WeChat -> callback -> back here
    phone.ready("shop")
    assert page.url == server.url + "/h5/"
    assert page.evaluate("sessionStorage.getItem('p2o.h5.token')")
    assert page.inner_text("#store-button") == "门店：Home store"
    phone.shot("1-shop")

    page.fill("input[name=q]", "布洛芬")
    page.click("form.search button")
    phone.ready("shop")
    cards = page.locator(".product")
    assert cards.count() == 2
    rx_card = page.locator(f".product[data-product='{rx['id']}']")
    assert "处方药须凭处方在药师指导下购买和使用" in rx_card.inner_text()
    assert rx_card.locator("[data-rx]").inner_text() == "上传处方购买" and rx_card.locator("[data-add]").count() == 0
    phone.no_sideways_scroll()
    phone.shot("2-search-rx-notice")

    page.click(f"[data-product='{rx['id']}'] a")
    phone.ready("product")
    assert "处方药说明书在药师审核通过您的处方后可见" in page.inner_text("main")
    page.go_back()
    phone.ready("shop")

    # OTC for delivery, paid with WeChat Pay
    page.click(f"[data-add='{wx.otc}']")
    page.click(f"[data-add='{wx.otc}']")
    assert page.inner_text("#cart-count") == "2"
    page.click("a[data-tab=cart]")
    phone.ready("cart")
    page.check("input[value=delivery]")
    page.fill("textarea[name=delivery_address]", "上海市静安区南京西路100号 张三 13800000000")
    assert page.inner_text("#cart-total") == "¥25.00"
    phone.shot("3-cart-delivery")
    page.click("form button[type=submit]")
    phone.ready("order-awaiting_payment")
    phone.shot("4-order-awaiting-payment")
    page.click("#pay")
    phone.ready("order-paid")
    assert "支付成功" in page.inner_text("main") and len(paid) == 1
    phone.shot("5-paid")

    # the Rx product: order, upload the prescription, a pharmacist approves, then pay
    page.click("a[data-tab=shop]")
    phone.ready("shop")
    page.click(f"[data-rx='{rx['id']}']")
    page.click("a[data-tab=cart]")
    phone.ready("cart")
    page.click("form button[type=submit]")
    phone.ready("order-awaiting_review")
    order_id = int(re.search(r"#/orders/(\d+)", page.url).group(1))
    page.set_input_files("input[name=document]", files=[{"name": "rx.png", "mimeType": "image/png",
                                                          "buffer": png()}])
    page.fill("input[name=patient_name]", "张三")
    page.fill("input[name=patient_id_number]", "11010519491231002X")
    page.select_option("select[name=relationship]", "self")
    page.fill("input[name=prescriber]", "李医生")
    page.fill("input[name=institution]", "上海市第一人民医院")
    page.fill("input[name=prescription_number]", "RX-2026-0001")
    phone.shot("6-prescription-form")
    page.click("#rx-form button[type=submit]")
    page.wait_for_selector("#rx-pending")
    phone.ready("order-awaiting_review")
    phone.shot("7-prescription-submitted")
    approve(api, order_id)
    page.reload()
    phone.ready("order-awaiting_payment")
    page.click("#pay")
    phone.ready("order-paid")
    assert len(paid) == 2

    page.click("a[data-tab=orders]")
    phone.ready("orders")
    assert page.locator("[data-order]").count() == 2
    assert [s.inner_text() for s in page.locator("[data-order] .status").all()] == ["已支付，备货中"] * 2
    phone.shot("8-orders")
    api.post(f"/api/v1/orders/{order_id}/fulfil", role="clerk").json
    page.click(f"[data-order='{order_id}']")
    phone.ready("order-ready")
    assert len(page.inner_text("#pickup-code")) == 6
    phone.shot("9-ready-pickup-code")

    page.click("a[data-tab=me]")
    phone.ready("me")
    assert page.inner_text("#points-available") == "0" and "待生效 25" in page.inner_text("#points")
    phone.shot("10-points")
    phone.no_sideways_scroll()

    token = page.evaluate("sessionStorage.getItem('p2o.h5.token')")
    assert all(token not in url for url in phone.urls)  # never in an address
    assert phone.errors == []
    wx.dispatch()  # the template messages of the paid orders (and the prescription decision)
    assert {t["template_id"] for t in fake.templates} >= {"TPL-PAID", "TPL-RXOK", "TPL-READY"}


def approve(api, order_id):
    """A licensed pharmacist of the store approves the order's prescription (through the API)."""
    pharmacist = api.user_ids["pharmacist"]
    r = api.patch(f"/api/v1/users/{pharmacist}", json={
        "licence_number": "执业药师123456", "licence_expiry": (dt.date.today() + dt.timedelta(days=365)).isoformat()})
    assert r.status_code == 200, r.json
    pending = api.get("/api/v1/prescriptions", role="pharmacist", params={"status": "pending"}).json["items"]
    [p] = [p for p in pending if p["order_id"] == order_id]
    r = api.post(f"/api/v1/prescriptions/{p['id']}/approve", role="pharmacist", json={"note": "ok"})
    assert r.status_code == 200, r.json


def test_outside_wechat_the_page_asks_to_open_it_in_wechat(h5):
    wx, server, phone, paid = h5
    page = phone.page
    wx.fake.next_user = {"openid": "o-h5-other"}
    page.add_init_script("delete window.WeixinJSBridge;")
    page.goto(server.url + "/h5/")
    phone.ready("stores")
    phone.shot("choose-store")
    page.click("[data-store]")  # a new customer chooses a store first
    phone.ready("shop")
    page.click(f"[data-add='{wx.otc}']")
    page.click("a[data-tab=cart]")
    phone.ready("cart")
    page.click("form button[type=submit]")
    phone.ready("order-awaiting_payment")
    page.click("#pay")
    page.wait_for_selector("p.field-error:has-text('请在微信中打开本页面完成支付')", timeout=10_000)
    phone.shot("outside-wechat")
    assert paid == []


def test_a_snapshot_user_cannot_sign_in(h5):
    wx, server, phone, paid = h5
    wx.fake.next_user = {"openid": "o-snapshot", "is_snapshotuser": 1}
    phone.page.goto(server.url + "/h5/")
    phone.page.wait_for_selector("h1:has-text('登录失败')")
    assert "请在微信中打开" in phone.page.inner_text("body")
    phone.shot("snapshot-refused")
