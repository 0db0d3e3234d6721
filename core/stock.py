"""Lot stock: receipts, adjustments, transfers, FEFO reservations and sales.

Every change appends a :class:`StockMovement` and updates the lot's
``on_hand``/``reserved`` counters in the same transaction; :func:`verify`
re-derives the counters from the movements. A lot is sellable while its
expiry date is after today (a lot is never sold on or after its expiry day).
Concurrency: on PostgreSQL the lots are locked (``FOR UPDATE``) before they
are read for allocation; on SQLite every transaction is ``BEGIN IMMEDIATE``.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer, String, bindparam, cast, func, insert, literal, null, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import audit, bulk
from .auth import Caller
from .db import utcnow
from .errors import InsufficientStock, NotFound, ValidationFailed
from .listing import MAX_LIMIT, Page, keyset
from .models import Product, StockLot, StockMovement, Store

__all__ = ["receive", "adjust", "transfer", "reserve_fefo", "reserve_fefo_many", "release", "sell_reserved", "return_to_stock",
           "on_hand", "verify", "sellable", "today_utc", "list_movements", "stock_by_product", "sell_direct",
           "lock_lots", "plan_direct", "book_direct", "DirectBooking"]


def today_utc() -> dt.date:
    return utcnow().date()


def sellable(lot: StockLot, today: dt.date | None = None) -> bool:
    return lot.expiry > (today or today_utc())


def _store(session: Session, store_id: int) -> Store:
    store = session.get(Store, store_id)
    if store is None:
        raise NotFound(f"store {store_id} does not exist")
    return store


def _product(session: Session, product_id: int, field: str = "product_id") -> Product:
    product = session.get(Product, product_id) if isinstance(product_id, int) else None
    if product is None:
        raise ValidationFailed.one(field, f"product {product_id!r} does not exist")
    return product


def _positive(quantity, field="quantity") -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ValidationFailed.one(field, "must be a positive integer")
    return quantity


def _lock(session: Session, lot_id: int) -> StockLot:
    return session.scalars(select(StockLot).where(StockLot.id == lot_id).with_for_update()).one()


def move(ctx, session: Session, lot: StockLot, kind: str, *, on_hand_delta: int = 0, reserved_delta: int = 0,
         reason: str = "", order_id: int | None = None, reference: str | None = None,
         actor: str = "system") -> StockMovement:
    """Append one movement and apply it to the lot; the stock hook sees it in this transaction."""
    movement = _movement(session, lot, kind, on_hand_delta=on_hand_delta, reserved_delta=reserved_delta,
                         reason=reason, order_id=order_id, reference=reference, actor=actor)
    session.flush()
    ctx.hook.stock_movement_recorded(session=session, movement=movement)
    return movement


def _movement(session: Session, lot: StockLot, kind: str, *, on_hand_delta: int = 0, reserved_delta: int = 0,
              reason: str = "", order_id: int | None = None, reference: str | None = None,
              actor: str = "system") -> StockMovement:
    """Apply one movement to the lot and add it to the session (not flushed: the caller flushes,
    then calls the stock hook, as :func:`move` does for one movement)."""
    lot.on_hand += on_hand_delta
    lot.reserved += reserved_delta
    movement = StockMovement(store_id=lot.store_id, product_id=lot.product_id, lot_id=lot.id, kind=kind,
                             on_hand_delta=on_hand_delta, reserved_delta=reserved_delta, reason=reason,
                             order_id=order_id, reference=reference, actor=actor, created_at=utcnow())
    session.add(movement)
    return movement


def receive(ctx, session: Session, store_id: int, product_id: int, lot_no: str, expiry: dt.date, quantity: int,
            caller: Caller, *, reference: str | None = None, today: dt.date | None = None) -> StockMovement:
    """Book a delivery into a lot (created on first receipt)."""
    _store(session, store_id)
    _product(session, product_id)
    _positive(quantity)
    if not isinstance(lot_no, str) or not lot_no.strip() or len(lot_no) > 64:
        raise ValidationFailed.one("lot_no", "is required (at most 64 characters)")
    if not isinstance(expiry, dt.date):
        raise ValidationFailed.one("expiry", "must be a date (YYYY-MM-DD)")
    if expiry <= (today or today_utc()):
        raise ValidationFailed.one("expiry", f"{expiry.isoformat()} has passed: expired goods are not received into sellable stock")
    lot_no = lot_no.strip()
    lot = session.scalars(select(StockLot).where(
        StockLot.store_id == store_id, StockLot.product_id == product_id, StockLot.lot_no == lot_no)
        .with_for_update()).one_or_none()
    if lot is None:
        lot = StockLot(store_id=store_id, product_id=product_id, lot_no=lot_no, expiry=expiry, on_hand=0, reserved=0)
        session.add(lot)
        session.flush()
    elif lot.expiry != expiry:
        raise ValidationFailed.one("expiry", f"lot {lot_no} is recorded with expiry {lot.expiry.isoformat()}, not {expiry.isoformat()}")
    return move(ctx, session, lot, "receipt", on_hand_delta=quantity, reference=reference, actor=caller.actor)


def _lot(session: Session, store_id: int, lot_id: int) -> StockLot:
    lot = session.scalars(select(StockLot).where(StockLot.id == lot_id).with_for_update()).one_or_none() \
        if isinstance(lot_id, int) else None
    if lot is None or lot.store_id != store_id:
        raise ValidationFailed.one("lot_id", f"lot {lot_id!r} does not exist in store {store_id}")
    return lot


def adjust(ctx, session: Session, store_id: int, lot_id: int, delta: int, reason: str, caller: Caller) -> StockMovement:
    """Correct a lot's on-hand (count, damage, loss) with a reason; audited."""
    _store(session, store_id)
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise ValidationFailed.one("delta", "must be a non-zero integer")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.one("reason", "is required for a stock adjustment")
    lot = _lot(session, store_id, lot_id)
    if delta < 0 and lot.on_hand - lot.reserved + delta < 0:
        raise InsufficientStock(
            f"lot {lot.lot_no} has {lot.on_hand - lot.reserved} unreserved units; cannot remove {-delta}",
            fields=[{"field": "delta", "message": "would take unreserved stock below zero"}])
    before = {"on_hand": lot.on_hand}
    movement = move(ctx, session, lot, "adjustment", on_hand_delta=delta, reason=reason.strip(), actor=caller.actor)
    audit.record(session, caller, "stock.adjust", "stock_lot", lot.id, before=before,
                 after={"on_hand": lot.on_hand}, detail=reason.strip())
    return movement


def transfer(ctx, session: Session, from_store_id: int, lot_id: int, to_store_id: int, quantity: int,
             caller: Caller) -> tuple[StockMovement, StockMovement]:
    """Move units of one lot to another store (same lot number and expiry there)."""
    _positive(quantity)
    _store(session, from_store_id)
    _store(session, to_store_id)
    if from_store_id == to_store_id:
        raise ValidationFailed.one("to_store_id", "must differ from the sending store")
    lot = _lot(session, from_store_id, lot_id)
    if lot.on_hand - lot.reserved < quantity:
        raise InsufficientStock(f"lot {lot.lot_no} has only {lot.on_hand - lot.reserved} unreserved units",
                                fields=[{"field": "quantity", "message": "exceeds unreserved stock"}])
    target = session.scalars(select(StockLot).where(
        StockLot.store_id == to_store_id, StockLot.product_id == lot.product_id, StockLot.lot_no == lot.lot_no)
        .with_for_update()).one_or_none()
    if target is None:
        target = StockLot(store_id=to_store_id, product_id=lot.product_id, lot_no=lot.lot_no, expiry=lot.expiry,
                          on_hand=0, reserved=0)
        session.add(target)
        session.flush()
    ref = f"transfer:{lot.id}->{target.id}:{utcnow().isoformat()}"
    out = move(ctx, session, lot, "transfer_out", on_hand_delta=-quantity, reference=ref, actor=caller.actor)
    inn = move(ctx, session, target, "transfer_in", on_hand_delta=quantity, reference=ref, actor=caller.actor)
    audit.record(session, caller, "stock.transfer", "stock_lot", lot.id,
                 after={"to_store_id": to_store_id, "quantity": quantity, "lot_no": lot.lot_no})
    return out, inn


def reserve_fefo(ctx, session: Session, store_id: int, product_id: int, quantity: int, *, order_id: int | None,
                 actor: str, today: dt.date | None = None, field: str = "quantity") -> list[tuple[StockLot, int]]:
    """Reserve ``quantity`` from the sellable lots, first expiring first.

    Raises :class:`InsufficientStock` (naming ``field``) when the sellable,
    unreserved units are not enough; expired lots are never taken.
    """
    return reserve_fefo_many(ctx, session, store_id, [(product_id, quantity, field)], order_id=order_id,
                             actor=actor, today=today)[0]


# the sellable lots of some products in a store, locked and read afresh, in (product, expiry, id) order
_LOCK_SELLABLE = (
    select(StockLot)
    .where(StockLot.store_id == bindparam("store_id"), StockLot.product_id.in_(bindparam("product_ids", expanding=True)),
           StockLot.expiry > bindparam("today"), StockLot.on_hand - StockLot.reserved > 0)
    .order_by(StockLot.product_id, StockLot.expiry, StockLot.id)
    .with_for_update().execution_options(populate_existing=True))
_INSERT_MOVEMENTS = insert(StockMovement.__table__)
_SET_RESERVED = (update(StockLot.__table__).where(StockLot.__table__.c.id == bindparam("lot_id"))
                 .values(reserved=bindparam("new_reserved"), updated_at=bindparam("at")))


def _reserve_statement():
    """PostgreSQL: a reservation's writes in one statement, the same for any number of lots (arrays,
    so that SQLAlchemy compiles it once)::

        WITH reserve AS (UPDATE stock_lots SET reserved = v.new_reserved, updated_at = :at
                         FROM unnest(:lot_ids, :new_reserved) AS v (lot_id, new_reserved) WHERE stock_lots.id = v.lot_id)
        INSERT INTO stock_movements (...) SELECT :movement_store_id, m.product_id, m.lot_id, 'reservation', 0, m.quantity, ...
        FROM unnest(:product_ids, :move_lot_ids, :quantities) AS m (product_id, lot_id, quantity)
    """
    lot_table, movement_table = StockLot.__table__, StockMovement.__table__
    at = bindparam("at", type_=lot_table.c.updated_at.type)
    new = func.unnest(bindparam("lot_ids", type_=postgresql.ARRAY(BigInteger)),
                      bindparam("new_reserved", type_=postgresql.ARRAY(Integer))) \
        .table_valued("lot_id", "new_reserved").render_derived()
    reserve = (update(lot_table).where(lot_table.c.id == new.c.lot_id)
               .values(reserved=new.c.new_reserved, updated_at=at).cte("reserve"))
    moves = func.unnest(bindparam("product_ids", type_=postgresql.ARRAY(BigInteger)),
                        bindparam("move_lot_ids", type_=postgresql.ARRAY(BigInteger)),
                        bindparam("quantities", type_=postgresql.ARRAY(Integer))) \
        .table_valued("product_id", "lot_id", "quantity").render_derived()
    columns = {"store_id": bindparam("movement_store_id", type_=BigInteger), "product_id": moves.c.product_id,
               "lot_id": moves.c.lot_id, "kind": literal("reservation", String), "on_hand_delta": literal(0, Integer),
               "reserved_delta": moves.c.quantity, "reason": literal("", String),
               "order_id": bindparam("movement_order_id", type_=BigInteger), "reference": cast(null(), String),
               "actor": bindparam("movement_actor", type_=String), "created_at": at}
    return insert(movement_table).from_select(list(columns), select(*columns.values())).add_cte(reserve)


_RESERVE_PG = _reserve_statement()


def reserve_fefo_many(ctx, session: Session, store_id: int, wants: list[tuple[int, int, str]], *,
                      order_id: int | None, actor: str,
                      today: dt.date | None = None) -> list[list[tuple[StockLot, int]]]:
    """Reserve several products at once (an order's lines), each FEFO as :func:`reserve_fefo` does.

    ``wants`` is ``[(product_id, quantity, field), ...]``; returns, in the same order, each one's
    ``[(lot, quantity), ...]``. One locking read takes every sellable lot of these products in
    (product, expiry, id) order -- the same order for every order, so two orders of the same
    products wait for each other instead of deadlocking --; the first want that cannot be served
    raises :class:`InsufficientStock` naming its ``field`` (nothing is written then). The writes
    are set-based, without the unit of work: one ``executemany`` UPDATE of the lots' ``reserved``
    and one INSERT of the movements (the lots and the new movements are left in the session as a
    flush would leave them), then the stock hook is called for each movement, in order. With no
    implementation of the hook the movements are written as rows only, no objects made for them,
    and on PostgreSQL together with the lots' update, in one statement (:func:`_reserve_statement`).
    """
    today = today or today_utc()
    product_ids = sorted({pid for pid, _q, _f in wants})
    lots = session.scalars(_LOCK_SELLABLE, {"store_id": store_id, "product_ids": product_ids, "today": today}).all()
    by_product: dict[int, list[StockLot]] = {pid: [] for pid in product_ids}
    reserved: dict[StockLot, int] = {}
    for lot in lots:
        by_product[lot.product_id].append(lot)
        reserved[lot] = lot.reserved
    result: list[list[tuple[StockLot, int]]] = []
    for product_id, quantity, field in wants:
        candidates = by_product[product_id]
        available = sum(max(0, lot.on_hand - reserved[lot]) for lot in candidates)
        if available < quantity:
            raise InsufficientStock(
                f"only {available} sellable unit(s) of product {product_id} in store {store_id}, {quantity} asked",
                fields=[{"field": field, "message": f"only {available} available"}], available=available)
        taken: list[tuple[StockLot, int]] = []
        left = quantity
        for lot in candidates:
            if left == 0:
                break
            q = min(left, lot.on_hand - reserved[lot])
            if q <= 0:
                continue
            reserved[lot] += q
            taken.append((lot, q))
            left -= q
        result.append(taken)
    now = utcnow()
    changed = [lot for lot in lots if reserved[lot] != lot.reserved]
    rows = [{"store_id": lot.store_id, "product_id": lot.product_id, "lot_id": lot.id, "kind": "reservation",
             "on_hand_delta": 0, "reserved_delta": q, "reason": "", "order_id": order_id, "reference": None,
             "actor": actor, "created_at": now} for taken in result for lot, q in taken]
    observed = bool(ctx.hook.stock_movement_recorded.get_hookimpls())
    conn = session.connection()
    if not observed and changed and conn.dialect.name == "postgresql":
        # nobody observes the movements: they and the lots' update go in one statement, one round trip
        conn.execute(_RESERVE_PG, {
            "at": now, "lot_ids": [lot.id for lot in changed], "new_reserved": [reserved[lot] for lot in changed],
            "movement_store_id": store_id, "movement_order_id": order_id, "movement_actor": actor,
            "product_ids": [row["product_id"] for row in rows], "move_lot_ids": [row["lot_id"] for row in rows],
            "quantities": [row["reserved_delta"] for row in rows]})
    elif changed:
        conn.execute(_SET_RESERVED, [{"lot_id": lot.id, "new_reserved": reserved[lot], "at": now} for lot in changed])
    for lot in changed:  # what the UPDATE wrote, as committed state: nothing left for a flush
        set_committed_value(lot, "reserved", reserved[lot])
        set_committed_value(lot, "updated_at", now)
    if not observed:  # rows, not objects
        if conn.dialect.name != "postgresql":
            conn.execute(_INSERT_MOVEMENTS, rows)
        return result
    movements = [StockMovement(id=mid, **row) for mid, row in zip(bulk.insert_returning(session, StockMovement, rows), rows)]
    bulk.attach(session, movements)
    for movement in movements:
        ctx.hook.stock_movement_recorded(session=session, movement=movement)
    return result


def release(ctx, session: Session, lot_id: int, quantity: int, *, order_id: int | None, actor: str,
            reason: str = "") -> StockMovement:
    lot = _lock(session, lot_id)
    return move(ctx, session, lot, "release", reserved_delta=-quantity, order_id=order_id, actor=actor, reason=reason)


def sell_reserved(ctx, session: Session, lot_id: int, quantity: int, *, order_id: int | None, actor: str) -> StockMovement:
    """Turn a reservation into a sale: the units leave on-hand and the reservation."""
    lot = _lock(session, lot_id)
    return move(ctx, session, lot, "sale", on_hand_delta=-quantity, reserved_delta=-quantity, order_id=order_id,
                actor=actor)


def return_to_stock(ctx, session: Session, lot_id: int, quantity: int, *, order_id: int | None, actor: str,
                    reason: str) -> StockMovement:
    """Put back units that never left the store (a refund before hand-over)."""
    lot = _lock(session, lot_id)
    return move(ctx, session, lot, "return", on_hand_delta=quantity, order_id=order_id, actor=actor, reason=reason)


def on_hand(session: Session, store_id: int, product_id: int | None = None) -> list[StockLot]:
    q = select(StockLot).where(StockLot.store_id == store_id)
    if product_id is not None:
        q = q.where(StockLot.product_id == product_id)
    return list(session.scalars(q.order_by(StockLot.product_id, StockLot.expiry, StockLot.id)))


def verify(session: Session) -> list[dict]:
    """Lots whose counters differ from the sum of their movements (empty when consistent).

    One statement, so one snapshot: under READ COMMITTED two (movements, then lots) would
    each see a different moment, and sales committed in between would look like a mismatch.
    """
    sums = (select(StockMovement.lot_id, func.sum(StockMovement.on_hand_delta).label("oh"),
                   func.sum(StockMovement.reserved_delta).label("rs"))
            .group_by(StockMovement.lot_id).subquery())
    rows = session.execute(
        select(StockLot.id, StockLot.on_hand, StockLot.reserved,
               func.coalesce(sums.c.oh, 0).label("oh"), func.coalesce(sums.c.rs, 0).label("rs"))
        .outerjoin(sums, sums.c.lot_id == StockLot.id).order_by(StockLot.id))
    return [{"lot_id": r.id, "on_hand": r.on_hand, "reserved": r.reserved,
             "movements_on_hand": int(r.oh), "movements_reserved": int(r.rs)}
            for r in rows if (r.on_hand, r.reserved) != (int(r.oh), int(r.rs))]


def list_movements(session: Session, store_id: int, *, product_id: int | None = None, kind: str | None = None,
                   before: int | None = None, limit: int = 50) -> Page[StockMovement]:
    """A store's movements, newest first; ``before`` a movement id to continue from."""
    _store(session, store_id)
    stmt = select(StockMovement).where(StockMovement.store_id == store_id)
    if product_id is not None:
        stmt = stmt.where(StockMovement.product_id == product_id)
    if kind is not None:
        stmt = stmt.where(StockMovement.kind == kind)
    return keyset(session, stmt, StockMovement.id, after=before, limit=limit, descending=True)


def stock_by_product(session: Session, store_id: int, *, product_id: int | None = None, after: int | None = None,
                     limit: int = 50, include_empty: bool = False) -> tuple[list[tuple[Product, list[StockLot]]], int | None]:
    """A store's lots grouped by product (ordered by product id, lots by expiry).

    Returns ``(rows, next_after)`` where ``next_after`` is the product id to
    continue after. Lots with nothing on hand are left out unless ``include_empty``.
    """
    _store(session, store_id)
    limit = max(1, min(int(limit), MAX_LIMIT))
    where = [StockLot.store_id == store_id]
    if product_id is not None:
        where.append(StockLot.product_id == product_id)
    if not include_empty:
        where.append(StockLot.on_hand != 0)
    ids_q = select(StockLot.product_id).where(*where).distinct().order_by(StockLot.product_id)
    if after is not None:
        ids_q = ids_q.where(StockLot.product_id > after)
    ids = list(session.scalars(ids_q.limit(limit + 1)))
    more = len(ids) > limit
    ids = ids[:limit]
    if not ids:
        return [], None
    lots = session.scalars(select(StockLot).where(*where, StockLot.product_id.in_(ids))
                           .order_by(StockLot.product_id, StockLot.expiry, StockLot.id)).all()
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(ids)))}
    grouped: dict[int, list[StockLot]] = {pid: [] for pid in ids}
    for lot in lots:
        grouped[lot.product_id].append(lot)
    return [(products[pid], grouped[pid]) for pid in ids], (ids[-1] if more else None)


def lock_lots(session: Session, store_id: int, product_ids) -> dict[int, list[StockLot]]:
    """Every lot of ``product_ids`` in ``store_id``, locked (``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE``
    already serialises writers) and read afresh, as ``{product_id: [lots by expiry, id]}``: one query
    for a whole batch of sales (see :func:`plan_direct`)."""
    ids = sorted(set(product_ids))
    found: dict[int, list[StockLot]] = {pid: [] for pid in ids}
    if ids:
        for lot in session.scalars(select(StockLot).where(StockLot.store_id == store_id, StockLot.product_id.in_(ids))
                                   .order_by(StockLot.product_id, StockLot.expiry, StockLot.id)
                                   .with_for_update().execution_options(populate_existing=True)):
            found[lot.product_id].append(lot)
    return found


def plan_direct(lots: list[StockLot], quantity: int, *, lot_no: str | None = None,
                today: dt.date | None = None) -> tuple[list[tuple[StockLot, int, str]], int]:
    """Where a sale that already happened takes its units from (the rule of :func:`sell_direct`).

    ``lots``: the product's lots in the store, locked, ordered by expiry then id (:func:`lock_lots`).
    The scanned lot when ``lot_no`` names one (whatever its expiry: it has left the shelf), else the
    sellable lots FEFO; units beyond what is on hand are taken from the scanned lot or the last lot
    considered (its on-hand goes negative, to be counted) or, with no lot at all, not booked.
    Returns ``([(lot, units, reason)], shortfall)`` and applies the units to the lots' ``on_hand``
    in memory (flushed with the movements by :func:`book_direct`), so the next sale of a batch sees them.
    """
    today = today or today_utc()
    chosen: list[StockLot] = []
    if lot_no:
        chosen = [lot for lot in lots if lot.lot_no == lot_no][:1]
    if not chosen:
        chosen = [lot for lot in lots if lot.expiry > today]
    taken: list[tuple[StockLot, int, str]] = []
    left = quantity
    for lot in chosen:
        q = min(left, max(0, lot.on_hand - lot.reserved))
        if q:
            lot.on_hand -= q
            taken.append((lot, q, ""))
            left -= q
        if left == 0:
            break
    shortfall = left
    if left and chosen:
        lot = chosen[0] if lot_no and chosen[0].lot_no == lot_no else chosen[-1]
        lot.on_hand -= left
        taken.append((lot, left, f"offline sale beyond recorded stock ({left} short)"))
    return taken, shortfall


class DirectBooking:
    """The writes of :func:`plan_direct` allocations ``(lot, units, reason, order_id)``: the ``sale``
    movements and the lots' new on-hand (set in memory by :func:`plan_direct`), set-based -- one
    ``UPDATE`` for the lots, one ``INSERT`` for the movements (Core, not the ORM's unit of work:
    :mod:`core.bulk`) -- then ``stock_movement_recorded`` for each movement, in order.

    In three steps, so that a caller can send the writes with its own in one
    :func:`core.bulk.pipelined` block (:func:`core.orders.record_sales`): building it takes the
    movements' ids (a query; the session's pending rows, e.g. an order the movements name, are
    flushed first); :meth:`send` sends the writes and builds the movements handed to the hook
    (persistent ORM objects in the session, made without an INSERT, and only when some plugin
    implements the hook); :meth:`announce`, once the block has ended, runs the hook.
    :func:`book_direct` does all three."""

    def __init__(self, ctx, session: Session, planned: list[tuple[StockLot, int, str, int | None]], *,
                 actor: str) -> None:
        self.ctx, self.session = ctx, session
        now = utcnow()
        touched = {id(lot): lot for lot, _q, _reason, _order in planned}.values()
        self.lot_rows = [{"id": lot.id, "on_hand": lot.on_hand, "updated_at": now} for lot in touched]
        for lot in touched:  # what the lots hold is what the database will hold: nothing to flush
            set_committed_value(lot, "on_hand", lot.on_hand)
            set_committed_value(lot, "updated_at", now)
        self.movements: list[StockMovement] = []
        self.rows = [{"store_id": lot.store_id, "product_id": lot.product_id, "lot_id": lot.id, "kind": "sale",
                      "on_hand_delta": -q, "reserved_delta": 0, "reason": reason, "order_id": order_id,
                      "reference": None, "actor": actor, "created_at": now} for lot, q, reason, order_id in planned]
        if self.rows:
            session.flush()  # the caller's pending rows (an order the movements name), if any
            for row, new_id in zip(self.rows, bulk.new_ids(session.connection(), StockMovement.__table__,
                                                           len(self.rows))):
                row["id"] = new_id

    def send(self, writes: bulk.Writes) -> list[StockMovement]:
        """Send the writes; returns the movements made persistent in the session (for :func:`core.bulk.detach`)."""
        writes.update(StockLot.__table__, self.lot_rows)
        writes.insert(StockMovement.__table__, self.rows)
        if self.rows and self.ctx.hook.stock_movement_recorded.get_hookimpls():
            self.movements = [bulk.loaded(StockMovement, row) for row in self.rows]
            bulk.attach(self.session, self.movements)
        return self.movements

    def announce(self) -> None:
        hook = self.ctx.hook.stock_movement_recorded
        for movement in self.movements:
            hook(session=self.session, movement=movement)


def book_direct(ctx, session: Session, planned: list[tuple[StockLot, int, str, int | None]], *,
                actor: str) -> list[StockMovement]:
    """Append the ``sale`` movements of :func:`plan_direct` allocations and write the lots' new on-hand,
    then run ``stock_movement_recorded`` (see :class:`DirectBooking`). Returns the movements handed to
    the hook (an empty list when no plugin implements it)."""
    if not planned:
        return []
    booking = DirectBooking(ctx, session, planned, actor=actor)
    with bulk.pipelined(session.connection()) as writes:
        movements = booking.send(writes)
    booking.announce()
    return movements


def sell_direct(ctx, session: Session, store_id: int, product_id: int, quantity: int, *, order_id: int | None,
                actor: str, lot_no: str | None = None, today: dt.date | None = None) -> tuple[list[tuple[StockLot, int]], int]:
    """Book a sale that already happened (an offline POS sale): the goods have left.

    Takes the scanned lot when ``lot_no`` names one, else sellable lots FEFO.
    Never refuses: units beyond what is on hand are taken from the last lot
    considered (its on-hand goes negative, to be counted) or, with no lot at
    all, not booked. Returns ``(allocations, shortfall)``; a positive shortfall
    is a stock discrepancy the caller records. (A batch of sales:
    :func:`lock_lots`, :func:`plan_direct`, :func:`book_direct`.)
    """
    lots = lock_lots(session, store_id, [product_id])[product_id]
    planned, shortfall = plan_direct(lots, quantity, lot_no=lot_no, today=today)
    book_direct(ctx, session, [(lot, q, reason, order_id) for lot, q, reason in planned], actor=actor)
    return [(lot, q) for lot, q, _reason in planned], shortfall
