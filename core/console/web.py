"""Serving the console: the HTML shell at ``/console/`` and ``/console/<page>``, the core's
assets under ``/console/static/``, and each enabled plugin's under ``/console/plugins/<name>/``.

These are files, not API operations: they need no token (the shell holds no
data; every datum comes from the JSON API with the user's bearer token) and
are not in the OpenAPI document. Every answer carries a strict
Content-Security-Policy: scripts and styles from this origin only, no inline
script, no other host contacted.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import falcon

from ..errors import NotFound
from .pages import PAGE_ID, asset_root, collect_pages

__all__ = ["mount", "send_static", "SECURITY_HEADERS", "CONTENT_TYPES"]

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8", ".json": "application/json",
    ".svg": "image/svg+xml", ".png": "image/png", ".woff2": "font/woff2",
}
MAX_ASSET_BYTES = 2 * 1024 * 1024


def send_static(req: falcon.Request, resp: falcon.Response, path: Path, *, cache: str = "no-cache") -> None:
    """A static file with the security headers, ``Cache-Control: cache`` and an ETag (304 when it matches)."""
    data = path.read_bytes()
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    for name, value in SECURITY_HEADERS.items():
        resp.set_header(name, value)
    resp.set_header("Cache-Control", cache)
    resp.set_header("ETag", etag)
    if req.get_header("If-None-Match") == etag:
        resp.status = 304
        return
    resp.content_type = CONTENT_TYPES[path.suffix]
    resp.data = data


def _asset(base: Path, relative: str) -> Path:
    """``relative`` inside ``base``, or a 404 (no escape with .., no hidden or unknown files)."""
    parts = relative.split("/")
    if not relative or "\x00" in relative or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFound(f"no console asset {relative!r}")
    path = (base / relative).resolve()
    if base.resolve() not in path.parents or path.suffix not in CONTENT_TYPES or not path.is_file() \
            or path.stat().st_size > MAX_ASSET_BYTES:
        raise NotFound(f"no console asset {relative!r}")
    return path


class Shell:
    """The single HTML page; the script behind it draws whichever page the address names."""

    def __init__(self, static: Path) -> None:
        self.index = static / "index.html"

    def on_get(self, req, resp, page: str | None = None):
        if page is not None and not PAGE_ID.match(page):
            raise NotFound(f"no console page {page!r}")
        send_static(req, resp, self.index, cache="no-store")


class CoreAssets:
    def __init__(self, static: Path) -> None:
        self.static = static

    def on_get(self, req, resp, filepath: str):
        send_static(req, resp, _asset(self.static, filepath))


class PluginAssets:
    """A plugin's ``console/`` folder, while the plugin is enabled."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def on_get(self, req, resp, plugin: str, filepath: str):
        if not self.registry.is_enabled(plugin):
            raise NotFound(f"no enabled plugin {plugin!r}")
        send_static(req, resp, _asset(asset_root(self.registry, plugin), filepath))


def mount(app: falcon.App, ctx) -> None:
    """Add the console's routes to ``app``; a malformed plugin page fails here, at start."""
    collect_pages(ctx.registry)
    static = asset_root(ctx.registry, "core")
    shell = Shell(static)
    app.add_route("/console", shell)
    app.add_route("/console/{page}", shell)
    app.add_route("/console/static/{filepath:path}", CoreAssets(static))
    app.add_route("/console/plugins/{plugin}/{filepath:path}", PluginAssets(ctx.registry))
