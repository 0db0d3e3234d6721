"""Peer benchmark (issue 11, figure 4): Tryton 8.2 in-process against pharmo2o over HTTP, in the same run.

    python bench/tryton.py                       # both databases
    python bench/tryton.py --database sqlite --tryton-pos 200 --tryton-orders 50

Tryton side (bench/tryton_side.py, run with Tryton's own venv ``bench/.tryton-venv``, which this
script creates on first use with pip from PyPI: trytond, trytond-sale, trytond-sale-point 8.2.x and
psycopg[binary] (trytond 8.2 uses psycopg 3); nothing of Tryton goes into our venv): a fresh database, Tryton's own test helpers
for company / chart of accounts / fiscal year, a POS, products in stock, then with direct model calls
in one process and a warm pool:

- (A) POS: ``--tryton-pos`` sale.point.sale of 3 lines + a cash payment, ``process`` + ``post``
  (stock moves done, account move with tax lines posted), ``--tryton-batch`` per transaction;
- (B) orders: ``--tryton-orders`` sale.sale of 3 lines, quote + confirm + process (draft invoice,
  customer shipment) + assign the shipment, one order per transaction.

Our side, right after on the same machine: bench/pos_ingest.py ``run_pos`` (offline sales uploaded
over HTTP by a registered terminal, first upload, batches of 500, median of rounds) and
bench/orders.py ``run_orders`` (POST /api/v1/orders, 16 concurrent clients, FEFO over 4 lots).
Targets: ours >= 100x Tryton's rate on each workload. Appends a table per database to bench/RESULTS.md.

Time: the first run installs Tryton's venv (about half a minute with a warm pip cache, longer from a
cold one) and activates the modules in a new database (~1 min per database kind on this machine;
the SQLite one is kept as a template in the venv for later runs); after that a few minutes per kind.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ALL_PLUGINS, DEFAULT_PG, REPO, Database, Server, median, record, table

VENV = REPO / "bench" / ".tryton-venv"
SIDE = REPO / "bench" / "tryton_side.py"
SERIES = "8.2"
# trytond 8.2 talks to PostgreSQL through psycopg 3 (its "postgresql" extra: psycopg[pool]); the
# binary wheel brings its own libpq
REQUIREMENTS = [f"trytond[postgresql]>={SERIES},<8.3", f"trytond-sale>={SERIES},<8.3",
                f"trytond-sale-point>={SERIES},<8.3", "psycopg[binary]>=3.2"]
TARGET = 100.0


def tryton_python() -> Path:
    """Tryton's venv, created and filled from PyPI if missing or made for other requirements."""
    python, stamp = VENV / "bin" / "python", VENV / "bench-requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    started = time.monotonic()
    print(f"creating Tryton's venv in {VENV.relative_to(REPO)} ({', '.join(REQUIREMENTS)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
                   check=True)
    stamp.write_text(wanted)
    print(f"Tryton's venv ready in {time.monotonic() - started:.0f} s", flush=True)
    return python


def run_tryton(kind: str, args) -> dict:
    cmd = [str(tryton_python()), str(SIDE), "--database", kind, "--pg-url", args.pg_url, "--pos", str(args.tryton_pos),
           "--batch", str(args.tryton_batch), "--orders", str(args.tryton_orders)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRYTOND_", "PYTHON", "VIRTUAL_ENV"))}
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout, env=env, cwd=REPO,
                              check=False)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"Tryton side ({kind}) did not finish within {args.timeout} s") from None
    if done.returncode:
        raise SystemExit(f"Tryton side ({kind}) failed (exit {done.returncode}); see its output above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_ours(kind: str, args) -> dict:
    from bench.orders import run_orders, setup
    from bench.pos_ingest import run_pos

    print(f"[ours {kind}] POS ingest: {args.our_pos} sales ...", flush=True)
    pos = run_pos(kind, args.our_pos, batch=500, rounds=args.rounds, workers=args.workers, pg_url=args.pg_url)
    print(f"[ours {kind}] POS first upload: {pos['first_sales_per_s']:.0f} sales/s", flush=True)
    print(f"[ours {kind}] orders: {args.rounds} rounds of {args.our_orders} at {args.clients} clients ...", flush=True)
    with Database(kind, plugins=ALL_PLUGINS, pg_url=args.pg_url) as db, Server(db, workers=args.workers) as srv:
        token = srv.token()
        catalogue = setup(srv.base, token, orders=args.our_orders * args.rounds + 100)
        run_orders(srv.base, token, args.clients, 50, catalogue)  # warm the workers, as Tryton's side warms up
        rounds = [run_orders(srv.base, token, args.clients, args.our_orders, catalogue) for _ in range(args.rounds)]
    orders = {"orders_per_s": median(r["orders_per_s"] for r in rounds), "rounds": rounds,
              "p50_ms": median(r["p50_ms"] for r in rounds)}
    print(f"[ours {kind}] orders: {orders['orders_per_s']:.0f} orders/s", flush=True)
    return {"pos": pos, "orders": orders}


def report(kind: str, tryton: dict, ours: dict, args) -> dict:
    pos_ratio = ours["pos"]["first_sales_per_s"] / tryton["pos_per_s"]
    ord_ratio = ours["orders"]["orders_per_s"] / tryton["orders_per_s"]
    verdict = lambda r: "met" if r >= TARGET else "NOT met"
    rows = [
        ["POS sales (3 lines, cash)", f"{tryton['pos_per_s']:.1f} sales/s", f"{1000 / tryton['pos_cpu_ms']:.0f}",
         f"{ours['pos']['first_sales_per_s']:.0f} sales/s", f"**{pos_ratio:.0f}x**", f"≥ {TARGET:.0f}x",
         verdict(pos_ratio)],
        ["orders (3 lines)", f"{tryton['orders_per_s']:.2f} orders/s", f"{1000 / tryton['orders_cpu_ms']:.1f}",
         f"{ours['orders']['orders_per_s']:.0f} orders/s", f"**{ord_ratio:.0f}x**", f"≥ {TARGET:.0f}x",
         verdict(ord_ratio)],
    ]
    chk = tryton["check"]
    body = table(["workload", f"Tryton {tryton['trytond']} in-process", "Tryton per CPU-s", "pharmo2o over HTTP",
                  "ours / Tryton", "target", ""], rows)
    body += (
        f"\n\nTryton {tryton['trytond']} (trytond + sale + sale_point, PyPI) on a fresh {kind} database, direct model "
        f"calls in one process after a warm-up: (A) {tryton['pos_sales']} `sale.point.sale` of 3 lines, cash payment, "
        f"`process` (numbered) + `post` (stock moves done, account move with 13% VAT tax lines posted), "
        f"{tryton['pos_batch']} per transaction; (B) {tryton['orders']} `sale.sale` of 3 lines, quote + confirm + "
        f"process (draft invoice with taxes, customer shipment) + `assign_try`, one order per transaction. "
        f"Checked afterwards: {chk['pos_posted']} POS sales posted, {chk['pos_stock_moves_done']} stock moves done, "
        f"{chk['account_moves_posted']} account moves posted, {chk['shipments_assigned']} shipments assigned, "
        f"{chk['invoices_draft']} draft invoices (warm-up included). \"Tryton per CPU-s\" = 1 / (CPU time of "
        f"Tryton's process per sale or order): its rate on an otherwise idle core"
        + (" (SQLite works in that process)" if kind == "sqlite" else " (PostgreSQL's own CPU not counted)") + ".\n\n"
        f"pharmo2o (gunicorn {args.workers} workers, the four bundled plugins), measured right after: POS = "
        f"bench/pos_ingest.py first upload of {args.our_pos} offline sales of 3 lines by a terminal over HTTP, "
        f"batches of 500, median of {len(ours['pos']['rounds'])} rounds (per sale: idempotency row, checks, order "
        f"and lines, FEFO lot allocation and stock movements, order status event, every order/stock hook, e.g. loyalty "
        f"earning); orders = bench/orders.py `POST /api/v1/orders` at {args.clients} concurrent clients, median of "
        f"{args.rounds} rounds of {args.our_orders} (validation, plugin hooks, FEFO reservation over 4 lots, "
        f"events/outbox). Ours posts no accounting entries and computes no taxes (prices are tax-included "
        f"retail prices); Tryton does both on every sale. Tryton is one process; ours is a multi-process "
        f"server plus the load generator, which on a shared, loaded machine gets a larger share of the CPU.\n")
    if args.no_record:
        print("\n" + body)
    else:
        record(f"Peer: Tryton {SERIES} — {kind}", body, database=kind)
    return {"pos_ratio": pos_ratio, "orders_ratio": ord_ratio}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--tryton-pos", type=int, default=200, help="Tryton POS sales (default 200)")
    ap.add_argument("--tryton-batch", type=int, default=50, help="Tryton POS sales per transaction (default 50)")
    ap.add_argument("--tryton-orders", type=int, default=50, help="Tryton orders (default 50)")
    ap.add_argument("--our-pos", type=int, default=4000, help="our POS sales (default 4000)")
    ap.add_argument("--our-orders", type=int, default=400, help="our orders per round (default 400)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds on our side (default 3)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers on our side (default 2)")
    ap.add_argument("--timeout", type=int, default=1200, help="limit for Tryton's side per database kind, s")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    ap.add_argument("--install-only", action="store_true", help="create Tryton's venv and stop")
    args = ap.parse_args(argv)

    started = time.monotonic()
    tryton_python()
    if args.install_only:
        return
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    summary = {}
    for kind in kinds:
        print(f"[tryton {kind}] running bench/tryton_side.py in Tryton's venv ...", flush=True)
        tryton = run_tryton(kind, args)
        ours = run_ours(kind, args)
        summary[kind] = report(kind, tryton, ours, args)
    print(f"done in {time.monotonic() - started:.0f} s: "
          + "; ".join(f"{k}: POS {v['pos_ratio']:.0f}x, orders {v['orders_ratio']:.0f}x" for k, v in summary.items()))


if __name__ == "__main__":
    main()
