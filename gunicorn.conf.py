"""gunicorn settings for pharmo2o: ``gunicorn -c gunicorn.conf.py`` (the app is named below).

The same defaults as ``pharmo2o serve`` (core/api/server.py). Override with
PHARMO2O_BIND (default 127.0.0.1:8000), PHARMO2O_WORKERS (default 2),
PHARMO2O_LOG_LEVEL; the app reads PHARMO2O_CONFIG and the other PHARMO2O_*
variables. Each worker builds its own database engine after the fork.
"""
import os

from core.api.logs import logging_dict
from core.api.server import GUNICORN_DEFAULTS, LOGGER_CLASS

wsgi_app = "core.api.wsgi:application"
bind = [os.environ.get("PHARMO2O_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("PHARMO2O_WORKERS", "2"))
loglevel = os.environ.get("PHARMO2O_LOG_LEVEL", "info")
logconfig_dict = logging_dict(loglevel.upper())
logger_class = LOGGER_CLASS  # builds gunicorn's own access line only when gunicorn.access would write it
preload_app = False
proc_name = "pharmo2o"

worker_class = GUNICORN_DEFAULTS["worker_class"]
timeout = GUNICORN_DEFAULTS["timeout"]
graceful_timeout = GUNICORN_DEFAULTS["graceful_timeout"]
keepalive = GUNICORN_DEFAULTS["keepalive"]
limit_request_line = GUNICORN_DEFAULTS["limit_request_line"]
limit_request_fields = GUNICORN_DEFAULTS["limit_request_fields"]
limit_request_field_size = GUNICORN_DEFAULTS["limit_request_field_size"]
accesslog = GUNICORN_DEFAULTS["accesslog"]
control_socket_disable = GUNICORN_DEFAULTS["control_socket_disable"]
