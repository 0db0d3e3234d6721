"""pytest plugin (entry point ``pytest11: pharmo2o``): fixtures for pharmo2o and its plugins.

Backend: ``PHARMO2O_TEST_DATABASE=sqlite`` (default) or ``postgresql``; the
server is ``PHARMO2O_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
When PostgreSQL is selected and unreachable the tests fail, they never skip.

Each test gets a fresh database copied from a migrated template (one template
per set of enabled plugins per run): a file copy on SQLite, ``CREATE DATABASE
... TEMPLATE`` on PostgreSQL.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .config import Config
from .context import Context

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def backend() -> str:
    value = os.environ.get("PHARMO2O_TEST_DATABASE", "sqlite").lower()
    if value not in ("sqlite", "postgresql"):
        raise pytest.UsageError(f"PHARMO2O_TEST_DATABASE must be sqlite or postgresql, not {value!r}")
    return value


def pg_admin_url() -> str:
    return os.environ.get("PHARMO2O_TEST_PG_URL", DEFAULT_PG).replace("postgresql://", "postgresql+psycopg://", 1)


def _pg_url(dbname: str) -> str:
    base = pg_admin_url().rsplit("/", 1)[0]
    return f"{base}/{dbname}"


class Databases:
    """Creates migrated template databases and fresh copies of them."""

    def __init__(self, workdir: Path, kind: str):
        self.workdir = workdir
        self.kind = kind
        self.templates: dict[tuple, str] = {}
        self.created: list[str] = []
        self.run_id = uuid.uuid4().hex[:8]
        self._admin = None

    def admin(self):
        if self._admin is None:
            self._admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
            try:
                with self._admin.connect() as c:
                    c.execute(text("SELECT 1"))
            except Exception as exc:
                raise RuntimeError(f"PostgreSQL at {pg_admin_url()} is unreachable: {exc}") from exc
        return self._admin

    def _migrate(self, url: str, enabled: list[str], extra) -> None:
        from . import migrations
        ctx = Context.create(Config(path=self.workdir / "none.toml", data={"database_url": url}),
                             enabled=enabled, extra_plugins=extra)
        try:
            migrations.upgrade(ctx)
        finally:
            ctx.dispose()

    def template(self, enabled: list[str], extra=()) -> str:
        key = (tuple(sorted(enabled)), tuple(sorted(m.__name__ for m in extra)))
        if key not in self.templates:
            tag = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
            if self.kind == "sqlite":
                path = self.workdir / f"template_{tag}.db"
                url = f"sqlite:///{path}"
                self._migrate(url, list(enabled), extra)
                self.templates[key] = str(path)
            else:
                name = f"p2o_tpl_{self.run_id}_{tag}"
                with self.admin().connect() as c:
                    c.execute(text(f'CREATE DATABASE "{name}"'))
                self.created.append(name)
                self._migrate(_pg_url(name), list(enabled), extra)
                self.templates[key] = name
        return self.templates[key]

    def fresh(self, enabled: list[str], extra=(), tmp_path: Path | None = None, migrated: bool = True) -> str:
        """A URL of a new database (migrated for ``enabled`` unless ``migrated`` is false)."""
        if self.kind == "sqlite":
            path = (tmp_path or self.workdir) / f"db_{uuid.uuid4().hex[:8]}.db"
            if migrated:
                shutil.copyfile(self.template(enabled, extra), path)
            return f"sqlite:///{path}"
        name = f"p2o_{self.run_id}_{uuid.uuid4().hex[:10]}"
        with self.admin().connect() as c:
            if migrated:
                c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template(enabled, extra)}"'))
            else:
                c.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return _pg_url(name)

    def drop_all(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as c:
            for name in reversed(self.created):
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session")
def pharmo2o_databases(tmp_path_factory):
    dbs = Databases(tmp_path_factory.mktemp("pharmo2o-db"), backend())
    if dbs.kind == "postgresql":
        dbs.admin()  # fail early and loudly when the server is unreachable
    yield dbs
    dbs.drop_all()


@pytest.fixture
def make_ctx(pharmo2o_databases, tmp_path):
    """``make_ctx(enabled=[...], extra_plugins=[...], settings={...})`` -> a Context on a fresh database."""
    made: list[Context] = []

    def factory(enabled=(), extra_plugins=(), settings=None, migrated=True, url=None) -> Context:
        enabled = list(enabled) + [m.manifest.name for m in extra_plugins if m.manifest.name not in enabled]
        url = url or pharmo2o_databases.fresh(enabled, extra_plugins, tmp_path, migrated=migrated)
        data = {"database_url": url, "plugins": {"enabled": enabled}}
        for key, value in (settings or {}).items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        config = Config(path=tmp_path / "pharmo2o.toml", data=data)
        ctx = Context.create(config, extra_plugins=extra_plugins)
        made.append(ctx)
        return ctx

    yield factory
    for ctx in made:
        ctx.dispose()


@pytest.fixture
def ctx(make_ctx):
    """A Context with only the core enabled, on a fresh migrated database."""
    return make_ctx()


@pytest.fixture
def db_backend() -> str:
    return backend()
