"""Reports for the dashboard: sales per day, store and channel; near-expiry stock value; the open order queue.

Days are the chain's local days (``[reports] timezone``, default
Asia/Shanghai): "today" starts at local midnight. Sales are orders paid in
the period that are still paid, ready, dispatched or completed (refunded and
cancelled orders are not sales), at their order total. Stock value is
on-hand units at the product's current retail price (the catalogue has no
cost price). A store-bound manager sees their own store only.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field
from sqlalchemy import and_, case, func, select

from ... import orders as order_service
from ...db import UTCDateTime, utcnow
from ...errors import ValidationFailed
from ...models import Order, Product, StockLot, Store
from ...stock import today_utc
from ..access import check_store, store_scope
from ..operations import operation
from ..schemas import Id, Out, Query

__all__ = ["SalesReport", "NearExpiryReport", "OrderQueueReport", "DEFAULT_TIMEZONE", "SOLD_STATUSES",
           "OPEN_STATUSES", "report_timezone"]

MANAGERS = ("admin", "store_manager")
DEFAULT_TIMEZONE = "Asia/Shanghai"
SOLD_STATUSES = ("paid", "ready", "dispatched", "completed")
OPEN_STATUSES = ("awaiting_review", "awaiting_payment", "paid", "ready", "dispatched")
REVIEW_BUCKETS = ((15 * 60, "under 15 min"), (60 * 60, "15-60 min"), (4 * 3600, "1-4 h"), (None, "over 4 h"))
MAX_ITEMS = 500
SCOPE = "A store-bound manager sees their own store only (403 for another store)."


def report_timezone(ctx) -> ZoneInfo:
    """``[reports] timezone``; a name that is not a time zone is a configuration error (a 500, logged)."""
    name = str(ctx.setting("reports.timezone", DEFAULT_TIMEZONE))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuntimeError(f"configuration [reports] timezone = {name!r} is not an IANA time zone "
                           "(e.g. Asia/Shanghai)") from None


def _scoped_store(req, store_id: int | None) -> int | None:
    caller = req.context.caller
    if store_id is not None:
        check_store(caller, store_id, field="store_id")
        if req.context.session.get(Store, store_id) is None:
            raise ValidationFailed.one("store_id", f"store {store_id} does not exist")
        return store_id
    return store_scope(caller)


def _stores(session, store_id: int | None) -> list[dict]:
    q = select(Store).order_by(Store.id)
    if store_id is not None:
        q = q.where(Store.id == store_id)
    return [{"id": s.id, "code": s.code, "name": s.name, "active": s.active} for s in session.scalars(q)]


def _local_day(session, column, tz: ZoneInfo):
    """The local calendar day of a UTC timestamp column, as 'YYYY-MM-DD', in SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone(tz.key, column), "YYYY-MM-DD")
    offset = int(utcnow().astimezone(tz).utcoffset().total_seconds() // 60)  # SQLite: today's offset
    return func.date(column, f"{offset:+d} minutes")


# ------------------------------------------------------------------ schemas

class StoreRef(Out):
    id: int
    code: str
    name: str
    active: bool


class ChannelRef(Out):
    name: str
    label: str
    online: bool | None = Field(description="null for a channel no longer registered (its plugin is disabled)")


class SalesRow(Out):
    date: dt.date = Field(description="the local day")
    store_id: int
    channel: str
    online: bool | None
    orders: int
    total_fen: int


class SalesTotals(Out):
    orders: int
    total_fen: int
    online_fen: int
    offline_fen: int


class SalesOut(Out):
    timezone: str
    today: dt.date
    start: dt.date = Field(description="the first local day of the period")
    days: int
    stores: list[StoreRef]
    channels: list[ChannelRef]
    rows: list[SalesRow] = Field(description="one row per day, store and channel with sales")
    today_totals: SalesTotals
    period_totals: SalesTotals


class SalesQuery(Query):
    days: Annotated[int, Field(ge=1, le=366, description="the period: today and the days before it")] = 30
    store_id: Id | None = None


class NearExpiryItem(Out):
    store_id: int
    product_id: int
    sku: str
    generic_name: str
    specification: str
    lot_id: int
    lot_no: str
    expiry: dt.date
    days_left: int = Field(description="0 or less: expired (not sellable)")
    on_hand: int
    value_fen: int
    expired: bool


class NearExpiryStore(Out):
    store_id: int
    expired_lots: int
    expired_units: int
    expired_fen: int
    near_lots: int
    near_units: int
    near_fen: int


class NearExpiryOut(Out):
    today: dt.date
    days: int
    stores: list[StoreRef]
    by_store: list[NearExpiryStore]
    expired_fen: int
    near_fen: int
    items: list[NearExpiryItem] = Field(description=f"lots by expiry, at most {MAX_ITEMS}")
    truncated: bool


class NearExpiryQuery(Query):
    days: Annotated[int, Field(ge=1, le=730, description="'near' means expiring within this many days")] = 90
    store_id: Id | None = None


class QueueStatus(Out):
    status: str
    count: int
    oldest_since: AwareDatetime | None = Field(description="when the longest-waiting order started waiting")
    oldest_age_seconds: int | None


class QueueStore(Out):
    store_id: int
    status: str
    count: int
    oldest_since: AwareDatetime | None


class ReviewBucket(Out):
    label: str
    count: int


class WaitingOrder(Out):
    id: int
    store_id: int
    channel: str
    total_fen: int
    created_at: AwareDatetime
    age_seconds: int
    hold_reasons: list[str]


class QueueOut(Out):
    now: AwareDatetime
    stores: list[StoreRef]
    statuses: list[QueueStatus]
    by_store: list[QueueStore]
    review_ages: list[ReviewBucket]
    awaiting_review: list[WaitingOrder] = Field(description="the 20 longest-waiting orders awaiting review")


class StoreQueryOnly(Query):
    store_id: Id | None = None


# ---------------------------------------------------------------- resources

def _totals(rows: list[dict]) -> dict:
    return {"orders": sum(r["orders"] for r in rows), "total_fen": sum(r["total_fen"] for r in rows),
            "online_fen": sum(r["total_fen"] for r in rows if r["online"] is True),
            "offline_fen": sum(r["total_fen"] for r in rows if r["online"] is not True)}


class SalesReport:
    @operation("reports.sales", roles=MANAGERS, query=SalesQuery, response=SalesOut, tags=("reports",),
               summary="Sales per local day, store and channel (online or in store)",
               description="Orders paid in the period and not refunded, at their total. " + SCOPE)
    def on_get(self, req, resp):
        q, session, ctx = req.context.query, req.context.session, req.context.ctx
        store_id = _scoped_store(req, q.store_id)
        tz = report_timezone(ctx)
        now_local = utcnow().astimezone(tz)
        today = now_local.date()
        start = today - dt.timedelta(days=q.days - 1)
        start_utc = dt.datetime.combine(start, dt.time(0), tzinfo=tz).astimezone(dt.timezone.utc)
        day = _local_day(session, Order.paid_at, tz)
        where = [Order.paid_at.is_not(None), Order.paid_at >= start_utc, Order.status.in_(SOLD_STATUSES)]
        if store_id is not None:
            where.append(Order.store_id == store_id)
        inner = select(day.label("day"), Order.store_id, Order.channel, Order.total_fen).where(*where).subquery()
        grouped = session.execute(
            select(inner.c.day, inner.c.store_id, inner.c.channel, func.count(), func.sum(inner.c.total_fen))
            .group_by(inner.c.day, inner.c.store_id, inner.c.channel)
            .order_by(inner.c.day, inner.c.store_id, inner.c.channel)).all()
        known = order_service.channels(ctx.registry)
        channels = [{"name": n, "label": c.get("label", n), "online": bool(c.get("online"))}
                    for n, c in sorted(known.items())]
        rows = []
        for day_text, sid, channel, count, total in grouped:
            if channel not in known and all(c["name"] != channel for c in channels):
                channels.append({"name": channel, "label": f"{channel} (not registered now)", "online": None})
            online = bool(known[channel].get("online")) if channel in known else None
            rows.append({"date": str(day_text)[:10], "store_id": sid, "channel": channel, "online": online,
                         "orders": int(count), "total_fen": int(total or 0)})
        resp.media = {
            "timezone": tz.key, "today": today.isoformat(), "start": start.isoformat(), "days": q.days,
            "stores": _stores(session, store_id), "channels": channels, "rows": rows,
            "today_totals": _totals([r for r in rows if r["date"] == today.isoformat()]),
            "period_totals": _totals(rows),
        }


class NearExpiryReport:
    @operation("reports.near_expiry", roles=MANAGERS, query=NearExpiryQuery, response=NearExpiryOut,
               tags=("reports",), summary="Stock expired or expiring soon, with its value per store",
               description="Lots with units on hand whose expiry is within `days` (default 90) or past; "
                           "value at the current retail price. " + SCOPE)
    def on_get(self, req, resp):
        q, session = req.context.query, req.context.session
        store_id = _scoped_store(req, q.store_id)
        today = today_utc()  # the same day the stock's "expired" flag uses
        limit_day = today + dt.timedelta(days=q.days)
        where = [StockLot.on_hand > 0, StockLot.expiry <= limit_day]
        if store_id is not None:
            where.append(StockLot.store_id == store_id)
        expired = StockLot.expiry <= today
        value = StockLot.on_hand * Product.price_fen
        summary = session.execute(
            select(StockLot.store_id,
                   func.sum(case((expired, 1), else_=0)), func.sum(case((expired, StockLot.on_hand), else_=0)),
                   func.sum(case((expired, value), else_=0)),
                   func.sum(case((expired, 0), else_=1)), func.sum(case((expired, 0), else_=StockLot.on_hand)),
                   func.sum(case((expired, 0), else_=value)))
            .join(Product, Product.id == StockLot.product_id).where(*where)
            .group_by(StockLot.store_id).order_by(StockLot.store_id)).all()
        by_store = [{"store_id": r[0], "expired_lots": int(r[1] or 0), "expired_units": int(r[2] or 0),
                     "expired_fen": int(r[3] or 0), "near_lots": int(r[4] or 0), "near_units": int(r[5] or 0),
                     "near_fen": int(r[6] or 0)} for r in summary]
        lots = session.execute(
            select(StockLot, Product).join(Product, Product.id == StockLot.product_id).where(*where)
            .order_by(StockLot.expiry, StockLot.store_id, StockLot.id).limit(MAX_ITEMS + 1)).all()
        items = [{"store_id": lot.store_id, "product_id": p.id, "sku": p.sku, "generic_name": p.generic_name,
                  "specification": p.specification, "lot_id": lot.id, "lot_no": lot.lot_no,
                  "expiry": lot.expiry.isoformat(), "days_left": (lot.expiry - today).days, "on_hand": lot.on_hand,
                  "value_fen": lot.on_hand * p.price_fen, "expired": lot.expiry <= today}
                 for lot, p in lots[:MAX_ITEMS]]
        resp.media = {"today": today.isoformat(), "days": q.days, "stores": _stores(session, store_id),
                      "by_store": by_store, "expired_fen": sum(s["expired_fen"] for s in by_store),
                      "near_fen": sum(s["near_fen"] for s in by_store), "items": items,
                      "truncated": len(lots) > MAX_ITEMS}


def waiting_since_column():
    """When an open order started waiting in its current state: paid orders since payment,
    ready/dispatched ones since their last change, the others since they were placed."""
    return case((Order.status == "paid", Order.paid_at),
                (Order.status.in_(("ready", "dispatched")), Order.updated_at), else_=Order.created_at)


class OrderQueueReport:
    @operation("reports.order_queue", roles=MANAGERS, query=StoreQueryOnly, response=QueueOut, tags=("reports",),
               summary="Open orders per state and store, with how long they have waited",
               description="Orders awaiting review, awaiting payment, paid (to prepare), ready for pickup or "
                           "dispatched; the age buckets and the longest-waiting orders awaiting review. " + SCOPE)
    def on_get(self, req, resp):
        q, session = req.context.query, req.context.session
        store_id = _scoped_store(req, q.store_id)
        now = utcnow()
        where = [Order.status.in_(OPEN_STATUSES)]
        if store_id is not None:
            where.append(Order.store_id == store_id)
        inner = select(Order.store_id, Order.status, waiting_since_column().label("since")).where(*where).subquery()
        grouped = session.execute(select(inner.c.store_id, inner.c.status, func.count(), func.min(inner.c.since))
                                  .group_by(inner.c.store_id, inner.c.status)
                                  .order_by(inner.c.store_id, inner.c.status)).all()
        conv = UTCDateTime().process_result_value
        dialect = session.get_bind().dialect

        def aware(value):
            if isinstance(value, str):  # SQLite returns min() of a timestamp as text
                value = dt.datetime.fromisoformat(value)
            return conv(value, dialect) if value is not None else None

        by_store = [{"store_id": sid, "status": status, "count": int(n), "oldest_since": aware(since)}
                    for sid, status, n, since in grouped]
        statuses = []
        for status in OPEN_STATUSES:
            mine = [r for r in by_store if r["status"] == status]
            oldest = min((r["oldest_since"] for r in mine if r["oldest_since"] is not None), default=None)
            statuses.append({"status": status, "count": sum(r["count"] for r in mine),
                             "oldest_since": oldest.isoformat() if oldest else None,
                             "oldest_age_seconds": int((now - oldest).total_seconds()) if oldest else None})
        review = [Order.status == "awaiting_review"] + where[1:]
        bounds, previous = [], None
        for seconds, label in REVIEW_BUCKETS:
            cond = []
            if seconds is not None:
                cond.append(Order.created_at > now - dt.timedelta(seconds=seconds))
            if previous is not None:
                cond.append(Order.created_at <= now - dt.timedelta(seconds=previous))
            bounds.append((label, and_(*cond) if cond else None))
            previous = seconds
        counts = session.execute(select(*[func.sum(case((c, 1), else_=0)) if c is not None else func.count()
                                          for _, c in bounds]).where(*review)).one()
        oldest = session.scalars(select(Order).where(*review).order_by(Order.created_at, Order.id).limit(20)).all()
        resp.media = {
            "now": now.isoformat(), "stores": _stores(session, store_id), "statuses": statuses,
            "by_store": [dict(r, oldest_since=r["oldest_since"].isoformat() if r["oldest_since"] else None)
                         for r in by_store],
            "review_ages": [{"label": label, "count": int(n or 0)} for (label, _), n in zip(bounds, counts)],
            "awaiting_review": [{"id": o.id, "store_id": o.store_id, "channel": o.channel, "total_fen": o.total_fen,
                                 "created_at": o.created_at.isoformat(),
                                 "age_seconds": int((now - o.created_at).total_seconds()),
                                 "hold_reasons": list(o.hold_reasons or [])} for o in oldest],
        }
