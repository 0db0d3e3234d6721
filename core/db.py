"""Engines, sessions and the column types every table shares.

SQLite (the embedded default) runs in WAL mode with foreign keys on, and every
transaction starts with ``BEGIN IMMEDIATE`` so that two writers serialize
instead of both reading stale stock; PostgreSQL uses row locks
(``SELECT ... FOR UPDATE``) taken by the services.
"""
from __future__ import annotations

import datetime as dt
import json
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "UTCDateTime", "utcnow", "json_text", "make_engine", "make_sessionmaker", "transaction", "is_sqlite"]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the core's and the plugins' models."""

    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC time")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect):
        """On SQLite, :meth:`process_bind_param` and SQLAlchemy's SQLite ``DATETIME`` text
        (``YYYY-MM-DD HH:MM:SS.ffffff``) in one step, the text written by ``isoformat`` (C)
        instead of a ``%`` format of seven fields: about 2.2 -> 1.1 µs a value, and a POS sale
        writes a dozen. The same text (tests/core/test_db_types.py compares them)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_datetime_text

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


#: the last time written and its text: a batch writes one "now" in many rows (equal aware times are
#: the same instant, so the same text; read and replaced as one tuple, safe between threads)
_last_text: tuple = (None, None)


def _sqlite_datetime_text(value):
    global _last_text
    if value is None:
        return None
    last = _last_text
    if value == last[0]:
        return last[1]
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC time")
    utc = value if value.tzinfo is dt.timezone.utc else value.astimezone(dt.timezone.utc)
    text = utc.replace(tzinfo=None).isoformat(" ", "microseconds")
    _last_text = (value, text)
    return text


def is_sqlite(bind) -> bool:
    return bind.dialect.name == "sqlite"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - trivial
        # readers (Context.session) need no write lock: WAL lets them run beside a writer; the API's
        # read-only requests (core.api.middleware.read_engine) run without a transaction at all
        # (their engine has no connection events: this listener does not see them)
        opts = conn.get_execution_options()
        conn.exec_driver_sql("BEGIN" if opts.get("pharmo2o_readonly") else "BEGIN IMMEDIATE")


_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_text(value) -> str:
    """The text of a JSON column's value (the engines' ``json_serializer``): written by orjson
    (a POS sale writes about seven: 3 -> 0.5 µs each), and by the json module wherever orjson
    refuses (an integer over 64 bits, a key that is not a string) or would take what json
    refuses (a time, a dataclass: refused as before). The texts differ in spacing and in
    writing non-ASCII as UTF-8, not ``\\u`` escapes; the values read back are the same.
    A float NaN or infinity, which the json module wrote as the non-JSON ``NaN`` (PostgreSQL
    refused it), is written as ``null``; no input reaches a JSON column with one (the API's
    bodies are strict)."""
    try:
        return orjson.dumps(value, option=_JSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)


def make_engine(url: str, **kwargs) -> Engine:
    """Create the engine for ``url`` with the per-dialect settings above."""
    kwargs.setdefault("json_serializer", json_text)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        _sqlite_setup(engine)
        return engine
    if "pool_pre_ping" in kwargs:  # the caller's choice: SQLAlchemy's ping on every checkout, or none
        return create_engine(url, **kwargs)
    engine = create_engine(url, **kwargs)
    _postgresql_liveness(engine)
    return engine


#: a pooled PostgreSQL connection unused for longer than this is pinged (one round trip) before use
PING_AFTER_IDLE_SECONDS = 1.0


def _readable(dbapi_conn) -> bool:
    """Whether anything arrived on an idle connection's socket (a server that closes it sends a
    message and FIN first): an idle connection in good health has nothing to read."""
    try:
        poller = select.poll()
        poller.register(dbapi_conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except Exception:  # noqa: BLE001 - cannot tell: treat as suspect, the ping decides
        return True


def _postgresql_liveness(engine: Engine) -> None:
    """Pessimistic disconnect handling without a round trip per request.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one extra round trip
    per request. Here a connection is pinged only when it sat in the pool for
    more than :data:`PING_AFTER_IDLE_SECONDS`, or when something is waiting on
    its socket (the server restarting or terminating it says so before closing);
    a failed ping discards it and the pool hands out a fresh one, as with
    ``pool_pre_ping``. A connection that dies silently within that second is
    still detected by the failing statement (SQLAlchemy then invalidates the pool).
    """
    @event.listens_for(engine, "connect")
    def _connected(dbapi_conn, record):  # pragma: no cover - trivial
        record.info["pharmo2o_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn, record):
        if dbapi_conn is not None:
            record.info["pharmo2o_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, proxy):
        since = record.info.get("pharmo2o_idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_SECONDS and not _readable(dbapi_conn):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection failed its liveness check: {exc}") from exc


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        with session.begin():
            yield session
    finally:
        session.close()
