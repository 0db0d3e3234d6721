"""Customer sign-in through WeChat OAuth (snsapi_base by default) and the hand-over of a customer token.

::

    GET /wechat/oauth/start?next=/h5/...   next must be a path on this site (else /h5/)
        state = random, stored hashed (10 min, single use) and bound to this browser by a cookie
        -> 302 open.weixin.qq.com/connect/oauth2/authorize?...&state=<state>#wechat_redirect
    GET /wechat/oauth/callback?code=&state=
        state consumed atomically (unknown, used, expired, other browser -> 400)
        code -> openid (+ unionid); a snapshot-page virtual user -> 403
        customer found or created by openid (unionid stored), bound to the follower's store
        one-time login code (60 s, hashed) in an HttpOnly cookie -> 302 next
    POST /wechat/oauth/exchange   (the H5 page, same origin)
        the cookie's code consumed atomically -> {token, expires_at, customer_id}; cookie cleared

The customer token never appears in a URL (so in no access log, history or
Referer); the code in the cookie is useless after one exchange or a minute.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from urllib.parse import urlsplit

import requests
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatOAuthException

from core import people
from core.api import issue_customer_token
from core.auth import Caller
from core.db import utcnow
from core.errors import ValidationFailed
from core.models import Customer

from . import sdk
from .models import Follower, LoginCode, OAuthState
from .settings import Settings

__all__ = ["safe_next", "start", "callback", "exchange", "OAuthRefused", "STATE_COOKIE", "LOGIN_COOKIE",
           "DEFAULT_NEXT"]

log = logging.getLogger("pharmo2o.wechat.oauth")
STATE_TTL = dt.timedelta(minutes=10)
CODE_TTL = dt.timedelta(seconds=60)
STATE_COOKIE = "p2o_wx_oauth"
LOGIN_COOKIE = "p2o_wx_login"
DEFAULT_NEXT = "/h5/"
OAUTH_CALLER = Caller(role="system", name="wechat_oauth")


class OAuthRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site, else the shop's front page (never another host)."""
    if not value or len(value) > 500:
        return DEFAULT_NEXT
    if not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return value


def start(ctx, settings: Settings, next_path: str | None) -> tuple[str, str]:
    """``(WeChat authorize URL, browser cookie value)`` for a new sign-in."""
    state, browser = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    with ctx.transaction() as s:
        s.add(OAuthState(state_hash=_hash(state), browser_hash=_hash(browser), next_path=safe_next(next_path),
                         expires_at=utcnow() + STATE_TTL))
    url = sdk.oauth(settings, settings.link("/wechat/oauth/callback"), state).authorize_url
    return url, browser


def _consume_state(ctx, state: str, browser: str | None) -> str:
    now = utcnow()
    with ctx.transaction() as s:
        row = s.scalars(select(OAuthState).where(OAuthState.state_hash == _hash(state))).one_or_none()
        if row is None:
            raise OAuthRefused(400, "unknown sign-in state: start again")
        if not browser or not secrets.compare_digest(row.browser_hash, _hash(browser)):
            raise OAuthRefused(400, "this sign-in was started in another browser: start again")
        used = s.execute(update(OAuthState).where(OAuthState.id == row.id, OAuthState.used_at.is_(None),
                                                  OAuthState.expires_at > now).values(used_at=now)).rowcount
        if not used:
            raise OAuthRefused(400, "this sign-in link was already used or has expired: start again")
        return row.next_path


def _customer_for(ctx, settings: Settings, openid: str, unionid: str | None) -> int:
    """The customer with ``openid`` (created on first sign-in; concurrent first sign-ins make one)."""
    for _ in range(3):
        with ctx.transaction() as s:
            customer = s.scalars(select(Customer).where(Customer.openid == openid)).one_or_none()
            if customer is not None:
                if unionid and not customer.unionid:
                    customer.unionid = unionid
                return customer.id
            follower = s.get(Follower, openid)
            data = {"name": "微信用户", "openid": openid}
            if unionid:
                data["unionid"] = unionid
            if follower is not None and follower.store_id is not None:
                data["store_id"] = follower.store_id
            try:
                with s.begin_nested():
                    created = people.create_customer(s, data, OAUTH_CALLER)
            except (IntegrityError, ValidationFailed):  # the same person signing in twice at once: theirs
                continue
            return created.id
    raise OAuthRefused(503, "could not record the customer; try again")


def callback(ctx, settings: Settings, code: str | None, state: str | None, browser: str | None) -> tuple[str, str]:
    """``(next path, one-time login code)`` after WeChat sent the customer back."""
    if not code or not state or len(code) > 200 or len(state) > 200:
        raise OAuthRefused(400, "code and state are required")
    next_path = _consume_state(ctx, state, browser)
    try:
        result = sdk.oauth(settings, settings.link("/wechat/oauth/callback")).fetch_access_token(code)
    except WeChatOAuthException as exc:
        log.info("WeChat refused an OAuth code: %s", exc.errcode)
        raise OAuthRefused(400, "WeChat did not accept the sign-in code: start again") from None
    except requests.RequestException:
        raise OAuthRefused(502, "WeChat did not answer: try again") from None
    openid, unionid = result.get("openid"), result.get("unionid")
    if not isinstance(openid, str) or not openid or len(openid) > 64:
        raise OAuthRefused(502, "WeChat returned no openid")
    if str(result.get("is_snapshotuser", "0")) == "1" or openid in settings.snapshot_openids:
        raise OAuthRefused(403, "please open the shop in WeChat (the preview page cannot sign in)")
    customer_id = _customer_for(ctx, settings, openid, unionid if isinstance(unionid, str) and unionid else None)
    login = secrets.token_urlsafe(32)
    with ctx.transaction() as s:
        s.add(LoginCode(code_hash=_hash(login), customer_id=customer_id, expires_at=utcnow() + CODE_TTL))
    return next_path, login


def exchange(ctx, login: str | None):
    """The customer token for a one-time login code (:class:`core.api.tokens.IssuedToken`)."""
    if not login or len(login) > 200:
        raise OAuthRefused(401, "no sign-in to complete: sign in through WeChat")
    now = utcnow()
    with ctx.transaction() as s:
        row = s.scalars(select(LoginCode).where(LoginCode.code_hash == _hash(login))).one_or_none()
        if row is None:
            raise OAuthRefused(401, "unknown sign-in code: sign in again")
        used = s.execute(update(LoginCode).where(LoginCode.id == row.id, LoginCode.used_at.is_(None),
                                                 LoginCode.expires_at > now).values(used_at=now)).rowcount
        if not used:
            raise OAuthRefused(401, "the sign-in code was already used or has expired: sign in again")
        return issue_customer_token(ctx, s, row.customer_id)


def cleanup(ctx, now: dt.datetime | None = None, keep_pushes: dt.timedelta = dt.timedelta(days=7)) -> int:
    """Delete expired states and login codes (a day after expiry) and the dedupe rows of old pushes
    (WeChat retries a push within seconds; a week is plenty)."""
    from sqlalchemy import delete

    from .models import InboundMessage
    now = now or utcnow()
    with ctx.transaction() as s:
        n = s.execute(delete(OAuthState).where(OAuthState.expires_at < now - dt.timedelta(days=1))).rowcount
        n += s.execute(delete(LoginCode).where(LoginCode.expires_at < now - dt.timedelta(days=1))).rowcount
        n += s.execute(delete(InboundMessage).where(InboundMessage.created_at < now - keep_pushes)).rowcount
    return n
