"""Console pages: the answers of ``register_console_pages`` checked, merged and filtered by role.

The core's own pages (:data:`CORE_PAGES`) are answered by the core's default
plugin, so a plugin page and a core page go through the same path.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict

from ..auth import STAFF_ROLES
from ..errors import PluginError

__all__ = ["ConsolePage", "CORE_PAGES", "collect_pages", "pages_for", "asset_root", "PAGE_ID", "RESERVED_IDS"]

PAGE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
#: ids that would read like the console's asset folder
RESERVED_IDS = frozenset({"static"})
DEFAULT_SECTION = "Plugins"
DEFAULT_ORDER = 100
_SCRIPT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.m?js$")


class ConsolePage(TypedDict):
    """One page of the console as the navigation sees it."""

    id: str  # slug; the page's address is /console/<id>
    title: str  # the navigation label and page heading
    roles: list[str]  # staff roles whose navigation shows it
    section: str  # navigation group
    order: int  # lower first within the whole navigation
    plugin: str  # "core" or the plugin that declared it
    path: str  # /console/<id>
    script: str  # absolute URL of the page's ES module


MANAGERS = ["admin", "store_manager"]
STAFF = list(STAFF_ROLES)
ADMIN = ["admin"]

#: The core's pages (answered by :class:`core.default_plugin.DefaultPlugin`).
CORE_PAGES: tuple[dict[str, Any], ...] = (
    {"id": "dashboard", "title": "Dashboard", "roles": MANAGERS, "script": "pages/dashboard.js",
     "section": "Overview", "order": 10},
    {"id": "orders", "title": "Order queue", "roles": STAFF, "script": "pages/orders.js",
     "section": "Store", "order": 20},
    {"id": "stock", "title": "Stock", "roles": STAFF, "script": "pages/stock.js", "section": "Store", "order": 30},
    {"id": "catalogue", "title": "Catalogue", "roles": MANAGERS, "script": "pages/catalogue.js",
     "section": "Catalogue", "order": 40},
    {"id": "stores", "title": "Stores", "roles": ADMIN, "script": "pages/stores.js", "section": "Chain admin",
     "order": 60},
    {"id": "users", "title": "Users & roles", "roles": ADMIN, "script": "pages/users.js",
     "section": "Chain admin", "order": 61},
    {"id": "plugins", "title": "Plugins", "roles": ADMIN, "script": "pages/plugins.js", "section": "Chain admin",
     "order": 62},
    {"id": "audit", "title": "Audit log", "roles": ADMIN, "script": "pages/audit.js", "section": "Chain admin",
     "order": 63},
)


def asset_root(registry, owner: str) -> Path:
    """The folder a page owner's scripts are served from."""
    if owner == "core":
        return Path(__file__).resolve().parent / "static"
    info = registry.available[owner]
    return Path(info.module.__file__).resolve().parent / "console"


def asset_url(owner: str, script: str) -> str:
    return f"/console/static/{script}" if owner == "core" else f"/console/plugins/{owner}/{script}"


def _check(owner: str, page: Any) -> ConsolePage:
    where = f"console page of plugin {owner!r}"
    if not isinstance(page, dict):
        raise PluginError(f"{where}: expected a dict, got {type(page).__name__}")
    unknown = sorted(set(page) - {"id", "title", "roles", "script", "section", "order"})
    if unknown:
        raise PluginError(f"{where} {page.get('id')!r}: unknown key(s) {unknown}")
    pid = page.get("id")
    if not isinstance(pid, str) or not PAGE_ID.match(pid) or pid in RESERVED_IDS:
        raise PluginError(f"{where}: id {pid!r} must be a slug of a-z, 0-9 and '-' (at most 40), "
                          f"not one of {sorted(RESERVED_IDS)}")
    title = page.get("title")
    if not isinstance(title, str) or not title.strip():
        raise PluginError(f"{where} {pid!r}: title must be a non-empty string")
    roles = page.get("roles")
    if not isinstance(roles, (list, tuple)) or not roles or any(r not in STAFF_ROLES for r in roles):
        raise PluginError(f"{where} {pid!r}: roles {roles!r} must be a non-empty list of {', '.join(STAFF_ROLES)}")
    script = page.get("script")
    if not isinstance(script, str) or not _SCRIPT.match(script) or ".." in PurePosixPath(script).parts:
        raise PluginError(f"{where} {pid!r}: script {script!r} must be a relative path to a .js module "
                          "inside the plugin's console/ folder")
    section = page.get("section", DEFAULT_SECTION)
    if not isinstance(section, str) or not section.strip():
        raise PluginError(f"{where} {pid!r}: section must be a non-empty string")
    order = page.get("order", DEFAULT_ORDER)
    if isinstance(order, bool) or not isinstance(order, int):
        raise PluginError(f"{where} {pid!r}: order must be an integer")
    return ConsolePage(id=pid, title=title.strip(), roles=[r for r in STAFF_ROLES if r in roles],
                       section=section.strip(), order=order, plugin=owner, path=f"/console/{pid}",
                       script=asset_url(owner, script))


def collect_pages(registry) -> list[ConsolePage]:
    """Every enabled plugin's pages (the core's included), checked, in navigation order: by
    ``order``, with the pages of one section kept together where its first page falls.

    Raises :class:`core.errors.PluginError` naming the plugin of a malformed
    page, and both plugins when an id is given twice.
    """
    pages: list[ConsolePage] = []
    owners: dict[str, str] = {}
    for impl in registry.hook.register_console_pages.get_hookimpls():
        answer = impl.function()
        if answer is None:
            continue
        if not isinstance(answer, (list, tuple)):
            raise PluginError(f"register_console_pages of plugin {impl.plugin_name!r} must return a list")
        for raw in answer:
            page = _check(impl.plugin_name, raw)
            if page["id"] in owners:
                raise PluginError(f"console page {page['id']!r} is registered by both {owners[page['id']]!r} "
                                  f"and {impl.plugin_name!r}")
            owners[page["id"]] = impl.plugin_name
            pages.append(page)
    first = {}  # a section sits where its first page would: pages of one section stay together
    for page in sorted(pages, key=lambda p: p["order"]):
        first.setdefault(page["section"], page["order"])
    pages.sort(key=lambda p: (first[p["section"]], p["section"], p["order"], p["title"]))
    return pages


def pages_for(registry, role: str | None) -> list[ConsolePage]:
    """The pages whose navigation entry ``role`` sees."""
    return [p for p in collect_pages(registry) if role in p["roles"]]
