"""The Tryton side of bench/tryton.py; runs INSIDE Tryton's own venv (bench/.tryton-venv), never ours.

    bench/.tryton-venv/bin/python bench/tryton_side.py --database sqlite --pos 200 --orders 50

Builds a fresh Tryton database (SQLite file in a temporary directory, or a new PostgreSQL
database dropped at the end), activates ``sale`` and ``sale_point``, and sets it up with
Tryton's own test helpers (``company.tests.create_company``/``set_company``,
``account.tests.create_chart``/``get_fiscalyear``, ``account_invoice.tests.set_invoice_sequences``)
plus what ``sale_point/tests/scenario_sale_point.rst`` and ``sale/tests/scenario_sale.rst`` do
(tax, account category, products, inventory, POS, cash method, payment term, customer).
Then measures, with direct model calls in this one process:

- POS: ``sale.point.sale`` with 3 lines and a cash payment each, ``process`` (numbered) and
  ``post`` (stock moves done, account move with tax lines posted), ``--batch`` sales per transaction;
- orders: ``sale.sale`` with 3 lines, ``quote``, ``confirm``, ``process`` (invoice in draft,
  customer shipment) and ``stock.shipment.out.assign_try``, ONE ORDER PER TRANSACTION.

Prints one JSON object (rates, counts checked in the database, timings) on the last line of stdout;
with ``--serve`` it answers ``pos N`` / ``orders N`` / ``check`` commands on stdin instead, so that
bench/tryton.py can alternate rounds of Tryton and of our side.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid

STARTED = time.monotonic()
args = argparse.ArgumentParser()
args.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
args.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
args.add_argument("--pos", type=int, default=200, help="POS sales")
args.add_argument("--batch", type=int, default=50, help="POS sales per transaction")
args.add_argument("--orders", type=int, default=50, help="sale orders, one per transaction")
args.add_argument("--products", type=int, default=20)
args.add_argument("--seed", type=int, default=1)
args.add_argument("--serve", action="store_true",
                  help="after set-up and warm-up, answer commands on stdin (pos N | orders N | statements | check | quit), "
                       "one JSON line each on stdout: how bench/tryton.py alternates with our side")
opts = args.parse_args()

TMP = tempfile.TemporaryDirectory(prefix="tryton-bench-")
if opts.database == "sqlite":
    os.environ["TRYTOND_DATABASE__URI"] = "sqlite://"
    os.environ["TRYTOND_DATABASE__PATH"] = TMP.name
else:
    os.environ["TRYTOND_DATABASE__URI"] = opts.pg_url.rsplit("/", 1)[0] + "/"
os.environ.pop("TRYTOND_CONFIG", None)

from decimal import Decimal

from sql import Table

from trytond import backend
from trytond.pool import Pool
from trytond.transaction import Transaction, TransactionError

# Tryton's own setup helpers. Importing them imports trytond.tests.test_tryton, which switches the
# pool to test mode (test models registered, Function fields validated on every save): switch it
# back before the database's pool is built, so the workload runs as in production.
from trytond.modules.account.tests import create_chart, get_fiscalyear
from trytond.modules.account_invoice.tests import set_invoice_sequences
from trytond.modules.company.tests import create_company, set_company

Pool.test = False
Pool.start()

MODULES = ["sale", "sale_point"]
DB = f"tryton_bench_{uuid.uuid4().hex[:8]}"


def log(msg: str) -> None:
    print(f"[tryton {opts.database} +{time.monotonic() - STARTED:.0f}s] {msg}", file=sys.stderr, flush=True)


RETRIES = {"count": 0}
TRACE: dict = {"on": False, "n": 0}
TRACE["count"] = lambda _sql: TRACE.__setitem__("n", TRACE["n"] + 1)
LOCKS: dict = {}  # per workload, the locks learned from a first TransactionError, taken up front afterwards




def in_transaction(user: int, func, *fargs, context: dict | None = None, readonly: bool = False):
    """func(*fargs) in one committed transaction, started again with the locks it asks for, as
    trytond's RPC dispatcher does (a TransactionError names the table or records to lock first).
    The tables learned are taken up front on the next call of the same workload (the dispatcher
    learns them again on each request: this is the faster way)."""
    learned = LOCKS.get(func.__name__, {})
    extras: dict = {"_lock_tables": list(learned.get("_lock_tables", [])),
                    "_lock_records": {t: list(ids) for t, ids in learned.get("_lock_records", {}).items()}}
    extras = {k: v for k, v in extras.items() if v}
    while True:
        with Transaction().start(DB, user, context=context or {}, readonly=readonly, **extras) as transaction:
            if TRACE["on"]:
                transaction.connection.set_trace_callback(TRACE["count"])
            try:
                result = func(*fargs)
                transaction.commit()
            except TransactionError as exc:
                transaction.rollback()
                exc.fix(extras)
                RETRIES["count"] += 1
                log(f"{func.__name__}: transaction restarted with {extras}")
                LOCKS[func.__name__] = extras  # records too: the POS sequence and journal are the same each time
                continue
            finally:
                if TRACE["on"]:
                    transaction.connection.set_trace_callback(None)
            transaction.tasks.clear()  # queued "process" tasks: done in the transaction (see one_order)
            return result


def create_database(name: str) -> int:
    """trytond.tests.test_tryton.create_db + activate_module, without test mode; returns the admin's id."""
    database = backend.Database()
    database.connect()
    connection = database.get_connection(autocommit=True)
    try:
        database.create(connection, name)
    finally:
        database.put_connection(connection)
        database.close()
    database = backend.Database(name)
    connection = database.get_connection()
    try:
        with connection.cursor() as cursor:
            database.init()
            ir_configuration = Table("ir_configuration")
            cursor.execute(*ir_configuration.insert([ir_configuration.language], [["en"]]))
        connection.commit()
    finally:
        database.put_connection(connection)
    pool = Pool(name)
    pool.init(update=["res", "ir"], lang=["en"])
    with Transaction().start(name, 0) as transaction:
        User, Lang, Module = pool.get("res.user"), pool.get("ir.lang"), pool.get("ir.module")
        language, = Lang.search([("code", "=", "en")])
        language.translatable = True
        language.save()
        admin, = User.create([{"login": "admin", "name": "Administrator", "administrator": True,
                               "language": language.id}])
        Module.update_list()
        transaction.commit()
    with Transaction().start(name, 0, close=True) as transaction:
        Module = pool.get("ir.module")
        Module.activate(Module.search([("name", "in", MODULES)]))
        transaction.commit()
        ActivateUpgrade = pool.get("ir.module.activate_upgrade", type="wizard")
        instance_id, _, _ = ActivateUpgrade.create()
        transaction.commit()
        ActivateUpgrade(instance_id).transition_upgrade()
        ActivateUpgrade.delete(instance_id)
        transaction.commit()
    return admin.id


VERSION = __import__("trytond").__version__
TEMPLATE = os.path.join(os.path.dirname(sys.executable), os.pardir, f"template-{VERSION}-{'-'.join(MODULES)}.sqlite")
TEMPLATE_PG = f"tryton_bench_template_{VERSION.replace('.', '_')}"


def _admin_id(name: str) -> int:
    Pool(name).init()
    with Transaction().start(name, 0, readonly=True):
        admin, = Pool().get("res.user").search([("login", "=", "admin")])
        return admin.id


def fresh_database(name: str) -> tuple[int, str]:
    """A database with the modules activated and nothing else: made by :func:`create_database` on the
    first run and kept as a template (SQLite: a file in Tryton's venv; PostgreSQL: the database
    TEMPLATE_PG, as trytond's own test suite does with DB_CACHE=postgresql://), copied afterwards.
    Returns (admin id, how it was made)."""
    if opts.database == "sqlite":
        if os.path.exists(TEMPLATE):
            import shutil
            shutil.copyfile(TEMPLATE, os.path.join(TMP.name, name + ".sqlite"))
            return _admin_id(name), "copied from the template made on the first run"
        admin = create_database(name)
        import sqlite3
        src, dst = sqlite3.connect(os.path.join(TMP.name, name + ".sqlite")), sqlite3.connect(TEMPLATE + ".tmp")
        src.backup(dst)
        src.close(), dst.close()
        os.replace(TEMPLATE + ".tmp", TEMPLATE)
        return admin, "created, modules activated (kept as a template for later runs)"
    with Transaction().start(None, 0, close=True, autocommit=True) as transaction:
        cursor = transaction.connection.cursor()
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE_PG,))
        if cursor.fetchone():
            transaction.database.create(transaction.connection, name, TEMPLATE_PG)
            copied = True
        else:
            copied = False
    if copied:
        return _admin_id(name), f"created from the template database {TEMPLATE_PG} made on the first run"
    admin = create_database(name)
    backend.Database(name).close()
    with Transaction().start(None, 0, close=True, autocommit=True) as transaction:
        transaction.database.create(transaction.connection, TEMPLATE_PG, name)
    return admin, f"created, modules activated (kept as the template database {TEMPLATE_PG} for later runs)"


def drop_database(name: str) -> None:
    if opts.database != "postgresql":
        return
    database = backend.Database(name)
    database.close()
    Pool.stop(name)
    with Transaction().start(None, 0, close=True, autocommit=True) as transaction:
        database.drop(transaction.connection, name)


def setup(admin: int) -> tuple[dict, dict]:
    """Company, chart, fiscal year, tax, products in stock, POS, customer; returns ids and the user context."""
    pool = Pool()
    Account = pool.get("account.account")
    Tax = pool.get("account.tax")
    Category = pool.get("product.category")
    Template = pool.get("product.template")
    Product = pool.get("product.product")
    Uom = pool.get("product.uom")
    Location = pool.get("stock.location")
    Inventory = pool.get("stock.inventory")
    Journal = pool.get("account.journal")
    POS = pool.get("sale.point")
    SequenceStrict = pool.get("ir.sequence.strict")
    SequenceType = pool.get("ir.sequence.type")
    PaymentMethod = pool.get("sale.point.payment.method")
    Party = pool.get("party.party")
    PaymentTerm = pool.get("account.invoice.payment_term")
    FiscalYear = pool.get("account.fiscalyear")

    company = create_company()
    with set_company(company):
        create_chart(company)
        fiscalyear = set_invoice_sequences(get_fiscalyear(company))
        fiscalyear.save()
        FiscalYear.create_period([fiscalyear])

        def account(*domain):
            found, = Account.search([("company", "=", company.id), ("closed", "!=", True), *domain], limit=1)
            return found
        revenue, expense = account(("type.revenue", "=", True)), account(("type.expense", "=", True))
        cash, tax_account = account(("code", "=", "1.1.1")), account(("code", "=", "6.3.6"))

        tax = Tax(name="VAT 13%", description="VAT 13%", type="percentage", rate=Decimal(".13"),
                  invoice_account=tax_account, credit_note_account=tax_account)
        tax.save()
        category = Category(name="Drugs", accounting=True, account_revenue=revenue, account_expense=expense,
                            customer_taxes=[tax])
        category.save()

        unit, = Uom.search([("name", "=", "Unit")])
        templates = []
        for i in range(opts.products):
            gross = Decimal(500 + i) / 100
            templates.append(Template(name=f"drug {i}", default_uom=unit, sale_uom=unit, type="goods", salable=True,
                                      products=[Product()],
                                      list_price=(gross / Decimal("1.13")).quantize(Decimal("0.0001")),
                                      gross_price=gross, account_category=category))
        Template.save(templates)
        products = [t.products[0] for t in templates]

        storage, = Location.search([("code", "=", "STO")])
        customer_loc, = Location.search([("code", "=", "CUS")])
        inventory = Inventory(location=storage, lines=[
            {"product": p.id, "quantity": 1_000_000.0} for p in products])
        inventory.save()
        Inventory.confirm([inventory])

        journal, = Journal.search([("type", "=", "revenue")], limit=1)
        sequence_type, = SequenceType.search([("name", "=", "POS")], limit=1)
        sequence = SequenceStrict(name="POS", company=company, sequence_type=sequence_type)
        sequence.save()
        pos = POS(name="POS", journal=journal, sequence=sequence, storage_location=storage,
                  customer_location=customer_loc)
        pos.save()
        cash_method = PaymentMethod(name="Cash", account=cash, cash=True)
        cash_method.save()

        customer, = Party.create([{"name": "Customer", "addresses": [("create", [{}])]}])
        term, = PaymentTerm.create([{"name": "Direct", "lines": [("create", [{"type": "remainder"}])]}])
        context = dict(Transaction().context)
    ids = {"products": [p.id for p in products], "pos": pos.id, "cash": cash_method.id,
           "customer": customer.id, "term": term.id}
    return ids, context


def pos_prices(ids: dict) -> dict:
    """Each product's (list, gross) unit price as the sale line's on_change computes it: what the terminal knows offline."""
    pool = Pool()
    Sale, Line = pool.get("sale.point.sale"), pool.get("sale.point.sale.line")
    sale = Sale(point=ids["pos"], date=Pool().get("ir.date").today())
    prices = {}
    for pid in ids["products"]:
        line = Line(sale=sale, product=pid, quantity=1)
        line.on_change_product()
        prices[pid] = (line.unit_list_price, line.unit_gross_price)
    return prices


def pos_batch(ids: dict, prices: dict, rnd: random.Random, n: int) -> None:
    pool = Pool()
    Sale, Line, Payment = pool.get("sale.point.sale"), pool.get("sale.point.sale.line"), pool.get("sale.point.payment")
    sales = []
    for _ in range(n):
        lines = []
        for pid in rnd.sample(ids["products"], 3):
            list_price, gross_price = prices[pid]
            lines.append(Line(product=pid, quantity=rnd.randint(1, 3), unit_list_price=list_price,
                              unit_gross_price=gross_price))
        sales.append(Sale(point=ids["pos"], lines=lines))
    Sale.save(sales)
    Payment.save([Payment(sale=s, method=ids["cash"], amount=s.total) for s in sales])
    Sale.process(sales)
    Sale.post(sales)


def one_order(ids: dict, rnd: random.Random) -> None:
    pool = Pool()
    Sale, Line, Shipment = pool.get("sale.sale"), pool.get("sale.line"), pool.get("stock.shipment.out")
    sale = Sale(party=ids["customer"], payment_term=ids["term"], invoice_method="order", shipment_method="order")
    sale.on_change_party()
    lines = []
    for pid in rnd.sample(ids["products"], 3):
        line = Line(sale=sale, type="line", product=pid, quantity=float(rnd.randint(1, 3)))
        line.on_change_product()  # unit, unit price and taxes, as the client asks the server
        lines.append(line)
    sale.lines = lines
    sale.save()
    Sale.quote([sale])
    Sale.confirm([sale])     # pushes the "process" task to ir.queue (run after commit by the RPC layer) ...
    Sale.process([sale])     # ... done here in the same transaction instead: draft invoice + customer shipment
    Shipment.assign_try(list(sale.shipments))


def check() -> dict:
    """What the workloads wrote, counted in the database."""
    pool = Pool()
    PSale, Move = pool.get("sale.point.sale"), pool.get("stock.move")
    AMove, SSale = pool.get("account.move"), pool.get("sale.sale")
    Shipment, Invoice = pool.get("stock.shipment.out"), pool.get("account.invoice")
    return {
        "pos_posted": PSale.search_count([("state", "=", "posted")]),
        "pos_stock_moves_done": Move.search_count([("origin", "like", "sale.point.sale.line,%"),
                                                   ("state", "=", "done")]),
        "account_moves_posted": AMove.search_count([("origin", "like", "sale.point.sale,%"),
                                                    ("state", "=", "posted")]),
        "orders_processing": SSale.search_count([("state", "=", "processing")]),
        "shipments_assigned": Shipment.search_count([("state", "=", "assigned")]),
        "invoices_draft": Invoice.search_count([("state", "=", "draft")]),
    }


class Bench:
    def __init__(self, admin: int, ids: dict, context: dict, prices: dict) -> None:
        self.admin, self.ids, self.context, self.prices = admin, ids, context, prices
        self.rnd = random.Random(opts.seed)

    def pos(self, n: int, batch: int) -> dict:
        """(A) ``n`` POS sales, ``batch`` per transaction."""
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        while done < n:
            k = min(batch, n - done)
            in_transaction(self.admin, pos_batch, self.ids, self.prices, self.rnd, k, context=self.context)
            done += k
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        log(f"POS: {n} sales in {elapsed:.1f} s = {n / elapsed:.1f} sales/s ({1000 * cpu / n:.0f} ms of this "
            "process's CPU per sale)")
        return {"n": n, "s": elapsed, "cpu_s": cpu, "per_s": n / elapsed}

    def orders(self, n: int) -> dict:
        """(B) ``n`` sale orders, one per transaction."""
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            in_transaction(self.admin, one_order, self.ids, self.rnd, context=self.context)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        log(f"orders: {n} in {elapsed:.1f} s = {n / elapsed:.2f} orders/s ({1000 * cpu / n:.0f} ms of this "
            "process's CPU per order)")
        return {"n": n, "s": elapsed, "cpu_s": cpu, "per_s": n / elapsed}

    def statements(self) -> dict:
        """SQL statements per POS sale (one batch) and per order (SQLite only: its trace callback), untimed."""
        if opts.database != "sqlite":
            return {}
        TRACE.update(on=True, n=0)
        try:
            self.pos(opts.batch, opts.batch)
            per_sale, TRACE["n"] = TRACE["n"] / opts.batch, 0
            self.orders(2)
            per_order = TRACE["n"] / 2
        finally:
            TRACE["on"] = False
        log(f"SQL statements: {per_sale:.0f} per POS sale (batches of {opts.batch}), {per_order:.0f} per order")
        return {"per_pos_sale": per_sale, "per_order": per_order}

    def check(self) -> dict:
        out = in_transaction(self.admin, check, context=self.context, readonly=True)
        out["transactions_restarted"] = RETRIES["count"]
        log(f"check: {out}")
        return out


def main() -> None:
    out = {"database": opts.database, "trytond": VERSION}
    log("trytond imported, modules registered")
    t0 = time.perf_counter()
    admin, how = fresh_database(DB)
    out["create_database_s"] = round(time.perf_counter() - t0, 1)
    log(f"database {how} in {out['create_database_s']} s")
    try:
        t0 = time.perf_counter()
        ids, context = in_transaction(admin, setup, admin)
        prices = in_transaction(admin, pos_prices, ids, context=context)
        out["setup_s"] = round(time.perf_counter() - t0, 1)
        log(f"company, chart, products, stock, POS set up in {out['setup_s']} s")
        bench = Bench(admin, ids, context, prices)
        # warm-up, not timed: Tryton's caches filled, the locks each workload needs learned
        bench.pos(min(opts.batch, 10), opts.batch)
        bench.orders(2)
        out["warmup"] = {"pos_sales": min(opts.batch, 10), "orders": 2}
        if opts.serve:
            # one JSON line per command read on stdin: "pos N", "orders N", "statements", "check"; EOF or "quit" ends
            print(json.dumps({"ready": True, **out}), flush=True)
            for line in sys.stdin:
                cmd, *rest = line.split() or ["quit"]
                if cmd == "quit":
                    break
                if cmd == "pos":
                    answer = bench.pos(int(rest[0]), opts.batch)
                elif cmd == "orders":
                    answer = bench.orders(int(rest[0]))
                elif cmd == "check":
                    answer = bench.check()
                elif cmd == "statements":
                    answer = bench.statements()
                else:
                    answer = {"error": f"unknown command {cmd!r}"}
                print(json.dumps(answer), flush=True)
            return
        pos, orders = bench.pos(opts.pos, opts.batch), bench.orders(opts.orders)
        out.update(pos_sales=opts.pos, pos_batch=opts.batch, orders=opts.orders,
                   pos_per_s=pos["per_s"], pos_cpu_ms=1000 * pos["cpu_s"] / pos["n"],
                   orders_per_s=orders["per_s"], orders_cpu_ms=1000 * orders["cpu_s"] / orders["n"],
                   check=bench.check())
    finally:
        drop_database(DB)
        log("database dropped" if opts.database == "postgresql" else "done")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
