"""Benchmark of order placement: ``POST /api/v1/orders`` over HTTP under gunicorn, all four plugins on.

Each order has 3 lines (3 different products, 1-3 units each) for a WeChat customer, picked up in
store: the server validates it, runs the plugins' order hooks, and reserves stock first-expiring-first
among the product's lots (every product is stocked in several lots with different expiry dates).
Every request carries its own ``Idempotency-Key``.

    python bench/orders.py --database postgresql          # figures at 10k orders, growth to 1M
    python bench/orders.py --database sqlite --big 200000  # see "growth" below for SQLite
    python bench/orders.py --database postgresql --explain # EXPLAIN every statement of the order path

What it prints (and appends to ``bench/RESULTS.md``):

- throughput and latency: orders/s and p50/p99 latency at ``--clients`` (16) concurrent clients,
  on a database whose orders table holds ``--small`` (10,000) rows;
- growth: the same load against a second database (own gunicorn) whose orders table holds ``--big``
  rows (1,000,000), the two measured alternately, ``--rounds`` rounds each, medians: the ratio of the
  time per order big/small (target: at most 1.2);
- statements per order: the SQL statements one ``POST /api/v1/orders`` runs (token lookup included),
  counted in-process on the same database and plugins.

The history is filled with a bulk insert straight into the database (:func:`fill`): completed orders
of 3 lines each, for customers and products of their own, created over the past year; ``COPY`` on
PostgreSQL, ``executemany`` in transactions of 50,000 rows on SQLite. On this machine 1M orders
(+3M lines) take about a minute on PostgreSQL and several on SQLite; ``--big`` sets a smaller N.

The load generator is Python threads, one ``http.client`` connection each (kept alive when the server
allows it; gunicorn's sync workers close after every response, so each request reconnects, as a
browser or a mini-program behind a proxy would against this deployment). It needs no extra tool
(wrk with a Lua script would also need a unique key and body per request) and its own CPU use is
small next to the server's: one order costs the server milliseconds of Python and SQL, the client
tens of microseconds. A request refused for a network reason is sent again with the same
``Idempotency-Key`` (which makes that safe), and so is one answered 503 "database busy" (e.g. a
deadlock PostgreSQL broke), counted as ``busy``; any other non-201 answer ends the bench.

For other scripts (e.g. bench/tryton.py)::

    from bench.orders import setup, run_orders
    catalogue = setup(base, token, orders=2000)             # a store, products in lots, customers
    run_orders(base, token, clients=16, n=2000, catalogue=catalogue)
    # -> {"orders_per_s": ..., "p50_ms": ..., "p99_ms": ..., "orders": n, "seconds": ...,
    #     "retries": network retries, "busy": 503 answers sent again}

``run_orders`` without ``catalogue`` calls ``setup`` first (not timed).
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import random
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (ALL_PLUGINS, DEFAULT_PG, Database, Server, Vacuum, call, median, percentile,  # noqa: E402
                          record, table)

LINES = 3
MAX_QTY = 3


# ------------------------------------------------------------------ set-up through the API

def setup(base: str, token: str, *, orders: int = 2000, products: int = 40, lots: int = 4, customers: int = 20,
          channel: str = "wechat") -> dict:
    """A store, ``products`` OTC products each received in ``lots`` lots (expiries 1-4 years out, the
    first-expiring lots smaller so that FEFO moves on to the next lot during a run) with stock for
    ``orders`` orders and a margin, and ``customers`` WeChat customers. Only the API is used.

    Returns the catalogue ``run_orders`` needs: ``{"store_id", "product_ids", "customer_ids", "channel"}``.
    """
    tag = uuid.uuid4().hex[:8]
    store = call(base, "POST", "/api/v1/stores", {"code": f"OB-{tag}", "name": f"下单压测门店 {tag}"}, token)
    per_product = math.ceil(orders * LINES * (1 + MAX_QTY) / 2 / products * 1.5) + 10
    today = dt.date.today()
    pids = []
    for i in range(products):
        p = call(base, "POST", "/api/v1/products", {
            "sku": f"OB-{tag}-{i}", "generic_name": f"下单压测药品{i}", "specification": "10片",
            "approval_number": f"国药准字H{30000000 + i:08d}", "rx_class": "otc_b" if i % 2 else "otc_a",
            "price_fen": 300 + 7 * i}, token)
        # lot sizes 1/10, 2/10, 3/10, 4/10 of the product's stock, earliest expiry smallest
        sizes = [max(1, per_product * (k + 1) // (lots * (lots + 1) // 2)) for k in range(lots)]
        for k, units in enumerate(sizes):
            call(base, "POST", f"/api/v1/stores/{store['id']}/stock/receipts",
                 {"product_id": p["id"], "lot_no": f"L{tag}-{i}-{k}",
                  "expiry": (today + dt.timedelta(days=365 * (k + 1) + i)).isoformat(), "quantity": units}, token)
        pids.append(p["id"])
    cids = [call(base, "POST", "/api/v1/customers", {"name": f"顾客{tag}{j}", "openid": f"o{tag}{j:06d}"}, token)["id"]
            for j in range(customers)]
    return {"store_id": store["id"], "product_ids": pids, "customer_ids": cids, "channel": channel}


def order_body(catalogue: dict, rnd: random.Random) -> dict:
    return {"store_id": catalogue["store_id"], "customer_id": rnd.choice(catalogue["customer_ids"]),
            "channel": catalogue["channel"], "fulfilment": "pickup",
            "lines": [{"product_id": pid, "quantity": rnd.randint(1, MAX_QTY)}
                      for pid in rnd.sample(catalogue["product_ids"], LINES)]}


# ------------------------------------------------------------------ the load

def run_orders(base: str, token: str, clients: int = 16, n: int = 1000, catalogue: dict | None = None,
               seed: int | None = None) -> dict:
    """Place ``n`` orders with ``clients`` concurrent clients; each order's latency is measured from
    sending the request to reading the whole answer. Returns ``{"orders_per_s", "p50_ms", "p99_ms",
    "orders", "seconds", "retries"}``."""
    if catalogue is None:
        catalogue = setup(base, token, orders=n)
    url = urllib.parse.urlsplit(base)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    lock = threading.Lock()
    state = {"next": 0, "retries": 0, "busy": 0, "failure": None}
    latencies: list[float] = []
    seed = random.randrange(1 << 30) if seed is None else seed

    def client(k: int) -> None:
        rnd = random.Random(seed * 1000 + k)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        mine = []
        try:
            while True:
                with lock:
                    if state["next"] >= n or state["failure"]:
                        break
                    state["next"] += 1
                body = json.dumps(order_body(catalogue, rnd))
                h = dict(headers, **{"Idempotency-Key": uuid.uuid4().hex})
                started = time.perf_counter()
                for attempt in range(10):
                    try:
                        conn.request("POST", "/api/v1/orders", body, h)
                        resp = conn.getresponse()
                        data = resp.read()
                    except (ConnectionError, http.client.HTTPException, TimeoutError):
                        conn.close()
                        with lock:
                            state["retries"] += 1
                        time.sleep(0.05 * (attempt + 1))
                        continue
                    if resp.status != 503:
                        break
                    # "database busy" (e.g. a deadlock PostgreSQL broke): a client sends it again, same key
                    if resp.will_close:
                        conn.close()
                    with lock:
                        state["busy"] += 1
                    time.sleep(0.05 * (attempt + 1))
                else:
                    raise SystemExit("POST /api/v1/orders: no answer after 10 attempts")
                mine.append(time.perf_counter() - started)
                if resp.status != 201:
                    with lock:
                        state["failure"] = f"POST /api/v1/orders: {resp.status} {data[:500].decode(errors='replace')}"
                    break
                if resp.will_close:
                    conn.close()
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if state["failure"]:
        raise SystemExit(state["failure"])
    return {"orders_per_s": len(latencies) / seconds, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "orders": len(latencies), "seconds": seconds,
            "retries": state["retries"], "busy": state["busy"]}


# ------------------------------------------------------------------ history, straight into the database

ORDER_COLS = ("id", "store_id", "customer_id", "channel", "fulfilment", "status", "subtotal_fen", "adjustments_fen",
              "total_fen", "idempotency_key", "request_hash", "pickup_code", "hold_reasons", "extra",
              "delivery_address", "payment_provider", "payment_reference", "note", "expires_at", "created_by",
              "created_at", "updated_at", "paid_at")
LINE_COLS = ("id", "order_id", "product_id", "quantity", "unit_price_fen", "line_total_fen", "product_name", "rx_class")
CUSTOMER_COLS = ("id", "name", "phone", "openid", "unionid", "store_id", "created_at")
CHUNK = 50_000


def fill(db: Database, rows: int, store_id: int, seed: int = 7) -> float:
    """Add ``rows`` completed orders (3 lines each, over the past year, for new customers, one per 50
    orders) to ``db`` in bulk; returns the seconds taken. PostgreSQL: ``COPY``; SQLite: ``executemany``."""
    from sqlalchemy import text
    rnd = random.Random(seed)
    engine = db.engine()
    started = time.perf_counter()
    with engine.connect() as c:
        top = {t: c.execute(text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar()
               for t in ("orders", "order_lines", "customers")}
        products = c.execute(text("SELECT id, price_fen, generic_name, specification, rx_class FROM products "
                                  "WHERE rx_class <> 'rx'")).all()
    products = [tuple(p) for p in products]
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    pg = db.kind == "postgresql"

    def stamp(t: dt.datetime) -> str:
        return t.strftime("%Y-%m-%d %H:%M:%S+00") if pg else t.strftime("%Y-%m-%d %H:%M:%S.000000")

    n_customers = max(1, rows // 50)
    customers = [(top["customers"] + j + 1, f"历史顾客{j}", None, f"hist-{uuid.uuid4().hex[:12]}-{j}", None, store_id,
                  stamp(now - dt.timedelta(days=400))) for j in range(n_customers)]

    def chunks():
        oid, lid = top["orders"], top["order_lines"]
        for start in range(0, rows, CHUNK):
            orders, lines = [], []
            for _ in range(min(CHUNK, rows - start)):
                oid += 1
                at = now - dt.timedelta(seconds=rnd.randrange(365 * 86400))
                subtotal = 0
                for p in rnd.sample(products, min(LINES, len(products))):
                    lid += 1
                    q = rnd.randint(1, MAX_QTY)
                    subtotal += p[1] * q
                    lines.append((lid, oid, p[0], q, p[1], p[1] * q, f"{p[2]} {p[3]}".strip(), p[4]))
                orders.append((oid, store_id, top["customers"] + 1 + rnd.randrange(n_customers), "wechat", "pickup",
                               "completed", subtotal, 0, subtotal, f"hist|{uuid.uuid4().hex}", uuid.uuid4().hex + "0" * 32,
                               f"{rnd.randrange(10**6):06d}", "[]", "{}", None, "wechat_pay", f"T{oid}", None, None,
                               "bench", stamp(at), stamp(at), stamp(at)))
            yield orders, lines

    if pg:
        def copy_text(values) -> str:
            return "\n".join("\t".join("\\N" if v is None else str(v) for v in row) for row in values) + "\n"

        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur:
                with cur.copy(f"COPY customers ({', '.join(CUSTOMER_COLS)}) FROM STDIN") as cp:
                    cp.write(copy_text(customers))
                for orders, lines in chunks():
                    with cur.copy(f"COPY orders ({', '.join(ORDER_COLS)}) FROM STDIN") as cp:
                        cp.write(copy_text(orders))
                    with cur.copy(f"COPY order_lines ({', '.join(LINE_COLS)}) FROM STDIN") as cp:
                        cp.write(copy_text(lines))
                for t in ("orders", "order_lines", "customers"):
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
            raw.commit()
            raw.autocommit = True
            with raw.cursor() as cur:
                cur.execute("ANALYZE orders, order_lines, customers")
        finally:
            raw.close()
    else:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            ins = lambda t, cols: f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"  # noqa: E731
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(ins("customers", CUSTOMER_COLS), customers)
            cur.execute("COMMIT")
            for orders, lines in chunks():
                cur.execute("BEGIN IMMEDIATE")
                cur.executemany(ins("orders", ORDER_COLS), orders)
                cur.executemany(ins("order_lines", LINE_COLS), lines)
                cur.execute("COMMIT")
            cur.execute("ANALYZE")
            cur.close()
        finally:
            raw.close()
    engine.dispose()
    return time.perf_counter() - started


# ------------------------------------------------------------------ statements per order (in-process)

def capture_order_statements(db: Database, catalogue: dict, token: str, orders: int = 10) -> list[list[tuple]]:
    """Place ``orders`` orders through the WSGI app in this process (same database, same plugins) and
    return, per order, the ``(statement, parameters)`` it executed, from the request's first SQL on."""
    import falcon.testing
    from sqlalchemy import event
    from core.api.app import create_app
    from core.config import load_config
    from core.context import Context
    ctx = Context.create(load_config(str(db.config)))
    app = create_app(ctx)
    client = falcon.testing.TestClient(app)
    seen: list[tuple] = []
    event.listen(ctx.engine, "before_cursor_execute",
                 lambda conn, cur, stmt, params, context, many: seen.append((stmt, params)))
    rnd = random.Random(3)
    per_order = []
    try:
        for _ in range(orders + 2):  # the first two warm caches (plugin settings, compiled statements)
            seen.clear()
            r = client.simulate_post("/api/v1/orders", json=order_body(catalogue, rnd), headers={
                "Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex})
            if r.status_code != 201:
                raise SystemExit(f"in-process order: {r.status_code} {r.text[:500]}")
            per_order.append(list(seen))
    finally:
        ctx.dispose()
    return per_order[2:]


def explain(db: Database, statements: list[tuple]) -> str:
    """EXPLAIN (PostgreSQL) / EXPLAIN QUERY PLAN (SQLite) of every statement, in a transaction rolled back."""
    engine = db.engine()
    out = []
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for stmt, params in statements:
            s = stmt.strip()
            head = s.split(None, 1)[0].upper()
            if head in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE") or s.upper().startswith("PRAGMA"):
                continue
            prefix = "EXPLAIN " if db.kind == "postgresql" else "EXPLAIN QUERY PLAN "
            try:
                cur.execute(prefix + s, params)
                plan = "\n".join("    " + " | ".join(str(c) for c in row) for row in cur.fetchall())
            except Exception as exc:  # noqa: BLE001 - shown, not fatal
                plan = f"    ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})"
                raw.rollback()
            out.append(f"  {' '.join(s.split())[:220]}\n{plan}")
        raw.rollback()
    finally:
        raw.close()
        engine.dispose()
    return "\n".join(out)


# ------------------------------------------------------------------ main

class TreeDatabase(Database):
    """A :class:`Database` whose CLI and server run the code of another checkout (``PYTHONPATH``),
    e.g. the commit before a change, to compare the two in one run."""

    def __init__(self, kind: str, tree: str, **kw) -> None:
        super().__init__(kind, **kw)
        self.tree = str(Path(tree).resolve())

    def env(self) -> dict:
        return super().env() | {"PYTHONPATH": self.tree}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--orders", type=int, default=400, help="orders per round and side (default 400)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn sync workers per server (default 2)")
    ap.add_argument("--small", type=int, default=10_000, help="orders already in the small database")
    ap.add_argument("--big", type=int, default=1_000_000, help="orders already in the big database (0: no growth)")
    ap.add_argument("--baseline-tree", metavar="DIR",
                    help="instead of the growth pair: the same --small database served by the code in DIR (e.g. "
                         "`git worktree add /tmp/base HEAD~1`) against this tree's, alternating: the speed-up")
    ap.add_argument("--explain", action="store_true", help="print the plan of every statement of one order (big db)")
    ap.add_argument("--show-sql", action="store_true", help="print the statements of one order")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = ap.parse_args(argv)

    total = args.orders * args.rounds + 100
    if args.baseline_tree:
        sides = [("small", args.small), ("baseline", args.small)]
        second = TreeDatabase(args.database, args.baseline_tree, plugins=ALL_PLUGINS, pg_url=args.pg_url)
    else:
        sides = [("small", args.small)] + ([("big", args.big)] if args.big else [])
        second = Database(args.database, plugins=ALL_PLUGINS, pg_url=args.pg_url)
    with Database(args.database, plugins=ALL_PLUGINS, pg_url=args.pg_url) as db_small, second as db_other:
        dbs = {"small": db_small, sides[-1][0]: db_other}
        servers, tokens, catalogues, vacuums, fill_s = {}, {}, {}, {}, {}
        try:
            for name, rows in sides:
                srv = Server(dbs[name], workers=args.workers, name=name).__enter__()
                servers[name] = srv
                tokens[name] = srv.token()
                catalogues[name] = setup(srv.base, tokens[name], orders=total)
                print(f"{name}: filling {rows:,} orders ...", flush=True)
                fill_s[name] = fill(dbs[name], rows, catalogues[name]["store_id"])
                print(f"{name}: filled in {fill_s[name]:.0f} s", flush=True)
                if args.database == "postgresql":
                    vacuums[name] = Vacuum(dbs[name].url, ("stock_lots", "orders", "order_lines", "order_allocations",
                                                          "stock_movements", "order_events", "outbox"), every=1)
                    vacuums[name](force=True)
                run_orders(srv.base, tokens[name], args.clients, 50, catalogues[name])  # warm the workers
            results: dict[str, list[dict]] = {name: [] for name, _ in sides}
            for r in range(args.rounds):
                order = sides if r % 2 == 0 else sides[::-1]
                for name, _rows in order:
                    res = run_orders(servers[name].base, tokens[name], args.clients, args.orders, catalogues[name])
                    results[name].append(res)
                    print(f"round {r + 1} {name}: {res['orders_per_s']:.1f} orders/s, p50 {res['p50_ms']:.0f} ms, "
                          f"p99 {res['p99_ms']:.0f} ms, busy (503, sent again) {res['busy']}", flush=True)
                    if name in vacuums:
                        vacuums[name]()
            per_order = capture_order_statements(dbs["small"], catalogues["small"], tokens["small"])
            counts = [len(s) for s in per_order]
            probe = "big" if "big" in dbs else "small"
            if args.show_sql or args.explain:
                sample = capture_order_statements(dbs[probe], catalogues[probe], tokens[probe], orders=1)[0]
                if args.show_sql:
                    print("\n".join(f"  {' '.join(s.split())[:240]}" for s, _ in sample))
                if args.explain:
                    print(f"plans on the {probe} database ({dict(sides)[probe]:,} orders):")
                    print(explain(dbs[probe], sample))
        finally:
            for srv in servers.values():
                srv.__exit__(None, None, None)
            for v in vacuums.values():
                v.close()

    med = {name: {k: median(x[k] for x in results[name]) for k in ("orders_per_s", "p50_ms", "p99_ms")}
           for name, _ in sides}
    rows = [[f"{rows_:,}", f"{med[name]['orders_per_s']:.1f}", f"{1000 / med[name]['orders_per_s']:.1f}",
             f"{med[name]['p50_ms']:.0f}", f"{med[name]['p99_ms']:.0f}",
             " ".join(f"{x['orders_per_s']:.0f}" for x in results[name]), sum(x["busy"] for x in results[name])]
            for name, rows_ in sides]
    if args.baseline_tree:
        rows[1][0] += f" (code of {args.baseline_tree})"
    body = table(["orders in table", "orders/s (median)", "ms per order", "p50 ms", "p99 ms", "rounds (orders/s)",
                  "503 busy, resent"], rows)
    body += (f"\n\n{args.database}, all four plugins, gunicorn {args.workers} sync workers, {args.clients} concurrent "
             f"clients, {args.rounds} alternating rounds of {args.orders} orders (3 lines, FEFO over 4 lots per "
             f"product) per side.")
    other = sides[-1][0]
    # each round measures both sides back to back: the median of the per-round ratios is the figure
    # least moved by the load of the machine changing between rounds
    paired = median(a["orders_per_s"] / b["orders_per_s"] for a, b in zip(results["small"], results[other])) \
        if other != "small" else None
    if args.baseline_tree:
        body += (f" Speed-up of this tree over {args.baseline_tree}: **{paired:.2f}x** orders/s (median of the "
                 f"per-round ratios; ratio of the medians {med['small']['orders_per_s'] / med['baseline']['orders_per_s']:.2f}x).")
    elif args.big:
        ratio = paired
        body += (f" Growth: time per order at {args.big:,} / at {args.small:,} = **{ratio:.2f}x** (target <= 1.2;"
                 f" median of the per-round ratios; ratio of the medians "
                 f"{med['small']['orders_per_s'] / med['big']['orders_per_s']:.2f}x)."
                 f" History filled in {fill_s['small']:.0f} s / {fill_s['big']:.0f} s.")
    body += (f" Statements per order (whole request, token lookup included): {median(counts):.0f} "
             f"(min {min(counts)}, max {max(counts)}).")
    if args.no_record:
        print("\n" + body)
    else:
        record(f"Order placement ({args.database}{', against the code of ' + args.baseline_tree if args.baseline_tree else ''})",
               body, database=args.database)


if __name__ == "__main__":
    main()
