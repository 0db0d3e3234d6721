"""The running system of one process: configuration, database, enabled plugins."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Iterable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .config import Config, ConfigError, load_config
from .db import make_engine, make_sessionmaker
from .plugins import PluginRegistry, load_registry

__all__ = ["Context", "context_of", "engine_options"]

_POOL_KEYS = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 1, "pool_recycle": -1}  # key -> smallest value


def engine_options(config: Config) -> dict:
    """The ``[database]`` section as engine options; every key is optional (SQLAlchemy's defaults apply)::

        [database]
        pool_size = 5                 # connections each process keeps open
        max_overflow = 10             # more, opened when needed and closed after
        pool_timeout = 30             # seconds to wait for a free connection
        pool_recycle = -1             # seconds before a connection is replaced (-1: never)
        prepared_statements = true    # false behind pgbouncer in transaction mode before 1.21 (PostgreSQL)
    """
    section = config.section("database")
    unknown = sorted(set(section) - set(_POOL_KEYS) - {"prepared_statements"})
    if unknown:
        raise ConfigError(f"[database]: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted([*_POOL_KEYS, 'prepared_statements']))}")
    options: dict = {}
    for key, least in _POOL_KEYS.items():
        if key in section:
            value = section[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"database.{key}: must be a whole number >= {least}, not {value!r}")
            options[key] = value
    if "prepared_statements" in section:
        value = section["prepared_statements"]
        if not isinstance(value, bool):
            raise ConfigError(f"database.prepared_statements: must be true or false, not {value!r}")
        if not value and config.database_url.startswith("postgresql"):
            options["connect_args"] = {"prepare_threshold": None}  # psycopg: never prepare
    return options


def context_of(session: Session) -> "Context":
    """The Context a session belongs to: how hooks that receive only a session reach
    the configuration and the plugin registry (``context_of(session).registry``)."""
    ctx = session.info.get("ctx")
    if ctx is None:
        raise RuntimeError("this session was not made by a pharmo2o Context")
    return ctx


@dataclass
class Context:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    registry: PluginRegistry

    def __post_init__(self) -> None:
        self.sessions.configure(info={"ctx": self})

    @classmethod
    def create(cls, config: Config | None = None, *, extra_plugins: Iterable[ModuleType] = (),
               enabled: list[str] | None = None, engine: Engine | None = None) -> "Context":
        config = config or load_config()
        registry = load_registry(config, extra=extra_plugins, enabled=enabled)
        engine = engine or make_engine(config.database_url, **engine_options(config))
        return cls(config, engine, make_sessionmaker(engine), registry)

    @property
    def hook(self):
        return self.registry.hook

    def setting(self, dotted: str, default):
        return self.config.get(dotted, default)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on any exception."""
        session = self.sessions()
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-only unit: rolled back at the end (on SQLite it takes no write lock)."""
        session = self.sessions()
        try:
            with session.begin():
                session.connection(execution_options={"pharmo2o_readonly": True})
                yield session
                session.rollback()
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
