"""A fake WeChat on 127.0.0.1: the Official Account API, OAuth and WeChat Pay (v2), answering as WeChat does.

The plugin reaches it through its own transport adapter (``[wechat] api_base``,
``pay_api_base`` and ``oauth_base`` point here). Every Pay answer is signed
with wechatpy's ``calculate_signature`` (or ``calculate_signature_hmac`` when
the request was HMAC-SHA256), and every request signature is checked the
same way, as WeChat Pay would. Notifications are built with ``dict_to_xml``
and signed like WeChat signs them.
"""
from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
import xmltodict
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac, dict_to_xml


def sign(data: dict, key: str, sign_type: str = "MD5") -> str:
    return (calculate_signature_hmac if sign_type == "HMAC-SHA256" else calculate_signature)(data, key)


class FakeWeChat:
    def __init__(self, *, appid: str, secret: str, mch_id: str, api_key: str) -> None:
        self.appid, self.secret, self.mch_id, self.api_key = appid, secret, mch_id, api_key
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.token_fetches = 0
        self.token_delay = 0.0  # seconds the token endpoint takes (widens races)
        self.valid_tokens: set[str] = set()
        self.templates: list[dict] = []
        self.template_errors: list[dict] = []  # answers to give to the next template sends, first to last
        self.template_hang = 0.0  # seconds to wait before answering a template send (a timeout)
        self.orders: dict[str, dict] = {}  # out_trade_no -> the unified order as received (+ state)
        self.refunds: dict[str, dict] = {}  # out_refund_no -> refund request
        self.refund_certs: list = []
        self.oauth_codes: dict[str, dict] = {}
        self.next_user: dict = {"openid": "o-user-1"}  # who "signs in" at the authorize page
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: str, content_type: str, headers: dict | None = None):
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
                    pass

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def _route(self, method):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with fake.lock:
                    fake.requests.append((method, parts.path))
                handler = {
                    ("GET", "/cgi-bin/token"): fake._token,
                    ("POST", "/cgi-bin/message/template/send"): fake._template,
                    ("GET", "/sns/oauth2/access_token"): fake._oauth_token,
                    ("GET", "/connect/oauth2/authorize"): fake._authorize,
                    ("POST", "/pay/unifiedorder"): fake._unifiedorder,
                    ("POST", "/pay/orderquery"): fake._orderquery,
                    ("POST", "/pay/closeorder"): fake._closeorder,
                    ("POST", "/secapi/pay/refund"): fake._refund,
                }.get((method, parts.path))
                if handler is None:
                    return self._answer(404, "not found", "text/plain")
                status, text, ctype, headers = handler(query, body)
                self._answer(status, text, ctype, headers)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-wechat", daemon=True)

    def start(self) -> "FakeWeChat":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    # ---------------------------------------------------------- official account

    @staticmethod
    def _json(data: dict):
        return 200, json.dumps(data, ensure_ascii=False), "application/json; encoding=utf-8", None

    def _token(self, q, body):
        if self.token_delay:
            time.sleep(self.token_delay)
        if q.get("appid") != self.appid or q.get("secret") != self.secret:
            return self._json({"errcode": 40125, "errmsg": "invalid appsecret"})
        with self.lock:
            self.token_fetches += 1
            token = f"TOKEN{self.token_fetches}-{secrets.token_hex(8)}"
            self.valid_tokens = {token}  # WeChat keeps one token valid per account
        return self._json({"access_token": token, "expires_in": 7200})

    def revoke_tokens(self) -> None:
        with self.lock:
            self.valid_tokens = set()

    def _template(self, q, body):
        if self.template_hang:
            time.sleep(self.template_hang)
        with self.lock:
            if q.get("access_token") not in self.valid_tokens:
                return self._json({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
            if self.template_errors:
                return self._json(self.template_errors.pop(0))
            data = json.loads(body)
            msgid = next(self.seq) + 1000
            self.templates.append({**data, "msgid": msgid})
        return self._json({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    # --------------------------------------------------------------------- oauth

    def _authorize(self, q, body):
        code = secrets.token_hex(8)
        with self.lock:
            self.oauth_codes[code] = dict(self.next_user)
        target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
        return 302, "", "text/plain", {"Location": target}

    def oauth_code(self, **user) -> str:
        """A code as WeChat would hand it to the callback for ``user`` (openid, unionid, is_snapshotuser)."""
        code = secrets.token_hex(8)
        with self.lock:
            self.oauth_codes[code] = user
        return code

    def _oauth_token(self, q, body):
        if q.get("appid") != self.appid or q.get("secret") != self.secret:
            return self._json({"errcode": 40125, "errmsg": "invalid appsecret"})
        with self.lock:
            user = self.oauth_codes.pop(q.get("code", ""), None)
        if user is None:
            return self._json({"errcode": 40029, "errmsg": "invalid code"})
        return self._json({"access_token": "OAUTH-" + secrets.token_hex(8), "expires_in": 7200,
                           "refresh_token": "R-" + secrets.token_hex(8), "scope": "snsapi_base", **user})

    # ----------------------------------------------------------------------- pay

    def _xml(self, data: dict, sign_type: str = "MD5", status: int = 200):
        data = {k: v for k, v in data.items() if v is not None}
        if sign_type == "HMAC-SHA256":
            data["sign_type"] = sign_type
        return status, dict_to_xml(data, sign(data, self.api_key, sign_type)), "text/xml", None

    def _pay_request(self, body: bytes) -> tuple[dict | None, str]:
        data = xmltodict.parse(body.decode("utf-8"))["xml"]
        sign_type = data.get("sign_type") or "MD5"
        given = data.pop("sign", None)
        if given != sign(data, self.api_key, sign_type):
            return None, sign_type
        if data.get("appid") != self.appid or data.get("mch_id") != self.mch_id:
            return None, sign_type
        return data, sign_type

    def _fail(self, sign_type, err_code, des):
        return self._xml({"return_code": "SUCCESS", "return_msg": "OK", "appid": self.appid, "mch_id": self.mch_id,
                          "nonce_str": secrets.token_hex(8), "result_code": "FAIL", "err_code": err_code,
                          "err_code_des": des}, sign_type)

    def _unifiedorder(self, q, body):
        data, sign_type = self._pay_request(body)
        if data is None:
            return 200, dict_to_xml({"return_code": "FAIL", "return_msg": "签名错误"}), "text/xml", None
        with self.lock:
            known = self.orders.get(data["out_trade_no"])
            if known is not None:
                return self._fail(sign_type, "OUT_TRADE_NO_USED", "商户订单号重复")
            prepay_id = "wx" + secrets.token_hex(14)
            self.orders[data["out_trade_no"]] = {**data, "prepay_id": prepay_id, "state": "NOTPAY",
                                                 "sign_type": sign_type}
        return self._xml({"return_code": "SUCCESS", "return_msg": "OK", "appid": self.appid,
                          "mch_id": self.mch_id, "nonce_str": secrets.token_hex(8), "result_code": "SUCCESS",
                          "prepay_id": prepay_id, "trade_type": "JSAPI"}, sign_type)

    def order_by_prepay(self, prepay_id: str) -> dict:
        return next(o for o in self.orders.values() if o["prepay_id"] == prepay_id)

    def _paid_fields(self, order: dict) -> dict:
        return {"appid": self.appid, "mch_id": self.mch_id, "openid": order["openid"], "bank_type": "CMC",
                "cash_fee": order["total_fee"], "fee_type": "CNY", "is_subscribe": "Y",
                "out_trade_no": order["out_trade_no"], "total_fee": order["total_fee"], "trade_type": "JSAPI",
                "transaction_id": order["transaction_id"], "time_end": time.strftime("%Y%m%d%H%M%S"),
                "attach": order.get("attach")}

    def _orderquery(self, q, body):
        data, sign_type = self._pay_request(body)
        if data is None:
            return 200, dict_to_xml({"return_code": "FAIL", "return_msg": "签名错误"}), "text/xml", None
        order = self.orders.get(data.get("out_trade_no"))
        if order is None:
            return self._fail(sign_type, "ORDERNOTEXIST", "此交易订单号不存在")
        fields = {"return_code": "SUCCESS", "return_msg": "OK", "result_code": "SUCCESS",
                  "nonce_str": secrets.token_hex(8), "trade_state": order["state"],
                  "out_trade_no": order["out_trade_no"], "appid": self.appid, "mch_id": self.mch_id}
        if order["state"] == "SUCCESS":
            fields.update(self._paid_fields(order))
        return self._xml(fields, sign_type)

    def _closeorder(self, q, body):
        data, sign_type = self._pay_request(body)
        if data is None:
            return 200, dict_to_xml({"return_code": "FAIL", "return_msg": "签名错误"}), "text/xml", None
        order = self.orders.get(data.get("out_trade_no"))
        if order is not None and order["state"] == "SUCCESS":
            return self._fail(sign_type, "ORDERPAID", "订单已支付")
        if order is not None:
            order["state"] = "CLOSED"
        return self._xml({"return_code": "SUCCESS", "return_msg": "OK", "result_code": "SUCCESS",
                          "appid": self.appid, "mch_id": self.mch_id, "nonce_str": secrets.token_hex(8)}, sign_type)

    def _refund(self, q, body):
        data, sign_type = self._pay_request(body)
        if data is None:
            return 200, dict_to_xml({"return_code": "FAIL", "return_msg": "签名错误"}), "text/xml", None
        with self.lock:
            known = self.refunds.setdefault(data["out_refund_no"], {**data, "refund_id": "50" + secrets.token_hex(8)})
        return self._xml({"return_code": "SUCCESS", "return_msg": "OK", "result_code": "SUCCESS",
                          "appid": self.appid, "mch_id": self.mch_id, "nonce_str": secrets.token_hex(8),
                          "transaction_id": known.get("transaction_id"), "out_trade_no": known.get("out_trade_no"),
                          "out_refund_no": known["out_refund_no"], "refund_id": known["refund_id"],
                          "refund_fee": known["refund_fee"], "total_fee": known["total_fee"],
                          "cash_fee": known["total_fee"]}, sign_type)

    # ------------------------------------------------- the customer pays: notification

    def mark_paid(self, out_trade_no: str) -> dict:
        with self.lock:
            order = self.orders[out_trade_no]
            if order["state"] != "SUCCESS":
                order["state"] = "SUCCESS"
                order["transaction_id"] = "4200" + time.strftime("%Y%m%d") + secrets.token_hex(6)
            return order

    def notification(self, out_trade_no: str, /, *, sign_type: str | None = None, key: str | None = None,
                     **override) -> str:
        """The payment notification WeChat Pay posts for a paid trade, signed as WeChat signs it.

        ``override`` changes fields before signing (``total_fee=...`` is a notification for another amount,
        as WeChat would sign it); ``key`` signs with another key (a forgery).
        """
        order = self.mark_paid(out_trade_no)
        sign_type = sign_type or order["sign_type"]
        fields = {"return_code": "SUCCESS", "result_code": "SUCCESS", "nonce_str": secrets.token_hex(16),
                  **self._paid_fields(order), **override}
        fields = {k: v for k, v in fields.items() if v is not None}
        if sign_type == "HMAC-SHA256":
            fields["sign_type"] = sign_type
        return dict_to_xml(fields, sign(fields, key or self.api_key, sign_type))

    def notify(self, out_trade_no: str, **kw) -> requests.Response:
        """Post the notification to the ``notify_url`` the unified order named (a live server)."""
        url = self.orders[out_trade_no]["notify_url"]
        return requests.post(url, data=self.notification(out_trade_no, **kw).encode("utf-8"),
                             headers={"Content-Type": "text/xml"}, timeout=10)
