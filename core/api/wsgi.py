"""The WSGI entry point for gunicorn (``gunicorn -c gunicorn.conf.py``).

``application`` is built when a worker imports this module (after the fork),
from the configuration named by ``PHARMO2O_CONFIG`` (default ``pharmo2o.toml``)
and the ``PHARMO2O_*`` environment variables.
"""
from __future__ import annotations

import os

from ..config import load_config
from ..context import Context
from .app import create_app
from .server import tune_gc

__all__ = ["application", "make_app"]


def make_app(config_path: str | None = None):
    """A fresh app with its own Context (engine, plugins) — call once per worker process."""
    ctx = Context.create(load_config(config_path or os.environ.get("PHARMO2O_CONFIG")))
    return create_app(ctx)


application = make_app()
tune_gc()
