"""Price-list versions: a number that grows each time product prices change.

The core has no "price changed" hook, so the plugin keeps a copy of every
product's price (``pos_product_prices``) and :func:`refresh` compares it with
the products in one join: when any price differs, the version goes up by one
and the changed prices are appended to ``pos_price_history`` under that
version. Terminals record the version they sold at; :func:`stale_price`
says whether a newer price had been in force for longer than the allowed
staleness when the sale was made.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Product

from .models import PosPriceHistory, PosPriceVersion, PosProductPrice, PosSyncState

__all__ = ["state", "current_version", "refresh", "stale_price", "DEFAULT_STALENESS_MINUTES",
           "DEFAULT_CHECK_SECONDS"]

DEFAULT_STALENESS_MINUTES = 24 * 60
DEFAULT_CHECK_SECONDS = 2.0
_CHUNK = 2000


def state(session: Session, *, lock: bool = False) -> PosSyncState:
    q = select(PosSyncState).where(PosSyncState.id == 1)
    return session.scalars(q.with_for_update() if lock else q).one()


def current_version(session: Session) -> int:
    return int(session.scalar(select(PosSyncState.price_version).where(PosSyncState.id == 1)) or 0)


def refresh(ctx, *, force: bool = False, now: dt.datetime | None = None) -> int:
    """Publish a new price-list version if any product price changed; returns the current version.

    Compares at most once every ``[pos_sync] price_check_seconds`` (default
    2 s) unless ``force``; one refresh runs at a time (the state row is locked).
    """
    now = now or utcnow()
    interval = float(ctx.setting("pos_sync.price_check_seconds", DEFAULT_CHECK_SECONDS))
    if not force:
        with ctx.session() as session:
            st = state(session)
            if st.prices_checked_at is not None and (now - st.prices_checked_at).total_seconds() < interval:
                return st.price_version
    with ctx.transaction() as session:
        st = state(session, lock=True)
        if not force and st.prices_checked_at is not None and \
                (now - st.prices_checked_at).total_seconds() < interval:
            return st.price_version  # another worker refreshed meanwhile
        # in keyset chunks of product ids: a first check after a catalogue import of 50,000
        # products never holds them all in one worker's memory
        version, count, after = st.price_version + 1, 0, 0
        while True:
            changed = session.execute(
                select(Product.id, Product.price_fen, PosProductPrice.product_id.label("known"))
                .outerjoin(PosProductPrice, PosProductPrice.product_id == Product.id)
                .where(Product.id > after,
                       or_(PosProductPrice.product_id.is_(None), PosProductPrice.price_fen != Product.price_fen))
                .order_by(Product.id).limit(_CHUNK)).all()
            if not changed:
                break
            after, count = changed[-1].id, count + len(changed)
            new = [{"product_id": r.id, "price_fen": r.price_fen, "version": version} for r in changed if r.known is None]
            old = [{"product_id": r.id, "price_fen": r.price_fen, "version": version} for r in changed if r.known is not None]
            if new:
                session.execute(insert(PosProductPrice), new)
            if old:
                session.execute(update(PosProductPrice), old)
            session.execute(insert(PosPriceHistory), [{"product_id": r.id, "price_fen": r.price_fen, "version": version}
                                                      for r in changed])
            del changed, new, old
        if count:
            session.add(PosPriceVersion(version=version, published_at=now, changed=count))
            st.price_version = version
        st.prices_checked_at = now
        return st.price_version


def stale_price(session: Session, product_id: int, version: int, unit_price_fen: int, sold_at: dt.datetime,
                staleness: dt.timedelta) -> dict | None:
    """Why the price a terminal charged is stale, or ``None``.

    Stale: a price-list version newer than the terminal's ``version`` gave
    this product another price, and that version had been published for
    longer than ``staleness`` when the sale was made (the terminal had not
    pulled the catalogue for too long). A price the terminal had no chance to
    know yet is not stale.
    """
    row = session.execute(
        select(PosPriceHistory.version, PosPriceHistory.price_fen, PosPriceVersion.published_at)
        .join(PosPriceVersion, PosPriceVersion.version == PosPriceHistory.version)
        .where(PosPriceHistory.product_id == product_id, PosPriceHistory.version > version,
               PosPriceVersion.published_at <= sold_at - staleness)
        .order_by(PosPriceHistory.version.desc()).limit(1)).first()
    if row is None or row.price_fen == unit_price_fen:
        return None
    return {"product_id": product_id, "charged_fen": unit_price_fen, "price_fen": row.price_fen,
            "terminal_version": version, "price_version": row.version,
            "published_at": row.published_at.isoformat()}
