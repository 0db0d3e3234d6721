"""Alembic environment shared by the core's branch and every plugin's branch.

Run through ``core.migrations`` (``pharmo2o init``, ``plugins enable``,
``plugins purge``), which passes an open connection; the plain ``alembic``
command works too with ``-x url=...``. SQLite migrations run in batch mode
with foreign keys switched off for the run and checked afterwards.
"""
from alembic import context
from sqlalchemy import text

from core.db import Base, make_engine
import core.models  # noqa: F401  (the core's tables, for autogenerate)

config = context.config


def run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        bad = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
        if bad:
            raise RuntimeError(f"migration left rows that break foreign keys: {bad[:5]}")


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as conn:
        run(conn)
        conn.commit()
