"""Benchmark of the POS sales upload: N offline sales in batches, first upload and full replay.

Against a running server (an admin login is used to set up a store, products,
stock and a terminal through the API)::

    python bench/pos_sync.py --server http://127.0.0.1:8000 --username admin --password ...

or let the script start one (a fresh database, gunicorn with --workers)::

    python bench/pos_sync.py --serve sqlite
    python bench/pos_sync.py --serve postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Prints sales/s for the first upload (every sale recorded: order, FEFO stock,
hooks) and for replaying all of it (every sale answered ``duplicate``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def call(base: str, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None,
         timeout: float = 300):
    data = None if body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')[:500]}") from None


def setup(base: str, token: str, products: int, units: int) -> tuple[int, list[int], str]:
    """A bench store with ``products`` products (stock ``units`` each) and a registered terminal."""
    tag = uuid.uuid4().hex[:6]
    store = call(base, "POST", "/api/v1/stores", {"code": f"BENCH-{tag}", "name": f"压测门店 {tag}"}, token)
    expiry = (dt.date.today() + dt.timedelta(days=700)).isoformat()
    pids = []
    for i in range(products):
        p = call(base, "POST", "/api/v1/products", {
            "sku": f"BENCH-{tag}-{i}", "generic_name": f"压测药品{i}", "approval_number": f"国药准字H{20000000 + i:08d}",
            "rx_class": "otc_b", "price_fen": 500 + i}, token)
        call(base, "POST", f"/api/v1/stores/{store['id']}/stock/receipts",
             {"product_id": p["id"], "lot_no": f"L{tag}{i}", "expiry": expiry, "quantity": units}, token)
        pids.append(p["id"])
    device = call(base, "POST", "/api/v1/pos/devices", {"store_id": store["id"], "name": f"bench {tag}"}, token)
    return store["id"], pids, device["secret"]


def make_sales(n: int, lines: int, products: list[tuple[int, int, int]], seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc)
    sales = []
    for i in range(n):
        chosen = rnd.sample(products, lines)
        body_lines = [{"line_id": uuid.uuid4().hex, "product_id": pid, "quantity": rnd.randint(1, 3),
                       "unit_price_fen": price, "price_list_version": version} for pid, price, version in chosen]
        total = sum(l["quantity"] * l["unit_price_fen"] for l in body_lines)
        sales.append({"client_sale_id": uuid.uuid4().hex, "device_seq": i + 1,
                      "sold_at": (now - dt.timedelta(seconds=n - i)).isoformat(), "lines": body_lines,
                      "payments": [{"method": "cash", "amount_fen": total}]})
    return sales


def upload(base: str, headers: dict, sales: list[dict], batch: int, after_request=None) -> tuple[float, dict]:
    """Send every sale until answered (a busy server may answer some ``deferred``: sent again)."""
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "deferred": 0, "requests": 0}
    pending = list(sales)
    done = 0
    started = time.perf_counter()
    while pending:
        chunk, pending = pending[:batch], pending[batch:]
        answer = call(base, "POST", "/api/v1/pos/sales:batch",
                      {"sales": chunk, "device_time": dt.datetime.now(dt.timezone.utc).isoformat()},
                      headers=headers)
        counts["requests"] += 1
        for k in ("accepted", "duplicate", "rejected", "deferred"):
            counts[k] += answer.get(k, 0)
        again = [s for s, r in zip(chunk, answer["results"]) if r["status"] == "deferred"]
        pending = again + pending
        done += len(chunk) - len(again)
        if after_request is not None:
            after_request()
        print(f"\r  {done}/{len(sales)} sales, {done / (time.perf_counter() - started):.0f}/s", end="", flush=True)
    print()
    return time.perf_counter() - started, counts


def catalog_bench(base: str, token: str, config: Path, n: int) -> None:
    """Insert ``n`` products in bulk, then pull the whole catalogue as a new terminal would."""
    import tomllib
    from sqlalchemy import insert
    sys.path.insert(0, str(REPO))
    from core.db import make_engine
    from core.models import Product
    engine = make_engine(tomllib.loads(config.read_text())["database_url"])
    tag = uuid.uuid4().hex[:6]
    started = time.perf_counter()
    with engine.begin() as conn:
        for start in range(0, n, 5000):
            now = dt.datetime.now(dt.timezone.utc)
            conn.execute(insert(Product), [{
                "sku": f"CAT-{tag}-{i}", "generic_name": f"目录药品{i}", "brand_name": "", "specification": "10片",
                "pack": "", "dosage_form": "片剂", "manufacturer": "", "mah": "",
                "approval_number": f"国药准字H{i % 10**8:08d}", "category": "", "rx_class": "otc_b",
                "ephedrine": False, "online_banned": False, "cold_chain": False, "storage": "",
                "package_insert": "", "price_fen": 100 + i % 5000, "active": True, "created_at": now,
                "updated_at": now} for i in range(start, min(n, start + 5000))])
    engine.dispose()
    print(f"inserted {n} products in {time.perf_counter() - started:.1f} s")
    store = call(base, "POST", "/api/v1/stores", {"code": f"CAT-{tag}", "name": "目录门店"}, token)
    secret = call(base, "POST", "/api/v1/pos/devices", {"store_id": store["id"], "name": "catalogue"}, token)["secret"]
    headers = {"Authorization": f"Bearer {secret}", "X-POS-Database-Id": uuid.uuid4().hex}
    time.sleep(6)  # past the PostgreSQL settle margin
    rows, pages, cursor, started = 0, 0, None, time.perf_counter()
    while True:
        query = "?limit=1000" + (f"&since={cursor}" if cursor else "")
        page = call(base, "GET", "/api/v1/pos/catalog" + query, headers=headers)
        rows, pages, cursor = rows + len(page["products"]) + len(page["stock"]), pages + 1, page["next_cursor"]
        print(f"\r  {rows} rows in {pages} pages", end="", flush=True)
        if not page["has_more"]:
            break
    took = time.perf_counter() - started
    print(f"\nfull catalogue pull: {rows} rows in {pages} pages, {took:.1f} s ({rows / took:.0f} rows/s)")


class Vacuum:
    """Stands in for autovacuum when the PostgreSQL server runs without it (test servers often do):
    every sale rewrites three lot rows, and without vacuum their dead versions pile up."""

    TABLES = ("stock_lots", "orders", "order_lines", "pos_sales", "pos_devices", "pos_sync_state")

    def __init__(self, url: str, every: int = 4):
        from sqlalchemy import create_engine, text
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                                    isolation_level="AUTOCOMMIT")
        with self.engine.connect() as c:
            self.needed = c.execute(text("SHOW autovacuum")).scalar() == "off"
        self.every, self.calls = every, 0
        if self.needed:
            print("note: this PostgreSQL server runs with autovacuum off; the bench vacuums the busy tables itself")

    def __call__(self) -> None:
        from sqlalchemy import text
        self.calls += 1
        if self.needed and self.calls % self.every == 0:
            with self.engine.connect() as c:
                c.execute(text(f"VACUUM (ANALYZE) {', '.join(self.TABLES)}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_admin(pg_url: str):
    from sqlalchemy import create_engine
    return create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")


def serve(kind: str, pg_url: str, workers: int, workdir: Path, dbname: str) -> tuple[subprocess.Popen, str, str, str]:
    """Start a server on a fresh database; returns (process, base URL, admin user, password)."""
    sys.path.insert(0, str(REPO))
    from sqlalchemy import text
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        admin = _pg_admin(pg_url)
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{dbname}"'))
        admin.dispose()
        url = pg_url.rsplit("/", 1)[0] + "/" + dbname
    config = workdir / "bench.toml"
    config.write_text(f'database_url = "{url}"\n[plugins]\nenabled = ["pos_sync"]\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHARMO2O_")} | {"PHARMO2O_CONFIG": str(config)}
    pharmo2o = [sys.executable, "-c", "from core.cli import main; main()"]
    subprocess.run(pharmo2o + ["init"], cwd=workdir, env=env, check=True, capture_output=True)
    password = uuid.uuid4().hex
    subprocess.run(pharmo2o + ["users", "create", "bench-admin", "--role", "admin", "--password", password],
                   cwd=workdir, env=env, check=True, capture_output=True)
    port = free_port()
    code = f"from core.api.server import serve; serve({str(config)!r}, '127.0.0.1:{port}', {workers})"
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/api/v1/health", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((workdir / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
    return proc, base, "bench-admin", password


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="base URL of a running server (with pos_sync enabled)")
    ap.add_argument("--username", help="an admin of that server")
    ap.add_argument("--password")
    ap.add_argument("--serve", choices=["sqlite", "postgresql"], help="start a server on a fresh database instead")
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers with --serve")
    ap.add_argument("--sales", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--lines", type=int, default=3)
    ap.add_argument("--products", type=int, default=50)
    ap.add_argument("--catalog-products", type=int, default=0,
                    help="with --serve: first add this many products straight into the database and time a "
                         "full catalogue pull (pages of 1000)")
    args = ap.parse_args()

    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="p2o-bench-")
    dbname = f"p2o_bench_{uuid.uuid4().hex[:8]}"
    try:
        if args.serve:
            proc, base, user, password = serve(args.serve, args.pg_url, args.workers, Path(tmp.name), dbname)
        else:
            if not (args.server and args.username and args.password):
                ap.error("give --server, --username and --password, or --serve")
            base, user, password = args.server.rstrip("/"), args.username, args.password
        token = call(base, "POST", "/api/v1/auth/token", {"username": user, "password": password})["token"]
        if args.catalog_products:
            if not args.serve:
                ap.error("--catalog-products needs --serve (the products are written straight into the database)")
            catalog_bench(base, token, Path(tmp.name) / "bench.toml", args.catalog_products)
        print(f"setting up a store with {args.products} products and a terminal on {base} ...")
        units = args.sales * args.lines * 3 // args.products + 10
        store_id, pids, secret = setup(base, token, args.products, units)
        headers = {"Authorization": f"Bearer {secret}", "X-POS-Database-Id": uuid.uuid4().hex}
        cursor, products = None, {}
        deadline = time.monotonic() + 60
        while len(products) < len(pids):  # new rows are served once settled (a few seconds on PostgreSQL)
            query = "?limit=1000" + (f"&since={cursor}" if cursor else "")
            catalog = call(base, "GET", "/api/v1/pos/catalog" + query, headers=headers)
            cursor = catalog["next_cursor"]
            for p in catalog["products"]:
                if p["id"] in pids:
                    products[p["id"]] = (p["id"], p["price_fen"], p["price_list_version"] or catalog["price_list_version"])
            if not catalog["has_more"] and len(products) < len(pids):
                if time.monotonic() > deadline:
                    raise SystemExit("the catalogue never showed the bench products")
                time.sleep(1)
        sales = make_sales(args.sales, args.lines, list(products.values()))
        print(f"first upload: {args.sales} sales x {args.lines} lines in batches of {args.batch}")
        vacuum = Vacuum(args.pg_url.rsplit("/", 1)[0] + "/" + dbname) if args.serve == "postgresql" else None
        first, c1 = upload(base, headers, sales, args.batch, vacuum)
        print(f"replay of the same {args.sales} sales")
        again, c2 = upload(base, headers, sales, args.batch, vacuum)
        print(f"first upload: {args.sales / first:8.0f} sales/s  ({first:.1f} s; {c1})")
        print(f"full replay:  {args.sales / again:8.0f} sales/s  ({again:.1f} s; {c2})")
        if vacuum is not None:
            vacuum.engine.dispose()
        if c1["accepted"] != args.sales or c2["duplicate"] != args.sales:
            raise SystemExit("unexpected results: every sale should be accepted once and then be a duplicate")
    except BaseException:
        log = Path(tmp.name) / "server.log"
        if log.exists():
            print("--- server log (tail) ---\n" + log.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            if args.serve == "postgresql":
                from sqlalchemy import text
                admin = _pg_admin(args.pg_url)
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
                admin.dispose()
        tmp.cleanup()


if __name__ == "__main__":
    main()
