"""Sales upload: offline sales recorded once, whatever the network does.

Per sale (its key is the terminal and the client-generated sale id, UNIQUE
in ``pos_sales``, plus a SHA-256 of its normalised content):

* new id -> the sale is checked and recorded through the core's
  :func:`core.orders.record_sale` (FEFO or the scanned lot, never refused for
  stock, the same order hooks as an online order) -> ``accepted``, or
  ``rejected`` with the reason a rule gave;
* known id, same content, accepted -> ``duplicate`` with the stored result;
* known id, same content, rejected before -> checked again (a sale that was
  refused because, say, its prescription was not yet approved may pass now);
* known id, other content -> ``rejected`` and flagged for review; the stored
  sale is never overwritten;
* not reached -> ``deferred``: a batch stops taking new chunks once it has
  run ``[pos_sync] batch_time_budget_seconds`` (default 20 s, under the
  worker timeout) and answers the rest ``deferred``, to be sent again.

Transactions: a batch is cut into chunks of ``[pos_sync] commit_every`` sales
(default 250), each chunk one transaction that first locks the terminal's row,
so two uploads of one terminal at once take turns chunk by chunk and the
second sees what the first committed. A chunk is handled set-based: one
query finds its known sale ids (no row lock needed: the terminal's row lock
already orders every writer of its sales), the new ones get their ``pos_sales``
ids up front (:func:`core.bulk.new_ids`),
:func:`core.orders.record_sales` records the accepted ones together, every
sale still getting the order and stock hooks, and one INSERT then writes the
new ``pos_sales`` rows with their final status and result (before the flags
and stock discrepancies that refer to them); a refused sale undoes only
itself (checked before anything is written, or, refused by a hook, rolled
back by a SAVEPOINT around the chunk's sales, which are written again without
it). Results are returned only after their
chunk committed: a batch cut off half-way keeps every chunk already
committed, and re-sending it answers ``duplicate`` for those. The UNIQUE
constraints (``pos_sales`` per terminal and sale id, the order's idempotency
key) back this up should two transactions ever record one sale id: the loser's
chunk is rolled back and taken again, and then finds the winner's row.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from dataclasses import dataclass

import orjson
from sqlalchemy import bindparam, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core import orders as core_orders
from core.db import utcnow
from core.errors import DomainError, ValidationFailed
from core.models import Product
from core.bulk import insert_values, new_ids

from . import prices
from .devices import DeviceRefused, device_caller, get_device
from .models import PosDevice, PosSale, PosSaleFlag, PosStockDiscrepancy
from .rules import CHANNEL, RX_WITHOUT_PRESCRIPTION, RX_WITHOUT_REVIEW, has_prescription_review

__all__ = ["upload", "parse_sale", "content_hash", "InvalidSale", "MAX_BATCH", "PAYMENT_METHODS",
           "DEFAULT_DRIFT_SECONDS", "DEFAULT_COMMIT_EVERY", "DEFAULT_TIME_BUDGET"]

MAX_BATCH = 500
INT32_MAX = 2**31 - 1  # ``queued``, clock offsets and lags are stored in 32-bit columns
MAX_QUEUED = INT32_MAX
MAX_LINES = 100
MAX_QUANTITY = 10_000
PAYMENT_METHODS = ("cash", "card", "wechat", "alipay", "medical_insurance")
DEFAULT_DRIFT_SECONDS = 300
DEFAULT_COMMIT_EVERY = 250
DEFAULT_TIME_BUDGET = 20.0  # seconds; under gunicorn's 30 s worker timeout
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SALE_FIELDS = {"client_sale_id", "device_seq", "sold_at", "lines", "payments", "customer_id", "buyer_id_number",
                "prescription_id", "redeem_points", "note"}
_LINE_FIELDS = {"line_id", "product_id", "quantity", "unit_price_fen", "price_list_version", "lot_no"}
_PAYMENT_FIELDS = {"method", "amount_fen", "reference"}
_RETRY_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


class InvalidSale(Exception):
    """A sale whose shape is wrong (missing or mistyped field); it is not stored."""


def _int(value, name: str, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise InvalidSale(f"{name} must be an integer" + (f" from {lo} to {hi}" if hi is not None else f" >= {lo}"))
    return value


def _text(value, name: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidSale(f"{name} is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidSale(f"{name} must be a string of at most {limit} characters")
    if "\x00" in value:  # PostgreSQL cannot store it in text
        raise InvalidSale(f"{name} must not contain the NUL character (\\u0000)")
    return value


def _time(value, name: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidSale(f"{name} must be an ISO 8601 time with its UTC offset, e.g. 2026-11-26T09:30:00+08:00")
    return when.astimezone(dt.timezone.utc)


def parse_sale(raw) -> dict:
    """Check the shape of one uploaded sale and normalise it (times in UTC)."""
    if not isinstance(raw, dict):
        raise InvalidSale("a sale must be an object")
    unknown = sorted(set(raw) - _SALE_FIELDS)
    if unknown:
        raise InvalidSale(f"unknown field(s): {', '.join(unknown)}")
    cid = raw.get("client_sale_id")
    if not isinstance(cid, str) or not _ID.match(cid):
        raise InvalidSale("client_sale_id must be 1 to 64 letters, digits or . _ : -")
    sale = {
        "client_sale_id": cid,
        "device_seq": _int(raw.get("device_seq"), "device_seq", 0, 2**62),
        "sold_at": _time(raw.get("sold_at"), "sold_at"),
        "customer_id": None if raw.get("customer_id") is None else _int(raw.get("customer_id"), "customer_id", 1),
        "buyer_id_number": _text(raw.get("buyer_id_number"), "buyer_id_number", 18),
        "prescription_id": None, "note": _text(raw.get("note"), "note", 500),
        "redeem_points": 0 if raw.get("redeem_points") is None else _int(raw.get("redeem_points"), "redeem_points"),
    }
    rx = raw.get("prescription_id")
    if rx is not None:
        if isinstance(rx, int) and not isinstance(rx, bool):
            rx = str(rx)
        sale["prescription_id"] = _text(rx, "prescription_id", 64)
    lines = raw.get("lines")
    if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_LINES:
        raise InvalidSale(f"lines must be a list of 1 to {MAX_LINES} lines")
    out_lines, seen = [], set()
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise InvalidSale(f"lines[{i}] must be an object")
        bad = sorted(set(line) - _LINE_FIELDS)
        if bad:
            raise InvalidSale(f"lines[{i}]: unknown field(s): {', '.join(bad)}")
        lid = line.get("line_id")
        if not isinstance(lid, str) or not _ID.match(lid):
            raise InvalidSale(f"lines[{i}].line_id must be 1 to 64 letters, digits or . _ : -")
        if lid in seen:
            raise InvalidSale(f"lines[{i}].line_id {lid!r} appears twice in the sale")
        seen.add(lid)
        out_lines.append({
            "line_id": lid,
            "product_id": _int(line.get("product_id"), f"lines[{i}].product_id", 1),
            "quantity": _int(line.get("quantity"), f"lines[{i}].quantity", 1, MAX_QUANTITY),
            "unit_price_fen": _int(line.get("unit_price_fen"), f"lines[{i}].unit_price_fen", 0, 10**10),
            "price_list_version": _int(line.get("price_list_version"), f"lines[{i}].price_list_version"),
            "lot_no": _text(line.get("lot_no"), f"lines[{i}].lot_no", 64),
        })
    payments = raw.get("payments")
    if not isinstance(payments, list) or not payments:
        raise InvalidSale("payments must be a non-empty list")
    out_payments = []
    for i, pay in enumerate(payments):
        if not isinstance(pay, dict) or set(pay) - _PAYMENT_FIELDS:
            raise InvalidSale(f"payments[{i}] must be an object with method, amount_fen and an optional reference")
        if pay.get("method") not in PAYMENT_METHODS:
            hint = " (points cannot be redeemed offline)" if pay.get("method") == "points" else ""
            raise InvalidSale(f"payments[{i}].method must be one of {', '.join(PAYMENT_METHODS)}{hint}")
        out_payments.append({"method": pay["method"],
                             "amount_fen": _int(pay.get("amount_fen"), f"payments[{i}].amount_fen", 1, 10**12),
                             "reference": _text(pay.get("reference"), f"payments[{i}].reference", 100)})
    total = sum(l["quantity"] * l["unit_price_fen"] for l in out_lines)
    paid = sum(p["amount_fen"] for p in out_payments)
    if paid != total:
        raise InvalidSale(f"the payments add up to {paid} fen but the lines to {total} fen")
    sale["lines"], sale["payments"], sale["total_fen"] = out_lines, out_payments, total
    return sale


def content_hash(sale: dict) -> str:
    """SHA-256 of the normalised sale: the same sale sent again hashes the same.

    The hashed text is ``json.dumps(sale, sort_keys=True, separators=(",", ":"))`` (ASCII, every
    other character escaped), as stored hashes were made. orjson writes exactly that text, a tenth
    of the time, whenever its output is printable ASCII (and every integer fits 64 bits); any other
    sale goes through the json module."""
    canonical = {k: v for k, v in sale.items() if k != "total_fen"}
    canonical["sold_at"] = sale["sold_at"].isoformat()
    try:
        text = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: an integer over 64 bits
        text = None
    if text is None or not text.isascii() or b"\x7f" in text:
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(text).hexdigest()


def _merged_lines(sale: dict) -> list[dict]:
    """One line per product, as the core records it: lines of one product at one price are
    added up (the scanned lot is kept when they name the same one, else FEFO)."""
    merged: dict[int, dict] = {}
    for line in sale["lines"]:
        m = merged.get(line["product_id"])
        if m is None:
            merged[line["product_id"]] = {"product_id": line["product_id"], "quantity": line["quantity"],
                                          "unit_price_fen": line["unit_price_fen"], "lot_no": line["lot_no"],
                                          "line_ids": [line["line_id"]]}
            continue
        if m["unit_price_fen"] != line["unit_price_fen"]:
            raise InvalidSale(f"product {line['product_id']} is on two lines at different prices "
                              f"({m['unit_price_fen']} and {line['unit_price_fen']} fen)")
        m["quantity"] += line["quantity"]
        if m["lot_no"] != line["lot_no"]:
            m["lot_no"] = None
        m["line_ids"].append(line["line_id"])
    return list(merged.values())


@dataclass(frozen=True)
class _Rules:
    received_at: dt.datetime
    clock_offset_s: int | None  # the terminal's clock minus the server's, at upload
    drift: dt.timedelta
    staleness: dt.timedelta
    rx_review: bool
    price_version: int


def _retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    return code in _RETRY_SQLSTATES or "database is locked" in str(exc.orig)


# the keys a sale id recorded twice at once runs into: its pos_sales row, its core order
_TWIN_KEYS = ("uq_pos_sales_device_id_client_sale_id", "uq_orders_idempotency_key")
_TWIN_SQLITE = ("pos_sales.device_id, pos_sales.client_sale_id", "orders.idempotency_key")


def _twin(exc: DBAPIError) -> bool:
    """Whether ``exc`` is another transaction having recorded one of the chunk's sale ids first (only
    possible without the terminal's row lock, which every upload takes): taken again, the chunk finds
    that sale and answers ``duplicate``."""
    if not isinstance(exc, IntegrityError):
        return False
    name = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if name is not None:
        return name in _TWIN_KEYS
    return any(f"UNIQUE constraint failed: {cols}" in str(exc.orig) for cols in _TWIN_SQLITE)


def upload(ctx, device: PosDevice, body, *, now: dt.datetime | None = None) -> dict:
    """Record a batch of offline sales of ``device``; one result per sale, in order."""
    received_at = now or utcnow()
    if not isinstance(body, dict):
        raise ValidationFailed.one("body", "must be an object with a list of sales")
    sales = body.get("sales")
    if not isinstance(sales, list) or not sales:
        raise ValidationFailed.one("sales", "must be a non-empty list")
    if len(sales) > MAX_BATCH:
        raise ValidationFailed.one("sales", f"at most {MAX_BATCH} sales per batch ({len(sales)} sent): "
                                            "send the rest in another batch")
    offset = None
    if body.get("device_time") is not None:
        try:
            offset = int((_time(body["device_time"], "device_time") - received_at).total_seconds())
            offset = max(-INT32_MAX, min(INT32_MAX, offset))  # a clock decades off is "at least this far"
        except InvalidSale as exc:
            raise ValidationFailed.one("device_time", str(exc)) from exc
    queued = body.get("queued")
    if queued is not None and (isinstance(queued, bool) or not isinstance(queued, int)
                               or not 0 <= queued <= MAX_QUEUED):
        raise ValidationFailed.one("queued", "must be the number of sales still queued on the terminal "
                                             f"(0 to {MAX_QUEUED})")
    version = prices.refresh(ctx, now=received_at)
    rules = _Rules(received_at, offset,
                   dt.timedelta(seconds=int(ctx.setting("pos_sync.clock_drift_seconds", DEFAULT_DRIFT_SECONDS))),
                   dt.timedelta(minutes=float(ctx.setting("pos_sync.price_staleness_minutes",
                                                          prices.DEFAULT_STALENESS_MINUTES))),
                   has_prescription_review(ctx), version)
    step = max(1, int(ctx.setting("pos_sync.commit_every", DEFAULT_COMMIT_EVERY)))
    budget = float(ctx.setting("pos_sync.batch_time_budget_seconds", DEFAULT_TIME_BUDGET))
    deadline = time.monotonic() + budget
    results: list[dict] = []
    for start in range(0, len(sales), step):
        if start and time.monotonic() > deadline:  # answer before the worker timeout; the rest comes again
            results.extend(_deferred(raw) for raw in sales[start:])
            break
        results.extend(_chunk(ctx, device.id, sales[start:start + step], rules))
    _finish(ctx, device.id, [r for r in results if r["status"] != "deferred"], queued, rules)
    counts = {k: sum(1 for r in results if r["status"] == k) for k in ("accepted", "duplicate", "rejected",
                                                                        "deferred")}
    return {"results": results, **counts, "server_time": received_at.isoformat(), "price_list_version": version,
            "clock_offset_s": offset}


def _deferred(raw) -> dict:
    cid = raw.get("client_sale_id") if isinstance(raw, dict) else None
    return {"client_sale_id": cid if isinstance(cid, str) else None, "status": "deferred",
            "reason": "not processed: the batch took longer than the server's time budget; send this sale again"}


def _chunk(ctx, device_id: int, part: list, rules: _Rules) -> list[dict]:
    for attempt in range(5):
        try:
            with ctx.transaction() as session:
                device = get_device(session, device_id, lock=True)
                if device.status != "active":
                    raise DeviceRefused(f"POS terminal {device.id} was revoked while it was uploading")
                out = _process(ctx, session, device, part, rules)
            return out  # only now committed: safe to report
        except DBAPIError as exc:
            if attempt == 4 or not (_retryable(exc) or _twin(exc)):
                raise
            if not _twin(exc):  # a twin has committed: nothing to wait for
                time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


# built once. Not FOR UPDATE: a terminal's pos_sales rows are written only here, by a chunk holding
# the terminal's row lock (taken first, see _chunk), so the rows found cannot change under us; locking
# them too wrote every replayed row's header on PostgreSQL and made a replay slower than a first upload.
# The columns a replay answers from, not ORM objects: a row is loaded as one only when it is taken
# again (see _run); building every found row as an object was about a tenth of a replay
_FIND = select(PosSale.id, PosSale.client_sale_id, PosSale.content_hash, PosSale.status, PosSale.result,
               PosSale.received_at).where(PosSale.device_id == bindparam("device_id"),
                                          PosSale.client_sale_id.in_(bindparam("ids", expanding=True)))


def _find(session: Session, device_id: int, client_sale_ids) -> dict:
    """The terminal's stored sales among ``client_sale_ids``, by sale id: rows of ``id, client_sale_id,
    content_hash, status, result, received_at``."""
    return {row.client_sale_id: row for row in session.execute(
        _FIND, {"device_id": device_id, "ids": sorted(client_sale_ids)})}


def _process(ctx, session: Session, device: PosDevice, part: list, rules: _Rules) -> list[dict]:
    """The answers for ``part`` (a chunk), set-based: the chunk is cut into runs of distinct sale ids
    (a sale id sent twice in one chunk is answered as if sent in a later chunk), each run handled by
    :func:`_run` in a few statements."""
    results: list[dict | None] = [None] * len(part)
    run: list[tuple] = []
    in_run: set[str] = set()  # the run's sale ids
    for i, raw in enumerate(part):
        try:
            sale = parse_sale(raw)
            merged = _merged_lines(sale)
        except InvalidSale as exc:
            cid = raw.get("client_sale_id") if isinstance(raw, dict) else None
            results[i] = {"client_sale_id": cid if isinstance(cid, str) else None, "status": "rejected",
                          "reason": f"invalid sale: {exc}", "stored": False}
            continue
        if sale["client_sale_id"] in in_run:
            _run(ctx, session, device, run, rules, results)
            run, in_run = [], set()
        run.append((i, raw, sale, merged, content_hash(sale)))
        in_run.add(sale["client_sale_id"])
    _run(ctx, session, device, run, rules, results)
    return results


class _Claim:
    """A new ``pos_sales`` row of this run, not yet written: its id is taken up front
    (:func:`core.bulk.new_ids`), :func:`_accept` or :func:`_reject` decide its status and result, and
    :func:`_insert_claims` inserts the run's rows with those final values in one statement (no ORM
    object: nothing else reads these rows in the transaction)."""

    __slots__ = ("id", "client_sale_id", "device_seq", "values", "status", "reason", "order_id", "total_fen",
                 "flags", "result")

    def __init__(self, values: dict) -> None:
        self.values = values  # the columns fixed on receipt, with the id
        self.id, self.client_sale_id, self.device_seq = values["id"], values["client_sale_id"], values["device_seq"]
        self.status, self.reason, self.order_id, self.total_fen, self.flags, self.result = \
            "rejected", "", None, 0, [], {}


def _run(ctx, session: Session, device: PosDevice, run: list[tuple], rules: _Rules, results: list) -> None:
    """Sales with distinct ids: one query finds the known ones, the new ones get their ids, then
    :func:`_evaluate` records them and :func:`_insert_claims` inserts the new rows, before anything
    referring to them is flushed. Should another transaction have recorded one of the new ids first,
    an INSERT (of its order or of its row) fails on a UNIQUE key and :func:`_chunk` takes the chunk again."""
    if not run:
        return
    known = _find(session, device.id, [entry[2]["client_sale_id"] for entry in run])
    new = [i for i, _raw, sale, _merged, _digest in run if sale["client_sale_id"] not in known]
    ids = iter(new_ids(session.connection(), PosSale.__table__, len(new)) if new else ())
    again = sorted(row.id for row in known.values() if row.status != "accepted")  # rows that may be taken again
    stored = {row.id: row for row in session.scalars(select(PosSale).where(PosSale.id.in_(again)))} if again else {}
    fresh: dict[int, _Claim] = {}
    todo = []
    for i, raw, sale, merged, digest in run:
        existing = known.get(sale["client_sale_id"])
        if existing is None:
            fresh[i] = row = _Claim({
                "id": next(ids), "device_id": device.id, "store_id": device.store_id,
                "client_sale_id": sale["client_sale_id"], "device_seq": sale["device_seq"], "content_hash": digest,
                "sold_at": sale["sold_at"], "received_at": rules.received_at, "clock_offset_s": rules.clock_offset_s,
                "attempts": 1})
            todo.append((i, row, sale, merged))
        elif existing.content_hash != digest:
            _flag(session, device, "content_mismatch", sale_id=existing.id, client_sale_id=sale["client_sale_id"],
                  detail=f"sale {sale['client_sale_id']!r} was received on {existing.received_at.isoformat()} with "
                         "other content; the new content is refused and kept here for review",
                  payload=raw, dedupe_key=f"mismatch:{device.id}:{sale['client_sale_id']}:{digest}")
            results[i] = {"client_sale_id": sale["client_sale_id"], "status": "rejected", "sale_id": existing.id,
                          "reason": "this sale id was already received with different content: the stored sale is "
                                    "kept and the difference is flagged for review", "flagged": True}
        elif existing.status == "accepted":
            results[i] = {**existing.result, "status": "duplicate"}
        else:
            row = stored[existing.id]  # taken again (rare): the row itself, to update
            row.attempts += 1
            todo.append((i, row, sale, merged))
    if todo:
        _evaluate(ctx, session, device, todo, fresh, rules, results)
        _insert_claims(session, list(fresh.values()))
        session.flush()  # then the flags and discrepancies (of the new rows too) and the rows taken again


def _insert_claims(session: Session, claims: list[_Claim]) -> None:
    if claims:
        now = utcnow()
        insert_values(session.connection(), PosSale.__table__, [
            {**c.values, "status": c.status, "reason": c.reason, "order_id": c.order_id, "total_fen": c.total_fen,
             "flags": c.flags, "result": c.result, "updated_at": now} for c in claims])


def _precheck(session: Session, sale: dict, rules: _Rules) -> str | None:
    if sale["redeem_points"]:
        return "points cannot be redeemed offline: they are earned when the sale syncs"
    rx = [l["product_id"] for l in sale["lines"]
          if (p := session.get(Product, l["product_id"])) is not None and p.rx_class == "rx"]
    if rx and not rules.rx_review:
        return f"{RX_WITHOUT_REVIEW} (product {', '.join(map(str, rx))})"
    if rx and not sale["prescription_id"]:
        return f"{RX_WITHOUT_PRESCRIPTION} (product {', '.join(map(str, rx))})"
    return None


def _reject(row: PosSale, reason: str) -> dict:
    row.status, row.reason, row.order_id, row.total_fen = "rejected", reason[:2000], None, 0
    row.result = {"client_sale_id": row.client_sale_id, "status": "rejected", "sale_id": row.id, "reason": reason}
    return dict(row.result)


def _evaluate(ctx, session: Session, device: PosDevice, todo: list[tuple], fresh: dict[int, _Claim],
              rules: _Rules, results: list) -> None:
    """Check and record ``todo`` (``(i, row, sale, merged)``: a new row of this run, or a known one taken
    again) through the core's :func:`core.orders.record_sales`: a refused sale is rejected alone, the
    others are accepted with their flags. ``fresh``: ``{i: claim}``, the run's new rows, not yet written
    (a device sequence number is only "reused" by a sale received before this one, as if the chunk were
    taken sale by sale). The flags and discrepancies added are left unflushed: the caller writes the new
    rows they refer to first."""
    if not todo:
        return
    pids = {l["product_id"] for _i, _row, sale, _m in todo for l in sale["lines"]}
    # loaded once into the identity map (which holds them only while referenced: kept until the end)
    products = session.scalars(select(Product).where(Product.id.in_(sorted(pids)))).all()
    candidates = []
    for i, row, sale, merged in todo:
        reason = _precheck(session, sale, rules)
        if reason is not None:
            results[i] = _reject(row, reason)
        else:
            candidates.append((i, row, sale, merged))
    recorded = core_orders.record_sales(ctx, session, store_id=device.store_id, channel=CHANNEL,
                                        caller=device_caller(device), sales=[_core_sale(device, sale, merged)
                                                                             for _i, _row, sale, merged in candidates])
    seqs = {sale["device_seq"] for (_i, _row, sale, _m), got in zip(candidates, recorded)
            if not isinstance(got, DomainError)}
    used: dict[int, list[int]] = {}
    fresh_order = {claim.id: j for j, claim in fresh.items()}
    if seqs:
        # the sales stored before this run (the run's new rows are not written yet) ...
        for sid, seq in session.execute(select(PosSale.id, PosSale.device_seq).where(
                PosSale.device_id == device.id, PosSale.device_seq.in_(sorted(seqs)))):
            used.setdefault(seq, []).append(sid)
        # ... and the run's new ones, whatever their status (taken below only when received earlier)
        for claim in fresh.values():
            if claim.device_seq in seqs:
                used.setdefault(claim.device_seq, []).append(claim.id)
    # no autoflush: a discrepancy or flag of a new row must wait for the row (stale_price queries)
    with session.no_autoflush:
        for (i, row, sale, merged), got in zip(candidates, recorded):
            if isinstance(got, DomainError):
                results[i] = _reject(row, got.detail)
                continue
            twin = next((sid for sid in used.get(sale["device_seq"], ())
                         if sid != row.id and (sid not in fresh_order or fresh_order[sid] < i)), None)
            results[i] = _accept(session, device, row, sale, merged, got, twin, rules)
    del products


def _core_sale(device: PosDevice, sale: dict, merged: list[dict]) -> dict:
    cid = sale["client_sale_id"]
    extra = {"pos": {"device_id": device.id, "client_sale_id": cid, "device_seq": sale["device_seq"],
                     "line_ids": [m["line_ids"] for m in merged]}}
    for key in ("buyer_id_number", "prescription_id", "note"):
        if sale[key] is not None:
            extra[key] = sale[key]
    return {"lines": [{k: m[k] for k in ("product_id", "quantity", "unit_price_fen", "lot_no")} for m in merged],
            "customer_id": sale["customer_id"], "extra": extra, "sold_at": sale["sold_at"],
            "payments": sale["payments"], "idempotency_key": f"pos:{device.id}:{cid}"}


def _accept(session: Session, device: PosDevice, row: PosSale, sale: dict, merged: list[dict], recorded,
            twin: int | None, rules: _Rules) -> dict:
    order, shortfalls = recorded
    cid = sale["client_sale_id"]
    flags: list[str] = []
    discrepancies = []
    for short in shortfalls:
        m = merged[short["line"]]
        session.add(PosStockDiscrepancy(store_id=device.store_id, product_id=short["product_id"], device_id=device.id,
                                        sale_id=row.id, order_id=order.id, client_sale_id=cid,
                                        line_id=m["line_ids"][0], quantity_short=short["short"],
                                        created_at=rules.received_at))
        discrepancies.append({"line_id": m["line_ids"][0], "product_id": short["product_id"], "short": short["short"]})
    if discrepancies:
        flags.append("stock_discrepancy")
    stale = []
    for line in sale["lines"]:
        if line["price_list_version"] < rules.price_version:
            why = prices.stale_price(session, line["product_id"], line["price_list_version"], line["unit_price_fen"],
                                     sale["sold_at"], rules.staleness)
            if why is not None:
                stale.append({"line_id": line["line_id"], **why})
    if stale:
        flags.append("stale_price")
        _flag(session, device, "stale_price", sale_id=row.id, client_sale_id=cid, payload=stale,
              detail=f"{len(stale)} line(s) sold at a price-list version older than allowed")
    drift = rules.clock_offset_s is not None and abs(rules.clock_offset_s) > rules.drift.total_seconds()
    ahead = sale["sold_at"] > rules.received_at + rules.drift
    if drift or ahead:
        flags.append("clock_drift")
    if ahead:  # an upload-wide offset is flagged once per upload (see _finish); this one is the sale's own
        _flag(session, device, "clock_drift", sale_id=row.id, client_sale_id=cid,
              detail=f"the sale is dated {int((sale['sold_at'] - rules.received_at).total_seconds())} s after the "
                     "server received it: the terminal's clock is wrong")
    if twin is not None:
        flags.append("sequence_reused")
        _flag(session, device, "sequence_reused", sale_id=row.id, client_sale_id=cid,
              detail=f"device sequence number {sale['device_seq']} was already used by another sale (#{twin}): "
                     "the terminal database may have been restored or copied")
    row.status, row.reason, row.order_id, row.total_fen = "accepted", "", order.id, order.total_fen
    row.flags = flags
    row.result = {"client_sale_id": cid, "status": "accepted", "sale_id": row.id, "order_id": order.id,
                  "total_fen": order.total_fen, "flags": flags, "discrepancies": discrepancies}
    return dict(row.result)


def _flag(session: Session, device: PosDevice, kind: str, *, detail: str, sale_id: int | None = None,
          client_sale_id: str | None = None, payload=None, dedupe_key: str | None = None) -> None:
    """A flag for review. Without ``dedupe_key`` it is only added to the session (flushed after the run's
    new ``pos_sales`` rows are written: :func:`_accept` flags those); with one it is written at once, in a
    SAVEPOINT, so its ``sale_id`` must be a row already written (a known sale's, as for content_mismatch)."""
    flag = PosSaleFlag(device_id=device.id, store_id=device.store_id, sale_id=sale_id, client_sale_id=client_sale_id,
                       kind=kind, detail=detail[:2000], payload=payload, dedupe_key=dedupe_key, created_at=utcnow())
    if dedupe_key is None:
        session.add(flag)
        return
    if session.scalar(select(PosSaleFlag.id).where(PosSaleFlag.dedupe_key == dedupe_key)) is not None:
        return
    try:
        with session.begin_nested():
            session.add(flag)
            session.flush()
    except IntegrityError:
        pass  # flagged by a concurrent upload


def _finish(ctx, device_id: int, results: list[dict], queued: int | None, rules: _Rules) -> None:
    """The terminal's bookkeeping for sync-status (and one clock-drift flag per upload)."""
    for attempt in range(5):
        try:
            with ctx.transaction() as session:
                device = get_device(session, device_id, lock=True)
                device.last_upload_at = device.last_contact_at = rules.received_at
                device.last_clock_offset_s = rules.clock_offset_s
                if queued is not None:
                    device.queued = max(0, queued - len(results))
                ids = [r["sale_id"] for r in results if r["status"] == "accepted"]
                if ids:
                    oldest = session.scalar(select(PosSale.sold_at).where(PosSale.id.in_(ids))
                                            .order_by(PosSale.sold_at).limit(1))
                    device.last_lag_s = min(INT32_MAX, max(0, int((rules.received_at - oldest).total_seconds())))
                if rules.clock_offset_s is not None and abs(rules.clock_offset_s) > rules.drift.total_seconds():
                    _flag(session, device, "clock_drift",
                          detail=f"the terminal's clock was {rules.clock_offset_s:+d} s off the server's at upload "
                                 f"(allowed: {int(rules.drift.total_seconds())} s); sale times may be wrong")
            return
        except DBAPIError as exc:
            if attempt == 4 or not _retryable(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
