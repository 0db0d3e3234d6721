"""Set-based writes for hot paths (a POS upload): rows inserted with one Core ``executemany`` per
table, and ORM objects for the same rows made persistent without an INSERT, so that hooks still
receive real, session-attached objects (a change a hook makes is flushed as an UPDATE).

* :func:`insert_rows` -- insert dicts into a model's table, return their ids in order;
* :func:`loaded` -- an instance of a model holding given column values, as a query would load it
  (no constructor, no attribute events: the values are the committed state);
* :func:`attach` -- make such instances (and the ones they hold in relationships) persistent in a
  session; :func:`detach` undoes it when the writes are rolled back (a SAVEPOINT), since the
  session does not know these objects were new in that transaction.
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, attributes, make_transient_to_detached

from .db import is_sqlite

__all__ = ["insert_rows", "loaded", "attach", "detach"]


def insert_rows(session: Session, model, rows: list[dict]) -> list[int]:
    """Insert ``rows`` (every column given, Python defaults applied by the caller or by Core) into
    ``model``'s table with one ``executemany``; return the new ids in the order of ``rows`` and set
    ``row["id"]``. The session's pending changes are not flushed.

    PostgreSQL: ``INSERT ... RETURNING id`` sorted by parameter order (SQLAlchemy's
    "insertmanyvalues"). SQLite: the ids SQLite itself would give (max + 1, ...; no table uses
    AUTOINCREMENT) and a plain ``executemany``, safe because every SQLite write transaction is
    ``BEGIN IMMEDIATE``: nobody else inserts until it ends (see :func:`core.stock.number_rows`)."""
    if not rows:
        return []
    table = model.__table__
    conn = session.connection()
    if is_sqlite(conn):
        top = conn.execute(select(func.max(table.c.id))).scalar() or 0
        ids = list(range(top + 1, top + 1 + len(rows)))
        for row, new_id in zip(rows, ids):
            row["id"] = new_id
        conn.execute(insert(table), rows)
        return ids
    ids = list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    for row, new_id in zip(rows, ids):
        row["id"] = new_id
    return ids


def loaded(model, values: dict[str, Any], **related) -> Any:
    """An instance of ``model`` as if loaded from a row with ``values`` (all its columns, with ``id``);
    ``related``: relationship values (a list for a collection, an object or ``None`` for a many-to-one),
    set as loaded too. Not yet in a session: see :func:`attach`."""
    obj = model.__mapper__.class_manager.new_instance()
    obj.__dict__.update(values)
    for key, value in related.items():
        if isinstance(value, list):
            attributes.set_committed_value(obj, key, value)
        else:
            obj.__dict__[key] = value
    return obj


def attach(session: Session, objects: Iterable[Any]) -> None:
    """Make ``objects`` (built by :func:`loaded`, their rows already inserted) persistent and clean in
    ``session`` -- no SQL. Every new object must be listed, parents before the objects they hold
    (an order, then its lines, then their allocations): a new object reached only through a
    relationship would be INSERTed again at the next flush. An attribute not given is expired
    (loaded on first access)."""
    objects = list(objects)
    for obj in objects:
        make_transient_to_detached(obj)
    for obj in objects:  # an object held by one added before is attached already (cascade)
        if attributes.instance_state(obj).session_id is None:
            session.add(obj)


def detach(session: Session, objects: Iterable[Any]) -> None:
    """Take ``objects`` out of ``session`` again (their rows were rolled back with a SAVEPOINT)."""
    for obj in objects:
        if obj in session:
            session.expunge(obj)
