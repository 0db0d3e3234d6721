"""The Official Account server: what ``/wechat/callback`` does with a push, inside one transaction.

::

    GET  signature ok? -> echostr (text/plain)                         else 403
    POST signature ok? (403)  -> safe / compatible+aes: msg_signature + AES decrypt (403 / 400)
         -> parse (400 when malformed) -> handle():
              insert wechat_inbound(dedupe_key)   -- MsgId, or FromUserName+CreateTime+Event
                exists already -> the stored reply (a retry: no second side effect)
              else: the event's own work + the ``wechat_event`` hook of other plugins,
                    reply stored with the row, all in one transaction
         -> reply (encrypted again in safe mode), or "success"

Everything here is a few indexed queries: the reply comes well within
WeChat's 5 seconds. Slow work belongs in the outbox.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import logging
import secrets
import time
from typing import Any, TypedDict

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from wechatpy import parse_message
from wechatpy.crypto import _get_signature
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import WeChatSigner

from core import catalog
from core.auth import Caller
from core.db import utcnow
from core.models import Customer, Product, Store

from . import sdk
from .models import Follower, InboundMessage
from .notifications import record_delivery
from .settings import Settings
from .signing import MalformedXml, parse_xml, safe_cdata

__all__ = ["WechatMessage", "signature_ok", "open_push", "handle", "render_reply", "PushRefused", "CHANNEL"]

log = logging.getLogger("pharmo2o.wechat.server")
CHANNEL = "wechat"
STORE_SCENE = "store:"


class WechatMessage(TypedDict):
    """A push as the ``wechat_event`` hook receives it (plain data, no wechatpy objects)."""

    kind: str  # MsgType: "text", "image", ..., "event"
    event: str | None  # for events, wechatpy's lower-case name: subscribe, subscribe_scan, scan, unsubscribe,
    #                    click, view, templatesendjobfinish, ... (None for messages)
    openid: str  # FromUserName
    key: str | None  # EventKey (a QR scene without its qrscene_ prefix), menu key or URL
    content: str | None  # the text of a text message
    created_at: int  # CreateTime (Unix seconds)
    customer_id: int | None  # the customer with this openid, if any
    store_id: int | None  # the store the follower is bound to (after this push)
    raw: dict[str, Any]  # every field as received (decrypted)


class PushRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def signature_ok(settings: Settings, signature: str, timestamp: str, nonce: str) -> bool:
    """The plain ``signature`` query parameter (every push, and the URL check), in constant time."""
    if not (signature and timestamp and nonce):
        return False
    signer = WeChatSigner()
    signer.add_data(settings.token, timestamp, nonce)
    return hmac.compare_digest(signer.signature.encode(), signature.encode())


def open_push(settings: Settings, params: dict, body: bytes) -> tuple[str, bool]:
    """The plaintext XML of a push and whether the reply must be encrypted; :class:`PushRefused` otherwise."""
    if not signature_ok(settings, params.get("signature", ""), params.get("timestamp", ""), params.get("nonce", "")):
        raise PushRefused(403, "invalid signature")
    encrypted = params.get("encrypt_type", "raw").lower() == "aes"
    if settings.message_mode == "safe" and not encrypted:
        raise PushRefused(403, "safe mode accepts encrypted pushes only")
    if settings.message_mode == "plain" and encrypted:
        raise PushRefused(400, "plaintext mode: encrypted pushes are not configured")
    try:
        fields = parse_xml(body)
    except MalformedXml as exc:
        raise PushRefused(400, f"malformed XML: {exc}") from None
    if not encrypted:
        return body.decode("utf-8"), False
    encrypt = fields.get("Encrypt")
    msg_signature = params.get("msg_signature", "")
    if not encrypt or not msg_signature:
        raise PushRefused(400, "an encrypted push needs Encrypt and msg_signature")
    expected = _get_signature(settings.token, params.get("timestamp", ""), params.get("nonce", ""), encrypt)
    if not hmac.compare_digest(expected.encode(), msg_signature.encode()):
        raise PushRefused(403, "invalid msg_signature")
    try:
        plain = sdk.crypto(settings).decrypt_message(body.decode("utf-8"), msg_signature, params["timestamp"],
                                                     params["nonce"])
    except (InvalidSignatureException, InvalidAppIdException):
        raise PushRefused(403, "the encrypted push is not for this account") from None
    except Exception:  # bad base64, padding, length: not something WeChat sent
        raise PushRefused(400, "the encrypted push cannot be decrypted") from None
    return plain if isinstance(plain, str) else plain.decode("utf-8"), True


def render_reply(settings: Settings, reply_xml: str, encrypted: bool) -> str:
    if not reply_xml:
        return "success"
    if not encrypted:
        return reply_xml
    return sdk.crypto(settings).encrypt_message(reply_xml, secrets.token_hex(8), str(int(time.time())))


def text_reply(message: dict, content: str) -> str:
    """A text reply; the content may hold anything (``]]>`` included)."""
    return ("<xml>\n"
            f"<ToUserName><![CDATA[{safe_cdata(message.get('FromUserName', ''))}]]></ToUserName>\n"
            f"<FromUserName><![CDATA[{safe_cdata(message.get('ToUserName', ''))}]]></FromUserName>\n"
            f"<CreateTime>{int(time.time())}</CreateTime>\n"
            "<MsgType><![CDATA[text]]></MsgType>\n"
            f"<Content><![CDATA[{safe_cdata(content)}]]></Content>\n"
            "</xml>")


def dedupe_key(fields: dict) -> str:
    if fields.get("MsgType", "").lower() != "event" and fields.get("MsgId"):
        return f"msg:{fields['MsgId']}"[:200]
    # events: FromUserName + CreateTime + Event (TEMPLATESENDJOBFINISH carries the MsgID of the template
    # message, not a push id); the EventKey is added, so two menu clicks within one second stay two, while
    # a retry (same fields) still matches
    key = f"evt:{fields.get('FromUserName', '')}:{fields.get('CreateTime', '')}:{fields.get('Event', '')}"
    if fields.get("EventKey"):
        key += ":" + hashlib.sha256(fields["EventKey"].encode()).hexdigest()[:16]
    return key[:200]


def handle(ctx, settings: Settings, plain_xml: str) -> str:
    """Process one decrypted push exactly once; returns the reply XML ("" for none)."""
    try:
        fields = parse_xml(plain_xml)
        message = parse_message(plain_xml)
    except (MalformedXml, KeyError) as exc:
        raise PushRefused(400, f"not a WeChat message: {exc}") from None
    if not fields.get("FromUserName") or not fields.get("MsgType"):
        raise PushRefused(400, "not a WeChat message: FromUserName and MsgType are required")
    key = dedupe_key(fields)
    with ctx.transaction() as s:
        stored = s.scalar(select(InboundMessage.reply).where(InboundMessage.dedupe_key == key))
        if stored is not None:
            return stored
        row = InboundMessage(dedupe_key=key, openid=fields["FromUserName"][:64], msg_type=fields["MsgType"][:32],
                             event=(fields.get("Event") or None) and fields["Event"][:64], reply="")
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:  # a concurrent copy of this push got there first: its reply, once committed
            pass
        else:
            reply = _dispatch(ctx, settings, s, message, fields)
            row.reply = reply
            return reply
    return _stored_reply(ctx, key)


def _stored_reply(ctx, key: str) -> str:
    with ctx.session() as s:
        return s.scalar(select(InboundMessage.reply).where(InboundMessage.dedupe_key == key)) or ""


# ---------------------------------------------------------------- the events

def _follower(s, openid: str) -> Follower:
    follower = s.get(Follower, openid)
    if follower is None:
        follower = Follower(openid=openid, subscribed=False)
        s.add(follower)
    return follower


def _store_of_scene(s, scene: str | None) -> Store | None:
    if not scene or not scene.startswith(STORE_SCENE):
        return None
    code = scene[len(STORE_SCENE):]
    store = s.scalars(select(Store).where(Store.code == code)).one_or_none()
    return store if store is not None and store.active else None


def _bind(s, follower: Follower, scene: str | None) -> Store | None:
    store = _store_of_scene(s, scene)
    if store is not None:
        follower.store_id, follower.scene = store.id, scene[:100]
        customer = s.scalars(select(Customer).where(Customer.openid == follower.openid)).one_or_none()
        if customer is not None:
            customer.store_id = store.id
    return store


def _dispatch(ctx, settings: Settings, s, message, fields: dict) -> str:
    openid = fields["FromUserName"]
    kind = fields["MsgType"].lower()
    event = getattr(message, "event", None) if kind == "event" else None
    texts: list[str] = []
    key = None
    if event in ("subscribe", "subscribe_scan"):
        follower = _follower(s, openid)
        follower.subscribed, follower.subscribed_at, follower.unsubscribed_at = True, utcnow(), None
        key = getattr(message, "scene_id", None) or getattr(message, "key", None) or None
        store = _bind(s, follower, key)
        texts.append(settings.welcome_text + (f"\n您已绑定门店：{store.name}" if store else ""))
    elif event == "scan":
        key = message.scene_id
        store = _bind(s, _follower(s, openid), key)
        if store is not None:
            texts.append(f"您已绑定门店：{store.name}")
    elif event == "unsubscribe":
        follower = _follower(s, openid)
        follower.subscribed, follower.unsubscribed_at = False, utcnow()
    elif event == "click":
        key = message.key
        texts.append(_menu(settings, s, key))
    elif event == "view":
        key = message.url  # WeChat shows no reply to a menu link
    elif event == "templatesendjobfinish":
        record_delivery(s, fields.get("MsgID"), fields.get("Status", ""))
    elif kind == "text":
        texts.append(_search(ctx, settings, s, openid, fields.get("Content", "")))
    s.flush()
    follower = s.get(Follower, openid)
    created = fields.get("CreateTime") or "0"
    hook_message: WechatMessage = {
        "kind": kind, "event": event, "openid": openid, "key": key, "content": fields.get("Content"),
        "created_at": int(created) if created.isascii() and created.isdigit() else 0,
        "customer_id": s.scalar(select(Customer.id).where(Customer.openid == openid)),
        "store_id": follower.store_id if follower else None, "raw": dict(fields)}
    for answer in ctx.registry.collect("wechat_event", session=s, message=hook_message):
        if isinstance(answer, str) and answer.strip():
            texts.append(answer.strip())
    if event == "view" or not texts:
        return ""
    return text_reply(fields, "\n\n".join(texts))


def _menu(settings: Settings, s, key: str | None) -> str:
    if key == "ORDERS":
        return f'<a href="{html.escape(settings.link("/h5/#/orders"))}">查看我的订单</a>'
    if key == "STORES":
        stores = s.scalars(select(Store).where(Store.active.is_(True)).order_by(Store.id).limit(10)).all()
        return "门店：\n" + "\n".join(f"{st.name} {st.address} {st.phone}".strip() for st in stores)
    return f'回复药品名称查询，或<a href="{html.escape(settings.link("/h5/"))}">进入商城</a>。'


def _search(ctx, settings: Settings, s, openid: str, text: str) -> str:
    """The OTC products matching ``text`` that the product hooks let the wechat channel show and sell."""
    keyword = " ".join(text.split())[:40]
    if not keyword:
        return _menu(settings, s, None)
    customer_id = s.scalar(select(Customer.id).where(Customer.openid == openid))
    caller = Caller(role="customer", customer_id=customer_id) if customer_id else Caller(role=None)
    found: list[Product] = []
    after = None
    for _ in range(5):  # a few pages at most: the reply must stay fast
        page = catalog.list_products(s, q=keyword, active=True, after=after, limit=50)
        for product in page.items:
            if product.rx_class == "rx" or not catalog.visible(ctx.registry, product, CHANNEL, caller):
                continue
            if catalog.sale_refusals(ctx.registry, product, CHANNEL, caller):
                continue
            found.append(product)
            if len(found) == settings.search_limit:
                break
        if len(found) == settings.search_limit or page.next_after is None:
            break
        after = page.next_after
    shown = html.escape(keyword)
    if not found:
        return f"没有找到与“{shown}”相关的非处方药。处方药请到店或在商城上传处方购买。"
    lines = [f"与“{shown}”相关的药品："]
    for i, p in enumerate(found, 1):
        name = html.escape(" ".join(x for x in (p.generic_name, p.specification) if x))
        price = f"¥{p.price_fen // 100}.{p.price_fen % 100:02d}"
        lines.append(f'{i}. <a href="{html.escape(settings.link(f"/h5/#/products/{p.id}"))}">{name}</a> {price}')
    return "\n".join(lines)
