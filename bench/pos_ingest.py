"""Benchmark of the POS sales upload (issue 11, figure 3): offline sales in, sales/s out.

``--sales`` offline sales of ``--lines`` lines (default 20,000 x 3), uploaded to pharmo2o (gunicorn,
the four bundled plugins) in batches of ``--batch`` (500) as a registered terminal would:

- ``first``:  the first upload (every sale recorded: idempotency row, checks, core order with
  FEFO lot stock and every order/stock hook, e.g. loyalty earning);
- ``replay``: the same sales sent again (every one answered ``duplicate``);
- ``bare``:   the physical limit of this stack: the same sales written with SQLAlchemy Core
  ``executemany`` into the same tables of a sister fresh database (orders, order lines, stock
  movements, one UPDATE per touched lot per batch), one transaction per batch, no HTTP, no checks;
- ``bare, every row`` (no target; the script's table only): the bare insert with the other rows
  the core writes per sale, an allocation per line and three status events, the same way: how
  much of the gap is the rows themselves.

The sales are cut into ``--rounds`` rounds; each round runs the bare inserts, first and replay one after the
other on its slice (alternating, so the machine's load hits all three alike) and the figures are
the medians of the per-round rates; the ratios are the medians of the per-round ratios.
On a PostgreSQL server without autovacuum (test servers often run so), :class:`common.Vacuum`
stands in for it between requests (every 4 batches, on each side's own tables); as autovacuum
runs beside the load, not in it, the clock is paused while it runs, on both sides.
Targets: first >= 0.5 x bare, replay >= 5 x first::

    python bench/pos_ingest.py                         # both databases, 20,000 sales
    python bench/pos_ingest.py --database sqlite --sales 2000

For other scripts (bench/tryton.py compares another ERP's ingest with ours)::

    from pos_ingest import run_pos
    run_pos("postgresql", 5000)
    # -> {"first_sales_per_s": .., "replay_sales_per_s": .., "bare_sales_per_s": .., "rounds": [...], ...}

``run_pos(database_kind, sales, *, lines=3, batch=500, rounds=4, workers=2, products=50, pg_url=...)``
starts and stops its own servers and databases and records nothing; :func:`bench` also appends
the table to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_PG, Database, Server, Vacuum, call, median, record, table  # noqa: E402

TARGETS = {"first/bare": 0.5, "replay/first": 5.0}
BUSY_TABLES = ("stock_lots", "stock_movements", "orders", "order_lines", "order_allocations", "order_events",
               "pos_sales", "pos_devices", "pos_sync_state")
BARE_TABLES = ("stock_lots", "stock_movements", "orders", "order_lines", "order_allocations", "order_events")

__all__ = ["run_pos", "bench", "make_sales", "bare_insert", "upload"]


# ------------------------------------------------------------------ the sales

def make_sales(n: int, lines: int, products: list[tuple[int, int, int]], seed: int = 1) -> list[dict]:
    """``n`` offline sales as a terminal uploads them; ``products``: ``(id, price_fen, price_list_version)``."""
    rnd = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc)
    sales = []
    for i in range(n):
        chosen = rnd.sample(products, lines)
        body_lines = [{"line_id": uuid.uuid4().hex, "product_id": pid, "quantity": rnd.randint(1, 3),
                       "unit_price_fen": price, "price_list_version": version} for pid, price, version in chosen]
        total = sum(line["quantity"] * line["unit_price_fen"] for line in body_lines)
        sales.append({"client_sale_id": uuid.uuid4().hex, "device_seq": i + 1,
                      "sold_at": (now - dt.timedelta(seconds=n - i)).isoformat(), "lines": body_lines,
                      "payments": [{"method": "cash", "amount_fen": total}]})
    return sales


def setup(base: str, token: str, products: int, units: int) -> tuple[int, list[int], str]:
    """A store with ``products`` products (one lot of ``units`` each) and a registered terminal."""
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


def pull_products(base: str, headers: dict, pids: list[int]) -> list[tuple[int, int, int]]:
    """The terminal's catalogue pull, until it shows every bench product (fresh rows settle first on PostgreSQL)."""
    cursor, products = None, {}
    deadline = time.monotonic() + 60
    while len(products) < len(pids):
        query = "?limit=1000" + (f"&since={cursor}" if cursor else "")
        page = call(base, "GET", "/api/v1/pos/catalog" + query, headers=headers)
        cursor = page["next_cursor"]
        for p in page["products"]:
            if p["id"] in pids:
                products[p["id"]] = (p["id"], p["price_fen"], p["price_list_version"] or page["price_list_version"])
        if not page["has_more"] and len(products) < len(pids):
            if time.monotonic() > deadline:
                raise SystemExit("the catalogue never showed the bench products")
            time.sleep(1)
    return [products[pid] for pid in pids]


def upload(base: str, headers: dict, sales: list[dict], batch: int, after_request=None) -> tuple[float, dict]:
    """Send every sale until answered (a busy server may answer some ``deferred``: sent again)."""
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "deferred": 0, "requests": 0}
    pending = list(sales)
    started = time.perf_counter()
    while pending:
        chunk, pending = pending[:batch], pending[batch:]
        answer = call(base, "POST", "/api/v1/pos/sales:batch",
                      {"sales": chunk, "device_time": dt.datetime.now(dt.timezone.utc).isoformat()}, headers=headers)
        counts["requests"] += 1
        for k in ("accepted", "duplicate", "rejected", "deferred"):
            counts[k] += answer.get(k, 0)
        pending = [s for s, r in zip(chunk, answer["results"]) if r["status"] == "deferred"] + pending
        if after_request is not None:
            paused = time.perf_counter()
            after_request()
            started += time.perf_counter() - paused  # the stand-in for autovacuum is not ingest time
    return time.perf_counter() - started, counts


# ------------------------------------------------------------------ the bare insert

class BareStore:
    """The sister database: the same schema, a store, the same products with one lot each."""

    def __init__(self, db: Database, products: list[tuple[int, int, int]], units: int) -> None:
        from sqlalchemy import insert, select
        from core.models import Product, StockLot, Store
        self.engine = db.engine()
        now = dt.datetime.now(dt.timezone.utc)
        self.expiry = expiry = dt.date.today() + dt.timedelta(days=700)
        with self.engine.begin() as c:
            self.store_id = c.execute(insert(Store).returning(Store.id), {"code": "BARE", "name": "bare"}).scalar_one()
            self.product_of, self.lot_of = {}, {}
            for i, (pid, price, _v) in enumerate(products):
                own = c.execute(insert(Product).returning(Product.id), {
                    "sku": f"BARE-{i}", "generic_name": f"压测药品{i}", "approval_number": f"国药准字H{20000000 + i:08d}",
                    "rx_class": "otc_b", "price_fen": price, "created_at": now, "updated_at": now}).scalar_one()
                self.product_of[pid] = own
                self.lot_of[pid] = (c.execute(insert(StockLot).returning(StockLot.id), {
                    "store_id": self.store_id, "product_id": own, "lot_no": f"L{i}", "expiry": expiry,
                    "on_hand": units, "reserved": 0, "updated_at": now}).scalar_one(), f"L{i}")
            assert c.execute(select(Store.id).where(Store.id == self.store_id)).scalar_one()

    def close(self) -> None:
        self.engine.dispose()


def bare_insert(bare: BareStore, sales: list[dict], batch: int, after_batch=None, every_row: bool = False) -> float:
    """Write ``sales`` into orders, order_lines, stock_movements and stock_lots with Core executemany,
    one transaction per ``batch``; seconds taken. ``every_row``: also the other rows pharmo2o's core
    writes per sale -- an allocation per line and the three status events -- the same way (the
    ``pos_sales`` row, a plugin's table, is not in the sister database): how much of the gap to the
    bare insert is the rows themselves rather than the checks, hooks and HTTP."""
    from sqlalchemy import bindparam, insert, update
    from core.models import Order, OrderAllocation, OrderEvent, OrderLine, StockLot, StockMovement
    lot_update = (update(StockLot).where(StockLot.id == bindparam("lot"))
                  .values(on_hand=StockLot.on_hand - bindparam("qty"), updated_at=bindparam("now")))
    started = time.perf_counter()
    for start in range(0, len(sales), batch):
        part = sales[start:start + batch]
        now = dt.datetime.now(dt.timezone.utc)
        with bare.engine.begin() as c:
            orders = [{"store_id": bare.store_id, "channel": "pos", "fulfilment": "pickup", "status": "completed",
                       "subtotal_fen": (t := sum(ln["quantity"] * ln["unit_price_fen"] for ln in s["lines"])),
                       "adjustments_fen": 0, "total_fen": t, "hold_reasons": [], "extra": {},
                       "created_by": "bench", "created_at": now, "updated_at": now, "paid_at": now,
                       "payment_provider": "pos",
                       "idempotency_key": f"{'bare-all' if every_row else 'bare'}:{s['client_sale_id']}"} for s in part]
            ids = c.execute(insert(Order).returning(Order.id, sort_by_parameter_order=True), orders).scalars().all()
            lines, moves, per_lot = [], [], {}
            for oid, s in zip(ids, part):
                for ln in s["lines"]:
                    pid, qty = ln["product_id"], ln["quantity"]
                    lines.append({"order_id": oid, "product_id": bare.product_of[pid], "quantity": qty,
                                  "unit_price_fen": ln["unit_price_fen"], "line_total_fen": qty * ln["unit_price_fen"],
                                  "product_name": "压测药品", "rx_class": "otc_b"})
                    lot = bare.lot_of[pid][0]
                    moves.append({"store_id": bare.store_id, "product_id": bare.product_of[pid], "lot_id": lot,
                                  "kind": "sale", "on_hand_delta": -qty, "reserved_delta": 0, "reason": "",
                                  "order_id": oid, "actor": "bench", "created_at": now})
                    per_lot[lot] = per_lot.get(lot, 0) + qty
            if every_row:
                line_ids = c.execute(insert(OrderLine).returning(OrderLine.id, sort_by_parameter_order=True),
                                     lines).scalars().all()
                c.execute(insert(OrderAllocation), [
                    {"order_line_id": lid, "lot_id": m["lot_id"], "lot_no": bare.lot_of[pid][1], "expiry": bare.expiry,
                     "quantity": -m["on_hand_delta"]}
                    for lid, m, pid in zip(line_ids, moves, (ln["product_id"] for s in part for ln in s["lines"]))])
                c.execute(insert(OrderEvent), [
                    {"order_id": oid, "old_status": old, "new_status": new, "actor": "bench", "reason": "",
                     "created_at": now}
                    for oid in ids for old, new in ((None, "paid"), ("paid", "ready"), ("ready", "completed"))])
            else:
                c.execute(insert(OrderLine), lines)
            c.execute(insert(StockMovement), moves)
            c.execute(lot_update, [{"lot": lot, "qty": q, "now": now} for lot, q in sorted(per_lot.items())])
        if after_batch is not None:
            paused = time.perf_counter()
            after_batch()
            started += time.perf_counter() - paused  # as in upload()
    return time.perf_counter() - started


# ------------------------------------------------------------------ the run

def run_pos(database_kind: str, sales: int, *, lines: int = 3, batch: int = 500, rounds: int = 4, workers: int = 2,
            products: int = 50, pg_url: str = DEFAULT_PG, verbose: bool = True, every_row: bool = False) -> dict:
    """Our side of the POS ingest comparison: fresh databases and a server, ``sales`` sales, ``rounds`` rounds.

    Returns ``{"first_sales_per_s", "replay_sales_per_s", "bare_sales_per_s"}`` (medians of the rounds),
    ``"first/bare"`` and ``"replay/first"`` (medians of the per-round ratios), ``"rounds"`` (per round:
    sales, seconds and rates) and ``"counts"`` (accepted/duplicate/rejected/deferred/requests).
    Raises ``SystemExit`` if a sale is not accepted once and then answered ``duplicate``.
    ``every_row``: each round also runs the bare insert with every row the core writes
    (:func:`bare_insert`), adding ``"bare_all_sales_per_s"`` and ``"first/bare_all"``.
    """
    say = print if verbose else (lambda *a, **k: None)
    rounds = max(1, min(rounds, sales // batch or 1))
    units = sales * lines * 3 // products + 10
    with Database(database_kind, pg_url=pg_url) as db, Database(database_kind, plugins=[], pg_url=pg_url) as sister, \
            Server(db, workers=workers, name="pos") as server:
        vacuum = Vacuum(db.url, BUSY_TABLES) if database_kind == "postgresql" else None
        bare_vacuum = Vacuum(sister.url, BARE_TABLES) if database_kind == "postgresql" else None
        token = server.token()
        say(f"[{database_kind}] setting up {products} products and a terminal ...")
        _store, pids, secret = setup(server.base, token, products, units)
        headers = {"Authorization": f"Bearer {secret}", "X-POS-Database-Id": uuid.uuid4().hex}
        catalogue = pull_products(server.base, headers, pids)
        all_sales = make_sales(sales, lines, catalogue)
        bare = BareStore(sister, catalogue, units)
        per_round, counts = [], {}
        size = -(-sales // rounds)
        for r in range(rounds):
            part = all_sales[r * size:(r + 1) * size]
            if not part:
                break
            t_bare = bare_insert(bare, part, batch, bare_vacuum)
            t_bare_all = bare_insert(bare, part, batch, bare_vacuum, every_row=True) if every_row else None
            t_first, c1 = upload(server.base, headers, part, batch, vacuum)
            t_replay, c2 = upload(server.base, headers, part, batch, vacuum)
            if c1["accepted"] != len(part) or c2["duplicate"] != len(part):
                raise SystemExit(f"unexpected results: first {c1}, replay {c2}: every sale should be accepted "
                                 "once and then answered duplicate")
            for c in (c1, c2):
                for k, v in c.items():
                    counts[k] = counts.get(k, 0) + v
            row = {"sales": len(part), "bare_s": t_bare, "first_s": t_first, "replay_s": t_replay,
                   "bare": len(part) / t_bare, "first": len(part) / t_first, "replay": len(part) / t_replay}
            if every_row:
                row.update(bare_all_s=t_bare_all, bare_all=len(part) / t_bare_all)
            per_round.append(row)
            say(f"  round {r + 1}/{rounds}: {len(part)} sales  bare {row['bare']:.0f}/s"
                + (f"  bare, every row {row['bare_all']:.0f}/s" if every_row else "")
                + f"  first {row['first']:.0f}/s  replay {row['replay']:.0f}/s  (deferred and re-sent: {c1['deferred']})")
        bare.close()
        for v in (vacuum, bare_vacuum):
            if v is not None:
                v.close()
    return {"first_sales_per_s": median(r["first"] for r in per_round),
            "replay_sales_per_s": median(r["replay"] for r in per_round),
            "bare_sales_per_s": median(r["bare"] for r in per_round),
            "first/bare": median(r["first"] / r["bare"] for r in per_round),
            "replay/first": median(r["replay"] / r["first"] for r in per_round),
            **({"bare_all_sales_per_s": median(r["bare_all"] for r in per_round),
                "first/bare_all": median(r["first"] / r["bare_all"] for r in per_round)} if every_row else {}),
            "rounds": per_round, "counts": counts}


def bench(kind: str, args) -> dict:
    result = run_pos(kind, args.sales, lines=args.lines, batch=args.batch, rounds=args.rounds, workers=args.workers,
                     products=args.products, pg_url=args.pg_url, every_row=True)
    rows = [[f"{label}", f"{result[key]:.0f}", f"{sum(r['sales'] for r in result['rounds']) / sum(r[secs] for r in result['rounds']):.0f}"]
            for label, key, secs in (("bare Core executemany (no HTTP, no checks)", "bare_sales_per_s", "bare_s"),
                                     ("bare, with every row the core writes (+ allocations, events)",
                                      "bare_all_sales_per_s", "bare_all_s"),
                                     ("first upload", "first_sales_per_s", "first_s"),
                                     ("full replay (all duplicates)", "replay_sales_per_s", "replay_s"))]
    ratios = [[name, f"{result[name]:.2f}", f"≥ {target}", "met" if result[name] >= target else "NOT met"]
              for name, target in TARGETS.items()]
    ratios.append(["first/bare_all", f"{result['first/bare_all']:.2f}", "(no target)", ""])
    body = (f"{args.sales:,} sales x {args.lines} lines, batches of {args.batch}, {len(result['rounds'])} rounds "
            f"(bare, bare with every row, first, replay in turn), gunicorn {args.workers} workers, the four bundled plugins.\n\n"
            + table(["sales/s", "median of rounds", "whole run"], rows) + "\n\n"
            + table(["ratio (median of rounds)", "value", "target", ""], ratios) + "\n\n"
            + f"Answers: {result['counts']}.\n")
    record(f"POS sync ingest — {kind}", body, database=kind)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--sales", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        bench(kind, args)


if __name__ == "__main__":
    main()
