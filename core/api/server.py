"""Serving the API under gunicorn, started from Python (``pharmo2o serve``).

Sync workers by default; each worker builds its own :class:`core.context.Context`
(database engine, plugin registry) after the fork, so no connection is
shared between processes. The master loads the configuration once before
forking, so a broken configuration or plugin set fails at once, not in every
worker.
"""
from __future__ import annotations

import gc
import logging
import os
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from ..config import load_config
from ..context import Context
from .logs import logging_dict

__all__ = ["serve", "PharmoApplication", "GUNICORN_DEFAULTS", "GunicornLogger", "LOGGER_CLASS"]

#: the settings ``serve`` and ``gunicorn.conf.py`` share
GUNICORN_DEFAULTS: dict[str, Any] = {
    "worker_class": "sync",
    "timeout": 30,  # a sync worker stuck longer is restarted
    "graceful_timeout": 20,
    "keepalive": 2,
    "limit_request_line": 8190,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
    "accesslog": None,  # the app writes its own JSON access line with the request id
    # gunicorn >= 24's control socket sits at one path per user (~/.gunicorn/gunicorn.ctl): two
    # instances on one host would take it from each other, and nothing here uses it
    "control_socket_disable": True,
}


class GunicornLogger(glogging.Logger):
    """gunicorn's logger, less the access line nobody reads.

    The app writes its own JSON access line with the request id
    (:mod:`core.api.middleware`) and ``gunicorn.access`` sits at WARNING
    (:func:`core.api.logs.logging_dict`), yet because a logging configuration is
    given gunicorn builds its access line (a dozen atoms: dates, addresses,
    headers) for every request and then drops it: about a twentieth of a product
    read. Built only when the ``gunicorn.access`` logger would write it.
    """

    def access(self, resp, req, environ, request_time) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


#: ``logger_class`` of ``serve`` and ``gunicorn.conf.py`` (they give a logging configuration)
LOGGER_CLASS = f"{__name__}.GunicornLogger"


class PharmoApplication(BaseApplication):
    """gunicorn, configured in code, loading the pharmo2o app in each worker."""

    def __init__(self, config_path: str | None, options: dict[str, Any]) -> None:
        self.config_path = config_path
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key.lower(), value)

    def load(self):
        # called in each worker after the fork (preload_app is off): its own engine and registry
        from .app import create_app
        app = create_app(Context.create(load_config(self.config_path)))
        tune_gc()
        return app


#: the cyclic collector's thresholds in a worker (Python's default: 700, 10, 10). A POS batch or an
#: order builds thousands of short-lived ORM objects; with the default a collection ran every 700 of
#: them, each walking everything young, and took about 30 % of a 500-sale upload (in-process, SQLite)
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """In a worker, once its app is built: what start-up made lives as long as the worker, so it is
    kept out of every collection (``gc.freeze``), and collections run less often (:data:`GC_THRESHOLDS`;
    ``bench/memory.py`` measures what that costs in memory)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(config_path: str | None, bind: str, workers: int, *, timeout: int | None = None,
          log_level: str = "info") -> None:
    """Run the API under gunicorn on ``bind`` (``HOST:PORT``) with ``workers`` sync workers; blocks."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if config_path is not None:
        os.environ["PHARMO2O_CONFIG"] = str(config_path)  # workers and any re-exec see the same file
    check = Context.create(load_config(config_path))  # fail before forking: bad config, plugins, license
    check.dispose()
    options = dict(GUNICORN_DEFAULTS, bind=[bind], workers=workers, loglevel=log_level,
                   logconfig_dict=logging_dict(log_level.upper()), logger_class=LOGGER_CLASS, preload_app=False,
                   proc_name="pharmo2o")
    if timeout is not None:
        options["timeout"] = timeout
    PharmoApplication(config_path, options).run()
