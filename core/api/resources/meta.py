"""Health, the plugin list, the OpenAPI document and the offline docs page."""
from __future__ import annotations

import json
from importlib import resources as pkg_resources

from sqlalchemy import text

from ... import __version__
from ..operations import STAFF, operation
from ..schemas import HealthOut, PluginList

__all__ = ["Health", "Plugins", "OpenApi", "Docs"]


class Health:
    @operation("meta.health", public=True, summary="Health: database reachable, enabled plugins, license",
               response=HealthOut, tags=("meta",), errors=(503,))
    def on_get(self, req, resp):
        ctx = req.context.ctx
        database = {"ok": True, "dialect": ctx.engine.dialect.name}
        try:
            with ctx.engine.connect() as conn:  # its own connection: a broken database must not break the answer
                conn.execution_options(pharmo2o_readonly=True)  # SQLite: no write lock for a probe
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not reachable"
            database.update(ok=False, error=type(exc).__name__)
        registry = ctx.registry
        license = {"state": registry.license_state}
        if registry.license is not None:
            license.update(chain=registry.license.chain, expires=registry.license.expires.isoformat(),
                           modules=sorted(registry.license.modules))
        resp.status = 200 if database["ok"] else 503
        resp.media = {"status": "ok" if database["ok"] else "unavailable", "version": __version__,
                      "database": database, "plugins": list(registry.enabled), "license": license}


class Plugins:
    @operation("meta.plugins", roles=STAFF, summary="Installed plugins: version, enabled, licensed, hooks",
               response=PluginList, tags=("meta",))
    def on_get(self, req, resp):
        resp.media = {"items": req.context.ctx.registry.describe()}


class OpenApi:
    @operation("meta.openapi", public=True, summary="This API's OpenAPI 3.1 document", tags=("meta",),
               response=dict)
    def on_get(self, req, resp):
        resp.media = req.context.api.openapi()


class Docs:
    @operation("meta.docs", public=True, summary="A readable page of the API document (works offline)",
               tags=("meta",), extra={"x-content-type": "text/html"})
    def on_get(self, req, resp):
        page = pkg_resources.files("core.api").joinpath("docs.html").read_text(encoding="utf-8")
        spec = json.dumps(req.context.api.openapi(), ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\u0021--")
        resp.content_type = "text/html; charset=utf-8"
        resp.text = page.replace("/*__OPENAPI__*/null", spec, 1)
        resp.media = None
