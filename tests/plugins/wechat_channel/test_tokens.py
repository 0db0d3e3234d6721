"""The access token shared by every worker: one fetch under concurrency (database and Redis), double-checked
refresh, compare-and-clear invalidation, bounded retries and timeouts; secrets never in the logs."""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

import pytest
import redis

from core.db import utcnow
from plugins.wechat_channel import tokens as tokens_module
from plugins.wechat_channel.settings import settings_of
from plugins.wechat_channel.tokens import AccessTokens, DatabaseBackend, RedisBackend, TokenUnavailable

from .helpers import API_KEY, SECRET, run_threads

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix():
    prefix = f"pharmo2o-test:{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def make_tokens(wx, backend_name, prefix=None):
    settings = settings_of(wx.ctx.config)
    if backend_name == "redis":
        backend = RedisBackend(REDIS_URL, settings.appid, settings.timeout_seconds, prefix=prefix)
    else:
        backend = DatabaseBackend(wx.ctx, settings.appid)
    return AccessTokens(wx.ctx, settings, backend=backend)


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_concurrent_workers_fetch_one_token(wx, backend, redis_prefix):
    wx.fake.token_delay = 0.3  # a slow WeChat: every worker finds the token missing at once
    results, errors = run_threads(8, lambda i: make_tokens(wx, backend, redis_prefix).get())
    assert errors == []
    assert wx.fake.token_fetches == 1
    assert len(set(results)) == 1 and results[0] in wx.fake.valid_tokens
    assert make_tokens(wx, backend, redis_prefix).get() == results[0]  # shared: no fetch for a new worker
    assert wx.fake.token_fetches == 1


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_refresh_is_double_checked_and_invalidation_compares(wx, backend, redis_prefix):
    a, b = make_tokens(wx, backend, redis_prefix), make_tokens(wx, backend, redis_prefix)
    first = a.get()
    a.invalidate(first)  # WeChat rejected it in worker a
    second = a.refresh(stale=first)
    assert second != first and wx.fake.token_fetches == 2
    assert b.refresh(stale=first) == second and wx.fake.token_fetches == 2  # b saw a's new token: no fetch
    b.invalidate(first)  # a late report about the old token clears nothing
    assert b.get() == second and wx.fake.token_fetches == 2


def test_a_token_near_expiry_is_refreshed_before_wechat_rejects_it(wx):
    t = make_tokens(wx, "database")
    old = t.get()
    t.backend.write("test", old, utcnow() + dt.timedelta(minutes=2))
    assert t.get() != old and wx.fake.token_fetches == 2


def test_fetch_attempts_are_bounded_when_wechat_is_down(wx):
    t = make_tokens(wx, "database")
    wx.fake.stop()
    started = time.monotonic()
    with pytest.raises(TokenUnavailable, match="after 3 attempt"):
        t.get()
    assert time.monotonic() - started < 5
    assert t.backend.acquire("someone-else")  # the lease was released


def test_a_slow_wechat_times_out(make_wx):
    wx = make_wx(timeout_seconds=0.3, token_retries=2)
    wx.fake.token_delay = 2
    started = time.monotonic()
    with pytest.raises(TokenUnavailable, match="ReadTimeout"):
        make_tokens(wx, "database").get()
    assert time.monotonic() - started < 2


def test_a_wrong_secret_is_not_retried(make_wx):
    wx = make_wx(secret="not-the-secret-value")
    with pytest.raises(TokenUnavailable, match="40125"):
        make_tokens(wx, "database").get()
    assert wx.fake.requests.count(("GET", "/cgi-bin/token")) == 1


def test_waiting_for_another_refresher_is_bounded(wx, monkeypatch):
    t = make_tokens(wx, "database")
    assert t.backend.acquire("a-stuck-worker")
    monkeypatch.setattr(tokens_module, "WAIT", 0.3)
    with pytest.raises(TokenUnavailable, match="lease"):
        t.get()


def test_redis_is_used_when_configured(make_wx, redis_prefix):
    wx = make_wx(redis_url=REDIS_URL)
    assert isinstance(AccessTokens(wx.ctx, settings_of(wx.ctx.config)).backend, RedisBackend)
    assert wx.api.get("/api/v1/wechat/status").json["token_store"] == "redis"
    client = redis.Redis.from_url(REDIS_URL)
    AccessTokens(wx.ctx, settings_of(wx.ctx.config)).get()
    key = f"pharmo2o:wechat:{settings_of(wx.ctx.config).appid}:access_token"
    assert client.get(key) is not None and 7000 < client.ttl(key) <= 7200
    client.delete(key)


def test_secrets_and_tokens_never_reach_the_logs(make_wx, caplog, certs):
    wx = make_wx(sign_type="HMAC-SHA256")
    caplog.set_level(logging.DEBUG)
    order = wx.order()
    pay = wx.wechat_pay(order["id"]).json
    wx.notify(wx.fake.notification(pay["out_trade_no"]))
    wx.dispatch()  # a template message: token fetch with the AppSecret, then a call with the token
    wx.api.post(f"/api/v1/orders/{order['id']}/refund", role="store_manager", json={"reason": "test"})
    wx.dispatch()  # the refund, signed with the API key, with the merchant certificate
    assert wx.fake.refunds and wx.fake.templates
    text = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "Calculate Signature URL" in text or "Request to WeChat API" in text  # wechatpy did log at DEBUG
    for secret in (SECRET, API_KEY, *wx.fake.valid_tokens, pay["js_params"]["paySign"]):
        assert secret not in text, "a secret reached the log"
