"""The Official Account server at /wechat/callback: signatures, plaintext / safe / compatible modes, malformed
pushes, the events, the keyword search, and each push processed once however often WeChat sends it."""
from __future__ import annotations

import time

import pytest
import xmltodict
from sqlalchemy import func, select

from core.models import Customer, Store
from plugins.wechat_channel.models import Follower, InboundMessage, TemplateSend
from tests.api.helpers import product, receive
from tests.core.factories import make_plugin

from .helpers import (AES_KEY, APPID, TOKEN, decrypt_reply, event_message, post_push, push, run_threads, signature,
                      text_message)


def reply_of(result, mode="plain") -> dict:
    assert result.status_code == 200, result.text
    text = decrypt_reply(result.text) if mode != "plain" else result.text
    return xmltodict.parse(text)["xml"]


def count(ctx, model, *where):
    with ctx.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_url_verification_answers_echostr_only_with_a_valid_signature(wx):
    ts, nonce = str(int(time.time())), "n0nce"
    ok = wx.api.client.simulate_get("/wechat/callback", params={
        "signature": signature(ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "1234567890"})
    assert ok.status_code == 200 and ok.text == "1234567890"
    forged = wx.api.client.simulate_get("/wechat/callback", params={
        "signature": signature(ts, nonce, token="other"), "timestamp": ts, "nonce": nonce, "echostr": "x"})
    assert forged.status_code == 403 and "x" not in forged.text
    assert wx.api.client.simulate_get("/wechat/callback", params={"echostr": "x"}).status_code == 403


def test_unconfigured_account_answers_503_naming_the_keys(make_api):
    api = make_api(enabled=["wechat_channel"])
    r = api.client.simulate_get("/wechat/callback", params={"echostr": "x"})
    assert r.status_code == 503 and "wechat.appid" in r.text and "wechat.token" in r.text


def test_text_search_lists_otc_products_the_wechat_channel_may_sell_with_links(make_wx):
    hidden = make_plugin("hide_on_wechat", product_visible=lambda product, channel, caller:
                         False if channel == "wechat" and product.brand_name == "隐藏" else None)
    wx = make_wx(extra_plugins=[hidden])
    api = wx.api
    for fields in ({"rx_class": "rx"}, {"online_banned": True}, {"brand_name": "隐藏"}, {"rx_class": "otc_a"}):
        p = product(api, generic_name="布洛芬混悬液", **fields)
        receive(api, api.store_id, p["id"], 5)
    r = post_push(api, push(text_message("o-fan-1", "布洛芬")))
    reply = reply_of(r)
    assert reply["MsgType"] == "text" and reply["ToUserName"] == "o-fan-1"
    content = reply["Content"]
    assert content.count("https://shop.example.com/h5/#/products/") == 2  # the OTC-B and the OTC-A one
    assert "布洛芬缓释胶囊 0.3g×20粒</a> ¥12.50" in content
    assert f"/products/{wx.otc}" in content
    nothing = reply_of(post_push(api, push(text_message("o-fan-1", "阿莫西林"))))["Content"]
    assert "没有找到" in nothing and "阿莫西林" in nothing


def test_user_text_cannot_break_out_of_the_reply_cdata(wx):
    r = post_push(wx.api, push(text_message("o-fan-2", "x]]></Content><MsgType>news</MsgType>")))
    reply = reply_of(r)
    assert reply["MsgType"] == "text" and "]]></Content><MsgType>news</MsgType>" in reply["Content"].replace(
        "&lt;", "<").replace("&gt;", ">")


def test_forged_signatures_are_refused_and_change_nothing(wx):
    p = push(event_message("o-fan-3", "subscribe"))
    p.params["signature"] = signature(p.params["timestamp"], p.params["nonce"], token="guessed")
    assert post_push(wx.api, p).status_code == 403
    p = push(event_message("o-fan-3", "subscribe"))
    p.params["nonce"] = "replaced"
    assert post_push(wx.api, p).status_code == 403
    assert count(wx.ctx, InboundMessage) == 0 and count(wx.ctx, Follower) == 0


@pytest.mark.parametrize("body", [b"<xml><ToUserName>broken", b"not xml at all", b"<root><a>1</a></root>",
                                  b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><a>&a;</a></xml>',
                                  b"<xml><MsgType>text</MsgType></xml>"])
def test_malformed_pushes_are_a_400(wx, body):
    p = push("<xml/>")
    r = wx.api.client.simulate_post("/wechat/callback", params=p.params, body=body)
    assert r.status_code == 400, r.text
    assert count(wx.ctx, InboundMessage) == 0


def test_safe_mode_decrypts_the_push_and_encrypts_the_reply(make_wx):
    wx = make_wx(message_mode="safe")
    r = post_push(wx.api, push(text_message("o-fan-4", "布洛芬"), "safe"))
    assert "<Encrypt>" in r.text and "布洛芬" not in r.text
    assert "布洛芬缓释胶囊" in reply_of(r, "safe")["Content"]
    assert post_push(wx.api, push(text_message("o-fan-4", "布洛芬"))).status_code == 403  # plaintext refused
    forged = push(text_message("o-fan-4", "布洛芬"), "safe")
    forged.params["msg_signature"] = "0" * 40
    assert post_push(wx.api, forged).status_code == 403
    other_key = push(text_message("o-fan-4", "x"), "safe", key="A" * 42 + "E")  # signed right, wrong AES key
    assert post_push(wx.api, other_key).status_code in (400, 403)
    other_app = push(text_message("o-fan-4", "x"), "safe", appid="wx000000000000other")
    assert post_push(wx.api, other_app).status_code == 403
    assert count(wx.ctx, InboundMessage) == 1


def test_compatible_mode_takes_plaintext_and_encrypted_pushes(make_wx):
    wx = make_wx(message_mode="compatible")
    plain = post_push(wx.api, push(text_message("o-fan-5", "布洛芬"), "plain"))
    assert "布洛芬缓释胶囊" in reply_of(plain)["Content"]
    sealed = post_push(wx.api, push(text_message("o-fan-5", "布洛芬"), "compatible"))
    assert "布洛芬缓释胶囊" in reply_of(sealed, "compatible")["Content"]


def test_plain_mode_refuses_encrypted_pushes(wx):
    assert post_push(wx.api, push(text_message("o-fan-6", "x"), "safe")).status_code == 400


def test_subscribe_with_a_store_qr_scene_binds_the_follower_and_the_customer(wx):
    api, ctx = wx.api, wx.ctx
    with ctx.transaction() as s:
        other = Store(code="JA01", name="静安店", address="静安区1号", active=True)
        s.add(other)
        s.flush()
        store_id = other.id
    reply = reply_of(post_push(api, push(event_message("o-customer-1", "subscribe", key="qrscene_store:JA01",
                                                       Ticket="TICKET1"))))
    assert "欢迎关注" in reply["Content"] and "静安店" in reply["Content"]
    with ctx.session() as s:
        follower = s.get(Follower, "o-customer-1")
        assert follower.subscribed and follower.store_id == store_id and follower.scene == "store:JA01"
        assert s.get(Customer, api.customer_id).store_id == store_id  # the customer with that openid too
    # SCAN by a follower: bound to the scanned store; unknown or closed stores bind nothing
    reply_of(post_push(api, push(event_message("o-customer-1", "SCAN", key="store:HOME", Ticket="T2"))))
    with ctx.session() as s:
        assert s.get(Follower, "o-customer-1").store_id == api.store_id
    assert post_push(api, push(event_message("o-customer-1", "SCAN", key="store:NOPE", Ticket="T3"))).text == "success"
    with ctx.session() as s:
        assert s.get(Follower, "o-customer-1").store_id == api.store_id
    assert post_push(api, push(event_message("o-customer-1", "unsubscribe"))).text == "success"
    with ctx.session() as s:
        follower = s.get(Follower, "o-customer-1")
        assert not follower.subscribed and follower.unsubscribed_at is not None


def test_menu_click_view_and_template_finished_events(wx):
    api, ctx = wx.api, wx.ctx
    click = reply_of(post_push(api, push(event_message("o-fan-7", "CLICK", key="ORDERS", create_time=1700000100))))
    assert "https://shop.example.com/h5/#/orders" in click["Content"]
    stores = reply_of(post_push(api, push(event_message("o-fan-7", "CLICK", key="STORES"))))
    assert "Home store" in stores["Content"]
    view = post_push(api, push(event_message("o-fan-7", "VIEW", key="https://shop.example.com/h5/")))
    assert view.status_code == 200 and view.text == "success"
    with ctx.transaction() as s:
        s.add(TemplateSend(dedupe_key="x", order_id=_an_order(wx), event="paid", status="sent", msgid="200163836"))
    done = post_push(api, push(event_message("o-customer-1", "TEMPLATESENDJOBFINISH", MsgID=200163836,
                                             Status="failed:user block")))
    assert done.text == "success"
    with ctx.session() as s:
        assert s.scalar(select(TemplateSend.delivery).where(TemplateSend.msgid == "200163836")) == "failed:user block"


def _an_order(wx) -> int:
    return wx.order()["id"]


def test_a_retried_push_gets_the_stored_reply_and_no_second_side_effect(make_wx):
    seen = []
    wx = make_wx(extra_plugins=[make_plugin("listener", wechat_event=lambda session, message: seen.append(
        (message["event"], message["key"])) or None)])
    xml = event_message("o-fan-8", "subscribe", key="qrscene_store:HOME", create_time=1700000000)
    first = post_push(wx.api, push(xml))
    again = post_push(wx.api, push(xml))  # WeChat's retry: new timestamp and nonce, same message
    assert reply_of(first)["Content"] == reply_of(again)["Content"]
    assert seen == [("subscribe_scan", "store:HOME")]
    text = text_message("o-fan-8", "布洛芬", msg_id=123456789)
    assert reply_of(post_push(wx.api, push(text)))["Content"] == reply_of(post_push(wx.api, push(text)))["Content"]
    assert count(wx.ctx, InboundMessage) == 2
    # an event is never taken for a duplicate of a message because of its MsgID (template-finished carries one)
    post_push(wx.api, push(event_message("o-fan-8", "TEMPLATESENDJOBFINISH", MsgID=123456789, Status="success")))
    assert count(wx.ctx, InboundMessage) == 3


def test_concurrent_copies_of_one_push_are_processed_once(make_wx):
    seen = []
    wx = make_wx(extra_plugins=[make_plugin("counter", wechat_event=lambda session, message: seen.append(1) or None)])
    xml = event_message("o-fan-9", "subscribe", key="qrscene_store:HOME", create_time=1700000001)
    results, errors = run_threads(6, lambda i: post_push(wx.api, push(xml)))
    assert errors == []
    assert {r.status_code for r in results} == {200}
    assert len({reply_of(r)["Content"] for r in results}) == 1
    assert seen == [1]
    assert count(wx.ctx, InboundMessage) == 1


def test_hook_wechat_event(make_wx):
    """Other plugins see every push once, as plain data, and may add to the reply (texts appended in order)."""
    received = []

    def wechat_event(session, message):
        received.append(message)
        if message["kind"] == "text":
            return f"积分商城也有“{message['content']}”"
        return None

    wx = make_wx(extra_plugins=[make_plugin("points_shop", wechat_event=wechat_event)])
    reply = reply_of(post_push(wx.api, push(text_message("o-customer-1", "布洛芬"))))
    assert reply["Content"].startswith("与“布洛芬”相关的药品") and reply["Content"].endswith("积分商城也有“布洛芬”")
    msg = received[0]
    assert (msg["kind"], msg["event"], msg["openid"], msg["content"]) == ("text", None, "o-customer-1", "布洛芬")
    assert msg["customer_id"] == wx.api.customer_id and msg["raw"]["ToUserName"].startswith("gh_")
    post_push(wx.api, push(event_message("o-other", "CLICK", key="STORES")))
    assert (received[1]["event"], received[1]["key"], received[1]["customer_id"]) == ("click", "STORES", None)


def test_a_failing_hook_rolls_the_push_back_so_that_wechat_retries_it(make_wx):
    def wechat_event(session, message):
        raise RuntimeError("boom")
    wx = make_wx(extra_plugins=[make_plugin("broken", wechat_event=wechat_event)])
    assert post_push(wx.api, push(event_message("o-fan-10", "subscribe"))).status_code == 500
    assert count(wx.ctx, InboundMessage) == 0 and count(wx.ctx, Follower) == 0


def test_plugin_hookspecs_load_only_with_the_plugin(make_ctx):
    """``Manifest.hookspecs``: the spec exists when wechat_channel is enabled, so an implementation
    without ``optionalhook`` loads; without wechat_channel such a plugin must mark it optional."""
    from core import hookimpl
    import types
    from core import Manifest
    from pluggy import PluginValidationError

    module = types.ModuleType("strict_listener")
    module.manifest = Manifest(name="strict_listener", version="1", summary="x")
    module.wechat_event = hookimpl(lambda session, message: None)
    module.wechat_event.__name__ = "wechat_event"
    ctx = make_ctx(enabled=["wechat_channel"], extra_plugins=[module])
    assert "wechat_event" in ctx.registry.hooks_of("strict_listener")
    with pytest.raises(PluginValidationError):
        make_ctx(enabled=[], extra_plugins=[module])
    optional = types.ModuleType("optional_listener")
    optional.manifest = Manifest(name="optional_listener", version="1", summary="x")

    def wechat_event(session, message):
        return None
    optional.wechat_event = hookimpl(optionalhook=True)(wechat_event)
    assert make_ctx(enabled=[], extra_plugins=[optional]).registry.is_enabled("optional_listener")


def test_aes_key_and_token_are_the_ones_wechat_shows():
    assert len(AES_KEY) == 43 and TOKEN.isalnum() and APPID.startswith("wx")


# WeChat's own sample of an encrypted push (its message-crypto documentation and WXBizMsgCrypt demo)
SAMPLE = {"token": "spamtest", "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
          "appid": "wx2c2769f8efd9abc2", "timestamp": "1409735669", "nonce": "1320562132",
          "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
          "body": "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYj"
                  "qLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                  "<Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[hyzAe4Oz"
                  "mOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9"
                  "FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6u"
                  "x5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HT"
                  "nifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669W"
                  "uMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>"}


def test_wechats_documented_encrypted_sample_is_accepted(make_wx):
    wx = make_wx(message_mode="compatible", token=SAMPLE["token"], encoding_aes_key=SAMPLE["encoding_aes_key"],
                 appid=SAMPLE["appid"])
    params = {"signature": signature(SAMPLE["timestamp"], SAMPLE["nonce"], SAMPLE["token"]),
              "timestamp": SAMPLE["timestamp"], "nonce": SAMPLE["nonce"], "encrypt_type": "aes",
              "msg_signature": SAMPLE["msg_signature"]}
    r = wx.api.client.simulate_post("/wechat/callback", params=params, body=SAMPLE["body"].encode())
    assert r.status_code == 200
    reply = xmltodict.parse(decrypt_reply(r.text, token=SAMPLE["token"], key=SAMPLE["encoding_aes_key"],
                                          appid=SAMPLE["appid"]))["xml"]
    assert reply["ToUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs" and "abcdteT" in reply["Content"]
    with wx.ctx.session() as s:
        assert s.scalar(select(InboundMessage.dedupe_key)) == "msg:6054768590064713728"
    params["msg_signature"] = "5d197aaffba7e9b25a30732f161a50dee96bd5fb"
    assert wx.api.client.simulate_post("/wechat/callback", params=params, body=SAMPLE["body"].encode()).status_code == 403
