"""Small helpers shared by the core's resources."""
from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy import inspect as sa_inspect

from ...errors import NotFound
from ...stock import sellable, today_utc

__all__ = ["V1", "ID", "get_or_404", "dump", "jsonable", "lot_out"]

V1 = "/api/v1"
#: a path id: a positive 64-bit integer (anything else does not match the route: 404)
ID = "int(min=1, max=9223372036854775807)"


_BY_ID: dict[type, Any] = {}


def _by_id(model):
    """``SELECT model WHERE pk = :pk``, built once per model (``None`` for a composite key)."""
    if model not in _BY_ID:
        pk = sa_inspect(model).primary_key
        _BY_ID[model] = None if len(pk) != 1 else \
            select(model).where(pk[0] == bindparam("pk")).execution_options(autoflush=False)
    return _BY_ID[model]


def get_or_404(session, model, row_id: int, what: str):
    """``session.get(model, row_id)`` or :class:`NotFound`. A row not yet in the session is
    loaded with a prepared statement (what ``session.get`` emits, without rebuilding it)."""
    stmt = _by_id(model)
    if stmt is None or sa_inspect(model).identity_key_from_primary_key((row_id,)) in session.identity_map:
        row = session.get(model, row_id)
    else:
        row = session.execute(stmt, {"pk": row_id}).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


def jsonable(value: Any) -> Any:
    """``value`` with dates and times as ISO-8601 strings (``+00:00``, as the services write them)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def dump(schema: type[BaseModel], obj: Any) -> dict:
    """An ORM row as ``schema`` shows it, ready for JSON."""
    return jsonable(schema.model_validate(obj, from_attributes=True).model_dump())


def lot_out(lot, today=None) -> dict:
    ok = sellable(lot, today or today_utc())
    return {"lot_id": lot.id, "lot_no": lot.lot_no, "expiry": lot.expiry.isoformat(), "on_hand": lot.on_hand,
            "reserved": lot.reserved, "available": max(0, lot.on_hand - lot.reserved) if ok else 0,
            "expired": not ok}
