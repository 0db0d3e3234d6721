"""Faults in a real deployment (gunicorn workers over HTTP, all four plugins enabled):

* a worker SIGKILLed in the middle of an order placement and in the middle of a POS batch;
* the database connection dropped mid-transaction (PostgreSQL: ``pg_terminate_backend``);
* the fake WeChat timing out or answering errors while payments and template messages flow,
  and the job runner killed while it delivers them.

Afterwards: no partial order, no lost accepted sale, no duplicate, and the outbox has delivered
every notification exactly once. "Mid-transaction" is made deterministic on PostgreSQL by a lock
the test holds on a table the request writes late (``order_events``, after the order, its lines,
allocations and reservations are flushed) and by waiting until the request's backend is seen
waiting on that lock; on SQLite a held write lock stops the request inside its unit of work.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from core.models import Order, OrderEvent, OrderLine, OutboxMessage, StockMovement
from core.testing import Shop, backend, build_api_client
from plugins.pos_sync import devices
from tests.core.factories import ADMIN
from tests.plugins.pos_sync.helpers import FAST, sale
from tests.plugins.wechat_channel.helpers import settings as wechat_settings

ALL = ["prescription_review", "loyalty", "pos_sync", "wechat_channel"]
PG = backend() == "postgresql"


@pytest.fixture
def deployed(make_ctx, gunicorn, fake):
    """All four plugins on the test database, a stocked shop (in process) and gunicorn with 2 workers."""
    ctx = make_ctx(enabled=ALL, settings={**FAST, **wechat_settings(fake, timeout_seconds=1)})
    api = build_api_client(ctx)
    sh = Shop(api)
    server = gunicorn(ctx, workers=2)
    return ctx, api, sh, server


# ------------------------------------------------------------------ helpers

def raw_engine(ctx):
    """A plain engine on the test database, outside the app's pool (the test's own connection)."""
    url = ctx.config.database_url
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return create_engine(url, isolation_level="AUTOCOMMIT")


def backend_waiting_on_lock(conn, like: str, timeout: float = 30) -> int:
    """The pid of the PostgreSQL backend whose statement matches ``like`` once it waits on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock' AND query ILIKE :q"), {"q": like}).scalar()
        if pid:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no request reached a statement like {like!r} and waited")


def worker_holding(server, port: int, *, remote: bool = False) -> int:
    """The gunicorn worker owning the TCP socket whose local (or ``remote``) port is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, peer, state = cols[1], cols[2], cols[3]
            if int((peer if remote else local).rsplit(":", 1)[1], 16) == port and state == "01":  # ESTABLISHED
                inodes.add(cols[9])
    for pid in server.worker_pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = fd.readlink().as_posix()
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    raise AssertionError(f"no worker holds a connection on port {port}")


def worker_of_backend(conn, server, backend_pid: int) -> int:
    """The gunicorn worker holding the client end of PostgreSQL backend ``backend_pid``'s connection."""
    port = conn.execute(text("SELECT client_port FROM pg_stat_activity WHERE pid = :p"), {"p": backend_pid}).scalar()
    return worker_holding(server, port)


def worker_serving(server) -> int:
    """The worker answering the one HTTP request in flight (the accepted connection on the server's port)."""
    return worker_holding(server, server.port)


class InFlight:
    """One HTTP request sent from a thread; ``outcome`` is the response or the exception it ended with."""

    def __init__(self, method: str, url: str, **kw) -> None:
        self.outcome = None
        self.thread = threading.Thread(target=self._run, args=(method, url), kwargs=kw, daemon=True)
        self.thread.start()

    def _run(self, method, url, **kw):
        try:
            self.outcome = requests.request(method, url, timeout=120, **kw)
        except requests.RequestException as exc:
            self.outcome = exc

    def result(self, timeout: float = 60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request never ended"
        return self.outcome


def available(sh: Shop, product_id: int) -> int:
    return sh.available(product_id)


def counts(ctx) -> dict:
    with ctx.session() as s:
        return {"orders": s.scalar(select(func.count()).select_from(Order)),
                "lines": s.scalar(select(func.count()).select_from(OrderLine)),
                "events": s.scalar(select(func.count()).select_from(OrderEvent)),
                "movements": s.scalar(select(func.count()).select_from(StockMovement))}


# ------------------------------------------------------------------ order placement

def hold_in_the_middle_of_an_order(ctx):
    """A transaction that makes the next order placement stop in its middle; returns (connection, how)."""
    engine = raw_engine(ctx)
    conn = engine.connect()
    if PG:
        conn.execute(text("BEGIN"))
        conn.execute(text("LOCK TABLE order_events IN EXCLUSIVE MODE"))  # reads go on; the event insert waits
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the request's unit of work waits for the write lock
    return engine, conn


def release(engine, conn):
    conn.execute(text("ROLLBACK"))
    conn.close()
    engine.dispose()


def test_a_worker_killed_mid_order_leaves_no_partial_order_and_the_retry_places_it_once(deployed):
    ctx, api, sh, server = deployed
    product = sh.product(stock=5)
    before, stock_before = counts(ctx), available(sh, product["id"])
    body = sh.order_body([(product["id"], 2), (sh.otc["id"], 1)])
    headers = {**api.headers("clerk"), "Idempotency-Key": "kill-mid-order"}
    engine, conn = hold_in_the_middle_of_an_order(ctx)
    backend_pid = None
    try:
        flight = InFlight("POST", f"{server.url}/api/v1/orders", json=body, headers=headers)
        if PG:
            with raw_engine(ctx).connect() as watch:
                backend_pid = backend_waiting_on_lock(watch, "%INSERT INTO order_events%")
                # the order, its lines and reservations are written (not committed) when it dies
                victim = server.kill_worker(worker_of_backend(watch, server, backend_pid))
        else:
            time.sleep(1.0)  # the request is inside its unit of work, waiting for the write lock
            victim = server.kill_worker(worker_serving(server))
        outcome = flight.result()
        assert isinstance(outcome, requests.ConnectionError), outcome  # the answer died with the worker
    finally:
        release(engine, conn)
    if backend_pid is not None:  # PostgreSQL notices the lost client once the lock lets its backend go on
        with raw_engine(ctx).connect() as watch:
            deadline = time.monotonic() + 20
            while watch.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                                {"p": backend_pid}).scalar():
                assert time.monotonic() < deadline, "the killed worker's transaction never ended"
                time.sleep(0.05)
    assert counts(ctx) == before  # nothing of the order is left
    assert available(sh, product["id"]) == stock_before
    # the client tries again with the same key: the order is placed exactly once
    deadline = time.monotonic() + 30
    while victim in server.worker_pids() or len(server.worker_pids()) < 2:  # gunicorn forks a replacement
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first = requests.post(f"{server.url}/api/v1/orders", json=body, headers=headers, timeout=60)
    again = requests.post(f"{server.url}/api/v1/orders", json=body, headers=headers, timeout=60)
    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    after = counts(ctx)
    assert after["orders"] == before["orders"] + 1 and after["lines"] == before["lines"] + 2
    assert available(sh, product["id"]) == stock_before - 2


@pytest.mark.skipif(not PG, reason="pg_terminate_backend: dropping one connection is a PostgreSQL operation")
def test_a_database_connection_dropped_mid_transaction_is_a_503_and_nothing_half_written(deployed):
    ctx, api, sh, server = deployed
    product = sh.product(stock=5)
    before, stock_before = counts(ctx), available(sh, product["id"])
    body = sh.order_body([(product["id"], 3)])
    headers = {**api.headers("clerk"), "Idempotency-Key": "dropped-connection"}
    engine, conn = hold_in_the_middle_of_an_order(ctx)
    try:
        flight = InFlight("POST", f"{server.url}/api/v1/orders", json=body, headers=headers)
        with raw_engine(ctx).connect() as watch:
            backend_pid = backend_waiting_on_lock(watch, "%INSERT INTO order_events%")
            assert watch.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend_pid}).scalar() is True
        answer = flight.result()
    finally:
        release(engine, conn)
    assert isinstance(answer, requests.Response), answer
    assert answer.status_code == 503, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["status"] == 503 and "request_id" in answer.text
    assert counts(ctx) == before and available(sh, product["id"]) == stock_before
    # every worker serves again (the broken connection was thrown away, not handed to the next request)
    for _ in range(6):
        r = requests.get(f"{server.url}/api/v1/orders", headers=api.headers("clerk"), timeout=30)
        assert r.status_code == 200, r.text
    retry = requests.post(f"{server.url}/api/v1/orders", json=body, headers=headers, timeout=60)
    assert retry.status_code == 201, retry.text
    assert counts(ctx)["orders"] == before["orders"] + 1
    assert available(sh, product["id"]) == stock_before - 3


# ------------------------------------------------------------------ POS batch

def pos_rows(ctx) -> dict:
    with ctx.session() as s:
        return dict(s.execute(text("SELECT client_sale_id, order_id FROM pos_sales")).all())


def test_a_worker_killed_mid_pos_batch_loses_no_accepted_sale_and_duplicates_none(deployed):
    ctx, api, sh, server = deployed
    products = [sh.product(stock=5000, price_fen=300 + i) for i in range(4)]
    with ctx.transaction() as s:
        _device, creds = devices.register(s, store_id=sh.store_id, name="Counter K", caller=ADMIN)
    term = {"Authorization": f"Bearer {creds.secret}", "X-POS-Database-Id": uuid.uuid4().hex}
    catalog = requests.get(f"{server.url}/api/v1/pos/catalog", headers=term, timeout=60)
    assert catalog.status_code == 200, catalog.text
    pv = catalog.json()["price_list_version"]
    sold_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
    n = 500  # the most one batch may carry
    batch = [sale([(p["id"], 1 + (i + k) % 3, p["price_fen"]) for k, p in enumerate(products[:3] if i % 2 else products[1:])],
                  seq=i + 1, sold_at=sold_at + dt.timedelta(seconds=i), pv=pv) for i in range(n)]
    quantities = {p["id"]: 0 for p in products}
    for s_ in batch:
        for line in s_["lines"]:
            quantities[line["product_id"]] += line["quantity"]
    stock_before = {pid: available(sh, pid) for pid in quantities}
    url = f"{server.url}/api/v1/pos/sales:batch"
    payload = {"sales": batch, "device_time": dt.datetime.now(dt.timezone.utc).isoformat()}

    if PG:
        # a lot the second half of the batch needs is locked by the test: the worker is stopped in the batch
        engine = raw_engine(ctx)
        hold = engine.connect()
        hold.execute(text("BEGIN"))
        hold.execute(text("SELECT id FROM stock_lots WHERE product_id = :p FOR UPDATE"), {"p": products[0]["id"]})
        flight = InFlight("POST", url, json=payload, headers=term)
        with raw_engine(ctx).connect() as watch:
            backend_pid = backend_waiting_on_lock(watch, "%stock_lots%")
            server.kill_worker(worker_of_backend(watch, server, backend_pid))
        outcome = flight.result()
        hold.execute(text("ROLLBACK"))
        hold.close()
        engine.dispose()
    else:
        # the batch commits chunk by chunk ([pos_sync] commit_every): the worker is killed as soon as the
        # first chunk shows (SQLite has no row lock to stop it with); the worker is known before that
        # (a read of pos_sales may wait while a chunk commits: by then the request must not be lost sight of)
        victim = None
        flight = InFlight("POST", url, json=payload, headers=term)
        deadline = time.monotonic() + 60
        while victim is None:
            assert flight.thread.is_alive(), f"the batch ended before it was seen in a worker: {flight.outcome}"
            assert time.monotonic() < deadline, "no worker ever took the batch"
            try:
                victim = worker_serving(server)
            except AssertionError:  # not accepted yet
                time.sleep(0.001)
        with raw_engine(ctx).connect() as watch:
            while not watch.exec_driver_sql("SELECT 1 FROM pos_sales LIMIT 1").first():
                assert flight.thread.is_alive(), f"the batch ended before any chunk was seen: {flight.outcome}"
                assert time.monotonic() < deadline, "no chunk of the batch was ever committed"
                time.sleep(0.002)
        server.kill_worker(victim)
        outcome = flight.result()
    assert isinstance(outcome, requests.ConnectionError), outcome  # killed while the batch was in progress
    committed = pos_rows(ctx)
    assert len(committed) < n  # the batch was cut off
    # the terminal sends the same batch again until every sale is answered
    answered: dict[str, str] = {}
    pending = batch
    deadline = time.monotonic() + 300
    while pending:
        assert time.monotonic() < deadline, "the server never took the whole batch"
        r = requests.post(url, json={"sales": pending, "device_time": dt.datetime.now(dt.timezone.utc).isoformat()},
                          headers=term, timeout=300)
        if r.status_code in (502, 503):
            time.sleep(0.5)
            continue
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        for s_, res in zip(pending, results):
            if res["status"] != "deferred":
                answered[s_["client_sale_id"]] = res["status"]
        pending = [s_ for s_, res in zip(pending, results) if res["status"] == "deferred"]
    assert set(answered.values()) <= {"accepted", "duplicate"}, answered
    # every sale committed before the kill comes back as a duplicate, the rest as accepted: each exactly once
    assert {k for k, v in answered.items() if v == "duplicate"} == set(committed)
    rows = pos_rows(ctx)
    assert set(rows) == {s_["client_sale_id"] for s_ in batch} and len(set(rows.values())) == n
    for pid, qty in quantities.items():
        assert available(sh, pid) == stock_before[pid] - qty, pid
    replay = requests.post(url, json=payload, headers=term, timeout=300).json()
    assert replay["duplicate"] == n and replay.get("accepted", 0) == 0


# ------------------------------------------------------------------ WeChat faults and the outbox

def job_runner(server) -> subprocess.Popen:
    """``pharmo2o worker`` on the deployment's configuration, in its own process group."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHARMO2O_")} | {"PHARMO2O_CONFIG": str(server.config)}
    log = open(server.workdir / "worker.log", "ab")
    return subprocess.Popen([sys.executable, "-c", "from core.cli import main; main()", "worker"], cwd=server.workdir,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def template_sends(fake) -> int:
    return sum(1 for _, path in list(fake.requests) if path == "/cgi-bin/message/template/send")


def wechat_ids(fake) -> list[tuple[str, str]]:
    return sorted((t["template_id"], t["url"]) for t in fake.templates)


def test_wechat_errors_timeouts_and_a_killed_job_runner_still_deliver_each_notification_once(deployed, fake):
    ctx, api, sh, server = deployed
    from sqlalchemy import update

    from core.models import Customer
    with ctx.transaction() as s:
        s.execute(update(Customer).where(Customer.id == api.customer_id).values(openid="o-fault-1"))
    customer = api.headers("customer")
    orders_made = []
    for i in range(4):
        body = {"store_id": sh.store_id, "channel": "wechat", "fulfilment": "pickup",
                "lines": [{"product_id": sh.otc["id"], "quantity": 1}]}
        r = requests.post(f"{server.url}/api/v1/orders", json=body, headers=customer, timeout=60)
        assert r.status_code == 201, r.text
        orders_made.append(r.json()["id"])
    # WeChat Pay's unified order times out for the first order: a clear error, nothing half-done, retry works
    fake.template_hang = 0
    pay_url = f"{server.url}/api/v1/orders/{orders_made[0]}/wechat-pay"
    original = fake._unifiedorder

    def slow_unifiedorder(q, body):
        time.sleep(2)  # longer than the 1 s timeout
        return original(q, body)
    fake._unifiedorder = slow_unifiedorder
    r = requests.post(pay_url, headers=customer, timeout=60)
    assert r.status_code in (502, 503, 504), r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    fake._unifiedorder = original
    # every order is paid; each notification is sent twice at once, as WeChat retries
    for oid in orders_made:
        r = requests.post(f"{server.url}/api/v1/orders/{oid}/wechat-pay", headers=customer, timeout=60)
        assert r.status_code == 200, r.text
        note = fake.notification(r.json()["out_trade_no"])
        flights = [InFlight("POST", f"{server.url}/wechat/pay/notify", data=note.encode("utf-8"),
                            headers={"Content-Type": "text/xml"}) for _ in range(2)]
        for f in flights:
            res = f.result()
            assert isinstance(res, requests.Response) and res.status_code == 200 and "SUCCESS" in res.text, res
    with ctx.session() as s:
        assert all(s.get(Order, oid).status == "paid" for oid in orders_made)
    # WeChat refuses the first template sends (busy, rate-limited: retried later) ...
    fake.template_errors = [{"errcode": -1, "errmsg": "system error"}, {"errcode": 45009, "errmsg": "api freq"}]
    from core.testing import run_outbox
    first = run_outbox(ctx)
    assert (first.sent, first.failed) == (2, 2), first
    # ... then the job runner (`pharmo2o worker`, a real process) is SIGKILLed while WeChat sits on a send
    fake.template_hang = 3.0
    tried = template_sends(fake)
    runner = job_runner(server)
    try:
        deadline = time.monotonic() + 60
        while template_sends(fake) == tried:
            assert time.monotonic() < deadline, "the job runner never tried to send"
            assert runner.poll() is None, server.log_text()[-2000:]
            time.sleep(0.05)
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(timeout=20)
    time.sleep(3.5)  # WeChat finishes the send it was sitting on: that message did arrive
    fake.template_hang = 0
    from plugins.wechat_channel.models import TemplateSend
    with ctx.transaction() as s:  # the killed runner's two-minute send lease runs out (time passing, shortened)
        cut_off = s.scalars(select(TemplateSend).where(TemplateSend.status == "sending")).all()
        assert len(cut_off) == 1
        cut_off[0].lease_until = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    # later rounds (past every backoff and lease) deliver what is left, and never anything twice
    for minutes in (10, 30, 90, 240):
        run_outbox(ctx, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes))
    expected = sorted(("TPL-PAID", f"https://shop.example.com/h5/#/orders/{oid}") for oid in orders_made)
    assert wechat_ids(fake) == expected
    with ctx.session() as s:
        stuck = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != "sent"))
    assert stuck == 0
    with ctx.session() as s:
        outcome = sorted(s.scalars(select(TemplateSend.status)).all())
    assert outcome == ["sent", "sent", "sent", "unknown"]  # the cut-off one arrived but is never sent again
