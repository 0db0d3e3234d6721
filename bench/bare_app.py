"""The baseline of bench/api_read.py: a bare Falcon + SQLAlchemy Core WSGI app.

``GET /api/v1/products/{id}`` reads the same ``products`` row from the same database
with one Core ``select`` and answers it as JSON: no middleware, no token, no
transaction handling beyond the connection's own, no hooks, no logging. Served
by gunicorn with the settings ``pharmo2o serve`` uses (core/api/server.py:
worker class, timeouts, keep-alive, no access log), so the difference to
pharmo2o is pharmo2o's own per-request work::

    python bench/bare_app.py --database-url sqlite:////tmp/x/bench.db --bind 127.0.0.1:8001 --workers 2

With ``--auth`` it is the least a read may do under pharmo2o's rules ("every endpoint checks
the caller's role"): the bearer token is hashed and looked up with its user or customer in the
statement that reads the row (as pharmo2o does), refused when unknown, revoked, expired or of a
deactivated user, and the caller's role checked; still no middleware, hooks, logging or request
id. It measures how much of the bare app's rate any authenticated read can keep.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
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


ROLES = frozenset({"admin", "store_manager", "pharmacist", "clerk", "customer"})  # who may read a product
STAFF = ROLES - {"customer"}


class AuthProductItem:
    """:class:`ProductItem` behind a bearer token, checked in the same statement (one round trip)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        meta = MetaData()
        tokens, users, customers, products = (Table(name, meta, autoload_with=engine)
                                              for name in ("api_tokens", "users", "customers", "products"))
        self.columns = [c.name for c in products.c]
        self.stmt = (
            select(tokens.c.revoked_at, tokens.c.expires_at, tokens.c.role, tokens.c.user_id, tokens.c.customer_id,
                   users.c.id, users.c.active, users.c.role, customers.c.id, *products.c)
            .select_from(tokens)
            .outerjoin(users, users.c.id == tokens.c.user_id)
            .outerjoin(customers, customers.c.id == tokens.c.customer_id)
            .outerjoin(products, products.c.id == bindparam("id"))
            .where(tokens.c.token_hash == bindparam("digest")))

    def on_get(self, req, resp, product_id: int) -> None:
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            raise falcon.HTTPUnauthorized()
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        with self.engine.connect() as conn:
            row = conn.execute(self.stmt, {"digest": digest, "id": product_id}).first()
        if row is None:
            raise falcon.HTTPUnauthorized()
        revoked, expires, token_role, user_id, customer_id, u_id, active, user_role, c_id = row[:9]
        if expires.tzinfo is None:  # SQLite's reflected DATETIME: stored in UTC
            expires = expires.replace(tzinfo=dt.timezone.utc)
        if revoked is not None or expires <= dt.datetime.now(dt.timezone.utc):
            raise falcon.HTTPUnauthorized()
        if user_id is not None:
            if u_id is None or not active or user_role not in STAFF:
                raise falcon.HTTPUnauthorized()
            role = user_role
        elif customer_id is not None and token_role == "customer" and c_id is not None:
            role = "customer"
        else:
            raise falcon.HTTPUnauthorized()
        if role not in ROLES:
            raise falcon.HTTPForbidden()
        values = row[9:]
        if values[0] is None:
            raise falcon.HTTPNotFound()
        resp.text = json.dumps(dict(zip(self.columns, values)), ensure_ascii=False, default=_default)
        resp.content_type = falcon.MEDIA_JSON


def make_app(database_url: str, auth: bool = False) -> falcon.App:
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    engine = create_engine(database_url)
    app = falcon.App()
    app.add_route("/api/v1/products/{product_id:int}", (AuthProductItem if auth else ProductItem)(engine))
    return app


def serve(database_url: str, bind: str, workers: int, auth: bool = False) -> None:
    """gunicorn with pharmo2o's settings (core.api.server.GUNICORN_DEFAULTS) and ``workers`` workers."""
    from gunicorn.app.base import BaseApplication

    from core.api.server import GUNICORN_DEFAULTS

    class Bare(BaseApplication):
        def load_config(self) -> None:
            for key, value in dict(GUNICORN_DEFAULTS, bind=[bind], workers=workers, preload_app=False,
                                   proc_name="bare-falcon-auth" if auth else "bare-falcon").items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self):  # in each worker, after the fork: its own engine
            return make_app(database_url, auth)

    Bare().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bind", default="127.0.0.1:8001")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--auth", action="store_true", help="check a bearer token as pharmo2o does (see above)")
    args = parser.parse_args()
    serve(args.database_url, args.bind, args.workers, args.auth)


if __name__ == "__main__":
    main()
