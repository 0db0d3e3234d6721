"""Enabling and disabling plugins from the API (admins), through :mod:`core.plugin_admin` like the CLI.

The change is written to the configuration file, the new plugins' tables are
created and the audit log records who did it; running servers keep their
plugin set until they restart, so every answer says what is configured and
what is running.
"""
from __future__ import annotations

import copy
from typing import Annotated

from pydantic import Field

from ... import config as config_module
from ... import plugin_admin
from ...config import Config
from ...errors import Conflict, PluginError, ValidationFailed
from ...plugins import discover
from ..operations import operation
from ..schemas import Body, Out

__all__ = ["PluginConfiguration", "PluginEnable", "PluginDisable", "configured_plugins"]

ADMIN = ("admin",)
PluginName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
RESTART = ("The configuration changed: restart the server (every worker) for the running plugin set, its API "
           "routes and console pages to follow.")


class PluginNames(Body):
    names: Annotated[list[PluginName], Field(min_length=1, max_length=20)]


class ConfigurationOut(Out):
    running: list[str] = Field(description="the plugins this server process loaded at start")
    configured: list[str] = Field(description="the plugins the configuration enables now")
    restart_required: bool
    configurable: bool = Field(description="false when PHARMO2O_PLUGINS fixes the set")
    config_file: str
    license_state: str
    licensed_modules: list[str] | None


class EnableOut(ConfigurationOut):
    enabled: list[str]
    dependencies: list[str] = Field(description="enabled too, because an enabled plugin depends on them")
    already: list[str]
    migrated: list[str]
    message: str


class DisableOut(ConfigurationOut):
    disabled: list[str]
    not_enabled: list[str]
    message: str


def configured_plugins(config: Config) -> list[str]:
    """The enabled set as the configuration says now (the file may have changed since start)."""
    if config.env_plugins is not None:
        return list(config.env_plugins)
    if config.path.exists():
        return list(config_module._read_file(config.path).get("plugins", {}).get("enabled", []))
    return config.enabled_plugins


def _current_config(config: Config) -> Config:
    data = copy.deepcopy(config.data)
    if config.env_plugins is None:
        data.setdefault("plugins", {})["enabled"] = configured_plugins(config)
    return Config(path=config.path, data=data, env_plugins=config.env_plugins)


def _state(ctx) -> dict:
    registry, config = ctx.registry, ctx.config
    configured = configured_plugins(config)
    return {"running": list(registry.enabled), "configured": configured,
            "restart_required": sorted(configured) != sorted(registry.enabled),
            "configurable": config.env_plugins is None, "config_file": str(config.path),
            "license_state": registry.license_state,
            "licensed_modules": sorted(registry.license.modules) if registry.license is not None else None}


def _extra_modules(registry) -> list:
    """Plugins this process knows outside the entry points (given to Context.create)."""
    return [info.module for info in registry.available.values() if info.distribution is None]


def _check_names(registry, names: list[str], *, allow_configured: bool) -> None:
    available = discover(_extra_modules(registry))
    configured = set(configured_plugins(registry.config)) if allow_configured else set()
    unknown = [n for n in names if n not in available and n not in configured]
    if unknown:
        raise ValidationFailed.one("names", f"unknown plugin(s) {', '.join(map(repr, unknown))}; "
                                            f"installed: {', '.join(sorted(available)) or 'none'}")


def _refused(exc: Exception) -> Conflict:
    message = " ".join(str(exc).split())
    return Conflict(message, fields=[{"field": "names", "message": message}])


class PluginConfiguration:
    @operation("plugins.configuration", roles=ADMIN, response=ConfigurationOut, tags=("meta",),
               summary="Configured versus running plugins, and the license")
    def on_get(self, req, resp):
        resp.media = _state(req.context.ctx)


class PluginEnable:
    @operation("plugins.enable", roles=ADMIN, body=PluginNames, response=EnableOut, tags=("meta",),
               summary="Enable plugins (and their dependencies) and create their tables (audited)",
               description="Refused (409) for a plugin the license does not name, once the license has "
                           "expired, or when PHARMO2O_PLUGINS fixes the set. " + RESTART,
               errors=(409,), idempotency="none", writes=False)
    def on_post(self, req, resp):
        ctx, names = req.context.ctx, req.context.body.names
        _check_names(ctx.registry, names, allow_configured=False)
        try:
            result = plugin_admin.enable_plugins(_current_config(ctx.config), names, req.context.caller,
                                                 extra_plugins=_extra_modules(ctx.registry))
        except PluginError as exc:  # LicenseError included
            raise _refused(exc) from exc
        done = result.enabled + result.dependencies
        message = (f"enabled {', '.join(done)}. " + RESTART) if done else f"already enabled: {', '.join(names)}"
        resp.media = {**_state(ctx), "enabled": result.enabled, "dependencies": result.dependencies,
                      "already": result.already, "migrated": result.migrated, "message": message}


class PluginDisable:
    @operation("plugins.disable", roles=ADMIN, body=PluginNames, response=DisableOut, tags=("meta",),
               summary="Disable plugins; their tables and data are kept (audited)",
               description="Refused (409) while an enabled plugin depends on one of them, or when "
                           "PHARMO2O_PLUGINS fixes the set. " + RESTART,
               errors=(409,), idempotency="none", writes=False)
    def on_post(self, req, resp):
        ctx, names = req.context.ctx, req.context.body.names
        _check_names(ctx.registry, names, allow_configured=True)
        try:
            result = plugin_admin.disable_plugins(_current_config(ctx.config), names, req.context.caller,
                                                  extra_plugins=_extra_modules(ctx.registry))
        except PluginError as exc:
            raise _refused(exc) from exc
        message = (f"disabled {', '.join(result.disabled)} (data kept). " + RESTART) if result.disabled \
            else f"not enabled: {', '.join(names)}"
        resp.media = {**_state(ctx), "disabled": result.disabled, "not_enabled": result.not_enabled,
                      "message": message}
