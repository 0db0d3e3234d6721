"""Per-plugin Alembic branches: the core owns branch ``core``; each plugin owns a
branch labelled with its name whose first revision ``depends_on`` the branches
of its dependencies (and ``core``). Every installed plugin's scripts are on the
version path (so the history of a disabled plugin stays readable), but only
the branches asked for are upgraded or downgraded.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .errors import PluginError

__all__ = ["alembic_config", "upgrade", "downgrade_plugin", "current_heads", "branch_heads", "ALEMBIC_DIR",
           "add_append_only_guards", "drop_append_only_guards"]

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def alembic_config(registry, connection=None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    locations = [str(ALEMBIC_DIR / "versions")]
    for info in registry.available.values():
        path = info.migrations_path
        if path is not None and path.is_dir():
            locations.append(str(path))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    cfg.set_main_option("sqlalchemy.url", registry.config.database_url)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _connection(engine):
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":  # batch mode rebuilds tables: keep FKs off for the run
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            yield conn
        finally:
            if conn.dialect.name == "sqlite":
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


def branch_heads(registry) -> dict[str, str]:
    """``{branch label: head revision}`` of every branch on the version path."""
    script = ScriptDirectory.from_config(alembic_config(registry))
    labels = {label for rev in script.walk_revisions() for label in (rev.branch_labels or ())}
    return {label: script.get_revision(f"{label}@head").revision for label in sorted(labels)}


def upgrade(ctx, names: list[str] | None = None) -> list[str]:
    """Upgrade the core's branch and the branches of ``names`` (default: the enabled plugins)."""
    names = ctx.registry.enabled if names is None else names
    targets = ["core"] + [n for n in names if ctx.registry.available[n].migrations_path]
    with _connection(ctx.engine) as conn:
        cfg = alembic_config(ctx.registry, conn)
        for target in targets:
            command.upgrade(cfg, f"{target}@head")
        conn.commit()
    return targets


def downgrade_plugin(ctx, name: str) -> None:
    """Remove plugin ``name``'s tables (its whole branch). Refused while an enabled plugin depends on it."""
    if name not in ctx.registry.available:
        raise PluginError(f"plugin {name!r} is not installed")
    dependants = [n for n in ctx.registry.enabled if name in ctx.registry.available[n].manifest.depends]
    if dependants:
        raise PluginError(f"cannot purge {name!r}: enabled plugin(s) {', '.join(dependants)} depend on it")
    if name in ctx.registry.enabled:
        raise PluginError(f"plugin {name!r} is enabled: disable it before purging its data")
    with _connection(ctx.engine) as conn:
        cfg = alembic_config(ctx.registry, conn)
        applied = current_branches(ctx, conn)
        # Alembic would silently take the branches that depend on this one down with it:
        # refuse while a (disabled) dependant still has its tables.
        holding = [n for n in _dependants(ctx.registry, name) if n in applied]
        if holding:
            raise PluginError(f"cannot purge {name!r}: the tables of plugin(s) {', '.join(holding)} depend on it; "
                              "purge those first")
        if name in applied:
            command.downgrade(cfg, f"{name}@base")
        conn.commit()


def _dependants(registry, name: str) -> list[str]:
    """Installed plugins that depend on ``name``, directly or through others."""
    found: list[str] = []
    frontier = [name]
    while frontier:
        current = frontier.pop()
        for other, info in sorted(registry.available.items()):
            if current in info.manifest.depends and other not in found:
                found.append(other)
                frontier.append(other)
    return found


def current_heads(conn) -> set[str]:
    return set(MigrationContext.configure(conn).get_current_heads())


def current_branches(ctx, conn=None) -> set[str]:
    """Branch labels applied in the database (a branch counts once its first revision is)."""
    def read(c):
        script = ScriptDirectory.from_config(alembic_config(ctx.registry))
        labels: set[str] = set()
        for head in current_heads(c):
            for rev in script.iterate_revisions(head, "base"):
                labels |= set(rev.branch_labels or ())
        return labels
    if conn is not None:
        return read(conn)
    with ctx.engine.connect() as c:
        return read(c)


# ------------------------------------------------------------------ for migration scripts

def add_append_only_guards(op, table: str) -> None:
    """In a migration (``op`` is ``alembic.op``): make ``table`` append-only in the database itself.

    Row triggers refuse UPDATE and DELETE (PostgreSQL and SQLite) and a statement trigger
    refuses TRUNCATE (PostgreSQL); dropping the table (a plugin purge) is not affected. On
    PostgreSQL it uses the core's ``pharmo2o_append_only()``: the revision must depend on
    ``core_0001``.
    """
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION pharmo2o_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION pharmo2o_append_only()")
    elif dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")


def drop_append_only_guards(op, table: str) -> None:
    """The downgrade of :func:`add_append_only_guards`."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    elif dialect == "sqlite":
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event}")
