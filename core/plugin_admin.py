"""Enabling and disabling plugins: the configuration change, the migrations and the
audit entry, in one place for ``pharmo2o plugins enable|disable`` and the admin API.

Enabling checks that every plugin is installed, adds the plugins it depends
on, refuses what the license does not name (or everything, once the license
has expired), loads the new set (so a set that cannot load changes nothing),
upgrades only the new plugins' migration branches, then writes the audit
entries and the configuration file together. Disabling refuses while an
enabled plugin still depends on one being disabled, and keeps every table and
row: deleting a plugin's data is the separate ``plugins purge`` step.

The running processes keep the plugin set they started with: a server picks
up the change when it restarts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Iterable

from .config import Config
from .errors import LicenseError, PluginError

__all__ = ["EnableResult", "DisableResult", "enable_plugins", "disable_plugins", "check_configurable",
           "with_dependencies", "PluginsFixedByEnvironment"]


class PluginsFixedByEnvironment(PluginError):
    """``PHARMO2O_PLUGINS`` decides the enabled set, so the file cannot change it."""


@dataclass(frozen=True)
class EnableResult:
    enabled: list[str]  # newly enabled plugins that were asked for
    dependencies: list[str]  # newly enabled because an asked-for plugin depends on them
    already: list[str]  # asked for but enabled before
    migrated: list[str]  # migration branches upgraded
    configured: list[str]  # the enabled set now in the configuration, dependency order


@dataclass(frozen=True)
class DisableResult:
    disabled: list[str]  # plugins taken out of the configuration (their data kept)
    not_enabled: list[str]  # asked for but not enabled
    configured: list[str]  # the enabled set now in the configuration
    audited: bool = True  # False when the database is not initialised (no audit table yet)
    warnings: list[str] = field(default_factory=list)


def check_configurable(config: Config) -> None:
    if config.env_plugins is not None:
        raise PluginsFixedByEnvironment(
            "PHARMO2O_PLUGINS is set, so the enabled plugins come from the environment, not from "
            f"{config.path}: change that variable instead")


def with_dependencies(names: Iterable[str], available: dict) -> list[str]:
    """``names`` and, recursively, the plugins they depend on."""
    out: list[str] = []

    def add(name: str, wanted_by: str | None) -> None:
        if name in out:
            return
        if name not in available:
            raise PluginError(f"plugin {wanted_by!r} depends on {name!r}, which is not installed")
        out.append(name)
        for dep in available[name].manifest.depends:
            add(dep, name)

    for n in names:
        add(n, None)
    return out


def _unknown(names: Iterable[str], available: dict) -> PluginError:
    return PluginError(f"unknown plugin(s) {', '.join(map(repr, names))}; "
                       f"installed: {', '.join(sorted(available)) or 'none'}")


def enable_plugins(config: Config, names: Iterable[str], actor, *,
                   extra_plugins: Iterable[ModuleType] = ()) -> EnableResult:
    """Enable ``names`` (and their dependencies) in ``config``'s file and create their tables.

    ``actor`` (a :class:`core.auth.Caller` or a name) is recorded in the audit
    log. Raises :class:`PluginError` (unknown plugin, a configuration naming
    an uninstalled one, a set that does not load) or :class:`LicenseError`;
    nothing changes then.
    """
    from . import audit, licensing, migrations
    from .context import Context
    from .plugins import discover, topological_order

    names = list(dict.fromkeys(names))
    check_configurable(config)
    available = discover(extra_plugins)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise _unknown(unknown, available)
    current = config.enabled_plugins
    stale = [n for n in current if n not in available]
    if stale:
        raise PluginError(f"the configuration enables {', '.join(map(repr, stale))}, which is not installed: "
                          f"install it or disable {' '.join(stale)} first")
    wanted = with_dependencies(list(current) + names, available)
    order = topological_order({n: available[n].manifest for n in wanted})
    new = [n for n in order if n not in current]
    already = [n for n in names if n in current]
    if not new:
        return EnableResult([], [], already, [], list(current))
    lic, lic_state, _ = licensing.from_config(config)
    if lic is not None:
        if lic_state == "expired":
            raise LicenseError(
                f"the license of {lic.chain!r} expired on {lic.expires.isoformat()}: no further plugin can be "
                "enabled (the enabled ones keep running and all data stays available); renew the license")
        refused = [n for n in new if n not in lic.modules]
        if refused:
            raise LicenseError(
                f"the license of {lic.chain!r} does not include {', '.join(map(repr, refused))}; "
                f"licensed modules: {', '.join(sorted(lic.modules)) or 'none'}")
    ctx = Context.create(config, extra_plugins=extra_plugins, enabled=order)  # refuses a set that does not load
    try:
        migrated = migrations.upgrade(ctx, new)
        requested = set(names)
        with ctx.transaction() as session:  # audit and configuration change together
            for n in new:
                why = "" if n in requested else "enabled as a dependency of " + ", ".join(
                    m for m in new if n in available[m].manifest.depends)
                audit.record(session, actor, "plugin.enable", "plugin", n, before={"enabled": sorted(current)},
                             after={"enabled": sorted(order)}, detail=why)
            config.set_enabled_plugins(order)
    finally:
        ctx.dispose()
    return EnableResult([n for n in new if n in requested], [n for n in new if n not in requested], already,
                        list(migrated), order)


def disable_plugins(config: Config, names: Iterable[str], actor, *,
                    extra_plugins: Iterable[ModuleType] = ()) -> DisableResult:
    """Take ``names`` out of ``config``'s enabled set; their tables and data are kept.

    Refused (:class:`PluginError`) for an unknown name or while an enabled
    plugin that stays depends on one of them. The audit entry and the file
    change are written together (no entry when the database has no tables yet).
    """
    from sqlalchemy import inspect

    from . import audit
    from .db import make_engine, make_sessionmaker, transaction
    from .plugins import discover

    names = list(dict.fromkeys(names))
    check_configurable(config)
    available = discover(extra_plugins)
    current = config.enabled_plugins
    unknown = [n for n in names if n not in available and n not in current]
    if unknown:
        raise _unknown(unknown, available)
    targets = [n for n in names if n in current]
    remaining = [n for n in current if n not in targets]
    for name in targets:
        dependants = [m for m in remaining if m in available and name in available[m].manifest.depends]
        if dependants:
            raise PluginError(f"cannot disable {name!r}: enabled plugin(s) {', '.join(dependants)} depend on it; "
                              "disable them first (or in the same command)")
    not_enabled = [n for n in names if n not in current]
    if not targets:
        return DisableResult([], not_enabled, list(current))
    engine = make_engine(config.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            logged = inspect(session.connection()).has_table("audit_log")
            for name in targets:
                if logged:
                    audit.record(session, actor, "plugin.disable", "plugin", name,
                                 before={"enabled": sorted(current)}, after={"enabled": sorted(remaining)},
                                 detail="data kept")
            config.set_enabled_plugins(remaining)
    finally:
        engine.dispose()
    return DisableResult(targets, not_enabled, list(config.enabled_plugins), audited=logged)
