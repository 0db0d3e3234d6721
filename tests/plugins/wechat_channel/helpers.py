"""Builders for the WeChat tests: configuration, pushes built with wechatpy, a shop with stock and a WeChat customer."""
from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field

from sqlalchemy import select, update
from wechatpy.crypto import WeChatCrypto
from wechatpy.pay.utils import dict_to_xml
from wechatpy.utils import WeChatSigner

from core import outbox
from core.models import Customer, Order
from core.testing import ApiClient
from core.testing import run_threads  # noqa: F401 (used by the tests through this module)
from tests.api.helpers import product, receive

APPID = "wx5f3c1e0a9b7d2c4e"
SECRET = "app-secret-9f8e7d6c5b4a39281706"
TOKEN = "p2oToken2026"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aQ"  # 43 characters, as WeChat shows it
MCH_ID = "1230000109"
API_KEY = "8934e7d15453e97507ef794cf7b0519d"
ACCOUNT = "gh_0a1b2c3d4e5f"  # the Official Account's own id (ToUserName)
BASE_URL = "https://shop.example.com"
_seq = itertools.count(1)


def settings(fake, *, base_url: str = BASE_URL, certs: tuple[str, str] | None = None, **over) -> dict:
    """``make_ctx``/``make_api`` settings for a fully configured account talking to ``fake``."""
    data = {"appid": APPID, "secret": SECRET, "token": TOKEN, "encoding_aes_key": AES_KEY, "mch_id": MCH_ID,
            "api_key": API_KEY, "base_url": base_url, "api_base": fake.url, "pay_api_base": fake.url,
            "oauth_base": fake.url, "timeout_seconds": 3,
            "templates": {"paid": "TPL-PAID", "ready": "TPL-READY", "dispatched": "TPL-SHIP",
                          "rx_approved": "TPL-RXOK", "rx_rejected": "TPL-RXNO", "refunded": "TPL-REFUND"}}
    if certs:
        data["cert_path"], data["cert_key_path"] = certs
    data.update(over)
    return {f"wechat.{k}": v for k, v in data.items()}


# ----------------------------------------------------------------- pushes

def signature(timestamp: str, nonce: str, token: str = TOKEN) -> str:
    """The ``signature`` query parameter, computed as ``wechatpy.utils.check_signature`` checks it."""
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return signer.signature


def text_message(openid: str, content: str, msg_id: int | None = None, create_time: int | None = None) -> str:
    # a "]]>" in the text is split across two CDATA sections, as any XML writer (WeChat's too) must
    return dict_to_xml({"ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": create_time or int(time.time()),
                        "MsgType": "text", "Content": content.replace("]]>", "]]]]><![CDATA[>"),
                        "MsgId": msg_id or 7000000000000 + next(_seq)})


def event_message(openid: str, event: str, key: str | None = None, create_time: int | None = None, **more) -> str:
    data = {"ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": create_time or int(time.time()),
            "MsgType": "event", "Event": event, **more}
    if key is not None:
        data["EventKey"] = key
    return dict_to_xml(data)


@dataclass
class Push:
    """One push as WeChat sends it: query parameters and body."""

    params: dict
    body: str


def push(xml: str, mode: str = "plain", *, token: str = TOKEN, key: str = AES_KEY, appid: str = APPID) -> Push:
    """Sign (and in ``safe``/``compatible`` mode encrypt with ``WeChatCrypto``) a push the way WeChat does."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
    params = {"signature": signature(timestamp, nonce, token), "timestamp": timestamp, "nonce": nonce,
              "openid": "x"}
    if mode == "plain":
        return Push(params, xml)
    envelope = WeChatCrypto(token, key, appid).encrypt_message(xml, nonce, timestamp)
    from wechatpy.utils import to_text
    import xmltodict
    sealed = xmltodict.parse(to_text(envelope))["xml"]
    params.update(encrypt_type="aes", msg_signature=sealed["MsgSignature"])
    if mode == "safe":
        body = dict_to_xml({"ToUserName": ACCOUNT, "Encrypt": sealed["Encrypt"]})
    else:  # compatible: the plaintext fields and the ciphertext together
        body = xml.replace("</xml>", f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt>\n</xml>")
    return Push(params, body)


def decrypt_reply(text: str, *, token: str = TOKEN, key: str = AES_KEY, appid: str = APPID) -> str:
    import xmltodict
    sealed = xmltodict.parse(text)["xml"]
    return WeChatCrypto(token, key, appid).decrypt_message(text, sealed["MsgSignature"], sealed["TimeStamp"],
                                                            sealed["Nonce"])


def post_push(api: ApiClient, p: Push):
    return api.client.simulate_post("/wechat/callback", params=p.params, body=p.body.encode("utf-8"),
                                    headers={"Content-Type": "text/xml"})


# ------------------------------------------------------------------- shop

@dataclass
class Shop:
    api: ApiClient
    fake: object
    otc: int  # an OTC product with stock in the api's store
    rx: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ctx(self):
        return self.api.ctx

    def order(self, lines=None, *, fulfilment="pickup", role="customer", **fields):
        body = {"store_id": self.api.store_id, "channel": "wechat", "fulfilment": fulfilment,
                "lines": [{"product_id": p, "quantity": q} for p, q in (lines or [(self.otc, 2)])], **fields}
        if fulfilment == "delivery":
            body.setdefault("delivery_address", "上海市黄浦区南京东路1号")
        r = self.api.post("/api/v1/orders", role=role, json=body)
        assert r.status_code == 201, r.json
        return r.json

    def wechat_pay(self, order_id, role="customer", **kw):
        return self.api.post(f"/api/v1/orders/{order_id}/wechat-pay", role=role, **kw)

    def notify(self, xml: str):
        return self.api.client.simulate_post("/wechat/pay/notify", body=xml.encode("utf-8"),
                                             headers={"Content-Type": "text/xml"})

    def order_row(self, order_id):
        """The order's columns as they are now (a plain namespace)."""
        from types import SimpleNamespace
        with self.ctx.session() as s:
            order = s.get(Order, order_id)
            return SimpleNamespace(**{c.key: getattr(order, c.key) for c in Order.__table__.columns})

    def dispatch(self):
        return outbox.dispatch(self.ctx)


def shop(api: ApiClient, fake, *, openid: str | None = "o-customer-1", price_fen: int = 1250) -> Shop:
    """Stock an OTC product (and the api's customer with a WeChat openid)."""
    p = product(api, price_fen=price_fen, generic_name="布洛芬缓释胶囊", specification="0.3g×20粒")
    receive(api, api.store_id, p["id"], 50)
    if openid:
        with api.ctx.transaction() as s:
            s.execute(update(Customer).where(Customer.id == api.customer_id).values(openid=openid))
    return Shop(api, fake, p["id"])


def openid_of(ctx, customer_id: int) -> str | None:
    with ctx.session() as s:
        return s.scalar(select(Customer.openid).where(Customer.id == customer_id))
