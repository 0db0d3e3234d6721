"""Structured logging: one JSON object per line, with the request id and no secrets."""
from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config

__all__ = ["JsonFormatter", "configure_logging", "logging_dict"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_SECRET_KEYS = {"authorization", "password", "token", "cookie"}
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra fields..., "traceback"?}``.

    Extra fields named like secrets (authorization, password, token, cookie)
    are replaced by ``"[redacted]"``.
    """

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key[:1] == "_":
                continue
            out[key] = "[redacted]" if key.lower() in _SECRET_KEYS else value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return _ENCODER.encode(out)  # json.dumps(out, ensure_ascii=False, default=str), its encoder built once


def logging_dict(level: str = "INFO") -> dict:
    """A ``logging.config.dictConfig`` that writes JSON lines to stderr (also used for gunicorn)."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        },
    }


def configure_logging(level: str = "INFO") -> None:
    logging.config.dictConfig(logging_dict(level))
