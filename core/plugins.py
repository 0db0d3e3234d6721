"""Plugin discovery, manifests, dependency order and the pluggy manager.

How the enabled set becomes a running plugin manager::

    entry points (pharmo2o.plugins)      configuration (toml / PHARMO2O_PLUGINS)
              |                                      |
              v                                      v
      available plugins  --------------->  enabled names
      (manifest each)                        |  every name installed?
                                             |  every dependency enabled?
                                             |  licensed (when a license is set)?
                                             v
                                  topological order (dependencies first,
                                  ties broken by name; a cycle is an error)
                                             |
                                             v
        pluggy manager: hookspecs (the core's, then those enabled plugins declare
        for others: Manifest.hookspecs) + core default plugin + enabled plugins,
        then check_pending()

Bundled plugins and third-party ones are found the same way, through the
``pharmo2o.plugins`` entry-point group; the core never imports a plugin by name.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import logging
import types
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Iterable

import pluggy

from . import hookspecs
from .config import Config
from .errors import DomainError, LicenseError, PluginError

__all__ = ["Manifest", "PluginInfo", "PluginRegistry", "load_registry", "topological_order", "ENTRY_POINT_GROUP",
           "HookFailure", "hook_failure"]

ENTRY_POINT_GROUP = "pharmo2o.plugins"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Manifest:
    """What a plugin declares about itself (``manifest`` in its package)."""

    name: str  # unique plugin name; also its Alembic branch label
    version: str  # the plugin's own version
    summary: str  # one line shown by `pharmo2o plugins list`
    depends: tuple[str, ...] = ()  # plugins that must be enabled before this one
    migrations: str | None = None  # folder of its Alembic scripts, relative to the package
    hooks: str | None = None  # module holding its @hookimpl functions (default: the package)
    hookspecs: str | None = None  # module of hook specifications it adds for other plugins to implement


@dataclass
class PluginInfo:
    manifest: Manifest
    module: ModuleType
    distribution: str | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def migrations_path(self) -> Path | None:
        if not self.manifest.migrations:
            return None
        return Path(self.module.__file__).parent / self.manifest.migrations

    def hooks_module(self) -> ModuleType:
        if self.manifest.hooks:
            return importlib.import_module(self.manifest.hooks)
        return self.module

    def hookspecs_module(self) -> ModuleType | None:
        return importlib.import_module(self.manifest.hookspecs) if self.manifest.hookspecs else None


def _manifest_of(module: ModuleType, origin: str) -> Manifest:
    manifest = getattr(module, "manifest", None)
    if not isinstance(manifest, Manifest):
        raise PluginError(f"{origin}: module {module.__name__} has no `manifest = Manifest(...)`")
    return manifest


def discover(extra: Iterable[ModuleType] = (), broken: dict[str, str] | None = None) -> dict[str, PluginInfo]:
    """Every installed plugin, by name: entry points plus ``extra`` modules (tests).

    An entry point that fails to import or has no valid manifest is an error
    naming it; when ``broken`` is given it is recorded there instead, so that a
    broken package nobody enabled cannot stop the others.
    """
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party package must say which one
                raise PluginError(f"plugin entry point {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
            manifest = _manifest_of(module, f"entry point {ep.name!r}")
            if manifest.name != ep.name:
                raise PluginError(f"entry point {ep.name!r} loads a plugin whose manifest is named {manifest.name!r}")
        except PluginError as exc:
            if broken is None:
                raise
            broken[ep.name] = str(exc)
            continue
        dist = getattr(ep, "dist", None)
        _add(found, PluginInfo(manifest, module, dist.name if dist else None))
    for module in extra:
        _add(found, PluginInfo(_manifest_of(module, "extra plugin"), module, None))
    return found


def _add(found: dict[str, PluginInfo], info: PluginInfo) -> None:
    if info.name == "core":
        raise PluginError("a plugin may not be named 'core': that is the core's own branch")
    if info.name in found and found[info.name].module is not info.module:
        raise PluginError(
            f"two plugins are named {info.name!r}: {found[info.name].module.__name__} and {info.module.__name__}")
    found[info.name] = info


def topological_order(manifests: dict[str, Manifest]) -> list[str]:
    """Names ordered so that each comes after its dependencies (ties by name).

    Raises :class:`PluginError` naming a missing dependency or the plugins of a cycle.
    """
    for name, m in sorted(manifests.items()):
        missing = [d for d in m.depends if d not in manifests]
        if missing:
            raise PluginError(f"plugin {name!r} depends on {', '.join(map(repr, missing))}, which is not enabled or not installed")
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise PluginError(f"plugin dependency cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in sorted(manifests[name].depends):
            visit(dep, path + [name])
        state[name] = 2
        order.append(name)

    for name in sorted(manifests):
        visit(name, [])
    return order


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, counting the changes that alter how a hook is called (``generation``):
    registering or unregistering a plugin, adding hookspecs, starting or stopping call monitoring.
    :class:`DirectHook` rebuilds its call plan only when the count moved."""

    generation = 0

    def _changed(self) -> None:
        self.generation += 1

    def register(self, plugin, name=None):
        try:
            return super().register(plugin, name)
        finally:
            self._changed()

    def unregister(self, plugin=None, name=None):
        try:
            return super().unregister(plugin, name)
        finally:
            self._changed()

    def add_hookspecs(self, module_or_class) -> None:
        try:
            super().add_hookspecs(module_or_class)
        finally:
            self._changed()

    def set_blocked(self, name: str) -> None:
        try:
            super().set_blocked(name)
        finally:
            self._changed()

    def add_hookcall_monitoring(self, before, after):
        undo = super().add_hookcall_monitoring(before, after)
        self._changed()

        def undo_and_count() -> None:
            undo()
            self._changed()
        return undo_and_count


class DirectHook:
    """Calls every implementation of one hook as pluggy does, without pluggy's per-call machinery.

    The answers are pluggy's: the implementations in pluggy's order (the last
    registered first, after ``tryfirst``/``trylast``), ``None`` answers dropped, an
    exception propagated as it is. On a hot read hook (``product_visible``, called
    for every product read) pluggy's own work per call (argument checks, copying the
    implementation list, the multicall loop with its wrapper bookkeeping) costs
    more than the implementations. Whenever calling directly could differ, the call
    goes through pluggy: an implementation is a (hook)wrapper or takes optional
    arguments, the hook is historic, ``firstresult`` or has spec defaults, the
    manager is traced (``add_hookcall_monitoring``), or it is not a
    :class:`PluginManager` (which says when its plugins change: the plan is
    rebuilt then, so a plugin registered later takes part at once).
    """

    __slots__ = ("_pm", "_name", "_generation", "_plan")

    def __init__(self, pm: pluggy.PluginManager, name: str) -> None:
        self._pm = pm
        self._name = name
        self._generation = -1
        self._plan: list | None = None  # [(function, argnames)] in call order; None: through pluggy

    def _make_plan(self) -> list | None:
        caller = getattr(self._pm.hook, self._name)
        spec = caller.spec
        if spec is None or caller.is_historic() or spec.opts.get("firstresult") or spec.kwargnames:
            return None
        if getattr(self._pm, "_inner_hookexec", None) is not getattr(self._pm, "_pharmo2o_plain_hookexec", None):
            return None  # traced or monitored: every call goes through pluggy
        impls = caller.get_hookimpls()
        if any(i.hookwrapper or i.wrapper or i.kwargnames for i in impls):
            return None
        return [(i.function, i.argnames) for i in reversed(impls)]

    def __call__(self, **kwargs) -> list:
        generation = getattr(self._pm, "generation", None)
        if generation != self._generation or generation is None:
            self._plan = self._make_plan() if generation is not None else None
            self._generation = generation
        plan = self._plan
        if plan is None:
            return getattr(self._pm.hook, self._name)(**kwargs)
        results = []
        for function, argnames in plan:
            try:
                args = [kwargs[name] for name in argnames]
            except KeyError as exc:
                raise pluggy.HookCallError(f"hook call must provide argument {exc.args[0]!r}") from exc
            answer = function(*args)
            if answer is not None:
                results.append(answer)
        return results


@dataclass
class PluginRegistry:
    """The loaded plugin set of one process."""

    config: Config
    available: dict[str, PluginInfo]
    enabled: list[str]
    pm: pluggy.PluginManager
    license: object | None = None  # core.licensing.License when configured
    license_state: str = "none"  # none | valid | expired
    warnings: list[str] = field(default_factory=list)
    _direct: dict[str, DirectHook] = field(default_factory=dict, repr=False, compare=False)

    @property
    def hook(self):
        return self.pm.hook

    def is_enabled(self, name: str) -> bool:
        return name in self.enabled

    def hooks_of(self, name: str) -> list[str]:
        """Names of the hooks plugin ``name`` (or ``"core"``) implements."""
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            return []
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    def is_licensed(self, name: str) -> bool:
        if self.license is None:
            return True
        return name in self.license.modules

    def describe(self) -> list[dict]:
        """What `plugins list` and ``GET /api/v1/plugins`` show."""
        rows = []
        for name in sorted(self.available):
            m = self.available[name].manifest
            rows.append({
                "name": name, "version": m.version, "summary": m.summary,
                "depends": list(m.depends), "enabled": name in self.enabled,
                "licensed": self.is_licensed(name), "hooks": self.hooks_of(name),
            })
        return rows

    def call(self, hook_name: str, **kwargs) -> list:
        """``registry.hook.<hook_name>(**kwargs)``: every implementation's answer that is not
        ``None``, in pluggy's order, called directly where that is the same (:class:`DirectHook`)."""
        direct = self._direct.get(hook_name)
        if direct is None:
            direct = self._direct[hook_name] = DirectHook(self.pm, hook_name)
        return direct(**kwargs)

    def collect(self, hook_name: str, **kwargs) -> list:
        """Call a hook and drop the ``None`` answers."""
        return self.call(hook_name, **kwargs)

    def merged_dict(self, hook_name: str, what: str, **kwargs) -> dict:
        """Call a dict-returning hook and merge, refusing a key claimed twice."""
        merged: dict = {}
        owners: dict = {}
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            answer = impl.function(**{k: kwargs[k] for k in impl.argnames})
            for key, value in (answer or {}).items():
                if key in merged:
                    raise PluginError(f"{what} {key!r} is declared by both {owners[key]!r} and {impl.plugin_name!r}")
                merged[key] = value
                owners[key] = impl.plugin_name
        return merged

    def concat_named(self, hook_name: str, what: str, key=lambda x: x["name"], **kwargs) -> list:
        """Call a list-returning hook, concatenate, refusing a name given twice."""
        out: list = []
        seen: dict = {}
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            for item in impl.function(**{k: kwargs[k] for k in impl.argnames}) or []:
                k = key(item)
                if k in seen:
                    raise PluginError(f"{what} {k!r} is registered by both {seen[k]!r} and {impl.plugin_name!r}")
                seen[k] = impl.plugin_name
                out.append(item)
        return out


@dataclass(frozen=True)
class HookFailure:
    """Which plugin's hook implementation raised an exception (see :func:`hook_failure`)."""

    plugin: str  # the plugin's name
    hook: str  # the hook it was answering


_BLAME_ATTR = "__pharmo2o_hook_failure__"


def hook_failure(exc: BaseException) -> HookFailure | None:
    """The plugin and hook ``exc`` escaped from, or ``None`` when no plugin hook raised it.

    Only unexpected failures are named: a :class:`core.errors.DomainError` is a
    deliberate refusal and passes through unmarked. When hooks call hooks, the
    innermost plugin (the one that raised) is named.
    """
    return getattr(exc, _BLAME_ATTR, None)


def _blaming(fn, plugin: str, hook: str):
    @functools.wraps(fn)  # keeps the hookimpl marker and, through __wrapped__, the argument names
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DomainError:
            raise
        except Exception as exc:
            if hook_failure(exc) is None:
                try:
                    setattr(exc, _BLAME_ATTR, HookFailure(plugin, hook))
                    exc.add_note(f"raised by plugin {plugin!r} in hook {hook}")
                except (AttributeError, TypeError):  # an exception type that takes no attributes
                    pass
            raise
    return call


def _named_hooks(plugin: object, name: str) -> object:
    """A stand-in for ``plugin`` (a module) whose hook implementations name ``name`` when they raise.

    Registered instead of the module itself, so every way a hook is called
    (``pm.hook``, ``collect``, ``merged_dict``, ``get_hookimpls()``) reports the plugin.
    """
    marker = f"{hookspecs.PROJECT}_impl"
    proxy = types.SimpleNamespace(__name__=getattr(plugin, "__name__", name), __doc__=getattr(plugin, "__doc__", None))
    for attr in dir(plugin):
        fn = getattr(plugin, attr, None)
        opts = getattr(fn, marker, None)
        if opts is None or not inspect.isroutine(fn):
            continue
        if opts.get("wrapper") or opts.get("hookwrapper"):  # generators: left as they are
            setattr(proxy, attr, fn)
        else:
            setattr(proxy, attr, _blaming(fn, name, opts.get("specname") or attr))
    return proxy


def make_plugin_manager() -> pluggy.PluginManager:
    pm = PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm._pharmo2o_plain_hookexec = getattr(pm, "_inner_hookexec", None)  # untraced (see DirectHook)
    return pm


def load_registry(config: Config, extra: Iterable[ModuleType] = (), enabled: list[str] | None = None) -> PluginRegistry:
    """Load the enabled plugins of ``config`` (or the explicit ``enabled`` list)."""
    from . import default_plugin, jobs, licensing

    broken: dict[str, str] = {}
    available = discover(extra, broken)
    names = list(config.enabled_plugins if enabled is None else enabled)
    for name in names:
        if name in broken:
            raise PluginError(broken[name])
    ignored = [f"{message} (not enabled, so ignored)" for name, message in sorted(broken.items())]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise PluginError(
            f"enabled plugin(s) {', '.join(map(repr, unknown))} not installed; "
            f"installed: {', '.join(sorted(available)) or 'none'}")
    order = topological_order({n: available[n].manifest for n in names})

    lic, state, warnings = licensing.from_config(config)
    if lic is not None:
        refused = [n for n in order if n not in lic.modules]
        if refused:
            raise LicenseError(
                f"the license of {lic.chain!r} does not include {', '.join(map(repr, refused))}; "
                f"licensed modules: {', '.join(sorted(lic.modules)) or 'none'}")
    pm = make_plugin_manager()
    for name in order:  # a plugin's own hookspecs exist before any plugin implementing them registers
        specs = available[name].hookspecs_module()
        if specs is not None:
            pm.add_hookspecs(specs)
    pm.register(default_plugin.DefaultPlugin(), name="core")
    pm.register(jobs, name="core.jobs")
    for name in order:
        pm.register(_named_hooks(available[name].hooks_module(), name), name=name)
    pm.check_pending()
    registry = PluginRegistry(config, available, order, pm, lic, state, warnings + ignored)
    for w in warnings:
        log.warning(w)
    pm.hook.startup(registry=registry)
    return registry
