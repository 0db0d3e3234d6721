"""Races over real HTTP, as deployed: clients started at once (a barrier), each with its own
``requests.Session``, against several gunicorn processes sharing one PostgreSQL and one Redis —
either one gunicorn with 3 workers or two gunicorn "hosts" behind nginx (conftest ``deployment``).

Each scenario counts the rows afterwards: the invariants hold in the database, not only in the
answers. The in-process versions of these races (one process, a thread per client) are in
tests/core/test_concurrency.py and the plugins' tests; here the requests cross process (and
proxy) boundaries, with every worker holding its own connection pool.
"""
from __future__ import annotations

import time
import uuid

import pytest
import requests
import xmltodict
from sqlalchemy import func, select, update

from core import stock
from core.models import AuditEntry, Customer, Order, OrderEvent, OrderLine, OutboxMessage, StockLot
from core.testing import run_threads
from plugins.loyalty import ledger
from plugins.loyalty.models import LedgerEntry, LoyaltyMember
from plugins.pos_sync.models import PosSale
from plugins.prescription_review.models import Decision, Prescription
from plugins.wechat_channel.models import PayNotification
from tests.api.helpers import product, receive
from tests.plugins.pos_sync.helpers import sale
from tests.plugins.prescription_review.helpers import JPEG, add_pharmacist, form, licence, rx_fields

from .conftest import PG_ONLY
from .deployment import access_lines

pytestmark = PG_ONLY
TIMEOUT = 60  # seconds a client waits for one answer


def rid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def statuses(results) -> list[int]:
    return sorted(r.status_code for r in results)


# ------------------------------------------------------------------ (a) the last units

CLIENTS, UNITS = 40, 10


def test_concurrent_checkouts_for_the_last_units_never_oversell(deployment):
    dep = deployment
    pid = product(dep.api)["id"]
    receive(dep.api, dep.api.store_id, pid, 6, days=60)
    receive(dep.api, dep.api.store_id, pid, UNITS - 6, days=200)  # two lots: FEFO across them
    body = {"store_id": dep.api.store_id, "customer_id": dep.api.customer_id, "channel": "store",
            "fulfilment": "pickup", "lines": [{"product_id": pid, "quantity": 1}]}

    def checkout(i):
        with dep.session() as http:
            return http.post(f"{dep.url}/api/v1/orders", json=body, timeout=TIMEOUT,
                             headers=dep.headers("clerk", **{"X-Request-Id": rid(f"checkout{i}")}))

    results, errors = run_threads(CLIENTS, checkout)
    assert errors == []
    codes = statuses(results)
    assert codes.count(201) == UNITS, (codes, dep.logs())
    refused = [r for r in results if r.status_code != 201]
    assert {r.status_code for r in refused} == {409}
    assert {r.json()["type"] for r in refused} == {"https://pharmo2o.dev/problems/insufficient-stock"}
    assert all(r.headers["Content-Type"].startswith("application/problem+json") for r in refused)
    with dep.ctx.session() as s:
        made = s.scalar(select(func.count(func.distinct(OrderLine.order_id))).where(OrderLine.product_id == pid))
        assert made == UNITS
        lots = s.scalars(select(StockLot).where(StockLot.product_id == pid)).all()
        assert sum(lot.on_hand for lot in lots) == UNITS  # reserved, not sold
        assert sum(lot.reserved for lot in lots) == UNITS
        assert all(0 <= lot.reserved <= lot.on_hand for lot in lots)
        assert stock.verify(s) == []


# ------------------------------------------------------------------ (b) a POS batch sent 8 times at once

POS_CLIENTS, POS_SALES = 8, 12


def test_the_same_pos_batch_sent_by_8_clients_at_once_is_recorded_once(deployment):
    dep = deployment
    pids = [product(dep.api, price_fen=1000)["id"] for _ in range(2)]
    for pid in pids:
        receive(dep.api, dep.api.store_id, pid, 40)
    r = dep.api.post("/api/v1/pos/devices", role="store_manager", json={"store_id": dep.api.store_id,
                                                                         "name": f"Counter {uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.json
    device_id, secret = r.json["id"], r.json["secret"]
    terminal = {"Authorization": f"Bearer {secret}", "X-POS-Database-Id": uuid.uuid4().hex}
    with dep.session() as http:  # the terminal's first contact: it pulls the catalogue (binds its database id)
        page = http.get(f"{dep.url}/api/v1/pos/catalog", headers=terminal, timeout=TIMEOUT)
        assert page.status_code == 200, page.text
        version = page.json()["price_list_version"]
    batch = [sale([(pids[i % 2], 1, 1000), (pids[(i + 1) % 2], 2, 1000)], pv=version) for i in range(POS_SALES)]
    moved = {pid: sum(l["quantity"] for s_ in batch for l in s_["lines"] if l["product_id"] == pid) for pid in pids}

    def upload(i):
        with dep.session() as http:
            return http.post(f"{dep.url}/api/v1/pos/sales:batch", json={"sales": batch}, timeout=TIMEOUT,
                             headers={**terminal, "X-Request-Id": rid(f"pos{i}")})

    results, errors = run_threads(POS_CLIENTS, upload)
    assert errors == []
    assert statuses(results) == [200] * POS_CLIENTS, [(r.status_code, r.text[:300]) for r in results]
    answers = [r.json()["results"] for r in results]
    for k in range(POS_SALES):
        got = sorted(a[k]["status"] for a in answers)
        assert got == ["accepted"] + ["duplicate"] * (POS_CLIENTS - 1), (k, got)
        assert len({a[k]["order_id"] for a in answers}) == 1
    with dep.ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(PosSale).where(PosSale.device_id == device_id)) == POS_SALES
        order_ids = s.scalars(select(PosSale.order_id).where(PosSale.device_id == device_id)).all()
        assert len(set(order_ids)) == POS_SALES
        assert s.scalar(select(func.count()).select_from(Order).where(Order.id.in_(order_ids))) == POS_SALES
        for pid in pids:  # each unit left the shelf once
            assert s.scalar(select(func.sum(StockLot.on_hand)).where(StockLot.product_id == pid)) == 40 - moved[pid]
        assert stock.verify(s) == []


# ------------------------------------------------------------------ (c) duplicate WeChat Pay notifications

NOTIFICATIONS = 10


def test_ten_copies_of_one_payment_notification_at_once_pay_the_order_once(deployment):
    dep = deployment
    pid = product(dep.api, price_fen=1250)["id"]
    receive(dep.api, dep.api.store_id, pid, 10)
    with dep.ctx.transaction() as s:
        s.execute(update(Customer).where(Customer.id == dep.api.customer_id).values(openid="o-reliability-1"))
    with dep.session() as http:  # the customer orders in WeChat and asks to pay (over HTTP, like the H5 shop)
        r = http.post(f"{dep.url}/api/v1/orders", headers=dep.headers("customer"), timeout=TIMEOUT,
                      json={"store_id": dep.api.store_id, "channel": "wechat", "fulfilment": "pickup",
                            "lines": [{"product_id": pid, "quantity": 2}]})
        assert r.status_code == 201, r.text
        order_id = r.json()["id"]
        r = http.post(f"{dep.url}/api/v1/orders/{order_id}/wechat-pay", headers=dep.headers("customer"),
                      timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        out_trade_no = r.json()["out_trade_no"]
    trade = dep.fake.orders[out_trade_no]
    assert trade["notify_url"] == f"{dep.url}/wechat/pay/notify"  # WeChat calls the deployment's front
    xml = dep.fake.notification(out_trade_no)  # built and signed with wechatpy, as WeChat Pay sends it
    with dep.ctx.session() as s:
        templates_before = s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.kind == "wechat.template"))

    def notify(i):
        with dep.session() as http:
            return http.post(f"{dep.url}/wechat/pay/notify", data=xml.encode("utf-8"), timeout=TIMEOUT,
                             headers={"Content-Type": "text/xml", "X-Request-Id": rid(f"notify{i}")})

    results, errors = run_threads(NOTIFICATIONS, notify)
    assert errors == []
    assert statuses(results) == [200] * NOTIFICATIONS, [r.text[:300] for r in results]
    assert [xmltodict.parse(r.text)["xml"]["return_code"] for r in results] == ["SUCCESS"] * NOTIFICATIONS
    with dep.ctx.session() as s:
        order = s.get(Order, order_id)
        assert (order.status, order.payment_provider, order.payment_reference) == (
            "paid", "wechat", trade["transaction_id"])
        assert s.scalar(select(func.count()).select_from(OrderEvent).where(
            OrderEvent.order_id == order_id, OrderEvent.new_status == "paid")) == 1
        verdicts = sorted(s.scalars(select(PayNotification.verdict).where(
            PayNotification.out_trade_no == out_trade_no)).all())
        assert verdicts == ["accepted"] + ["duplicate"] * (NOTIFICATIONS - 1)
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.kind == "wechat.template")) == templates_before + 1  # one "paid" message
        lots = s.scalars(select(StockLot).where(StockLot.product_id == pid)).all()
        assert (sum(lot.on_hand for lot in lots), sum(lot.reserved for lot in lots)) == (8, 0)  # sold once
        assert stock.verify(s) == []


# ------------------------------------------------------------------ (d) redemptions beyond the balance

REDEEMERS, BALANCE, EACH = 12, 1000, 300


def test_concurrent_redemptions_by_one_member_never_overdraw(deployment):
    dep = deployment
    pid = product(dep.api, price_fen=1000)["id"]
    receive(dep.api, dep.api.store_id, pid, REDEEMERS)
    r = dep.api.post("/api/v1/customers", role="clerk", json={"name": "积分会员", "phone": "13911112222"})
    assert r.status_code == 201, r.json
    cid = r.json["id"]
    r = dep.api.post(f"/api/v1/members/{cid}/adjustments", json={"points": BALANCE, "reason": "welcome gift"})
    assert r.status_code == 201, r.json
    member = {"Authorization": f"Bearer {dep.api.token(customer_id=cid)}"}
    body = {"store_id": dep.api.store_id, "channel": "web", "fulfilment": "pickup", "redeem_points": EACH,
            "lines": [{"product_id": pid, "quantity": 1}]}

    def redeem(i):
        with dep.session() as http:
            return http.post(f"{dep.url}/api/v1/orders", json=body, timeout=TIMEOUT,
                             headers={**member, "X-Request-Id": rid(f"redeem{i}")})

    results, errors = run_threads(REDEEMERS, redeem)
    assert errors == []
    wins = [r for r in results if r.status_code == 201]
    assert len(wins) == BALANCE // EACH, statuses(results)
    refused = [r for r in results if r.status_code != 201]
    assert {r.status_code for r in refused} == {422}
    assert all([e["field"] for e in r.json()["errors"]] == ["redeem_points"] for r in refused)
    assert all(w.json()["total_fen"] == 1000 - EACH for w in wins)
    with dep.ctx.session() as s:
        assert ledger.verify(s) == []  # cached balances = the ledger's sums, lots add up
        m = s.get(LoyaltyMember, cid)
        assert (m.available, m.held) == (BALANCE - EACH * len(wins), EACH * len(wins))
        assert m.available >= 0
        sums = s.execute(select(func.sum(LedgerEntry.available_delta), func.sum(LedgerEntry.held_delta),
                                func.sum(LedgerEntry.pending_delta)).where(LedgerEntry.customer_id == cid)).one()
        assert tuple(sums) == (m.available, m.held, m.pending)
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.customer_id == cid, LedgerEntry.kind == "hold")) == len(wins)
        assert s.scalar(select(func.count()).select_from(Order).where(Order.customer_id == cid)) == len(wins)


# ------------------------------------------------------------------ (e) two pharmacists, one prescription

def test_two_pharmacists_deciding_one_prescription_at_once_one_wins(deployment):
    dep = deployment
    api = dep.api
    if "pharmacist2" not in dep.extra:
        licence(api, api.user_ids["pharmacist"], "PH-0001")
        dep.extra["pharmacist2"] = add_pharmacist(api, "pharmacist2", "PH-0002")
    rx = product(api, rx_class="rx", generic_name="阿莫西林胶囊", specification="0.25g×24粒",
                 package_insert="【适应症】敏感菌所致感染", price_fen=2600)["id"]
    receive(api, api.store_id, rx, 5)
    with dep.session() as http:
        r = http.post(f"{dep.url}/api/v1/orders", headers=dep.headers("customer"), timeout=TIMEOUT,
                      json={"store_id": api.store_id, "channel": "web", "fulfilment": "pickup",
                            "lines": [{"product_id": rx, "quantity": 2}]})
        assert r.status_code == 201 and r.json()["status"] == "awaiting_review", r.text
        order_id = r.json()["id"]
        # a phone photo of the prescription: 1.5 MiB, more than nginx lets through unless configured for uploads
        document = JPEG[:-2] + uuid.uuid4().bytes + b"\x00" * (1536 * 1024) + b"\xff\xd9"
        data, ctype = form(rx_fields([(rx, 2)]), document)
        r = http.post(f"{dep.url}/api/v1/orders/{order_id}/prescription", data=data, timeout=TIMEOUT,
                      headers={**dep.headers("customer"), "Content-Type": ctype})
        assert r.status_code == 201, r.text
        prescription_id = r.json()["id"]
    pharmacists = [dep.headers("pharmacist"), {"Authorization": f"Bearer {dep.extra['pharmacist2']['token']}"}]
    actions = [("approve", {}), ("reject", {"reason_code": "illegible"})]

    def decide(i):
        action, body = actions[i]
        with dep.session() as http:
            return http.post(f"{dep.url}/api/v1/prescriptions/{prescription_id}/{action}", json=body,
                             timeout=TIMEOUT, headers={**pharmacists[i], "X-Request-Id": rid(f"rx-{action}")})

    results, errors = run_threads(2, decide)
    assert errors == []
    codes = {r.request.url.rsplit("/", 1)[1]: r.status_code for r in results}
    assert sorted(codes.values()) in ([200, 409], [201, 409]), [(r.status_code, r.text[:300]) for r in results]
    winner = next(a for a, c in codes.items() if c != 409)
    loser = next(r for r in results if r.status_code == 409)
    assert "already" in loser.json()["detail"] or "meanwhile" in loser.json()["detail"]
    with dep.ctx.session() as s:
        decided = s.scalars(select(Decision.action).where(Decision.prescription_id == prescription_id,
                                                          Decision.action.in_(("approve", "reject")))).all()
        assert decided == [winner]
        assert s.get(Prescription, prescription_id).status == {"approve": "approved", "reject": "rejected"}[winner]
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action.in_(("prescription.approve", "prescription.reject")),
            AuditEntry.entity_id == str(prescription_id))) == 1
        assert s.get(Order, order_id).status == {"approve": "awaiting_payment", "reject": "cancelled"}[winner]
        lots = s.scalars(select(StockLot).where(StockLot.product_id == rx)).all()
        assert sum(lot.reserved for lot in lots) == (2 if winner == "approve" else 0)


# ------------------------------------------------------------------ the deployment itself

def test_a_client_cannot_choose_its_own_address_to_dodge_the_login_lockout(deployment):
    """Through nginx the app trusts X-Forwarded-For's first hop: nginx must overwrite it (and drop
    ``Forwarded``); served directly the app trusts no header. Either way 5 failures lock the pair."""
    dep = deployment
    user = f"lockme{uuid.uuid4().hex[:6]}"
    codes = []
    with dep.session() as http:
        for i in range(7):
            r = http.post(f"{dep.url}/api/v1/auth/token", json={"username": user, "password": "wrong-password"},
                          timeout=TIMEOUT, headers={"X-Forwarded-For": f"198.51.100.{i}",
                                                    "Forwarded": f"for=203.0.113.{i}", "X-Real-IP": f"192.0.2.{i}"})
            codes.append(r.status_code)
    assert codes == [401] * 5 + [429] * 2, codes


def test_bodies_over_an_operations_limit_get_the_apps_413_not_the_proxys(deployment):
    dep = deployment
    big = b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}'  # just over the app's default 1 MiB
    with dep.session() as http:
        r = http.post(f"{dep.url}/api/v1/orders", data=big, timeout=TIMEOUT,
                      headers={**dep.headers("clerk"), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.text[:200]
    assert r.json()["type"].endswith("/payload-too-large") or "bytes" in r.json()["detail"]


def test_every_host_served_its_share_and_kept_few_connections(deployment):
    """Runs after the races (tests run in file order): every gunicorn instance answered requests; behind
    nginx both hosts did, round robin; each worker holds only a few database connections."""
    dep = deployment
    with dep.session() as http:
        for i in range(20):
            assert http.get(f"{dep.url}/api/v1/health", timeout=TIMEOUT,
                            headers={"X-Request-Id": rid(f"health{i}")}).status_code == 200
    served = dep.requests_served()
    print(f"\n[{dep.kind}] requests answered per host: {served}")
    assert all(n > 0 for n in served.values()), served
    if dep.proxy is not None:
        upstreams = dep.proxy.upstream_counts()
        print(f"[{dep.kind}] nginx upstream counts: {dict(upstreams)}")
        assert set(upstreams) == {s.url.removeprefix("http://") for s in dep.servers}, upstreams
        low, high = min(upstreams.values()), max(upstreams.values())
        assert low >= high / 3, upstreams  # round robin: neither host starves
        # the request ids nginx passed on are the ones the app logged
        assert sum(served.values()) >= sum(upstreams.values()) - 5
    workers = sum(s.workers for s in dep.servers)
    assert sum(len(s.worker_pids()) for s in dep.servers) == workers  # no worker died under the races
    open_now = dep.connections()
    print(f"[{dep.kind}] database connections now: {open_now} for {workers} workers (+ this test's pool)")
    assert open_now <= workers * 3 + 5, open_now


def test_a_host_dying_under_load_behind_nginx_loses_no_order_and_doubles_none(deployment):
    """Host B is SIGKILLed (master and workers) while 20 clients place orders through nginx. A POST that
    could not reach B goes to A (nothing was sent); one B had received gets a 502 (nginx cannot know whether
    B committed it) and the client retries it with the same Idempotency-Key, as clients must. Every order
    is placed exactly once; B takes traffic again once it is back."""
    dep = deployment
    if dep.proxy is None:
        pytest.skip("one gunicorn: no second host to fail over to (killed workers: test_faults.py)")
    host_a, host_b = dep.servers
    clients, each = 20, 3
    pid = product(dep.api)["id"]
    receive(dep.api, dep.api.store_id, pid, clients * each)
    body = {"store_id": dep.api.store_id, "customer_id": dep.api.customer_id, "channel": "store",
            "fulfilment": "pickup", "lines": [{"product_id": pid, "quantity": 1}]}
    retried, replayed = [], []

    def client(i):
        if i == clients:  # the last thread is the fault: B dies while the others are busy
            time.sleep(0.4)
            host_b.kill()
            return None
        placed = []
        with dep.session() as http:
            for n in range(each):
                key = f"failover-{uuid.uuid4().hex}"
                for attempt in range(6):
                    try:
                        r = http.post(f"{dep.url}/api/v1/orders", json=body, timeout=TIMEOUT,
                                      headers=dep.headers("clerk", **{"Idempotency-Key": key,
                                                                      "X-Request-Id": rid(f"failover{i}-{n}")}))
                    except requests.ConnectionError:
                        r = None
                    if r is not None and r.status_code not in (502, 503, 504):
                        break
                    retried.append((i, n, None if r is None else r.status_code))
                    time.sleep(0.2)
                assert r is not None, "no answer"
                # 200: a retry found the order its first attempt had made (B committed it, then died)
                assert r.status_code == 201 or (r.status_code == 200 and attempt > 0), (r.status_code, r.text[:300])
                if r.status_code == 200:
                    assert r.headers.get("Idempotent-Replayed") == "true", dict(r.headers)
                    replayed.append(key)
                placed.append((key, r.json()["id"]))
        return placed

    try:
        results, errors = run_threads(clients + 1, client)
    finally:
        if host_b.proc is None:
            host_b.start()
    assert errors == [], errors[:3]
    placed = [p for r in results if r for p in r]
    print(f"\n[{dep.kind}] host B killed under load: {len(placed)} orders, {len(retried)} retried "
          f"({sorted({code for *_, code in retried}, key=str)}), {len(replayed)} found already made")
    assert len(placed) == clients * each
    assert len({oid for _, oid in placed}) == clients * each  # one order per key, none shared
    with dep.ctx.session() as s:
        assert s.scalar(select(func.count(func.distinct(OrderLine.order_id))).where(
            OrderLine.product_id == pid)) == clients * each  # none doubled by a retry
        assert s.scalar(select(func.sum(StockLot.reserved)).where(StockLot.product_id == pid)) == clients * each
        assert stock.verify(s) == []
    assert host_a.worker_pids(), "host A went down too"
    served_before = len(access_lines(host_b))
    with dep.session() as http:  # nginx tries B again after fail_timeout (10 s)
        for _ in range(150):
            assert http.get(f"{dep.url}/api/v1/health", timeout=TIMEOUT).status_code == 200
            if len(access_lines(host_b)) > served_before + 1:
                break
            time.sleep(0.1)
    assert len(access_lines(host_b)) > served_before + 1, "host B never got traffic back"
