"""Hook implementations of the pos_sync plugin: the offline channel ``pos``, its API routes and
the reference terminal command."""
from __future__ import annotations

from core import hookimpl

from .rules import CHANNEL


@hookimpl
def register_sales_channels():
    return [{"name": CHANNEL, "online": False, "label": "Store POS terminal (sells offline, syncs later)"}]


@hookimpl
def capabilities():
    return ["pos_sync"]


@hookimpl
def register_routes():
    from .api import routes
    return routes()


@hookimpl
def register_commands(cli):
    from .terminal import terminal_cli
    cli.add_command(terminal_cli)
