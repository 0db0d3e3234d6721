"""Per-plugin Alembic branches: every subset of the bundled plugins loads and
migrates, each plugin branch goes up and down alone, the core goes down to
base and back, and the migrated schema is exactly the models."""
from __future__ import annotations

import importlib
import importlib.util
import itertools

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError

from core import audit, migrations, people
from core.auth import Caller
from core.config import Config
from core.context import Context
from core.db import Base
from core.errors import PluginError
import core.models  # noqa: F401  (all the core's tables on Base.metadata)
from core.models import AuditEntry, Store
from tests.core import fixture_plugin, fixture_plugin_child

BUNDLED = ("loyalty", "pos_sync", "prescription_review", "wechat_channel")
SUBSETS = [combo for size in range(len(BUNDLED) + 1) for combo in itertools.combinations(BUNDLED, size)]
#: the subsets also migrated on a real database (all 16 load; these keep the suite fast)
MIGRATED_SUBSETS = [(), *((name,) for name in BUNDLED), BUNDLED]
ADMIN = Caller(role="admin", user_id=1, name="admin")


def _id(subset) -> str:
    return "+".join(subset) or "core-only"


@pytest.fixture
def contexts(tmp_path):
    made: list[Context] = []

    def make(url: str, enabled, extra=()) -> Context:
        config = Config(path=tmp_path / "pharmo2o.toml", data={"database_url": url,
                                                               "plugins": {"enabled": list(enabled)}})
        ctx = Context.create(config, extra_plugins=extra)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.dispose()


def core_tables() -> set[str]:
    """The tables of the core's models (core.models)."""
    return {m.local_table.name for m in Base.registry.mappers if m.class_.__module__ == "core.models"}


def tables(ctx) -> set[str]:
    return set(inspect(ctx.engine).get_table_names())


def schema_diffs(ctx) -> list:
    """What autogenerate would change to make the database match the models (core + enabled plugins)."""
    for name in ctx.registry.enabled:  # a plugin keeps its models in <package>.models by convention
        package = ctx.registry.available[name].module.__name__
        if importlib.util.find_spec(f"{package}.models") is not None:
            importlib.import_module(f"{package}.models")
    # tables of installed plugins that are not enabled here (e.g. a third-party plugin another test
    # imported) are in Base.metadata too, and rightly not in this database
    owners = ("core.",) + tuple(f"{ctx.registry.available[n].module.__name__}." for n in ctx.registry.enabled)
    ours = {m.local_table.name for m in Base.registry.mappers if m.class_.__module__.startswith(owners)}

    def include(obj, name, type_, reflected, compare_to) -> bool:
        return type_ != "table" or reflected or name in ours
    with ctx.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include})
        return compare_metadata(context, Base.metadata)


def downgrade_everything(ctx) -> None:
    with migrations._connection(ctx.engine) as conn:
        command.downgrade(migrations.alembic_config(ctx.registry, conn), "base")
        conn.commit()


@pytest.mark.parametrize("subset", SUBSETS, ids=_id)
def test_every_subset_of_the_bundled_plugins_loads(subset, contexts, tmp_path):
    assert len(SUBSETS) == 16
    ctx = contexts(f"sqlite:///{tmp_path / 'unused.db'}", subset)
    registry = ctx.registry
    assert registry.enabled == sorted(subset)
    assert registry.pm.get_plugin("core") is not None  # the core's default plugin is always there
    for name in BUNDLED:
        assert (registry.pm.get_plugin(name) is not None) == (name in subset)
    described = {row["name"]: row["enabled"] for row in registry.describe()}
    assert {name: described[name] for name in BUNDLED} == {name: name in subset for name in BUNDLED}
    # the hook surface answers with any subset: the core's own channels are there
    assert {"store", "web"} <= {c["name"] for c in registry.concat_named("register_sales_channels", "channel")}
    # and each enabled plugin brings its own migration branch
    heads = migrations.branch_heads(registry)
    assert {"core", *subset} <= set(heads)


@pytest.mark.parametrize("subset", MIGRATED_SUBSETS, ids=_id)
def test_a_subset_migrates_a_fresh_empty_database(subset, contexts, pharmo2o_databases, tmp_path):
    url = pharmo2o_databases.fresh(list(subset), (), tmp_path, migrated=False)
    ctx = contexts(url, subset)
    assert tables(ctx) == set()
    assert migrations.upgrade(ctx) == ["core", *sorted(subset)]
    assert migrations.current_branches(ctx) == {"core", *subset}
    assert core_tables() <= tables(ctx)
    assert migrations.upgrade(ctx) == ["core", *sorted(subset)]  # again: nothing changes
    assert migrations.current_branches(ctx) == {"core", *subset}


def test_each_plugin_branch_goes_down_and_up_alone_leaving_the_core_intact(contexts, pharmo2o_databases, tmp_path):
    url = pharmo2o_databases.fresh(list(BUNDLED), (), tmp_path)
    full = contexts(url, BUNDLED)
    with full.transaction() as s:
        people.create_store(s, {"code": "S1", "name": "一号店"}, ADMIN)
    with full.engine.connect() as conn:
        core_head = {h for h in migrations.current_heads(conn) if h.startswith("core_")}
    for name in BUNDLED:
        with pytest.raises(PluginError, match="is enabled"):
            migrations.downgrade_plugin(full, name)
        rest = [n for n in BUNDLED if n != name]
        ctx = contexts(url, rest)
        migrations.downgrade_plugin(ctx, name)
        assert migrations.current_branches(ctx) == {"core", *rest}
        assert core_tables() <= tables(ctx)
        with ctx.engine.connect() as conn:
            assert {h for h in migrations.current_heads(conn) if h.startswith("core_")} == core_head
        with ctx.session() as s:
            assert s.scalar(select(Store.name).where(Store.code == "S1")) == "一号店"
        migrations.upgrade(full, [name])
        assert migrations.current_branches(full) == {"core", *BUNDLED}


def test_full_downgrade_to_base_then_upgrade_matches_the_models(contexts, pharmo2o_databases, tmp_path, db_backend):
    url = pharmo2o_databases.fresh(list(BUNDLED), (), tmp_path, migrated=False)
    ctx = contexts(url, BUNDLED)
    migrations.upgrade(ctx)
    assert schema_diffs(ctx) == []
    downgrade_everything(ctx)
    assert tables(ctx) <= {"alembic_version"}
    with ctx.engine.connect() as conn:
        assert migrations.current_heads(conn) == set()
        if db_backend == "sqlite":
            assert conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all() == []
        else:
            assert conn.execute(text("SELECT count(*) FROM pg_proc WHERE proname = 'pharmo2o_append_only'")
                                ).scalar_one() == 0
    migrations.upgrade(ctx)
    assert migrations.current_branches(ctx) == {"core", *BUNDLED}
    assert schema_diffs(ctx) == []
    # the database itself refuses to change the append-only tables again
    with ctx.transaction() as s:
        audit.record(s, "test", "probe", "thing", 1)
    with pytest.raises(DBAPIError, match="append-only"):
        with ctx.engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET actor = 'forged'"))
    with ctx.session() as s:
        assert s.scalars(select(AuditEntry.actor)).all() == ["test"]
    if db_backend == "sqlite":  # batch migrations switch foreign keys off only for their own run
        with ctx.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


def test_a_plugin_table_is_created_on_enable_kept_on_disable_and_dropped_on_purge(contexts, pharmo2o_databases,
                                                                                 tmp_path):
    extra = [fixture_plugin]
    url = pharmo2o_databases.fresh([], (), tmp_path)
    disabled = contexts(url, [], extra)
    assert fixture_plugin.TABLE not in tables(disabled)
    enabled = contexts(url, ["p2o_fixture"], extra)
    assert migrations.upgrade(enabled, ["p2o_fixture"]) == ["core", "p2o_fixture"]
    assert fixture_plugin.TABLE in tables(enabled)
    with enabled.transaction() as s:
        store = people.create_store(s, {"code": "S1", "name": "一号店"}, ADMIN)
        s.execute(text("INSERT INTO p2o_fixture_notes (store_id, body) VALUES (:s, '效期检查')"), {"s": store.id})
    # disabled: the core is upgraded without it, and its data stays
    assert migrations.upgrade(disabled) == ["core"]
    assert "p2o_fixture" in migrations.current_branches(disabled)
    with disabled.session() as s:
        assert s.execute(text("SELECT body FROM p2o_fixture_notes")).scalar_one() == "效期检查"
    with pytest.raises(PluginError, match="is enabled"):
        migrations.downgrade_plugin(enabled, "p2o_fixture")
    assert fixture_plugin.TABLE in tables(enabled)
    migrations.downgrade_plugin(disabled, "p2o_fixture")
    assert fixture_plugin.TABLE not in tables(disabled)
    assert migrations.current_branches(disabled) == {"core"}
    assert core_tables() <= tables(disabled)
    with disabled.session() as s:
        assert s.scalar(select(Store.name)) == "一号店"
    migrations.downgrade_plugin(disabled, "p2o_fixture")  # purging again is a no-op


def test_purge_refuses_while_a_dependant_plugin_still_has_its_tables(contexts, pharmo2o_databases, tmp_path):
    extra = [fixture_plugin, fixture_plugin_child]
    url = pharmo2o_databases.fresh([], (), tmp_path)
    both = contexts(url, ["p2o_fixture", "p2o_fixture_child"], extra)
    assert migrations.upgrade(both) == ["core", "p2o_fixture", "p2o_fixture_child"]
    with pytest.raises(PluginError, match="p2o_fixture_child"):
        migrations.downgrade_plugin(both, "p2o_fixture")  # an enabled dependant
    disabled = contexts(url, [], extra)
    with pytest.raises(PluginError, match="p2o_fixture_child"):
        migrations.downgrade_plugin(disabled, "p2o_fixture")  # a disabled dependant with tables
    assert {fixture_plugin.TABLE, fixture_plugin_child.TABLE} <= tables(disabled)
    migrations.downgrade_plugin(disabled, "p2o_fixture_child")
    assert fixture_plugin_child.TABLE not in tables(disabled) and fixture_plugin.TABLE in tables(disabled)
    migrations.downgrade_plugin(disabled, "p2o_fixture")
    assert migrations.current_branches(disabled) == {"core"}


def test_a_missing_dependency_is_named(contexts, tmp_path):
    with pytest.raises(PluginError, match="'p2o_fixture_child' depends on 'p2o_fixture'"):
        contexts(f"sqlite:///{tmp_path / 'unused.db'}", ["p2o_fixture_child"], [fixture_plugin, fixture_plugin_child])

