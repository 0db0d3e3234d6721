"""The ``[wechat]`` configuration section, read once per configuration and checked.

Every key is optional so that the plugin boots unconfigured (its endpoints
then answer 503 naming the missing keys). Secrets (``secret``, ``token``,
``encoding_aes_key``, ``api_key``) are kept out of ``repr`` and of every error
message, and :func:`plugins.wechat_channel.sdk.install_redaction` keeps them
out of the logs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from core.config import SectionCache

__all__ = ["Settings", "SettingsError", "settings_of", "parse", "TEMPLATE_EVENTS", "SECRET_KEYS",
           "DEFAULT_API_BASE", "DEFAULT_PAY_API_BASE", "DEFAULT_OAUTH_BASE"]

DEFAULT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_PAY_API_BASE = "https://api.mch.weixin.qq.com"
DEFAULT_OAUTH_BASE = "https://open.weixin.qq.com"
#: order events that may have a template message (``[wechat.templates]``)
TEMPLATE_EVENTS = ("paid", "ready", "dispatched", "rx_approved", "rx_rejected", "refunded")
SECRET_KEYS = ("secret", "token", "encoding_aes_key", "api_key")
MODES = ("plain", "compatible", "safe")
SIGN_TYPES = ("MD5", "HMAC-SHA256")
SCOPES = ("snsapi_base", "snsapi_userinfo")


class SettingsError(ValueError):
    """A ``[wechat]`` value that cannot be used; the message names the key (never a secret's value)."""


@dataclass(frozen=True)
class Settings:
    appid: str = ""  # the Official Account's AppID (wx...)
    secret: str = field(default="", repr=False)  # its AppSecret
    token: str = field(default="", repr=False)  # the server URL token (signature of pushes)
    encoding_aes_key: str = field(default="", repr=False)  # 43 characters, safe/compatible modes
    message_mode: str = "plain"  # plain | compatible | safe
    mch_id: str = ""  # WeChat Pay merchant id
    api_key: str = field(default="", repr=False)  # WeChat Pay API key (v2), 32 characters
    sign_type: str = "MD5"  # how we sign Pay requests: MD5 | HMAC-SHA256 (both verified on notifications)
    cert_path: str = ""  # merchant certificate (PEM) for refunds
    cert_key_path: str = ""  # its private key (PEM)
    base_url: str = ""  # this site as WeChat and customers reach it, e.g. https://shop.example.com
    oauth_scope: str = "snsapi_base"
    templates: dict[str, str] = field(default_factory=dict)  # order event -> template id
    notify_channels: tuple[str, ...] = ("wechat",)  # orders of these channels get template messages
    redis_url: str = ""  # share the access token through Redis (else the database)
    timeout_seconds: float = 5.0  # every outbound call
    token_retries: int = 3  # attempts to fetch an access token before giving up
    api_base: str = DEFAULT_API_BASE  # overrides for tests or a forwarding proxy
    pay_api_base: str = DEFAULT_PAY_API_BASE
    oauth_base: str = DEFAULT_OAUTH_BASE
    welcome_text: str = "欢迎关注！回复药品名称即可查询，点击菜单进入商城下单。"
    search_limit: int = 5  # products listed in a keyword answer
    snapshot_openids: tuple[str, ...] = ()  # known virtual (snapshot-page) openids, refused like the flag
    prepay_minutes: int = 30  # a WeChat order stays payable at most this long (and never past the order's expiry)
    reconcile_after_minutes: int = 5  # `wechat reconcile` asks about payments older than this

    # ------------------------------------------------------------ readiness

    def missing(self, *keys: str) -> list[str]:
        return [f"wechat.{k}" for k in keys if not getattr(self, k)]

    @property
    def server_missing(self) -> list[str]:
        keys = ["appid", "token"] + (["encoding_aes_key"] if self.message_mode != "plain" else [])
        return self.missing(*keys)

    @property
    def api_missing(self) -> list[str]:
        return self.missing("appid", "secret")

    @property
    def oauth_missing(self) -> list[str]:
        return self.missing("appid", "secret", "base_url")

    @property
    def pay_missing(self) -> list[str]:
        return self.missing("appid", "mch_id", "api_key", "base_url")

    @property
    def refund_missing(self) -> list[str]:
        return self.pay_missing + self.missing("cert_path", "cert_key_path")

    def secrets(self) -> list[str]:
        """The secret values (for the log redaction)."""
        return [v for v in (self.secret, self.token, self.encoding_aes_key, self.api_key) if v]

    def link(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def public(self) -> dict[str, Any]:
        """What may be shown (``pharmo2o wechat status``, the admin API): secrets only as set / not set."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in SECRET_KEYS:
                out[name] = "set" if value else "not set"
            elif isinstance(value, tuple):
                out[name] = list(value)
            else:
                out[name] = value
        return out


def _str(key: str, value: Any, limit: int = 500) -> str:
    if isinstance(value, int) and not isinstance(value, bool):  # PHARMO2O_WECHAT__MCH_ID=123 arrives as int
        value = str(value)
    if not isinstance(value, str) or len(value) > limit:
        raise SettingsError(f"wechat.{key}: must be a string of at most {limit} characters")
    return value.strip()


def _secret(key: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 200:
        raise SettingsError(f"wechat.{key}: must be a string of at most 200 characters (value not shown)")
    return value.strip()


def _url(key: str, value: Any, *, https_only: bool = False) -> str:
    value = _str(key, value).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in (("https",) if https_only else ("http", "https")) or not parts.netloc \
            or parts.query or parts.fragment:
        raise SettingsError(f"wechat.{key}: {value!r} must be an absolute http(s) URL without query or fragment")
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SettingsError(f"wechat.{key}: {value!r} must be one of {', '.join(choices)}")
    return value


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SettingsError(f"wechat.{key}: {value!r} must be an integer from {lo} to {hi}")
    return value


def _names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"wechat.{key}: must be a list of non-empty strings")
    return tuple(value)


def parse(section: dict[str, Any]) -> Settings:
    """Settings from the ``[wechat]`` table; unknown keys are refused (a typo must not pass silently)."""
    known = set(Settings.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise SettingsError(f"wechat: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kw: dict[str, Any] = {}
    s = section
    for key in ("appid", "mch_id", "cert_path", "cert_key_path", "welcome_text"):
        if key in s:
            kw[key] = _str(key, s[key])
    for key in SECRET_KEYS:
        if key in s:
            kw[key] = _secret(key, s[key])
    if kw.get("appid") and not re.fullmatch(r"wx[0-9A-Za-z]{1,30}", kw["appid"]):
        raise SettingsError(f"wechat.appid: {kw['appid']!r} does not look like an AppID (wx followed by letters/digits)")
    if kw.get("mch_id") and not kw["mch_id"].isdigit():
        raise SettingsError(f"wechat.mch_id: {kw['mch_id']!r} must be digits")
    if kw.get("encoding_aes_key") and not re.fullmatch(r"[A-Za-z0-9+/]{43}", kw["encoding_aes_key"]):
        raise SettingsError("wechat.encoding_aes_key: must be the 43 characters WeChat shows (value not shown)")
    if kw.get("token") and not re.fullmatch(r"[A-Za-z0-9]{3,32}", kw["token"]):
        raise SettingsError("wechat.token: must be 3 to 32 letters or digits (value not shown)")
    if "message_mode" in s:
        kw["message_mode"] = _choice("message_mode", s["message_mode"], MODES)
    if "sign_type" in s:
        kw["sign_type"] = _choice("sign_type", s["sign_type"], SIGN_TYPES)
    if "oauth_scope" in s:
        kw["oauth_scope"] = _choice("oauth_scope", s["oauth_scope"], SCOPES)
    if s.get("base_url"):
        kw["base_url"] = _url("base_url", s["base_url"])
    for key in ("api_base", "pay_api_base", "oauth_base"):
        if s.get(key):
            kw[key] = _url(key, s[key])
    if s.get("redis_url"):
        value = _str("redis_url", s["redis_url"])
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError("wechat.redis_url: must be a redis://, rediss:// or unix:// URL")
        kw["redis_url"] = value
    if "templates" in s:
        value = s["templates"]
        if not isinstance(value, dict):
            raise SettingsError(f"wechat.templates: must be a table of event = template id ({', '.join(TEMPLATE_EVENTS)})")
        bad = sorted(set(value) - set(TEMPLATE_EVENTS))
        if bad:
            raise SettingsError(f"wechat.templates: unknown event(s) {', '.join(bad)}; known: {', '.join(TEMPLATE_EVENTS)}")
        kw["templates"] = {k: _str(f"templates.{k}", v, 100) for k, v in value.items() if v}
    for key in ("notify_channels", "snapshot_openids"):
        if key in s:
            kw[key] = _names(key, s[key])
    if "timeout_seconds" in s:
        value = s["timeout_seconds"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 30:
            raise SettingsError(f"wechat.timeout_seconds: {value!r} must be a number from 0.1 to 30")
        kw["timeout_seconds"] = float(value)
    for key, lo, hi in (("token_retries", 1, 10), ("search_limit", 1, 8), ("prepay_minutes", 5, 120),
                        ("reconcile_after_minutes", 0, 24 * 60)):
        if key in s:
            kw[key] = _int(key, s[key], lo, hi)
    return Settings(**kw)


def _redact(found: Settings) -> None:
    from .sdk import install_redaction
    install_redaction(found.secrets())


#: the checked settings of a :class:`core.config.Config`, cached by content
settings_of = SectionCache("wechat", parse, on_new=_redact)
