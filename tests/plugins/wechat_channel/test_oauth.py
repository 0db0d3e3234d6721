"""Customer sign-in through WeChat OAuth: single-use state bound to the browser, redirects only to this site,
snapshot users refused, customers found or created by openid (unionid kept), the token handed over without a URL."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, update

from core.models import Customer
from plugins.wechat_channel.models import OAuthState
from plugins.wechat_channel.oauth import safe_next

from .helpers import APPID, event_message, post_push, push, run_threads


def start(wx, next_path="/h5/#/orders"):
    r = wx.api.client.simulate_get("/wechat/oauth/start", params={"next": next_path} if next_path else None)
    assert r.status_code == 302, r.text
    url = urlsplit(r.headers["location"])
    query = parse_qs(url.query)
    return r, url, {k: v[0] for k, v in query.items()}


def sign_in(wx, openid="o-new-1", next_path="/h5/#/orders", **user):
    r, _url, query = start(wx, next_path)
    browser = r.cookies["p2o_wx_oauth"].value
    code = wx.fake.oauth_code(openid=openid, **user)
    back = wx.api.client.simulate_get("/wechat/oauth/callback", params={"code": code, "state": query["state"]},
                                      cookies={"p2o_wx_oauth": browser})
    return back, query["state"], browser


def exchange(wx, back):
    login = back.cookies["p2o_wx_login"].value
    return wx.api.client.simulate_post("/wechat/oauth/exchange", cookies={"p2o_wx_login": login})


def customers(ctx, openid):
    with ctx.session() as s:
        return s.execute(select(Customer.id, Customer.unionid, Customer.store_id)
                         .where(Customer.openid == openid)).all()


def test_start_redirects_to_wechat_with_a_state_bound_to_the_browser(wx):
    r, url, query = start(wx)
    assert f"{url.scheme}://{url.netloc}" == wx.fake.url and url.path == "/connect/oauth2/authorize"
    assert url.fragment == "wechat_redirect"
    assert query["appid"] == APPID and query["scope"] == "snsapi_base" and query["response_type"] == "code"
    assert query["redirect_uri"] == "https://shop.example.com/wechat/oauth/callback"
    cookie = r.cookies["p2o_wx_oauth"]
    assert cookie.http_only and cookie.path == "/wechat/oauth" and cookie.secure and cookie.same_site == "Lax"
    with wx.ctx.session() as s:
        row = s.scalars(select(OAuthState)).one()
        assert row.next_path == "/h5/#/orders" and query["state"] not in (row.state_hash, row.browser_hash)


def test_callback_creates_the_customer_and_the_page_exchanges_a_one_time_code(wx):
    post_push(wx.api, push(event_message("o-new-1", "subscribe", key="qrscene_store:HOME")))  # followed in store
    back, _state, _browser = sign_in(wx, unionid="u-union-1")
    assert back.status_code == 302 and back.headers["location"] == "/h5/#/orders"
    assert back.headers["referrer-policy"] == "no-referrer" and back.headers["cache-control"] == "no-store"
    login = back.cookies["p2o_wx_login"]
    assert login.http_only and login.path == "/wechat/oauth/exchange" and login.max_age == 60
    [(customer_id, unionid, store_id)] = customers(wx.ctx, "o-new-1")
    assert unionid == "u-union-1" and store_id == wx.api.store_id
    r = exchange(wx, back)
    assert r.status_code == 200 and r.json["customer_id"] == customer_id
    assert r.headers["cache-control"] == "no-store"
    assert r.json["token"] not in back.headers["location"]
    me = wx.api.client.simulate_get("/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json['token']}"})
    assert me.json["role"] == "customer" and me.json["customer_id"] == customer_id
    again = exchange(wx, back)
    assert again.status_code == 401 and "already used" in again.json["detail"]
    assert wx.api.client.simulate_post("/wechat/oauth/exchange").status_code == 401


def test_a_returning_customer_is_found_by_openid_and_gets_the_unionid(wx):
    back, *_ = sign_in(wx, openid="o-customer-1", unionid="u-union-9")
    assert exchange(wx, back).json["customer_id"] == wx.api.customer_id
    assert customers(wx.ctx, "o-customer-1") == [(wx.api.customer_id, "u-union-9", wx.api.store_id)]


def test_the_state_is_single_use_expiring_and_bound_to_the_browser(wx):
    back, state, browser = sign_in(wx)
    assert back.status_code == 302
    replay = wx.api.client.simulate_get("/wechat/oauth/callback", cookies={"p2o_wx_oauth": browser},
                                        params={"code": wx.fake.oauth_code(openid="o-new-1"), "state": state})
    assert replay.status_code == 400 and "already used" in replay.text
    r, _url, query = start(wx)
    other_browser = wx.api.client.simulate_get("/wechat/oauth/callback", cookies={"p2o_wx_oauth": "attacker"},
                                               params={"code": wx.fake.oauth_code(openid="o-x"),
                                                       "state": query["state"]})
    assert other_browser.status_code == 400 and "another browser" in other_browser.text
    no_cookie = wx.api.client.simulate_get("/wechat/oauth/callback",
                                           params={"code": wx.fake.oauth_code(openid="o-x"), "state": query["state"]})
    assert no_cookie.status_code == 400
    with wx.ctx.transaction() as s:
        s.execute(update(OAuthState).values(expires_at=OAuthState.created_at))
    expired = wx.api.client.simulate_get("/wechat/oauth/callback", cookies={"p2o_wx_oauth": r.cookies[
        "p2o_wx_oauth"].value}, params={"code": wx.fake.oauth_code(openid="o-x"), "state": query["state"]})
    assert expired.status_code == 400 and "expired" in expired.text
    unknown = wx.api.client.simulate_get("/wechat/oauth/callback", params={"code": "c", "state": "forged"})
    assert unknown.status_code == 400
    assert customers(wx.ctx, "o-x") == []


def test_a_code_wechat_does_not_know_is_refused(wx):
    r, _url, query = start(wx)
    bad = wx.api.client.simulate_get("/wechat/oauth/callback", params={"code": "made-up", "state": query["state"]},
                                     cookies={"p2o_wx_oauth": r.cookies["p2o_wx_oauth"].value})
    assert bad.status_code == 400 and "p2o_wx_login" not in bad.cookies


@pytest.mark.parametrize("target", ["https://evil.example/steal", "//evil.example/x", "/\\evil.example",
                                    "javascript:alert(1)", "h5/", "/h5/\r\nSet-Cookie: x=y", ""])
def test_next_never_leaves_the_site(wx, target):
    assert safe_next(target) == "/h5/"
    back, *_ = sign_in(wx, next_path=target)
    assert back.headers["location"] == "/h5/"


def test_safe_next_keeps_paths_of_this_site():
    assert safe_next("/h5/#/orders/12") == "/h5/#/orders/12" and safe_next("/h5/?store=3") == "/h5/?store=3"


def test_snapshot_virtual_users_are_refused(make_wx):
    wx = make_wx(snapshot_openids=["o-virtual-fixed"])
    back, *_ = sign_in(wx, openid="o-snapshot", is_snapshotuser=1)
    assert back.status_code == 403 and "p2o_wx_login" not in back.cookies
    back, *_ = sign_in(wx, openid="o-virtual-fixed")
    assert back.status_code == 403
    assert customers(wx.ctx, "o-snapshot") == [] and customers(wx.ctx, "o-virtual-fixed") == []


def test_concurrent_first_sign_ins_make_one_customer(wx):
    flows = []
    for _ in range(4):
        r, _url, query = start(wx)
        flows.append((r.cookies["p2o_wx_oauth"].value, query["state"], wx.fake.oauth_code(openid="o-twice")))

    def callback(i):
        browser, state, code = flows[i]
        return wx.api.client.simulate_get("/wechat/oauth/callback", params={"code": code, "state": state},
                                          cookies={"p2o_wx_oauth": browser}).status_code
    results, errors = run_threads(4, callback)
    assert errors == [] and results == [302] * 4
    with wx.ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Customer).where(Customer.openid == "o-twice")) == 1


def test_oauth_is_a_503_until_configured(make_api):
    api = make_api(enabled=["wechat_channel"])
    r = api.client.simulate_get("/wechat/oauth/start")
    assert r.status_code == 503 and "wechat.appid" in r.text
