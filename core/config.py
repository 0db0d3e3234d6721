"""Configuration: a TOML file, overridden by ``PHARMO2O_*`` environment variables.

The file is ``pharmo2o.toml`` in the working directory unless
``PHARMO2O_CONFIG`` names another. Environment variables override keys:
``PHARMO2O_DATABASE_URL`` -> ``database_url``; a double underscore goes one
table deeper (``PHARMO2O_LICENSE__FILE`` -> ``[license] file``);
``PHARMO2O_PLUGINS`` is a comma-separated list of enabled plugins.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

DEFAULT_FILE = "pharmo2o.toml"
DEFAULT_DATABASE_URL = "sqlite:///pharmo2o.db"
ENV_PREFIX = "PHARMO2O_"

__all__ = ["Config", "load_config", "ConfigError", "SectionCache"]


class ConfigError(Exception):
    """The configuration file or an environment override is invalid."""


@dataclass
class Config:
    """The effective configuration of one process."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    #: plugin names fixed by PHARMO2O_PLUGINS (then the file's list is not used)
    env_plugins: list[str] | None = None

    @property
    def database_url(self) -> str:
        return str(self.data.get("database_url") or DEFAULT_DATABASE_URL)

    @property
    def enabled_plugins(self) -> list[str]:
        if self.env_plugins is not None:
            return list(self.env_plugins)
        return list(self.data.get("plugins", {}).get("enabled", []))

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        return value if isinstance(value, dict) else {}

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def set_enabled_plugins(self, names: list[str]) -> None:
        """Write the enabled list to the file (the rest of the file is kept)."""
        file_data = _read_file(self.path)
        file_data.setdefault("plugins", {})["enabled"] = sorted(names)
        self.path.write_text(tomli_w.dumps(file_data), encoding="utf-8")
        self.data.setdefault("plugins", {})["enabled"] = sorted(names)
        if self.env_plugins is not None:
            self.env_plugins = sorted(names)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _coerce(value: str) -> Any:
    low = value.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    try:
        return int(value)
    except ValueError:
        return value


def load_config(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the TOML file (missing is fine) and apply ``PHARMO2O_*`` overrides."""
    env = os.environ if environ is None else environ
    cfg_path = Path(path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_FILE)
    data = _read_file(cfg_path)
    env_plugins = None
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name == "plugins":
            env_plugins = [p.strip() for p in value.split(",") if p.strip()]
            continue
        parts = name.split("__")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part!r} is not a table in {cfg_path}")
        node[parts[-1]] = value if parts[-1].endswith("url") else _coerce(value)
    return Config(path=cfg_path, data=data, env_plugins=env_plugins)


class SectionCache:
    """A plugin's checked settings, parsed once per distinct content of its ``[section]``.

    ``settings_of = SectionCache("loyalty", parse)``; ``settings_of(config)`` returns
    ``parse(config.section("loyalty"))``, cached by the section's content (at most 64
    variants: tests make many). ``on_new(settings)`` runs once per newly parsed value.
    """

    def __init__(self, section: str, parse, on_new=None, size: int = 64) -> None:
        self.section, self.parse, self.on_new, self.size = section, parse, on_new, size
        self._cache: dict[str, Any] = {}

    def __call__(self, config: "Config") -> Any:
        section = config.section(self.section)
        key = repr(sorted(section.items(), key=lambda kv: kv[0]))
        found = self._cache.get(key)
        if found is None:
            found = self.parse(section)
            if len(self._cache) > self.size:
                self._cache.clear()
            self._cache[key] = found
            if self.on_new is not None:
                self.on_new(found)
        return found
