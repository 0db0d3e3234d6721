"""Set-based writes for hot paths (a POS upload): rows inserted with one Core statement per
table, and ORM objects for the same rows made persistent without an INSERT, so that hooks still
receive real, session-attached objects (a change a hook makes is flushed as an UPDATE).

* :func:`new_ids` -- ids for new rows, taken before their INSERT (:func:`insert_values`);
* :func:`loaded` -- an instance of a model holding given column values, as a query would load it
  (no constructor, no attribute events: the values are the committed state);
* :func:`attach` -- make such instances (and the ones they hold in relationships) persistent in a
  session; :func:`detach` undoes it when the writes are rolled back (a SAVEPOINT), since the
  session does not know these objects were new in that transaction;
* :func:`pipelined` -- writes sent without waiting for each (PostgreSQL's pipeline mode), so that
  the database works on them while Python goes on with work that needs no database.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import orjson
from sqlalchemy import DateTime, bindparam, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, attributes, configure_mappers, make_transient_to_detached

from .db import is_sqlite

__all__ = ["insert_returning", "new_ids", "insert_values", "update_values", "pipelined", "Writes", "PipelineMisuse",
           "loaded", "attach", "detach"]


def insert_returning(session: Session, model, rows: list[dict]) -> list[int]:
    """Insert a few rows (an online order's lines, allocations and movements) and return their ids:
    PostgreSQL: one ``INSERT ... RETURNING`` (one round trip, where :func:`new_ids` and
    :func:`insert_values` take two);
    SQLite, which does not promise the order of RETURNING rows for many rows: :func:`new_ids` and one
    ``executemany``. Returns the new ids in the order of ``rows`` (``rows`` are not changed)."""
    if not rows:
        return []
    table = model.__table__
    conn = session.connection()
    if len(rows) > 1 and is_sqlite(conn):
        ids = new_ids(conn, table, len(rows))
        conn.execute(insert(table), [dict(row, id=i) for row, i in zip(rows, ids)])
        return ids
    stmt = _STATEMENTS.get(("returning", table.fullname))
    if stmt is None:
        stmt = _STATEMENTS[("returning", table.fullname)] = insert(table).returning(table.c.id,
                                                                                   sort_by_parameter_order=True)
    return list(conn.execute(stmt, rows if len(rows) > 1 else rows[0]).scalars())


def new_ids(conn, table, n: int) -> list[int]:
    """``n`` ids for new rows of ``table``. PostgreSQL: from the id column's sequence, in one query.
    SQLite: the ids SQLite itself would give (max + 1, ...; no table uses AUTOINCREMENT), safe because
    every SQLite write transaction is ``BEGIN IMMEDIATE``: nobody else inserts until it ends
    (:mod:`core.db`)."""
    if is_sqlite(conn):
        top = conn.execute(select(func.max(table.c.id))).scalar() or 0
        return list(range(top + 1, top + 1 + n))
    key = (conn.engine.url.render_as_string(hide_password=True), table.fullname)
    seq = _SEQUENCES.get(key)
    if seq is None:
        seq = _SEQUENCES[key] = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"),
                                             {"t": table.fullname}).scalar_one()
    return list(conn.execute(_NEXTVAL, {"seq": seq, "n": n}).scalars())


_NEXTVAL = text("SELECT nextval(CAST(:seq AS regclass)) FROM generate_series(1, :n)")
_SEQUENCES: dict[tuple, str] = {}
_STATEMENTS: dict[tuple, Any] = {}


def insert_values(conn, table, rows: list[dict]) -> None:
    """``INSERT`` ``rows`` (dicts with the same keys, column keys) into ``table`` in one statement.

    PostgreSQL: ``INSERT ... SELECT ... FROM json_populate_recordset(NULL::table, %(rows)s)``, the rows
    sent as one JSON document: a short statement prepared once, one parameter the driver passes as
    it is (an ``executemany`` is one round of the pipeline per row; a multi-row ``VALUES`` a new, long
    SQL text per size that the driver parses again; arrays per column are escaped element by element
    in Python). Values as JSON: times and dates in ISO 8601 with their UTC offset, a JSON column's
    value nested as it is (``None`` there is SQL NULL). SQLite (in process, no round trips): the
    driver's ``executemany`` (:func:`_sqlite_insert`)."""
    if not rows:
        return
    keys = tuple(rows[0])
    if is_sqlite(conn):
        sql, processors = _sqlite_insert(conn, table, keys)
        conn.exec_driver_sql(sql, [tuple([p(row[k]) if p else row[k] for k, p in processors]) for row in rows])
        return
    conn.exec_driver_sql(_pg_insert(conn, table, keys), {"rows": _json_rows(table, keys, rows)})


def _sqlite_insert(conn, table, keys: tuple) -> tuple[str, tuple]:
    """SQLite's INSERT of ``keys`` with positional parameters, and each column's bind processor (the
    function SQLAlchemy itself would apply to the value, e.g. a time to its stored text), built once:
    the rows go to the driver's ``executemany`` as tuples, without SQLAlchemy's per-row parameter
    compilation (in process, three pairs of POS uploads: 373-400 -> 352-373 us per sale). Like
    PostgreSQL's path, only the given keys are written (a column left out takes the table's own
    default, not a Python-side one)."""
    found = _STATEMENTS.get(("sqlite-insert", table.fullname, keys))
    if found is None:
        q = conn.dialect.identifier_preparer
        cols = ", ".join(q.quote(table.c[k].name) for k in keys)
        sql = f"INSERT INTO {q.format_table(table)} ({cols}) VALUES ({', '.join('?' * len(keys))})"
        processors = tuple((k, table.c[k].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)) for k in keys)
        found = _STATEMENTS[("sqlite-insert", table.fullname, keys)] = (sql, processors)
    return found


def update_values(conn, table, rows: list[dict]) -> None:
    """``UPDATE`` rows of ``table`` by id, each dict ``{"id": ..., column: value, ...}`` (the same keys);
    one statement on PostgreSQL (``UPDATE ... FROM json_populate_recordset(...)``, see
    :func:`insert_values`), ``executemany`` on SQLite."""
    if not rows:
        return
    keys = tuple(k for k in rows[0] if k != "id")
    if is_sqlite(conn):
        stmt = _STATEMENTS.get(("update", table.fullname, keys))
        if stmt is None:
            stmt = _STATEMENTS[("update", table.fullname, keys)] = update(table).where(
                table.c.id == bindparam("_id")).values({k: bindparam("_" + k) for k in keys})
        conn.execute(stmt, [{"_" + k: v for k, v in row.items()} for row in rows])
        return
    conn.exec_driver_sql(_pg_update(conn, table, keys), {"rows": _json_rows(table, ("id", *keys), rows)})


def _pg_insert(conn, table, keys: tuple) -> str:
    """PostgreSQL's INSERT of rows given as one JSON parameter (psycopg's ``%(rows)s``), built once."""
    sql = _STATEMENTS.get(("pg-insert", table.fullname, keys))
    if sql is None:
        q = conn.dialect.identifier_preparer
        cols = ", ".join(q.quote(table.c[k].name) for k in keys)
        name = q.format_table(table)
        sql = _STATEMENTS[("pg-insert", table.fullname, keys)] = (
            f"INSERT INTO {name} ({cols}) SELECT {cols} "
            f"FROM json_populate_recordset(NULL::{name}, CAST(%(rows)s AS json))")
    return sql


def _pg_update(conn, table, keys: tuple) -> str:
    """PostgreSQL's UPDATE by id of rows given as one JSON parameter, built once."""
    sql = _STATEMENTS.get(("pg-update", table.fullname, keys))
    if sql is None:
        q = conn.dialect.identifier_preparer
        name = q.format_table(table)
        sets = ", ".join(f"{q.quote(table.c[k].name)} = src.{q.quote(table.c[k].name)}" for k in keys)
        sql = _STATEMENTS[("pg-update", table.fullname, keys)] = (
            f"UPDATE {name} SET {sets} FROM json_populate_recordset(NULL::{name}, CAST(%(rows)s AS json)) "
            f"AS src WHERE {name}.id = src.id")
    return sql


class Writes:
    """The writes of a :func:`pipelined` block: :meth:`insert` and :meth:`update` take what
    :func:`insert_values` and :func:`update_values` take. On SQLite each runs at once; on PostgreSQL
    each is sent without waiting for its result."""

    def __init__(self, conn, cursor=None) -> None:
        self.conn = conn
        self._cursor = cursor  # a psycopg cursor of the connection, in pipeline mode (PostgreSQL)
        self.sent: list[str] = []  # the statements sent

    def insert(self, table, rows: list[dict]) -> None:
        if not rows:
            return
        if self._cursor is None:
            insert_values(self.conn, table, rows)
            return
        keys = tuple(rows[0])
        self._send(_pg_insert(self.conn, table, keys), _json_rows(table, keys, rows))

    def update(self, table, rows: list[dict]) -> None:
        if not rows:
            return
        if self._cursor is None:
            update_values(self.conn, table, rows)
            return
        keys = tuple(k for k in rows[0] if k != "id")
        self._send(_pg_update(self.conn, table, keys), _json_rows(table, ("id", *keys), rows))

    def _send(self, sql: str, rows: str) -> None:
        self.sent.append(sql)
        self._cursor.execute(sql, {"rows": rows})


class PipelineMisuse(RuntimeError):
    """A statement other than the block's writes, inside a :func:`pipelined` block."""


def _refuse_cursor(*_args, **_kw):
    raise PipelineMisuse("a SQLAlchemy statement inside a pipelined block (core.bulk.pipelined): it would read no "
                         "result; run it before or after the block")


@contextmanager
def pipelined(conn) -> Iterator[Writes]:
    """A block whose writes (:class:`Writes`) the database works on while the block's Python goes on.

    PostgreSQL: psycopg's pipeline mode on the connection's driver connection. Each statement is sent
    at once and the server starts on it; the results are read when the block ends, which waits for
    all of them. A failed statement raises there, as SQLAlchemy raises a driver's error (e.g.
    :class:`sqlalchemy.exc.IntegrityError`), and the transaction is then in error, as after any
    failed statement. Inside the block nothing else may use the connection: a SQLAlchemy statement
    there would read no result, so it is refused (SQLAlchemy raises a ``StatementError`` whose ``orig``
    is a :class:`PipelineMisuse`): no queries, no flush, no lazy loads; only Python work on what is at
    hand. SQLite runs each write at once (in process: there is no round trip to save)."""
    if is_sqlite(conn):
        yield Writes(conn)
        return
    driver = conn.connection.driver_connection
    writes = Writes(conn, driver.cursor())
    failed = None
    try:
        with driver.pipeline():
            driver.cursor = _refuse_cursor  # until the block ends: any other statement is refused
            try:
                yield writes
            finally:
                del driver.cursor
    except driver.Error as exc:  # a statement failed: raised as SQLAlchemy raises a driver's error
        failed = exc
    finally:
        writes._cursor.close()
    if failed is not None:
        raise DBAPIError.instance(" ; ".join(writes.sent), None, failed, type(driver).Error,
                                  dialect=conn.dialect) from failed


def _json_rows(table, keys, rows: list[dict]) -> str:
    """The rows as one JSON array (orjson: a tenth of the json module's time). Times and dates are
    written by orjson itself (ISO 8601, as ``isoformat``, with the UTC offset); a naive time in a
    timestamp column is refused first, as :class:`core.db.UTCDateTime` refuses it. (Each time through
    a Python callback was about a twentieth of a POS upload's worker time.)"""
    names = {k: table.c[k].name for k in keys}
    stamped = _STAMPED.get((table.fullname, keys))
    if stamped is None:
        stamped = _STAMPED[(table.fullname, keys)] = tuple(k for k in keys if _is_datetime(table.c[k].type))
    for key in stamped:
        for row in rows:
            value = row[key]
            if value is not None and value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r} for {table.name}.{key}: pass a timezone-aware UTC time")
    if not all(k == n for k, n in names.items()):
        rows = [{names[k]: row[k] for k in keys} for row in rows]
    return orjson.dumps(rows, default=_json_value, option=orjson.OPT_NON_STR_KEYS).decode()


_STAMPED: dict[tuple, tuple] = {}


def _is_datetime(type_) -> bool:
    """Whether a column of ``type_`` holds timestamps (a DateTime, or a TypeDecorator over one)."""
    return isinstance(getattr(type_, "impl", type_), DateTime)


def _json_value(value):
    """What orjson cannot write itself (times and dates it writes natively)."""
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def loaded(model, values: dict[str, Any], **related) -> Any:
    """An instance of ``model`` as if loaded from a row with ``values`` (all its columns, with ``id``);
    ``related``: relationship values (a list for a collection, an object or ``None`` for a many-to-one),
    set as loaded too. Not yet in a session: see :func:`attach`."""
    mapper = model.__mapper__
    if not mapper.configured:  # a query does it, unless none has run yet in this process
        configure_mappers()
    obj = mapper.class_manager.new_instance()
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
        _to_detached(obj)
    # what Session.add does for a detached object, without walking its relationships again for
    # each one (the save-update cascade was a third of the cost; every object is listed anyway)
    attach_one = getattr(session, "_update_impl", None)
    for obj in objects:
        state = attributes.instance_state(obj)
        if state.session_id is not None:
            continue
        if attach_one is not None:
            attach_one(state)
        else:  # pragma: no cover - a SQLAlchemy without it: the public way
            session.add(obj)


def _to_detached(obj) -> None:
    """:func:`~sqlalchemy.orm.make_transient_to_detached`, its identity key made from the primary key
    value (``Mapper.identity_key_from_primary_key``) where the mapper has a one-column key whose value
    is set: the general way reads every key attribute through the instrumentation, which was about
    a twentieth of a POS upload's worker time."""
    state = attributes.instance_state(obj)
    attr = _PK_ATTR.get(state.mapper, _UNSET)
    if attr is _UNSET:
        mapper = state.mapper
        attr = _PK_ATTR[mapper] = mapper.get_property_by_column(mapper.primary_key[0]).key \
            if len(mapper.primary_key) == 1 else None
    value = state.dict.get(attr) if attr is not None else None
    if value is None or state.session_id or state.key or state._deleted:
        make_transient_to_detached(obj)  # the general way (and its refusal of a non-transient object)
        return
    state.key = state.mapper.identity_key_from_primary_key((value,))
    state._commit_all(state.dict)
    state._expire_attributes(state.dict, state.unloaded)


_UNSET = object()
_PK_ATTR: dict = {}


def detach(session: Session, objects: Iterable[Any]) -> None:
    """Take ``objects`` out of ``session`` again (their rows were rolled back with a SAVEPOINT)."""
    for obj in objects:
        if obj in session:
            session.expunge(obj)
