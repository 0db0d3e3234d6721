"""The Official Account's access token, shared by every worker on every machine.

WeChat keeps one valid access token per account: fetching a new one
invalidates the old one after a short grace period, so workers that each
fetch their own keep breaking each other. Here the token lives in Redis
(``[wechat] redis_url``) or, without Redis, in the ``wechat_access_tokens``
row, and is refreshed by one process at a time::

    get():  stored and valid for > 5 min? -> use it
            else refresh(stale=that token)
    refresh(stale):
        loop until a deadline:
            stored token valid and not the stale one? -> use it   (someone else refreshed)
            take the lease (Redis SET NX PX / a conditional UPDATE of the row)
              got it: look again (double-check), else fetch from WeChat
                      (bounded attempts, each with a timeout), store, release
              not got: wait a little and look again
    call(fn):  fn(client); on 40001/40014/42001 invalidate that very token
               (compare-and-clear), refresh, and try once more — never more.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, TypeVar

import requests
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatClientException

from core.db import utcnow

from . import sdk
from .models import AccessTokenRow
from .settings import Settings

__all__ = ["AccessTokens", "TokenUnavailable", "TOKEN_ERRORS", "tokens_for"]

log = logging.getLogger("pharmo2o.wechat.tokens")
T = TypeVar("T")

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, token expired
MARGIN = dt.timedelta(minutes=5)  # refresh this long before WeChat's expiry
LEASE = dt.timedelta(seconds=20)  # how long one refresher may hold the lease
WAIT = 15.0  # how long a caller waits for another process's refresh


class TokenUnavailable(RuntimeError):
    """No access token could be had (WeChat refused or did not answer within the bounds)."""


@dataclass(frozen=True)
class Stored:
    token: str
    expires_at: dt.datetime

    def fresh(self, now: dt.datetime) -> bool:
        return self.expires_at - now > MARGIN


class DatabaseBackend:
    """The token in ``wechat_access_tokens``; the lease is a conditional UPDATE (both backends)."""

    name = "database"

    def __init__(self, ctx, appid: str) -> None:
        self.ctx, self.appid = ctx, appid

    def _ensure_row(self, session) -> None:
        if session.get(AccessTokenRow, self.appid) is None:
            try:
                with session.begin_nested():
                    session.add(AccessTokenRow(appid=self.appid))
                    session.flush()
            except IntegrityError:
                pass  # another process created it

    def read(self) -> Stored | None:
        with self.ctx.session() as s:
            row = s.execute(select(AccessTokenRow.token, AccessTokenRow.expires_at)
                            .where(AccessTokenRow.appid == self.appid)).one_or_none()
        if row is None or not row.token or row.expires_at is None:
            return None
        return Stored(row.token, row.expires_at)

    def acquire(self, owner: str) -> bool:
        now = utcnow()
        with self.ctx.transaction() as s:
            self._ensure_row(s)
            got = s.execute(update(AccessTokenRow).where(
                AccessTokenRow.appid == self.appid,
                (AccessTokenRow.lease_until.is_(None)) | (AccessTokenRow.lease_until < now)
            ).values(lease_owner=owner, lease_until=now + LEASE)).rowcount
        return bool(got)

    def write(self, owner: str, token: str, expires_at: dt.datetime) -> None:
        with self.ctx.transaction() as s:
            s.execute(update(AccessTokenRow).where(AccessTokenRow.appid == self.appid)
                      .values(token=token, expires_at=expires_at, updated_at=utcnow()))

    def release(self, owner: str) -> None:
        with self.ctx.transaction() as s:
            s.execute(update(AccessTokenRow).where(AccessTokenRow.appid == self.appid,
                                                   AccessTokenRow.lease_owner == owner)
                      .values(lease_owner=None, lease_until=None))

    def clear_if(self, token: str) -> None:
        with self.ctx.transaction() as s:
            s.execute(update(AccessTokenRow).where(AccessTokenRow.appid == self.appid, AccessTokenRow.token == token)
                      .values(token=None, expires_at=None))


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_CLEAR = ("local v = redis.call('get', KEYS[1]) if v and cjson.decode(v)['token'] == ARGV[1] then "
          "return redis.call('del', KEYS[1]) else return 0 end")
_redis_clients: dict[tuple[int, str], object] = {}
_redis_lock = threading.Lock()


def _redis(url: str, timeout: float):
    """One Redis client per process and URL (made after a fork, never inherited)."""
    import redis
    key = (os.getpid(), url)
    with _redis_lock:
        if key not in _redis_clients:
            _redis_clients[key] = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return _redis_clients[key]


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, appid: str, timeout: float, prefix: str = "pharmo2o:wechat") -> None:
        self.r = _redis(url, timeout)
        self.key = f"{prefix}:{appid}:access_token"
        self.lock_key = f"{prefix}:{appid}:access_token:lock"

    def read(self) -> Stored | None:
        raw = self.r.get(self.key)
        if raw is None:
            return None
        data = json.loads(raw)
        return Stored(data["token"], dt.datetime.fromisoformat(data["expires_at"]))

    def acquire(self, owner: str) -> bool:
        return bool(self.r.set(self.lock_key, owner, nx=True, px=int(LEASE.total_seconds() * 1000)))

    def write(self, owner: str, token: str, expires_at: dt.datetime) -> None:
        ttl = max(1, int((expires_at - utcnow()).total_seconds()))
        self.r.set(self.key, json.dumps({"token": token, "expires_at": expires_at.isoformat()}), ex=ttl)

    def release(self, owner: str) -> None:
        self.r.eval(_RELEASE, 1, self.lock_key, owner)

    def clear_if(self, token: str) -> None:
        self.r.eval(_CLEAR, 1, self.key, token)


class AccessTokens:
    """The shared token of one account; cheap to make (per use)."""

    def __init__(self, ctx, settings: Settings, *, backend=None) -> None:
        self.settings = settings
        self.backend = backend or (RedisBackend(settings.redis_url, settings.appid, settings.timeout_seconds)
                                   if settings.redis_url else DatabaseBackend(ctx, settings.appid))
        self.owner = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"

    def get(self) -> str:
        stored = self.backend.read()
        if stored is not None and stored.fresh(utcnow()):
            sdk.remember_secret(stored.token)
            return stored.token
        return self.refresh(stale=stored.token if stored else None)

    def refresh(self, stale: str | None) -> str:
        """A valid token other than ``stale``, fetched by at most one process at a time."""
        deadline = time.monotonic() + WAIT
        while True:
            stored = self.backend.read()
            if stored is not None and stored.token != stale and stored.fresh(utcnow()):
                sdk.remember_secret(stored.token)
                return stored.token
            if self.backend.acquire(self.owner):
                try:
                    stored = self.backend.read()  # double-check under the lease
                    if stored is not None and stored.token != stale and stored.fresh(utcnow()):
                        return stored.token
                    token, expires_at = self._fetch()
                    self.backend.write(self.owner, token, expires_at)
                    return token
                finally:
                    self.backend.release(self.owner)
            if time.monotonic() > deadline:
                raise TokenUnavailable(f"no access token after {WAIT:g}s: another process holds the refresh lease")
            time.sleep(0.05 + secrets.randbelow(100) / 1000)

    def _fetch(self) -> tuple[str, dt.datetime]:
        attempts = self.settings.token_retries
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                result = sdk.client(self.settings).fetch_access_token()
                token = result["access_token"]
                expires_in = int(result.get("expires_in", 7200))
                sdk.remember_secret(token)
                log.info("fetched a new WeChat access token (attempt %s, valid %ss)", attempt, expires_in)
                return token, utcnow() + dt.timedelta(seconds=expires_in)
            except WeChatClientException as exc:
                last = exc
                if exc.errcode not in (None, -1, 45009):  # -1: system busy; None: HTTP error; else: our config
                    break
            except requests.RequestException as exc:
                last = exc
            if attempt < attempts:
                time.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
        raise TokenUnavailable(f"WeChat gave no access token after {attempt} attempt(s): {_describe(last)}")

    def invalidate(self, token: str) -> None:
        """Forget ``token`` if it is still the stored one (another process may have replaced it already)."""
        self.backend.clear_if(token)

    def call(self, fn: Callable[..., T]) -> T:
        """``fn(client)`` with the shared token; one refresh and one retry when WeChat rejects the token."""
        token = self.get()
        try:
            return fn(sdk.client(self.settings, token))
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            log.info("WeChat rejected the access token (%s); refreshing once", exc.errcode)
            self.invalidate(token)
            token = self.refresh(stale=token)
            return fn(sdk.client(self.settings, token))


def _describe(exc: Exception | None) -> str:
    if isinstance(exc, WeChatClientException):
        return f"errcode {exc.errcode}: {exc.errmsg}"
    return f"{type(exc).__name__}" if exc is not None else "no answer"


def tokens_for(ctx, settings: Settings) -> AccessTokens:
    return AccessTokens(ctx, settings)
