"""The baseline of bench/api_read.py: a bare Falcon + SQLAlchemy Core WSGI app.

``GET /api/v1/products/{id}`` reads the same ``products`` row from the same database
with one Core ``select`` and answers it as JSON: no middleware, no token, no
transaction handling beyond the connection's own, no hooks, no logging. Served
by gunicorn with the settings ``pharmo2o serve`` uses (core/api/server.py:
worker class, timeouts, keep-alive, no access log), so the difference to
pharmo2o is pharmo2o's own per-request work::

    python bench/bare_app.py --database-url sqlite:////tmp/x/bench.db --bind 127.0.0.1:8001 --workers 2
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import falcon
from sqlalchemy import MetaData, Table, bindparam, create_engine, select

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ProductItem:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.products = Table("products", MetaData(), autoload_with=engine)
        self.stmt = select(self.products).where(self.products.c.id == bindparam("id"))

    def on_get(self, req, resp, product_id: int) -> None:
        with self.engine.connect() as conn:
            row = conn.execute(self.stmt, {"id": product_id}).mappings().first()
        if row is None:
            raise falcon.HTTPNotFound()
        resp.text = json.dumps(dict(row), ensure_ascii=False, default=_default)
        resp.content_type = falcon.MEDIA_JSON


def make_app(database_url: str) -> falcon.App:
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    engine = create_engine(database_url)
    app = falcon.App()
    app.add_route("/api/v1/products/{product_id:int}", ProductItem(engine))
    return app


def serve(database_url: str, bind: str, workers: int) -> None:
    """gunicorn with pharmo2o's settings (core.api.server.GUNICORN_DEFAULTS) and ``workers`` workers."""
    from gunicorn.app.base import BaseApplication

    from core.api.server import GUNICORN_DEFAULTS

    class Bare(BaseApplication):
        def load_config(self) -> None:
            for key, value in dict(GUNICORN_DEFAULTS, bind=[bind], workers=workers, preload_app=False,
                                   proc_name="bare-falcon").items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self):  # in each worker, after the fork: its own engine
            return make_app(database_url)

    Bare().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bind", default="127.0.0.1:8001")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    serve(args.database_url, args.bind, args.workers)


if __name__ == "__main__":
    main()
