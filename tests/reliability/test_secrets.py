"""Secrets and personal data (issue #10), with all four bundled plugins enabled.

* Stored: passwords as argon2id hashes (salted: one password, two hashes); API tokens, POS terminal secrets,
  the WeChat OAuth state and one-time login code only as SHA-256. None of them is anywhere in the database in
  clear (every column of every table is searched). The pickup code is the exception by design: the customer
  is shown it again with the order, so it is kept; only that customer sees it, and five wrong tries lock the
  hand-over.
* Login throttling: N wrong passwords -> 429 with Retry-After, also for the right password while locked, and
  the count is shared by two gunicorn workers (it lives in the database).
* A full run over real HTTP (gunicorn, every plugin, logging at DEBUG): staff log in and create users,
  a customer with a phone number signs in through WeChat OAuth, buys ephedrine with a resident ID, uploads
  a prescription that a pharmacist approves, pays with WeChat Pay (the fake WeChat posts the signed
  notification), a POS terminal registers and uploads a sale with its secret, points are adjusted; then no
  password, token, terminal secret, WeChat appsecret / API key / AES key / server token, one-time code,
  resident ID number or phone number appears in the server log, in any log file, or in what the in-process
  job runner logged.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from argon2 import PasswordHasher
from sqlalchemy import inspect, select, text

from core.models import ApiToken, User
from core.testing import TEST_PASSWORD, free_port, run_jobs
from plugins.pos_sync.models import PosDevice
from plugins.wechat_channel.models import LoginCode, OAuthState
from tests.plugins.prescription_review.helpers import JPEG, form, rx_fields
from tests.plugins.wechat_channel.helpers import AES_KEY, API_KEY, SECRET, TOKEN
from tests.plugins.wechat_channel.helpers import settings as wechat_settings

from .hostile_support import ALL_PLUGINS, resident_id

SHA256_HEX = 64


@pytest.fixture
def api(make_api, fake, tmp_path):
    return make_api(enabled=ALL_PLUGINS, settings={**wechat_settings(fake),
                                                   "prescription_review.storage_dir": str(tmp_path / "rx")})


def database_text(ctx) -> str:
    """Every value of every row of every table, as one string to search."""
    out = []
    with ctx.session() as s:
        for table in inspect(s.connection()).get_table_names():
            for row in s.execute(text(f'SELECT * FROM "{table}"')):
                out.append(f"{table}: " + " | ".join(str(v) for v in row))
    return "\n".join(out)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# ------------------------------------------------------------------ stored hashed

def test_passwords_are_salted_argon2id_hashes_never_the_password(api):
    password = "Correct-Horse-" + secrets.token_hex(4)
    ids = []
    for name in ("clerk-a", "clerk-b"):
        r = api.post("/api/v1/users", json={"username": name, "password": password, "role": "clerk",
                                            "store_id": api.store_id})
        assert r.status_code == 201, r.text
        assert "password" not in r.json and "password_hash" not in r.json
        ids.append(r.json["id"])
    with api.ctx.session() as s:
        hashes = [s.get(User, i).password_hash for i in ids]
    for h in hashes:
        assert h.startswith("$argon2id$v=19$m=") and password not in h
        assert PasswordHasher().verify(h, password)
    assert hashes[0] != hashes[1]  # salted
    assert password not in database_text(api.ctx)
    # a password change stores a new hash and the old password stops working
    new = "Battery-Staple-" + secrets.token_hex(4)
    assert api.patch(f"/api/v1/users/{ids[0]}", json={"password": new}).status_code == 200
    with api.ctx.session() as s:
        changed = s.get(User, ids[0]).password_hash
    assert changed != hashes[0] and PasswordHasher().verify(changed, new)
    def login(pw):
        return api.post("/api/v1/auth/token", role=None, json={"username": "clerk-a", "password": pw})
    assert login(password).status_code == 401 and login(new).status_code == 200
    assert api.get("/api/v1/users", params={"limit": "200"}).text.count("argon2") == 0


def test_tokens_terminal_secrets_and_wechat_one_time_values_are_stored_only_as_sha256(api, fake):
    token = api.post("/api/v1/auth/token", role=None, json={"username": "admin", "password": TEST_PASSWORD}
                     ).json["token"]
    device = api.post("/api/v1/pos/devices", json={"store_id": api.store_id, "name": "Counter 1"}).json
    start = api.client.simulate_get("/wechat/oauth/start", params={"next": "/h5/"})
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    browser = start.cookies["p2o_wx_oauth"].value
    back = api.client.simulate_get("/wechat/oauth/callback", params={"code": fake.oauth_code(openid="o-sec-1"),
                                                                     "state": state},
                                   cookies={"p2o_wx_oauth": browser})
    assert back.status_code == 302, back.text
    login_code = back.cookies["p2o_wx_login"].value
    customer_token = api.client.simulate_post("/wechat/oauth/exchange", cookies={"p2o_wx_login": login_code}
                                              ).json["token"]
    with api.ctx.session() as s:
        token_hashes = set(s.scalars(select(ApiToken.token_hash)))
        assert {sha256(token), sha256(customer_token)} <= token_hashes
        assert s.scalar(select(PosDevice.secret_hash).where(PosDevice.id == device["id"])) == sha256(device["secret"])
        assert s.scalar(select(OAuthState.state_hash)) == sha256(state)
        assert sha256(browser) in s.scalars(select(OAuthState.browser_hash)).all()
        assert s.scalar(select(LoginCode.code_hash)) == sha256(login_code)
        assert all(len(h) == SHA256_HEX for h in token_hashes)
    dump = database_text(api.ctx)
    for value in (token, customer_token, device["secret"], state, browser, login_code, *api.tokens.values()):
        assert value not in dump


def test_the_pickup_code_is_kept_for_its_customer_and_shown_to_no_one_else(api):
    from tests.api.helpers import product, receive
    pid = product(api)["id"]
    receive(api, api.store_id, pid, 5)
    order = api.post("/api/v1/orders", role="customer", json={
        "store_id": api.store_id, "channel": "web", "fulfilment": "pickup",
        "lines": [{"product_id": pid, "quantity": 1}]}).json
    code = api.get(f"/api/v1/orders/{order['id']}", role="customer").json["pickup_code"]
    assert code and len(code) == 6
    for role in ("admin", "clerk", "store_manager", "pharmacist"):
        assert api.get(f"/api/v1/orders/{order['id']}", role=role).json.get("pickup_code") is None
        assert code not in api.get("/api/v1/orders", role=role).text


# ------------------------------------------------------------------ login throttling

def _login(url_or_api, username, password, **kw):
    if isinstance(url_or_api, str):
        return requests.post(f"{url_or_api}/api/v1/auth/token", json={"username": username, "password": password},
                             timeout=30, headers={"Connection": "close"})
    return url_or_api.post("/api/v1/auth/token", role=None, json={"username": username, "password": password})


def test_wrong_passwords_lock_the_login_with_429_and_retry_after(api):
    for _ in range(5):
        assert _login(api, "clerk", "wrong-password").status_code == 401
    locked = _login(api, "clerk", TEST_PASSWORD)  # the right password too, while locked
    assert locked.status_code == 429 and locked.headers["content-type"].startswith("application/problem+json")
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60
    assert _login(api, "admin", TEST_PASSWORD).status_code == 200  # another account is not locked
    assert _login(api, "no-such-user", "x").status_code == 401


def _replace_every_worker(server) -> None:
    """SIGKILL each worker in turn and wait for its replacement: no process that saw a request survives."""
    import time
    for pid in server.worker_pids():
        server.kill_worker(pid)
        deadline = time.monotonic() + 60
        while pid in server.worker_pids() or len(server.worker_pids()) < server.workers:
            assert time.monotonic() < deadline, "gunicorn did not replace a killed worker"
            time.sleep(0.1)
    assert requests.get(f"{server.url}/api/v1/health", timeout=30).status_code == 200


def test_the_login_lock_is_shared_by_two_gunicorn_workers(api, gunicorn):
    """Failures spread over two workers, and over workers that are then killed and replaced, add up:
    the count lives in the database, not in any process."""
    server = gunicorn(api.ctx, workers=2)
    assert len(server.worker_pids()) == 2
    assert [_login(server.url, "pharmacist", f"wrong-{i}").status_code for i in range(3)] == [401] * 3
    _replace_every_worker(server)
    assert [_login(server.url, "pharmacist", f"wrong-{i}").status_code for i in range(3, 5)] == [401] * 2
    _replace_every_worker(server)  # the workers that counted are gone
    for _ in range(4):  # whichever worker answers (new connections): locked, right password or not
        r = _login(server.url, "pharmacist", TEST_PASSWORD)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text
        assert r.headers["Content-Type"].startswith("application/problem+json")
    assert _login(server.url, "clerk", TEST_PASSWORD).status_code == 200


# ------------------------------------------------------------------ a full run: nothing secret in any log

def test_a_full_run_at_debug_leaks_no_secret_into_any_log(api, fake, gunicorn, tmp_path, caplog):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = gunicorn(api.ctx, workers=2, port=port, log_level="debug",
                      settings={"wechat.base_url": base, "wechat.message_mode": "safe"})
    http = requests.Session()
    secrets_used: dict[str, str] = {"admin password": TEST_PASSWORD, "wechat appsecret": SECRET,
                                    "wechat pay api key": API_KEY, "wechat aes key": AES_KEY,
                                    "wechat server token": TOKEN}

    def call(method, path, token=None, expect=(200, 201), **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = http.request(method, base + path, headers=headers, timeout=30, allow_redirects=False, **kw)
        assert r.status_code in (expect if isinstance(expect, tuple) else (expect,)), (path, r.status_code, r.text)
        return r

    def login(username, password):
        return call("POST", "/api/v1/auth/token", json={"username": username, "password": password}).json()["token"]

    admin = login("admin", TEST_PASSWORD)
    secrets_used["admin token"] = admin
    wrong = "Wrong-" + secrets.token_hex(6)
    secrets_used["a wrong password"] = wrong
    call("POST", "/api/v1/auth/token", json={"username": "admin", "password": wrong}, expect=401)
    users = {}
    for role in ("pharmacist", "clerk"):
        password = f"{role.title()}-{secrets.token_hex(8)}"
        body = {"username": f"{role}-{uuid.uuid4().hex[:6]}", "password": password, "role": role,
                "store_id": api.store_id}
        if role == "pharmacist":
            body.update(licence_number="PH-9001", licence_expiry=(dt.date.today() + dt.timedelta(days=300)).isoformat())
        call("POST", "/api/v1/users", admin, json=body)
        users[role] = login(body["username"], password)
        secrets_used[f"{role} password"], secrets_used[f"{role} token"] = password, users[role]
    # a password change (the new one is a secret too)
    changed = "Changed-" + secrets.token_hex(8)
    me = call("GET", "/api/v1/auth/me", users["clerk"]).json()
    call("PATCH", f"/api/v1/users/{me['user_id']}", admin, json={"password": changed})
    secrets_used["changed password"] = changed
    users["clerk"] = secrets_used["clerk token"] = login(me["name"], changed)

    phone = "139" + str(secrets.randbelow(10**8)).zfill(8)
    secrets_used["customer phone"] = phone
    call("POST", "/api/v1/customers", users["clerk"], json={"name": "赵六", "phone": phone})

    def make_product(**fields):
        body = {"sku": uuid.uuid4().hex[:10], "generic_name": "品", "rx_class": "otc_b",
                "approval_number": "国药准字H20000001", "price_fen": 1200, **fields}
        pid = call("POST", "/api/v1/products", admin, json=body).json()["id"]
        call("POST", f"/api/v1/stores/{api.store_id}/stock/receipts", admin, json={
            "product_id": pid, "lot_no": uuid.uuid4().hex[:8], "expiry": "2099-12-31", "quantity": 50})
        return pid
    eph, rx, otc = (make_product(rx_class="otc_a", ephedrine=True, generic_name="复方盐酸伪麻黄碱缓释胶囊"),
                    make_product(rx_class="rx", generic_name="阿莫西林胶囊"), make_product(generic_name="维生素C片"))

    buyer_id = resident_id("44030619850607121")
    secrets_used["buyer resident id"] = buyer_id
    eph_order = call("POST", "/api/v1/orders", users["clerk"], json={
        "store_id": api.store_id, "channel": "store", "fulfilment": "pickup", "buyer_id_number": buyer_id,
        "lines": [{"product_id": eph, "quantity": 1}]}).json()
    call("POST", f"/api/v1/orders/{eph_order['id']}/pay", users["clerk"], json={"provider": "cash"})

    # WeChat OAuth: the customer signs in; the state, the code and the one-time login code are secrets
    start = call("GET", "/wechat/oauth/start", params={"next": "/h5/"}, expect=302)
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    browser = start.cookies["p2o_wx_oauth"]
    code = fake.oauth_code(openid="o-full-run-1")
    back = call("GET", "/wechat/oauth/callback", params={"code": code, "state": state}, expect=302,
                cookies={"p2o_wx_oauth": browser})
    login_code = back.cookies["p2o_wx_login"]
    customer = call("POST", "/wechat/oauth/exchange", cookies={"p2o_wx_login": login_code}).json()["token"]
    secrets_used.update({"oauth state": state, "oauth browser cookie": browser, "oauth code": code,
                         "wechat login code": login_code, "customer token": customer})

    # the customer's Rx order: prescription with the patient's resident ID, approved, paid by WeChat Pay
    rx_order = call("POST", "/api/v1/orders", customer, json={
        "store_id": api.store_id, "channel": "wechat", "fulfilment": "pickup",
        "lines": [{"product_id": rx, "quantity": 1}, {"product_id": otc, "quantity": 2}]}).json()
    assert rx_order["status"] == "awaiting_review"
    patient_id = resident_id("11010519700101123")
    secrets_used["patient resident id"] = patient_id
    body, ctype = form(rx_fields([(rx, 1)], patient_id_number=patient_id), JPEG + secrets.token_bytes(8))
    up = call("POST", f"/api/v1/orders/{rx_order['id']}/prescription", customer, data=body,
              headers={"Content-Type": ctype}).json()
    call("GET", f"/api/v1/prescriptions/{up['id']}", users["pharmacist"])
    call("POST", f"/api/v1/prescriptions/{up['id']}/approve", users["pharmacist"], json={"note": "ok"})
    pay = call("POST", f"/api/v1/orders/{rx_order['id']}/wechat-pay", customer).json()
    notified = fake.notify(pay["out_trade_no"])
    assert notified.status_code == 200 and "SUCCESS" in notified.text, notified.text
    assert call("GET", f"/api/v1/orders/{rx_order['id']}", customer).json()["status"] == "paid"

    # a POS terminal: registration (its secret), catalogue, a sales batch
    device = call("POST", "/api/v1/pos/devices", admin, json={"store_id": api.store_id, "name": "Till 1"}).json()
    secrets_used["pos terminal secret"] = device["secret"]
    terminal = {"Authorization": f"Bearer {device['secret']}", "X-POS-Database-Id": "till-db-" + uuid.uuid4().hex}
    catalog = call("GET", "/api/v1/pos/catalog", headers=dict(terminal)).json()
    price = 1200  # make_product's price
    sale = {"client_sale_id": uuid.uuid4().hex, "device_seq": 1,
            "sold_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "lines": [{"line_id": "1", "product_id": otc, "quantity": 1, "unit_price_fen": price,
                       "price_list_version": catalog.get("price_list_version", 1)}],
            "payments": [{"method": "cash", "amount_fen": price}]}
    batch = call("POST", "/api/v1/pos/sales:batch", headers=dict(terminal), json={"sales": [sale]}).json()
    assert batch["results"][0]["status"] == "accepted", batch

    # loyalty
    customer_id = call("GET", "/api/v1/auth/me", customer).json()["customer_id"]
    call("POST", f"/api/v1/members/{customer_id}", customer, expect=(200, 201))
    call("POST", f"/api/v1/members/{customer_id}/adjustments", admin, json={"points": 50, "reason": "welcome"})
    call("GET", f"/api/v1/members/{customer_id}/ledger", customer)
    call("POST", "/api/v1/auth/logout", admin, expect=(200, 204))

    # the jobs (outbox: template messages to WeChat, with the access token fetched with the appsecret)
    caplog.set_level(logging.DEBUG)
    run_jobs(api.ctx)
    server.stop()

    logs = {"server.log": server.log_text(), "in-process jobs": caplog.text}
    for folder in (server.workdir, tmp_path):
        for path in folder.rglob("*.log"):
            logs[str(path)] = path.read_text(errors="replace")
    levels = {json.loads(line).get("level") for line in logs["server.log"].splitlines() if line.startswith("{")}
    assert len(logs["server.log"]) > 1000 and "DEBUG" in levels  # it did log, at DEBUG
    leaks = {(name, where) for name, value in secrets_used.items() for where, text_ in logs.items()
             if value and value in text_}
    assert leaks == set(), f"secrets found in logs: {sorted(leaks)}"
