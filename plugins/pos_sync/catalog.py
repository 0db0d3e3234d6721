"""Catalogue pull: products, prices, sale restrictions and the terminal's store stock, by cursor.

A pull pages through two keyset streams, products then the store's lots,
each ordered by ``(updated_at, id)``; the cursor carries the last position
in both plus the price-list version, signed with the database's own key.
A terminal stores the cursor with the page it applied (one local
transaction), so an interrupted pull resumes where it stopped, without loss
or repeats. A cursor that does not verify (another database, edited,
another store) or that points past the server's data (a database restored
from a backup) starts a full resync: the answer says ``reset: true`` and the
terminal drops its copy before applying it.

Rows are only served once every transaction that could still commit an
older stamp is over: concurrent PostgreSQL writers commit in another order
than they stamp, and a row stamped before the cursor but committed after it
would otherwise be skipped. On PostgreSQL the horizon is the start of the
oldest transaction still writing, less ``[pos_sync] catalog_settle_seconds``
(default 5 s, a margin for clock differences between app servers); SQLite
writers are serialized, so there is nothing to wait for (default 0).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

from sqlalchemy import and_, func, or_, select, text

from core import catalog as core_catalog
from core import orders as core_orders
from core.db import is_sqlite, utcnow
from core.errors import ValidationFailed
from core.models import Product, StockLot

from . import prices
from .devices import device_caller
from .models import PosDevice, PosProductPrice
from .rules import CHANNEL, offline_restrictions

__all__ = ["pull", "encode_cursor", "decode_cursor", "MAX_PAGE", "DEFAULT_PAGE"]

MAX_PAGE = 1000
DEFAULT_PAGE = 500
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(key: str, position: dict) -> str:
    body = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    sig = hmac.new(key.encode(), body, hashlib.sha256).digest()[:16]
    return f"{_b64(body)}.{_b64(sig)}"


def decode_cursor(key: str, cursor: str) -> dict | None:
    """The position a cursor stands for, or ``None`` if this database did not issue it."""
    try:
        body_b64, sig_b64 = cursor.split(".")
        body = _unb64(body_b64)
        if not hmac.compare_digest(hmac.new(key.encode(), body, hashlib.sha256).digest()[:16], _unb64(sig_b64)):
            return None
        pos = json.loads(body)
        if pos.get("v") != 1:
            return None
        for k in ("pt", "lt"):
            pos[k] = dt.datetime.fromisoformat(pos[k])
        return pos
    except Exception:  # anything that does not parse is unknown: a full resync, never an error
        return None


def _start(store_id: int) -> dict:
    return {"v": 1, "s": store_id, "pt": _EPOCH, "pi": 0, "lt": _EPOCH, "li": 0, "pv": 0}


def _after(column_t, column_id, t, i):
    return or_(column_t > t, and_(column_t == t, column_id > i))


_OLDEST_WRITER = text(
    "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
    "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()")


def _horizon(ctx, session, now: dt.datetime) -> dt.datetime:
    """Rows stamped after this may still have uncommitted company: serve them next time.

    SQLite: now (writers are serialized). PostgreSQL: ``catalog_settle_seconds``
    before now, and before the start of the oldest transaction that is still
    writing (a long import stamps its rows early and commits late).
    """
    if is_sqlite(session.get_bind()):
        settle = float(ctx.setting("pos_sync.catalog_settle_seconds", 0))
        return now - dt.timedelta(seconds=settle)
    settle = dt.timedelta(seconds=float(ctx.setting("pos_sync.catalog_settle_seconds", 5)))
    horizon = now - settle
    oldest = session.scalar(_OLDEST_WRITER)
    if oldest is not None:
        horizon = min(horizon, oldest - settle)
    return horizon


def _known(session, pos: dict, store_id: int, version: int) -> bool:
    """Whether the server's data reaches as far as the cursor (else it was restored from a backup)."""
    if pos.get("s") != store_id or not isinstance(pos.get("pi"), int) or not isinstance(pos.get("li"), int):
        return False
    if pos.get("pv", 0) > version:
        return False
    if pos["pi"]:
        top = session.scalar(select(func.max(Product.updated_at)))
        if top is None or pos["pt"] > top or session.get(Product, pos["pi"]) is None:
            return False
    if pos["li"]:
        top = session.scalar(select(func.max(StockLot.updated_at)).where(StockLot.store_id == store_id))
        lot = session.get(StockLot, pos["li"])
        if top is None or pos["lt"] > top or lot is None or lot.store_id != store_id:
            return False
    return True


def _limit(limit) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed.one("limit", f"must be an integer from 1 to {MAX_PAGE}")
    return limit


def pull(ctx, device: PosDevice, since: str | None = None, limit: int | None = None, *,
         now: dt.datetime | None = None) -> dict:
    """One page of what changed for ``device`` since the cursor ``since`` (``None``: everything)."""
    limit = _limit(limit)
    now = now or utcnow()
    version = prices.refresh(ctx, now=now)
    caller = device_caller(device)
    online = [name for name, info in core_orders.channels(ctx.registry).items() if info.get("online")]
    with ctx.session() as session:
        key = prices.state(session).cursor_key
        reset = False
        pos = None
        if since:
            pos = decode_cursor(key, since)
            if pos is None or not _known(session, pos, device.store_id, version):
                pos, reset = None, True
        if pos is None:
            pos = _start(device.store_id)
        horizon = _horizon(ctx, session, now)
        rows = session.execute(
            select(Product, PosProductPrice.version)
            .outerjoin(PosProductPrice, PosProductPrice.product_id == Product.id)
            .where(_after(Product.updated_at, Product.id, pos["pt"], pos["pi"]), Product.updated_at <= horizon)
            .order_by(Product.updated_at, Product.id).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        products = []
        for product, pversion in rows:
            products.append(_product(ctx, product, pversion, caller, online))
            pos["pt"], pos["pi"] = product.updated_at, product.id
        lots = []
        room = limit - len(rows)
        if not more and room > 0:
            found = session.scalars(
                select(StockLot).where(StockLot.store_id == device.store_id,
                                       _after(StockLot.updated_at, StockLot.id, pos["lt"], pos["li"]),
                                       StockLot.updated_at <= horizon)
                .order_by(StockLot.updated_at, StockLot.id).limit(room + 1)).all()
            more = len(found) > room
            today = now.date()
            for lot in found[:room]:
                sellable = lot.expiry > today  # a lot is never sold on or after its expiry day
                lots.append({"lot_id": lot.id, "product_id": lot.product_id, "lot_no": lot.lot_no,
                             "expiry": lot.expiry.isoformat(), "on_hand": lot.on_hand, "reserved": lot.reserved,
                             "available": max(0, lot.on_hand - lot.reserved) if sellable else 0,
                             "sellable": sellable, "updated_at": lot.updated_at.isoformat()})
                pos["lt"], pos["li"] = lot.updated_at, lot.id
        else:
            more = True
        pos["pv"] = version
        cursor = encode_cursor(key, {**pos, "pt": pos["pt"].isoformat(), "lt": pos["lt"].isoformat()})
    return {"reset": reset, "store_id": device.store_id, "price_list_version": version, "products": products,
            "stock": lots, "next_cursor": cursor, "has_more": more, "server_time": now.isoformat()}


def _product(ctx, product: Product, pversion: int | None, caller, online: list[str]) -> dict:
    data = core_catalog.serialize_product(ctx.registry, product, CHANNEL, caller)  # plugins' fields included
    data.pop("package_insert", None)  # long text a till does not need, 50k times over
    data["price_list_version"] = pversion
    online_reasons: list[str] = []
    for channel in online:
        for reason in core_catalog.sale_refusals(ctx.registry, product, channel, caller):
            if reason not in online_reasons:
                online_reasons.append(reason)
    data["restrictions"] = {"offline": offline_restrictions(ctx, product, caller),
                            "online": {"allowed": not online_reasons and not product.online_banned,
                                       "reasons": online_reasons}}
    return data
