"""The wechat_channel plugin's routes (mounted through ``register_routes``).

::

    GET  /wechat/callback                       URL verification (signature -> echostr)            WeChat
    POST /wechat/callback                       pushes: messages and events                        WeChat
    POST /wechat/pay/notify                     payment notifications (XML in, XML out)            WeChat Pay
    GET  /wechat/oauth/start?next=              sign in: redirect to WeChat                        browser
    GET  /wechat/oauth/callback                 WeChat sends the customer back                     browser
    POST /wechat/oauth/exchange                 the H5 page takes its customer token               browser
    POST /api/v1/orders/{id}/wechat-pay         JSAPI payment parameters                           customer
    GET  /api/v1/orders/{id}/wechat-payments    WeChat trades and refunds of an order              staff
    GET  /api/v1/wechat/shop                    what the H5 shop needs to know                     customer
    GET  /api/v1/wechat/status                  configuration (secrets as set / not set)           admin
    GET  /h5, /h5/{file}                        the H5 shop's files                                anyone

The WeChat-facing and browser-facing routes are public (WeChat signs what
it sends; the OAuth state and login code are single-use) and manage their
own short transactions instead of the request's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import falcon
from pydantic import AwareDatetime, Field

from core.api import CUSTOMER, STAFF, operation
from core.api.access import check_order
from core.api.operations import read_body
from core.api.resources.auth import client_address
from core.api.resources.common import ID, V1
from core.api.schemas import Out
from core.catalog import RX_NOTICE
from core.console.web import CONTENT_TYPES, SECURITY_HEADERS, send_static
from core.errors import NotFound
from core.models import Customer
from core.orders import get_order

from . import oauth, payments, server
from .models import WechatPayment, WechatRefund
from .settings import settings_of
from .signing import MAX_XML_BYTES

__all__ = ["routes"]

TAGS = ("wechat",)
H5_ROOT = Path(__file__).resolve().parent / "h5"
XML = "application/xml; charset=utf-8"


def _settings(req):
    return settings_of(req.context.ctx.config)


def _raw(req) -> bytes:
    return read_body(req, MAX_XML_BYTES)


def _answers(media_type: str, statuses: dict[int, str]) -> dict:
    """OpenAPI ``responses`` of an operation that answers ``media_type`` text (WeChat and browsers are its
    callers, not API clients): ``{status: description}``; the statuses not named keep problem+json."""
    return {"responses": {status: {"description": text, "content": {media_type: {"schema": {"type": "string"}}}}
                          for status, text in statuses.items()}}


def _redirect_answer(description: str) -> dict:
    return {"description": description, "headers": {"Location": {"schema": {"type": "string"}}}}


PLAIN, HTML = "text/plain", "text/html"


def _merge(answers: dict, more: dict) -> dict:
    return {"responses": {**answers["responses"], **more}}


def _plain(resp, status: int, text: str, content_type: str = falcon.MEDIA_TEXT) -> None:
    resp.status = status
    resp.content_type = content_type
    resp.text = text


# ------------------------------------------------------------ Official Account

CALLBACK_DOC = """The Official Account server URL. GET answers WeChat's URL check (`echostr` when `signature`
is right, else 403). POST takes messages and events in plaintext, compatible or safe (AES) mode: a wrong
`signature`/`msg_signature` is a 403, malformed XML a 400; each push is processed once (a retry gets the stored
reply) and answered within WeChat's 5 seconds."""


class Callback:
    @operation("wechat.callback_verify", public=True, tags=TAGS, summary="WeChat server URL verification",
               description=CALLBACK_DOC, errors=(403, 503),
               extra=_answers(PLAIN, {200: "echostr", 403: "invalid signature", 503: "not configured"}))
    def on_get(self, req, resp):
        settings = _settings(req)
        if settings.server_missing:
            return _plain(resp, 503, f"not configured: {', '.join(settings.server_missing)}")
        p = req.params
        if not server.signature_ok(settings, p.get("signature", ""), p.get("timestamp", ""), p.get("nonce", "")):
            return _plain(resp, 403, "invalid signature")
        _plain(resp, 200, str(p.get("echostr", ""))[:200])

    @operation("wechat.callback", public=True, tags=TAGS, summary="WeChat pushes (messages and events)",
               description=CALLBACK_DOC, raw_body=True, idempotency="none", errors=(400, 403, 413, 503),
               extra=_merge(_answers(PLAIN, {400: "malformed push", 403: "invalid signature",
                                             503: "not configured"}),
                            {200: {"description": "`success`, or a reply message (XML, encrypted in safe mode)",
                                   "content": {PLAIN: {"schema": {"type": "string"}},
                                               "application/xml": {"schema": {"type": "string"}}}}}))
    def on_post(self, req, resp):
        settings = _settings(req)
        if settings.server_missing:
            return _plain(resp, 503, f"not configured: {', '.join(settings.server_missing)}")
        body = _raw(req)
        params = {k: v for k, v in req.params.items() if isinstance(v, str)}
        try:
            plain, encrypted = server.open_push(settings, params, body)
            reply = server.handle(req.context.ctx, settings, plain)
        except server.PushRefused as exc:
            return _plain(resp, exc.status, str(exc))
        text = server.render_reply(settings, reply, encrypted)
        _plain(resp, 200, text, XML if text != "success" else falcon.MEDIA_TEXT)


class PayNotify:
    @operation("wechat.pay_notify", public=True, tags=TAGS, summary="WeChat Pay payment notifications",
               description="Verified (MD5 or HMAC-SHA256 signature, appid, mch_id, amount) and applied once "
                           "however often WeChat repeats it; answered with WeChat's SUCCESS/FAIL XML.",
               raw_body=True, idempotency="none", errors=(400, 413, 503),
               extra=_answers("application/xml", {200: "SUCCESS (or FAIL with the reason, not retried)",
                                                  400: "FAIL: malformed or not verified",
                                                  503: "FAIL: not configured"}))
    def on_post(self, req, resp):
        status, text = payments.notification(req.context.ctx, _settings(req), _raw(req))
        _plain(resp, status, text, XML)


# ----------------------------------------------------------------------- OAuth

CUSTOMER_TEXT = {400: "登录链接已失效，请重新进入商城。", 401: "请重新登录。",
                 403: "请在微信中打开商城后登录（预览页面无法登录）。", 502: "微信暂时没有响应，请稍后重试。",
                 503: "微信登录暂不可用，请稍后重试。"}


def _page(resp, status: int, title: str, detail: str) -> None:
    """A small page for the customer's browser: what to do in Chinese, the technical reason beneath."""
    import html
    for name, value in SECURITY_HEADERS.items():
        resp.set_header(name, value)
    resp.set_header("Cache-Control", "no-store")
    text = CUSTOMER_TEXT.get(status, "请重试。")
    _plain(resp, status, f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p><p><small>{html.escape(detail)}</small></p>
<p><a href="/wechat/oauth/start">重新登录</a></p></body></html>""", "text/html; charset=utf-8")


def _redirect(resp, location: str) -> None:
    resp.status = 302
    resp.location = location
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Referrer-Policy", "no-referrer")


def _secure(settings) -> bool:
    return settings.base_url.startswith("https://")


class OAuthStart:
    @operation("wechat.oauth_start", public=True, tags=TAGS, summary="Sign in with WeChat (redirects to WeChat)",
               description="`next` is a path on this site to return to (anything else returns to /h5/).",
               writes=True, errors=(503,),
               extra=_merge(_answers(HTML, {503: "a page: sign-in is not configured"}),
                            {302: _redirect_answer("to WeChat's authorize page")}))
    def on_get(self, req, resp):
        settings = _settings(req)
        if settings.oauth_missing:
            return _page(resp, 503, "暂不可用", f"WeChat sign-in is not configured: {', '.join(settings.oauth_missing)}")
        url, browser = oauth.start(req.context.ctx, settings, req.get_param("next"))
        resp.set_cookie(oauth.STATE_COOKIE, browser, max_age=int(oauth.STATE_TTL.total_seconds()),
                        path="/wechat/oauth", secure=_secure(settings), http_only=True, same_site="Lax")
        _redirect(resp, url)


class OAuthCallback:
    @operation("wechat.oauth_callback", public=True, tags=TAGS, summary="WeChat sends the customer back",
               description="Consumes the single-use state, finds or creates the customer by openid and hands the "
                           "page a one-time login code in an HttpOnly cookie (never a token in a URL).",
               writes=True, errors=(400, 403, 502, 503),
               extra=_merge(_answers(HTML, {400: "a page: the sign-in link is stale or incomplete",
                                            403: "a page: open the shop in WeChat",
                                            502: "a page: WeChat did not answer",
                                            503: "a page: sign-in is not available"}),
                            {302: _redirect_answer("back to the page the sign-in started from")}))
    def on_get(self, req, resp):
        settings = _settings(req)
        if settings.oauth_missing:
            return _page(resp, 503, "暂不可用", "WeChat sign-in is not configured")
        browser = req.get_cookie_values(oauth.STATE_COOKIE)
        try:
            next_path, login = oauth.callback(req.context.ctx, settings, req.get_param("code"),
                                              req.get_param("state"), browser[0] if browser else None)
        except oauth.OAuthRefused as exc:
            return _page(resp, exc.status, "登录失败", str(exc))
        resp.unset_cookie(oauth.STATE_COOKIE, path="/wechat/oauth")
        resp.set_cookie(oauth.LOGIN_COOKIE, login, max_age=int(oauth.CODE_TTL.total_seconds()),
                        path="/wechat/oauth/exchange", secure=_secure(settings), http_only=True, same_site="Lax")
        _redirect(resp, next_path)


class TokenOut(Out):
    token: str = Field(description="send as Authorization: Bearer <token>")
    expires_at: AwareDatetime
    customer_id: int


class OAuthExchange:
    @operation("wechat.oauth_exchange", public=True, tags=TAGS, response=TokenOut,
               summary="The H5 page takes its customer token (one-time code from the sign-in cookie)",
               idempotency="none", errors=(401,))
    def on_post(self, req, resp):
        values = req.get_cookie_values(oauth.LOGIN_COOKIE)
        resp.set_header("Cache-Control", "no-store")
        try:
            issued = oauth.exchange(req.context.ctx, values[0] if values else None)
        except oauth.OAuthRefused as exc:
            from core.api.errors import Unauthorized
            raise Unauthorized(str(exc)) from None
        resp.unset_cookie(oauth.LOGIN_COOKIE, path="/wechat/oauth/exchange")
        resp.media = {"token": issued.token, "expires_at": issued.expires_at.isoformat(),
                      "customer_id": issued.customer_id}


# ------------------------------------------------------------------- payments

class JsParams(Out):
    appId: str
    timeStamp: str
    nonceStr: str
    package: str
    signType: Literal["MD5", "HMAC-SHA256"]
    paySign: str


class WechatPayOut(Out):
    order_id: int
    out_trade_no: str = Field(description="our trade number at WeChat Pay")
    amount_fen: int
    expires_at: AwareDatetime | None
    js_params: JsParams = Field(description="pass to WeixinJSBridge.invoke('getBrandWCPayRequest', ...)")


class WechatPay:
    @operation("wechat.pay", roles=CUSTOMER, tags=TAGS, response=WechatPayOut,
               summary="Pay an order with WeChat Pay (JSAPI)",
               description="Places the WeChat unified order (our out_trade_no, the order total in fen, the "
                           "customer's IP; valid no longer than the order's reservation) or reuses the live one, "
                           "and returns the JS-SDK parameters. Refused (409) unless the order awaits payment, "
                           "e.g. while its prescription is under review.",
               idempotency="none", writes=False, errors=(404, 409, 502, 503))
    def on_post(self, req, resp, order_id):
        # the request's unit only authenticates (read-only); prepay() writes in short transactions of its
        # own around the call to WeChat, never holding a write lock while waiting for WeChat
        resp.media = payments.prepay(req.context.ctx, _settings(req), order_id, req.context.caller,
                                     client_address(req))


class PaymentOut(Out):
    out_trade_no: str
    amount_fen: int
    status: str
    transaction_id: str | None
    confirmed_via: str | None
    created_at: AwareDatetime
    paid_at: AwareDatetime | None
    last_error: str | None


class RefundOut(Out):
    out_refund_no: str
    amount_fen: int
    status: str
    reason: str
    last_error: str | None
    created_at: AwareDatetime


class OrderPaymentsOut(Out):
    order_id: int
    payments: list[PaymentOut]
    refunds: list[RefundOut]


class OrderPayments:
    @operation("wechat.order_payments", roles=STAFF, tags=TAGS, response=OrderPaymentsOut,
               summary="WeChat trades and refunds of an order", errors=(404,))
    def on_get(self, req, resp, order_id):
        from sqlalchemy import select
        s = req.context.session
        order = get_order(s, order_id)
        check_order(req.context.caller, order)
        pays = s.scalars(select(WechatPayment).where(WechatPayment.order_id == order.id).order_by(WechatPayment.id))
        refunds = s.scalars(select(WechatRefund).where(WechatRefund.order_id == order.id).order_by(WechatRefund.id))
        resp.media = {"order_id": order.id,
                      "payments": [PaymentOut.model_validate(p).model_dump(mode="json") for p in pays],
                      "refunds": [RefundOut.model_validate(r).model_dump(mode="json") for r in refunds]}


# ----------------------------------------------------------------- the shop

class ShopFeatures(Out):
    loyalty: bool = Field(description="points balance at /api/v1/members/{customer_id}")
    prescription_upload: bool = Field(description="Rx orders can be placed; the prescription is uploaded to "
                                                  "/api/v1/orders/{id}/prescription")
    wechat_pay: bool


class ShopOut(Out):
    customer_id: int
    store_id: int | None = Field(description="the customer's store (a store QR code binds it)")
    channel: str
    rx_notice: str
    features: ShopFeatures


class Shop:
    @operation("wechat.shop", roles=CUSTOMER, tags=TAGS, response=ShopOut, summary="What the H5 shop needs to know")
    def on_get(self, req, resp):
        ctx, caller = req.context.ctx, req.context.caller
        customer = req.context.session.get(Customer, caller.customer_id)
        if customer is None:
            raise NotFound("no such customer")
        caps = {c for answer in ctx.registry.collect("capabilities") for c in answer}
        resp.media = {"customer_id": customer.id, "store_id": customer.store_id, "channel": server.CHANNEL,
                      "rx_notice": RX_NOTICE,
                      "features": {"loyalty": ctx.registry.is_enabled("loyalty"),
                                   "prescription_upload": "prescription_review" in caps,
                                   "wechat_pay": not _settings(req).pay_missing}}


class StatusOut(Out):
    settings: dict = Field(description="the [wechat] configuration; secrets only as 'set' / 'not set'")
    token_store: Literal["redis", "database"]
    missing: dict[str, list[str]]


class Status:
    @operation("wechat.status", roles=("admin",), tags=TAGS, response=StatusOut,
               summary="The WeChat configuration (without secrets)")
    def on_get(self, req, resp):
        s = _settings(req)
        resp.media = {"settings": s.public(), "token_store": "redis" if s.redis_url else "database",
                      "missing": {"server": s.server_missing, "api": s.api_missing, "oauth": s.oauth_missing,
                                  "pay": s.pay_missing, "refund": s.refund_missing}}


class H5Page:
    @operation("wechat.h5", public=True, tags=TAGS, summary="The H5 shop (a single page)",
               extra={"x-content-type": HTML, "responses": {304: {"description": "Not modified (ETag)"}}})
    def on_get(self, req, resp):
        send_static(req, resp, H5_ROOT / "index.html", cache="no-store")


class H5Asset:
    @operation("wechat.h5_asset", public=True, tags=TAGS, summary="A file of the H5 shop", errors=(404,),
               extra={"x-content-type": sorted({t.split(";")[0] for t in CONTENT_TYPES.values()}),
                      "responses": {304: {"description": "Not modified (ETag)"}}})
    def on_get(self, req, resp, filepath):
        parts = filepath.split("/")
        if "\x00" in filepath:  # no file name holds one (and the file system would raise on it)
            raise NotFound(f"no H5 file {filepath!r}")
        path = (H5_ROOT / filepath).resolve()
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts) or H5_ROOT not in path.parents \
                or path.suffix not in CONTENT_TYPES or not path.is_file():
            raise NotFound(f"no H5 file {filepath!r}")
        send_static(req, resp, path, cache="no-cache")


def routes() -> list[tuple[str, object]]:
    order = f"{V1}/orders/{{order_id:{ID}}}"
    return [
        ("/wechat/callback", Callback()),
        ("/wechat/pay/notify", PayNotify()),
        ("/wechat/oauth/start", OAuthStart()),
        ("/wechat/oauth/callback", OAuthCallback()),
        ("/wechat/oauth/exchange", OAuthExchange()),
        (f"{order}/wechat-pay", WechatPay()),
        (f"{order}/wechat-payments", OrderPayments()),
        (f"{V1}/wechat/shop", Shop()),
        (f"{V1}/wechat/status", Status()),
        ("/h5", H5Page()),
        ("/h5/{filepath:path}", H5Asset()),
    ]
