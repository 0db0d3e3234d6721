"""Logging in and out, token storage and expiry, and throttling of failed logins."""
from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import func, select

from core.api import create_app, tokens
from core.db import utcnow
from core.models import ApiToken, LoginAttempt, User
from core.testing import TEST_PASSWORD

TOKEN = "/api/v1/auth/token"


def login(api, username="clerk", password=TEST_PASSWORD, client=None, headers=None):
    client = client or api.client
    return client.simulate_post(TOKEN, json={"username": username, "password": password}, headers=headers)


def test_login_returns_a_working_token_stored_only_as_its_hash(api):
    r = login(api)
    assert r.status_code == 200, r.json
    assert r.json["role"] == "clerk"
    expires = dt.datetime.fromisoformat(r.json["expires_at"])
    assert dt.timedelta(hours=11, minutes=59) < expires - utcnow() <= dt.timedelta(hours=12)
    token = r.json["token"]
    me = api.client.simulate_get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json["user_id"] == api.user_ids["clerk"]
    assert me.json["store_id"] == api.store_id
    with api.ctx.session() as s:
        hashes = set(s.scalars(select(ApiToken.token_hash)))
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    assert token not in hashes


def test_token_lifetime_is_configurable(make_api):
    api = make_api(settings={"api.token_ttl_hours": 1})
    r = login(api)
    assert dt.datetime.fromisoformat(r.json["expires_at"]) - utcnow() <= dt.timedelta(hours=1)


def test_wrong_password_and_unknown_user_are_the_same_401(api):
    wrong = login(api, password="not-the-password")
    unknown = login(api, username="nobody")
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json["type"].endswith("/unauthorized")
        assert "token" not in r.json
    assert wrong.json["detail"] == unknown.json["detail"]


def test_missing_malformed_and_unknown_tokens_are_401(api):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer not-a-token"}, {"Authorization": "Bearer " + "x" * 500}):
        r = api.client.simulate_get("/api/v1/stores", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_logout_revokes_the_token(api):
    token = login(api).json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert api.client.simulate_get("/api/v1/auth/me", headers=auth).status_code == 200
    assert api.client.simulate_post("/api/v1/auth/logout", headers=auth).status_code == 204
    assert api.client.simulate_get("/api/v1/auth/me", headers=auth).status_code == 401
    # the other tokens of the same user are untouched
    assert api.get("/api/v1/auth/me", role="clerk").status_code == 200


def test_expired_token_is_refused(api):
    with api.ctx.transaction() as s:
        user = s.get(User, api.user_ids["clerk"])
        old = tokens.issue_user_token(s, user, dt.timedelta(hours=1), now=utcnow() - dt.timedelta(hours=2))
    r = api.client.simulate_get("/api/v1/auth/me", headers={"Authorization": f"Bearer {old.token}"})
    assert r.status_code == 401


def test_deactivated_user_and_password_change_end_existing_tokens(api):
    token = login(api, "pharmacist").json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    r = api.patch(f"/api/v1/users/{api.user_ids['pharmacist']}", json={"password": "a-new-password"})
    assert r.status_code == 200
    assert api.client.simulate_get("/api/v1/auth/me", headers=auth).status_code == 401
    r = api.patch(f"/api/v1/users/{api.user_ids['clerk']}", json={"active": False})
    assert r.status_code == 200
    assert api.get("/api/v1/auth/me", role="clerk").status_code == 401
    assert login(api, "clerk").status_code == 401


def test_role_change_applies_to_existing_tokens(api):
    assert api.get("/api/v1/users", role="clerk").status_code == 403
    api.patch(f"/api/v1/users/{api.user_ids['clerk']}", json={"role": "admin"})
    assert api.get("/api/v1/users", role="clerk").status_code == 200


def test_customer_token_minted_by_the_service(api):
    token = api.token(customer_id=api.customer_id)
    r = api.client.simulate_get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.json == {"role": "customer", "user_id": None, "customer_id": api.customer_id, "store_id": None,
                      "name": "顾客"}


def test_repeated_failures_lock_the_username_for_this_address_in_the_database(make_api):
    api = make_api(settings={"api.login_max_failures": 3})
    for _ in range(3):
        assert login(api, password="wrong-password").status_code == 401
    # locked: even the right password is refused, with a Retry-After
    r = login(api)
    assert r.status_code == 429
    assert r.json["type"].endswith("/too-many-requests")
    assert 0 < int(r.headers["retry-after"]) <= 15 * 60
    # the count lives in the database: another app (another worker) sees the same lock
    from falcon.testing import TestClient
    other = TestClient(create_app(api.ctx))
    assert login(api, client=other).status_code == 429
    # another address, and another username, are not locked
    assert login(api, headers={"X-Forwarded-For": "10.0.0.9"}).status_code == 429  # header not trusted
    assert login(api, "store_manager").status_code == 200
    with api.ctx.session() as s:
        row = s.scalars(select(LoginAttempt)).one()
        assert row.failures == 3 and row.locked_until > utcnow()
        assert "clerk" not in row.key_hash


def test_lock_expires_and_success_clears_the_count(make_api):
    api = make_api(settings={"api.login_max_failures": 2})
    login(api, password="wrong-password")
    login(api, password="wrong-password")
    assert login(api).status_code == 429
    with api.ctx.transaction() as s:
        row = s.scalars(select(LoginAttempt)).one()
        row.locked_until = utcnow() - dt.timedelta(seconds=1)
    assert login(api).status_code == 200
    with api.ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(LoginAttempt)) == 0


def test_forwarded_address_is_used_only_when_trusted(make_api):
    api = make_api(settings={"api.login_max_failures": 1, "api.trust_forwarded_for": True})
    assert login(api, password="bad-password", headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 401
    assert login(api, headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 429
    assert login(api, headers={"X-Forwarded-For": "10.0.0.2"}).status_code == 200


def test_only_the_hop_our_proxy_wrote_counts_not_what_the_client_put_before_it(make_api):
    # a proxy that appends: "<whatever the client sent>, <the address the proxy saw>"
    api = make_api(settings={"api.login_max_failures": 1, "api.trust_forwarded_for": True})
    bad = login(api, password="bad-password", headers={"X-Forwarded-For": "1.2.3.4, 10.0.0.1"})
    assert bad.status_code == 401
    assert login(api, headers={"X-Forwarded-For": "9.9.9.9, 10.0.0.1"}).status_code == 429
    assert login(api, headers={"X-Forwarded-For": "10.0.0.1", "Forwarded": "for=8.8.8.8",
                                "X-Real-IP": "7.7.7.7"}).status_code == 429
