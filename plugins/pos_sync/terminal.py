"""The reference POS terminal: a local SQLite queue that sells offline and syncs when it can.

::

    pharmo2o pos-terminal --db till.db setup --server http://host:8000 --secret pos_...
    pharmo2o pos-terminal --db till.db pull                      # catalogue, prices, stock
    pharmo2o pos-terminal --db till.db sell 12:2 15:1 --pay cash   # works offline
    pharmo2o pos-terminal --db till.db sync                      # uploads the queue, retries
    pharmo2o pos-terminal --db till.db status

(also ``python -m plugins.pos_sync.terminal ...`` on a terminal without a
server configuration). Only the Python standard library is used.

Guarantees the protocol relies on:

* a sale is written to the local queue (with its client sale id, line ids
  and the next device sequence number) in one local transaction before the
  receipt is printed; it leaves the queue only when the server has answered
  for it, so a dropped connection, a killed server or a lost answer just
  means the batch is sent again, and the server answers ``duplicate``;
* a catalogue page and the cursor after it are stored in one local
  transaction, so an interrupted pull resumes where it stopped;
* the local database gets a random database id when it is created, and a
  new one when the file is not the one that was created (a copy or a
  restored backup: another inode), so the server refuses it until the
  terminal is re-registered.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

__all__ = ["TerminalDB", "Client", "ServerUnreachable", "Refused", "SaleRefused", "SyncReport", "sync", "pull",
           "terminal_cli"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, sku TEXT, name TEXT, price_fen INTEGER,
    price_list_version INTEGER, rx_class TEXT, allowed INTEGER, reasons TEXT, needs_prescription INTEGER,
    needs_buyer_id INTEGER, max_units INTEGER);
CREATE TABLE IF NOT EXISTS lots (lot_id INTEGER PRIMARY KEY, product_id INTEGER, lot_no TEXT, expiry TEXT,
    on_hand INTEGER, available INTEGER);
CREATE TABLE IF NOT EXISTS sales (client_sale_id TEXT PRIMARY KEY, seq INTEGER UNIQUE, body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued', result TEXT, created_at TEXT NOT NULL, synced_at TEXT);
CREATE INDEX IF NOT EXISTS ix_sales_status_seq ON sales (status, seq);
"""


class SaleRefused(Exception):
    """The local catalogue says the sale may not be made (unknown product, restriction, missing ID)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class TerminalDB:
    """The terminal's own SQLite file: settings, catalogue copy, and the sales queue."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # a printed receipt must survive a power cut
        self.conn.executescript(SCHEMA)
        self.identity_changed = self._check_identity()

    def close(self) -> None:
        self.conn.close()

    # -- settings
    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else default

    def set(self, key: str, value) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                          "excluded.value", (key, None if value is None else str(value)))

    def _file_identity(self) -> str:
        st = os.stat(self.path)
        return f"{st.st_dev}:{st.st_ino}"

    def _check_identity(self) -> bool:
        """Give a copied or restored file a new database id (it must not sync as the original)."""
        identity = self._file_identity()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            known = self.get("file_identity")
            changed = known is not None and known != identity
            if known is None or changed:
                self.set("database_id", uuid.uuid4().hex)
                self.set("file_identity", identity)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return changed

    @property
    def database_id(self) -> str:
        return self.get("database_id")

    def tx(self):
        return _Tx(self.conn)

    # -- catalogue
    def apply_page(self, page: dict) -> None:
        """Store one catalogue page and the cursor after it, together."""
        with self.tx():
            if page["reset"]:
                self.conn.execute("DELETE FROM products")
                self.conn.execute("DELETE FROM lots")
            for p in page["products"]:
                off = p["restrictions"]["offline"]
                self.conn.execute(
                    "INSERT OR REPLACE INTO products VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (p["id"], p["sku"], f"{p['generic_name']} {p.get('specification', '')}".strip(), p["price_fen"],
                     p["price_list_version"] or page["price_list_version"], p["rx_class"], int(off["allowed"]),
                     json.dumps(off["reasons"], ensure_ascii=False), int(off["needs_prescription"]),
                     int(off["needs_buyer_id"]), off["max_units_per_sale"]))
            for lot in page["stock"]:
                self.conn.execute("INSERT OR REPLACE INTO lots VALUES (?,?,?,?,?,?)",
                                  (lot["lot_id"], lot["product_id"], lot["lot_no"], lot["expiry"], lot["on_hand"],
                                   lot["available"]))
            self.set("catalog_cursor", page["next_cursor"])
            self.set("price_list_version", page["price_list_version"])

    # -- sales
    def record_sale(self, lines: list[tuple[int, int]], *, method: str = "cash", customer_id: int | None = None, buyer_id_number: str | None = None,
                    prescription_id: str | None = None, sold_at: dt.datetime | None = None) -> dict:
        """Queue a sale priced from the local catalogue (refused here if the catalogue refuses it)."""
        with self.tx():
            body_lines = []
            for product_id, quantity in lines:
                p = self.conn.execute("SELECT * FROM products WHERE id = ?", (product_id,)).fetchone()
                if p is None:
                    raise SaleRefused(f"product {product_id} is not in the local catalogue: pull first")
                if not p["allowed"]:
                    raise SaleRefused(f"product {product_id} may not be sold here: "
                                               f"{'; '.join(json.loads(p['reasons']))}")
                if p["needs_prescription"] and not prescription_id:
                    raise SaleRefused(f"product {product_id} is Rx: give the approved prescription id")
                if p["needs_buyer_id"] and not buyer_id_number:
                    raise SaleRefused(f"product {product_id} contains ephedrine: give the buyer's ID")
                body_lines.append({"line_id": uuid.uuid4().hex, "product_id": product_id, "quantity": quantity,
                                   "unit_price_fen": p["price_fen"], "price_list_version": p["price_list_version"]})
            total = sum(l["quantity"] * l["unit_price_fen"] for l in body_lines)
            seq = int(self.get("next_seq", "1"))
            self.set("next_seq", seq + 1)
            sale = {"client_sale_id": uuid.uuid4().hex, "device_seq": seq,
                    "sold_at": (sold_at or _now()).isoformat(), "lines": body_lines,
                    "payments": [{"method": method, "amount_fen": total}]}
            for key, value in (("customer_id", customer_id), ("buyer_id_number", buyer_id_number),
                               ("prescription_id", prescription_id)):
                if value is not None:
                    sale[key] = value
            self.conn.execute("INSERT INTO sales (client_sale_id, seq, body, created_at) VALUES (?,?,?,?)",
                              (sale["client_sale_id"], seq, json.dumps(sale, ensure_ascii=False),
                               _now().isoformat()))
            return sale

    def queued(self, limit: int) -> list[dict]:
        rows = self.conn.execute("SELECT body FROM sales WHERE status = 'queued' ORDER BY seq LIMIT ?", (limit,))
        return [json.loads(r["body"]) for r in rows]

    def counts(self) -> dict[str, int]:
        out = {"queued": 0, "accepted": 0, "duplicate": 0, "rejected": 0}
        for row in self.conn.execute("SELECT status, count(*) AS n FROM sales GROUP BY status"):
            out[row["status"]] = row["n"]
        return out

    def settle(self, results: list[dict]) -> None:
        """Take the answered sales off the queue (one local transaction)."""
        with self.tx():
            now = _now().isoformat()
            for r in results:
                if not r.get("client_sale_id") or r["status"] == "deferred":
                    continue  # deferred: the server did not get to it, it stays queued
                self.conn.execute("UPDATE sales SET status = ?, result = ?, synced_at = ? WHERE client_sale_id = ? "
                                  "AND status = 'queued'",
                                  (r["status"], json.dumps(r, ensure_ascii=False), now, r["client_sale_id"]))


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


class ServerUnreachable(Exception):
    """No answer (connection refused or dropped, timeout, 5xx): try again later."""


class Refused(Exception):
    """The server refused the terminal or the request (4xx): retrying will not help."""

    def __init__(self, status: int, problem: dict) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem}")
        self.status = status
        self.problem = problem


@dataclass
class Client:
    """HTTP to the server with the terminal's credentials."""

    server: str
    secret: str
    database_id: str
    timeout: float = 60.0

    def call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> dict:
        url = self.server.rstrip("/") + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.secret}", "X-POS-Database-Id": self.database_id,
            "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                problem = json.loads(exc.read() or b"{}")
            except ValueError:
                problem = {}
            if exc.code >= 500:
                raise ServerUnreachable(f"server error {exc.code}") from exc
            raise Refused(exc.code, problem) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, reset, timeout, truncated body
            raise ServerUnreachable(str(getattr(exc, "reason", exc))) from exc


@dataclass
class SyncReport:
    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    deferred: int = 0
    retries: int = 0
    left: int = 0


def _retrying(call: Callable[[], dict], *, retries: int, wait: float, say: Callable[[str], None],
              report: SyncReport) -> dict:
    attempt = 0
    while True:
        try:
            return call()
        except ServerUnreachable as exc:
            attempt += 1
            if retries >= 0 and attempt > retries:
                raise
            delay = min(wait * 2 ** min(attempt - 1, 5), 30.0)
            report.retries += 1
            say(f"server unreachable ({exc}); retry {attempt}{'' if retries < 0 else f'/{retries}'} in {delay:.1f}s")
            time.sleep(delay)


def pull(db: TerminalDB, client: Client, *, limit: int = 500, retries: int = 5, wait: float = 1.0,
         say: Callable[[str], None] = print) -> int:
    """Pull the catalogue until caught up; returns the number of rows applied."""
    rows = 0
    report = SyncReport()
    while True:
        params = {"limit": limit}
        cursor = db.get("catalog_cursor")
        if cursor:
            params["since"] = cursor
        page = _retrying(lambda: client.call("GET", "/api/v1/pos/catalog", params=params), retries=retries,
                         wait=wait, say=say, report=report)
        db.apply_page(page)
        rows += len(page["products"]) + len(page["stock"])
        say(f"catalogue: {'full resync, ' if page['reset'] else ''}{len(page['products'])} products, "
            f"{len(page['stock'])} lots (price list v{page['price_list_version']}, {rows} rows so far)")
        if not page["has_more"]:
            return rows


def sync(db: TerminalDB, client: Client, *, batch: int = 100, retries: int = 10, wait: float = 1.0,
         say: Callable[[str], None] = print) -> SyncReport:
    """Upload the queue oldest first until it is empty; a sale leaves the queue only once answered.

    ``retries`` < 0 retries for ever. Raises :class:`ServerUnreachable` when
    the retries run out (the rest stays queued) and :class:`Refused` when the
    server refuses the terminal.
    """
    report = SyncReport()
    total = db.counts()["queued"]
    while True:
        sales = db.queued(batch)
        if not sales:
            break
        body = {"sales": sales, "device_time": _now().isoformat(), "queued": db.counts()["queued"]}
        try:
            answer = _retrying(lambda: client.call("POST", "/api/v1/pos/sales:batch", body), retries=retries,
                               wait=wait, say=say, report=report)
        except Refused as exc:
            if exc.status == 413 and batch > 1:
                batch = max(1, batch // 2)
                say(f"batch too large for the server: sending {batch} at a time")
                continue
            raise
        db.settle(answer["results"])
        report.sent += len(sales) - answer.get("deferred", 0)
        for key in ("accepted", "duplicate", "rejected", "deferred"):
            setattr(report, key, getattr(report, key) + answer.get(key, 0))
        say(f"synced {report.sent}/{total}: accepted {report.accepted}, duplicate {report.duplicate}, "
            f"rejected {report.rejected}" + (f" ({answer['deferred']} deferred by a busy server, resending)"
                                            if answer.get("deferred") else ""))
    report.left = db.counts()["queued"]
    return report


# ---------------------------------------------------------------------- CLI

@click.group("pos-terminal")
@click.option("--db", "db_path", default="pos-terminal.db", show_default=True, envvar="PHARMO2O_POS_TERMINAL_DB",
              type=click.Path(dir_okay=False), help="The terminal's local SQLite database.")
@click.pass_context
def terminal_cli(cctx: click.Context, db_path: str) -> None:
    """A reference POS terminal: sells offline into a local queue, syncs with the server."""
    db = TerminalDB(db_path)
    cctx.call_on_close(db.close)
    cctx.obj = db
    if db.identity_changed:
        click.echo("warning: this terminal database is a copy or a restored backup: it has a new database id and "
                   "the server will refuse it until a store manager re-registers the terminal", err=True)


def _client(db: TerminalDB) -> Client:
    server, secret = db.get("server"), db.get("secret")
    if not server or not secret:
        raise click.ClickException("run `pos-terminal setup --server URL --secret SECRET` first")
    return Client(server, secret, db.database_id)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@terminal_cli.command("setup")
@click.option("--server", required=True, help="The pharmo2o server, e.g. http://10.0.0.5:8000")
@click.option("--secret", required=True, help="The terminal secret from POST /api/v1/pos/devices.")
@click.pass_obj
def setup_cmd(db: TerminalDB, server: str, secret: str) -> None:
    """Store the server address and the terminal's secret."""
    with db.tx():
        db.set("server", server)
        db.set("secret", secret)
    click.echo(f"terminal database {db.path} (database id {db.database_id}) talks to {server}")


@terminal_cli.command("pull")
@click.option("--limit", default=500, show_default=True, help="Rows per page.")
@click.option("--retries", default=5, show_default=True, help="Retries while the server is unreachable (-1: for ever).")
@click.pass_obj
def pull_cmd(db: TerminalDB, limit: int, retries: int) -> None:
    """Bring the local catalogue, prices and stock up to date."""
    try:
        rows = pull(db, _client(db), limit=limit, retries=retries, say=click.echo)
    except (ServerUnreachable, Refused) as exc:
        _fail(exc)
    click.echo(f"catalogue up to date ({rows} rows applied)")


@terminal_cli.command("sell")
@click.argument("lines", nargs=-1, required=True, metavar="PRODUCT_ID:QTY...")
@click.option("--pay", "method", default="cash", show_default=True,
              type=click.Choice(["cash", "card", "wechat", "alipay", "medical_insurance"]))
@click.option("--customer", "customer_id", type=int)
@click.option("--buyer-id", "buyer_id_number", help="Ephedrine: the buyer's resident ID.")
@click.option("--prescription", "prescription_id", help="Rx: the id of a prescription approved online.")
@click.pass_obj
def sell_cmd(db: TerminalDB, lines, method, customer_id, buyer_id_number, prescription_id) -> None:
    """Record a sale in the local queue (works offline)."""
    parsed = []
    for item in lines:
        try:
            pid, qty = (int(x) for x in item.split(":"))
        except ValueError:
            raise click.BadParameter(f"{item!r}: write PRODUCT_ID:QTY, e.g. 12:2") from None
        parsed.append((pid, qty))
    try:
        sale = db.record_sale(parsed, method=method, customer_id=customer_id, buyer_id_number=buyer_id_number,
                              prescription_id=prescription_id)
    except SaleRefused as exc:
        _fail(exc)
    total = sale["payments"][0]["amount_fen"]
    click.echo(f"sale #{sale['device_seq']} queued: {total / 100:.2f} yuan ({sale['client_sale_id']})")


@terminal_cli.command("sync")
@click.option("--batch", default=100, show_default=True, help="Sales per upload (at most 500).")
@click.option("--retries", default=10, show_default=True, help="Retries while the server is unreachable "
                                                               "(-1: for ever).")
@click.option("--retry-wait", default=1.0, show_default=True, help="First wait between retries, doubling to 30 s.")
@click.pass_obj
def sync_cmd(db: TerminalDB, batch: int, retries: int, retry_wait: float) -> None:
    """Upload the queued sales, with progress; unanswered sales stay queued."""
    try:
        report = sync(db, _client(db), batch=min(max(batch, 1), 500), retries=retries, wait=retry_wait,
                      say=click.echo)
    except (ServerUnreachable, Refused) as exc:
        click.echo(f"{db.counts()['queued']} sale(s) still queued", err=True)
        _fail(exc)
    click.echo(f"done: {report.accepted} accepted, {report.duplicate} already known, {report.rejected} rejected, "
               f"{report.left} queued")


@terminal_cli.command("status")
@click.pass_obj
def status_cmd(db: TerminalDB) -> None:
    """Queue counts and the catalogue state."""
    counts = db.counts()
    products = db.conn.execute("SELECT count(*) FROM products").fetchone()[0]
    click.echo(f"database id {db.database_id}; server {db.get('server') or '-'}; {products} products "
               f"(price list v{db.get('price_list_version') or 0})")
    click.echo(", ".join(f"{k} {v}" for k, v in counts.items()))
    for row in db.conn.execute("SELECT seq, result FROM sales WHERE status = 'rejected' ORDER BY seq LIMIT 20"):
        click.echo(f"  rejected #{row['seq']}: {json.loads(row['result']).get('reason')}")


if __name__ == "__main__":  # pragma: no cover - python -m plugins.pos_sync.terminal
    sys.exit(terminal_cli(prog_name="pos-terminal"))
