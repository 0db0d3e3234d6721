"""The console's navigation: the pages (core and enabled plugins) the caller's role may open."""
from __future__ import annotations

from pydantic import Field

from ... import orders
from ...console import pages_for
from ..operations import STAFF, operation
from ..schemas import Out

__all__ = ["ConsolePages", "ConsolePageOut", "ConsolePageList", "Channels"]


class ConsolePageOut(Out):
    id: str = Field(description="slug; the page's address is /console/<id>")
    title: str
    section: str = Field(description="navigation group")
    order: int
    plugin: str = Field(description="'core' or the plugin that adds the page")
    path: str
    script: str = Field(description="URL of the page's ES module")
    roles: list[str]


class ConsolePageList(Out):
    items: list[ConsolePageOut]


class ConsolePages:
    @operation("console.pages", roles=STAFF, response=ConsolePageList, tags=("console",),
               summary="The console pages the caller's role may open",
               description="The core's pages and those of the enabled plugins (`register_console_pages`), "
                           "in navigation order. The navigation only guides: each API operation a page "
                           "calls enforces its own roles.")
    def on_get(self, req, resp):
        resp.media = {"items": pages_for(req.context.ctx.registry, req.context.caller.role)}


class ChannelOut(Out):
    name: str
    label: str
    online: bool = Field(description="customer-facing: the online rules apply (ban list, Rx review)")


class ChannelList(Out):
    items: list[ChannelOut]


class Channels:
    @operation("meta.channels", roles=STAFF, response=ChannelList, tags=("meta",),
               summary="The registered sales channels and whether each is online",
               description="The core's channels and those of the enabled plugins (`register_sales_channels`).")
    def on_get(self, req, resp):
        known = orders.channels(req.context.ctx.registry)
        resp.media = {"items": [{"name": n, "label": c.get("label", n), "online": bool(c.get("online"))}
                                for n, c in sorted(known.items())]}
