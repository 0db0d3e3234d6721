"""Peer benchmark (issue 11, figure 4): Tryton 8.2 in-process against pharmo2o over HTTP, in the same run.

    python bench/tryton.py                       # both databases, 3 alternating rounds
    python bench/tryton.py --database sqlite --tryton-pos 300 --tryton-orders 45

Tryton side: bench/tryton_side.py, run with Tryton's own venv ``bench/.tryton-venv`` (gitignored),
which this script creates on first use with pip from PyPI: trytond[postgresql], trytond-sale,
trytond-sale-point 8.2.x and psycopg[binary] (trytond 8.2 talks to PostgreSQL with psycopg 3).
Nothing of Tryton goes into our venv. A fresh database with Tryton's own test helpers for company,
chart of accounts and fiscal year, a POS and products in stock; then, with direct model calls in
one process, after a warm-up:

- (A) POS: sale.point.sale of 3 lines + a cash payment, ``process`` + ``post`` (stock moves done,
  account move with tax lines posted), ``--tryton-batch`` (50) per transaction;
- (B) orders: sale.sale of 3 lines, quote + confirm + process (draft invoice, customer shipment)
  + assign the shipment, ONE ORDER PER TRANSACTION.

Our side: bench/pos_ingest.py ``run_pos`` (offline sales uploaded over HTTP by a registered
terminal, first upload, batches of 500, fresh database) and bench/orders.py ``run_orders``
(POST /api/v1/orders, 16 concurrent clients, FEFO over 4 lots). ``--rounds`` rounds alternate
Tryton POS / our POS / Tryton orders / our orders (the machine is shared: its load hits both sides
alike); figures are medians, ratios medians of per-round ratios. Targets: ours >= 100x Tryton's
rate on each workload. Appends a table per database to bench/RESULTS.md (``--no-record``: print only).

Time: the first run creates Tryton's venv (30-45 s with pip's cache warm) and activates the modules
in a new database (~1 min on SQLite, ~3 min on PostgreSQL on this loaded machine); that database is
kept as a template (SQLite: a file in the venv; PostgreSQL: the database tryton_bench_template_8_2_1,
as trytond's own DB_CACHE does), so later runs take a few minutes per database kind.
"""
from __future__ import annotations

import argparse
import json
import os
import select
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


class TrytonSide:
    """bench/tryton_side.py --serve in Tryton's venv: set up and warmed, then one JSON answer per command."""

    def __init__(self, kind: str, args) -> None:
        self.kind, self.timeout = kind, args.timeout
        cmd = [str(tryton_python()), str(SIDE), "--serve", "--database", kind, "--pg-url", args.pg_url,
               "--batch", str(args.tryton_batch)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRYTOND_", "PYTHON", "VIRTUAL_ENV"))}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        self.ready = self._answer()

    def _answer(self) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise SystemExit(f"Tryton side ({self.kind}) gave no answer within {self.timeout} s "
                             f"(exit {self.proc.returncode}); see its output above")
        return json.loads(line)

    def __call__(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # EOF: it drops its database and exits
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def per_round(total: int, args) -> int:
    return -(-total // args.rounds)


def compare(kind: str, args) -> dict:
    """Rounds alternating Tryton POS, our POS, Tryton orders, our orders; per-round ratios, medians."""
    from bench.orders import run_orders, setup
    from bench.pos_ingest import run_pos

    per = lambda total: per_round(total, args)  # noqa: E731
    print(f"[tryton {kind}] starting bench/tryton_side.py in Tryton's venv ...", flush=True)
    tryton = TrytonSide(kind, args)
    rounds = []
    try:
        with Database(kind, plugins=ALL_PLUGINS, pg_url=args.pg_url) as db, \
                Server(db, workers=args.workers, name="orders") as srv:
            token = srv.token()
            catalogue = setup(srv.base, token, orders=per(args.our_orders) * args.rounds + 100)
            run_orders(srv.base, token, args.clients, 50, catalogue)  # warm the workers, as Tryton's side warms up
            for r in range(args.rounds):
                t_pos = tryton(f"pos {per(args.tryton_pos)}")
                o_pos = run_pos(kind, per(args.our_pos), batch=500, rounds=1, workers=args.workers,
                                pg_url=args.pg_url, verbose=False)
                t_ord = tryton(f"orders {per(args.tryton_orders)}")
                o_ord = run_orders(srv.base, token, args.clients, per(args.our_orders), catalogue)
                row = {"tryton_pos": t_pos, "our_pos": o_pos["first_sales_per_s"], "tryton_orders": t_ord,
                       "our_orders": o_ord["orders_per_s"]}
                row["pos_ratio"] = row["our_pos"] / t_pos["per_s"]
                row["orders_ratio"] = row["our_orders"] / t_ord["per_s"]
                rounds.append(row)
                print(f"[{kind}] round {r + 1}/{args.rounds}: POS Tryton {t_pos['per_s']:.1f}/s, ours "
                      f"{row['our_pos']:.0f}/s ({row['pos_ratio']:.0f}x); orders Tryton {t_ord['per_s']:.2f}/s, "
                      f"ours {row['our_orders']:.0f}/s ({row['orders_ratio']:.0f}x)", flush=True)
        statements = tryton("statements")  # SQLite only (its trace callback); untimed, after the rounds
        checked = tryton("check")
    finally:
        tryton.close()
    return {"ready": tryton.ready, "rounds": rounds, "check": checked, "statements": statements}


def report(kind: str, res: dict, args) -> dict:
    rounds, chk, ready = res["rounds"], res["check"], res["ready"]
    m = lambda key: median(r[key] for r in rounds)  # noqa: E731
    t_pos, t_ord = median(r["tryton_pos"]["per_s"] for r in rounds), median(r["tryton_orders"]["per_s"] for r in rounds)
    # Tryton's rate per CPU-second of its own process, over all rounds
    cpu_pos = sum(r["tryton_pos"]["n"] for r in rounds) / sum(r["tryton_pos"]["cpu_s"] for r in rounds)
    cpu_ord = sum(r["tryton_orders"]["n"] for r in rounds) / sum(r["tryton_orders"]["cpu_s"] for r in rounds)
    pos_ratio, ord_ratio = m("pos_ratio"), m("orders_ratio")
    verdict = lambda r: "met" if r >= TARGET else "NOT met"  # noqa: E731
    each = lambda key, fmt: " ".join(format(r[key], fmt) for r in rounds)  # noqa: E731
    rows = [
        ["POS sales (3 lines, cash)", f"{t_pos:.1f} sales/s", f"{cpu_pos:.0f}", f"{m('our_pos'):.0f} sales/s",
         f"**{pos_ratio:.0f}x**", each("pos_ratio", ".0f"), f"≥ {TARGET:.0f}x", verdict(pos_ratio)],
        ["orders (3 lines)", f"{t_ord:.2f} orders/s", f"{cpu_ord:.1f}", f"{m('our_orders'):.0f} orders/s",
         f"**{ord_ratio:.0f}x**", each("orders_ratio", ".0f"), f"≥ {TARGET:.0f}x", verdict(ord_ratio)],
    ]
    n_pos, n_ord = sum(r["tryton_pos"]["n"] for r in rounds), sum(r["tryton_orders"]["n"] for r in rounds)
    body = table(["workload", f"Tryton {ready['trytond']} in-process", "Tryton per CPU-s", "pharmo2o over HTTP",
                  "ours / Tryton", "rounds", "target", ""], rows)
    body += (
        f"\n\n{len(rounds)} rounds, each: Tryton POS, our POS, Tryton orders, our orders (medians of the rounds; "
        f"ratios: medians of the per-round ratios). Tryton {ready['trytond']} (trytond + sale + sale_point from PyPI, "
        f"own venv) on a fresh {kind} database, direct model calls in one process after a warm-up: (A) {n_pos} "
        f"`sale.point.sale` of 3 lines, cash payment, `process` (numbered) + `post` (stock moves done, account move "
        f"with 13% VAT tax lines posted), {args.tryton_batch} per transaction; (B) {n_ord} `sale.sale` of 3 lines, "
        f"quote + confirm + process (draft invoice with taxes, customer shipment) + `assign_try`, one order per "
        f"transaction. Checked at the end (warm-up included): {chk['pos_posted']} POS sales posted, "
        f"{chk['pos_stock_moves_done']} stock moves done, {chk['account_moves_posted']} account moves posted, "
        f"{chk['shipments_assigned']} shipments assigned, {chk['invoices_draft']} draft invoices"
        + (f"; SQL statements: {res['statements']['per_pos_sale']:.0f} per POS sale, "
           f"{res['statements']['per_order']:.0f} per order" if res.get("statements") else "")
        + ". \"Tryton per "
        "CPU-s\" = sales or orders per CPU-second of Tryton's process: its rate on an otherwise idle core"
        + (" (SQLite works in that process)" if kind == "sqlite" else " (PostgreSQL's own CPU not counted)") + ".\n\n"
        f"pharmo2o (gunicorn {args.workers} sync workers, the four bundled plugins): POS = bench/pos_ingest.py "
        f"`run_pos`, first upload of {per_round(args.our_pos, args)} offline sales of 3 lines per round by a registered terminal "
        f"over HTTP, batches of 500, a fresh database each round (per sale: idempotency row, checks, order and "
        f"lines, FEFO lot allocation and stock movements, order status event, every order/stock hook, e.g. loyalty "
        f"earning); orders = bench/orders.py `run_orders`, {per_round(args.our_orders, args)} `POST /api/v1/orders` per round "
        f"at {args.clients} concurrent clients (validation, plugin hooks, FEFO reservation over 4 lots, events/"
        f"outbox). Ours posts no accounting entries and computes no taxes (tax-included retail prices); Tryton does "
        f"both on every sale. Tryton runs in one process; ours is a multi-process server plus a load generator, "
        f"which on a shared, loaded machine gets a larger share of its CPU.\n")
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
    ap.add_argument("--tryton-orders", type=int, default=30, help="Tryton orders (default 30)")
    ap.add_argument("--our-pos", type=int, default=3000, help="our POS sales (default 3000)")
    ap.add_argument("--our-orders", type=int, default=900, help="our orders (default 900)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3); the totals are split")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers on our side (default 2)")
    ap.add_argument("--timeout", type=int, default=600, help="limit for each answer of Tryton's side, s")
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
        summary[kind] = report(kind, compare(kind, args), args)
    print(f"done in {time.monotonic() - started:.0f} s: "
          + "; ".join(f"{k}: POS {v['pos_ratio']:.0f}x, orders {v['orders_ratio']:.0f}x" for k, v in summary.items()))


if __name__ == "__main__":
    main()
