"""The running system of one process: configuration, database, enabled plugins."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Iterable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .config import Config, load_config
from .db import make_engine, make_sessionmaker
from .plugins import PluginRegistry, load_registry

__all__ = ["Context", "context_of"]


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
        engine = engine or make_engine(config.database_url)
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
