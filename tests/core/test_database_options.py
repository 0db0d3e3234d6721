"""The ``[database]`` section: pool sizes per process and, for pgbouncer in transaction mode,
no server-side prepared statements."""
import pytest
from sqlalchemy import text

from core.config import Config, ConfigError
from core.context import engine_options


def test_pool_settings_reach_the_engine(make_ctx):
    ctx = make_ctx(settings={"database.pool_size": 3, "database.max_overflow": 1, "database.pool_timeout": 7})
    assert (ctx.engine.pool.size(), ctx.engine.pool.timeout()) == (3, 7)
    with ctx.session() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.parametrize("key,value", [("pool_size", 0), ("pool_size", "5"), ("max_overflow", -1),
                                       ("pool_recycle", True), ("prepared_statements", "no"), ("pool_sise", 5)])
def test_bad_values_are_refused_naming_the_key(tmp_path, key, value):
    config = Config(path=tmp_path / "p.toml", data={"database_url": "sqlite:///x.db", "database": {key: value}})
    with pytest.raises(ConfigError, match=key):
        engine_options(config)


def _prepared_after_repeats(ctx) -> int:
    with ctx.engine.connect() as c:
        for i in range(8):  # psycopg prepares a statement after 5 executions by default
            c.execute(text("SELECT :x + 1"), {"x": i})
        return c.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()


def test_prepared_statements_can_be_turned_off_for_pgbouncer(make_ctx, db_backend):
    if db_backend != "postgresql":
        pytest.skip("server-side prepared statements are PostgreSQL's")
    assert _prepared_after_repeats(make_ctx()) >= 1  # the default prepares
    assert _prepared_after_repeats(make_ctx(settings={"database.prepared_statements": False})) == 0
