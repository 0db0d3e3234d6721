"""wechatpy objects made per use, each with a transport that puts a timeout on every call.

wechatpy's objects hold a ``requests`` session (one per object) and, for the
API client, a per-process token cache: they are made here for each unit of
work, never at import time or shared across a fork. Every session gets a
:class:`WeChatTransport`, which

* applies ``[wechat] timeout_seconds`` to every request that has no timeout
  (wechatpy passes none for the token fetch and OAuth calls), and
* sends ``api.weixin.qq.com`` / ``api.mch.weixin.qq.com`` calls to
  ``[wechat] api_base`` / ``pay_api_base`` when those are set (a forwarding
  proxy, or the fake WeChat of the tests); the token fetch and some APIs use
  absolute URLs, so overriding ``API_BASE_URL`` alone would miss them.

wechatpy logs the Pay signature input (which ends with the API key), request
bodies and URLs with ``secret=``/``access_token=`` at DEBUG level:
:func:`install_redaction` filters those records on the loggers that write them.
"""
from __future__ import annotations

import logging
import re
import threading

import requests
from requests.adapters import HTTPAdapter
from wechatpy import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.oauth import WeChatOAuth
from wechatpy.pay import WeChatPay

from .settings import DEFAULT_API_BASE, DEFAULT_OAUTH_BASE, DEFAULT_PAY_API_BASE, Settings

__all__ = ["WeChatTransport", "client", "pay", "oauth", "crypto", "install_redaction", "REDACTED"]

REDACTED = "[redacted]"


class WeChatTransport(HTTPAdapter):
    """A transport adapter with a default timeout and optional host rebasing."""

    def __init__(self, timeout: float, rebase: dict[str, str] | None = None) -> None:
        super().__init__(max_retries=0)
        self.timeout = timeout
        self.rebase = {k: v for k, v in (rebase or {}).items() if k.rstrip("/") != v.rstrip("/")}

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        for prefix, target in self.rebase.items():
            if request.url.startswith(prefix + "/"):
                request.url = target.rstrip("/") + request.url[len(prefix):]
                if not request.url.startswith("https://"):
                    cert = None  # no TLS, no client certificate
                break
        return super().send(request, stream=stream, timeout=self.timeout if timeout is None else timeout,
                            verify=verify, cert=cert, proxies=proxies)


def _mount(http: requests.Session, settings: Settings) -> None:
    transport = WeChatTransport(settings.timeout_seconds, {
        DEFAULT_API_BASE: settings.api_base, DEFAULT_PAY_API_BASE: settings.pay_api_base,
        DEFAULT_OAUTH_BASE: settings.oauth_base})
    http.mount("https://", transport)
    http.mount("http://", transport)


def client(settings: Settings, access_token: str | None = None) -> WeChatClient:
    """An Official Account API client using ``access_token`` (shared by :mod:`.tokens`); no auto-retry:
    wechatpy's retry recurses without a bound and refetches a token per process."""
    c = WeChatClient(settings.appid, settings.secret, access_token=access_token,
                     timeout=settings.timeout_seconds, auto_retry=False)
    _mount(c._http, settings)
    return c


def pay(settings: Settings, *, with_cert: bool = False) -> WeChatPay:
    p = WeChatPay(settings.appid, settings.api_key, settings.mch_id,
                  mch_cert=settings.cert_path if with_cert else None,
                  mch_key=settings.cert_key_path if with_cert else None, timeout=settings.timeout_seconds)
    _mount(p._http, settings)
    return p


def oauth(settings: Settings, redirect_uri: str, state: str = "") -> WeChatOAuth:
    o = WeChatOAuth(settings.appid, settings.secret, redirect_uri, scope=settings.oauth_scope, state=state)
    _mount(o._http, settings)
    o.OAUTH_BASE_URL = settings.oauth_base.rstrip("/") + "/connect/"
    return o


def crypto(settings: Settings) -> WeChatCrypto:
    return WeChatCrypto(settings.token, settings.encoding_aes_key, settings.appid)


# ----------------------------------------------------------------- log redaction

_QUERY_SECRET = re.compile(r"(?<![A-Za-z_])((?:secret|access_token|key|sign|paySign|code|refresh_token)=)[^&\s'\"]+",
                           re.IGNORECASE)
_XML_SECRET = re.compile(r"(<(?:sign|openid)>(?:<!\[CDATA\[)?)[^<\]]+", re.IGNORECASE)
_LOGGERS = ("wechatpy", "wechatpy.pay", "wechatpy.pay.utils", "wechatpy.pay.api.jsapi", "wechatpy.client.base",
            "wechatpy.oauth", "urllib3.connectionpool")


class Redaction(logging.Filter):
    """Rewrites a record's message without the known secrets, query-string credentials and signatures."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()  # configured secrets
        self.runtime: set[str] = set()  # access tokens seen by this process (bounded)
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: drop its arguments rather than fail
            message = str(record.msg)
        clean = _XML_SECRET.sub(r"\1" + REDACTED, _QUERY_SECRET.sub(r"\1" + REDACTED, message))
        for secret in sorted(self.secrets | self.runtime, key=len, reverse=True):
            clean = clean.replace(secret, REDACTED)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = None  # formatted again from the exception, which carries no secret of ours
        return True


_redaction = Redaction()


def install_redaction(secrets: list[str]) -> None:
    """Filter the loggers of wechatpy and urllib3; remember ``secrets`` (values of the configuration)."""
    with _redaction.lock:
        _redaction.secrets.update(s for s in secrets if len(s) >= 6)
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            if _redaction not in logger.filters:
                logger.addFilter(_redaction)


def remember_secret(value: str) -> None:
    """Keep a runtime credential (an access token) out of the logs too."""
    if value and len(value) >= 6:
        with _redaction.lock:
            if len(_redaction.runtime) > 100:  # access tokens rotate: keep the set bounded
                _redaction.runtime.clear()
            _redaction.runtime.add(value)
