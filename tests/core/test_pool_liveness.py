"""PostgreSQL pooled connections: checked without a round trip while in steady use, pinged after
an idle second, and replaced (no error reaches the caller) when the server ended them."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from core import db


@pytest.fixture
def pg_ctx(ctx, db_backend):
    if db_backend != "postgresql":
        pytest.skip("the liveness check is PostgreSQL's (SQLite has no server to lose)")
    return ctx


def _counting_pings(engine, monkeypatch) -> list:
    pings = []
    original = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or original(conn))
    return pings


def test_connections_in_steady_use_are_not_pinged(pg_ctx, monkeypatch):
    pings = _counting_pings(pg_ctx.engine, monkeypatch)
    for _ in range(5):
        with pg_ctx.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    assert pings == []


def test_an_idle_connection_is_pinged(pg_ctx, monkeypatch):
    with pg_ctx.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.05)
    time.sleep(0.1)
    pings = _counting_pings(pg_ctx.engine, monkeypatch)
    with pg_ctx.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert pings == [1]


def test_a_connection_the_server_ended_is_replaced(pg_ctx):
    engine = pg_ctx.engine
    first, second = engine.connect(), engine.connect()
    pid = first.execute(text("SELECT pg_backend_pid()")).scalar()
    first.close()  # back in the pool, first in line (FIFO)
    assert second.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    second.close()
    time.sleep(0.2)  # the server's goodbye reaches the idle pooled connection's socket
    with engine.connect() as conn:  # no error: the dead connection is discarded at checkout
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
