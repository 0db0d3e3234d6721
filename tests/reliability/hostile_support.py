"""Builders for the hostile-input and secrets tests (issue #10): one API with all four bundled plugins on
one database per module, row counts of every table, raw WSGI calls whose Content-Length may lie."""
from __future__ import annotations

import io
import uuid
from pathlib import Path

from sqlalchemy import inspect, text

from core.config import Config
from core.context import Context
from core.testing import ApiClient, build_api_client
from tests.api.helpers import product, receive
from tests.plugins.prescription_review.helpers import form, licence, resident_id, rx_fields, unique_doc
from tests.plugins.wechat_channel.helpers import settings as wechat_settings

ALL_PLUGINS = ["wechat_channel", "prescription_review", "loyalty", "pos_sync"]


def nested(settings: dict) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (the configuration file's shape)."""
    out: dict = {}
    for key, value in settings.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


class Hostile:
    """An :class:`ApiClient` on a database with every bundled plugin, stocked for orders of every kind."""

    def __init__(self, api: ApiClient, storage_dir: Path) -> None:
        self.api = api
        self.ctx = api.ctx
        self.storage_dir = storage_dir
        licence(api, api.user_ids["pharmacist"], "PH-0001")
        self.otc = product(api, rx_class="otc_b", generic_name="维生素C片", price_fen=500)["id"]
        self.rx = product(api, rx_class="rx", generic_name="阿莫西林胶囊", price_fen=2600)["id"]
        self.eph = product(api, rx_class="otc_a", generic_name="复方盐酸伪麻黄碱缓释胶囊", ephedrine=True,
                           price_fen=1800)["id"]
        for pid in (self.otc, self.rx, self.eph):
            receive(api, api.store_id, pid, 100_000)
        with self.ctx.session() as s:
            self.tables = sorted(inspect(s.connection()).get_table_names())

    # ------------------------------------------------------------ counting

    def snapshot(self) -> dict[str, int]:
        """Rows per table, every table of the database."""
        sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\"" for t in self.tables)
        with self.ctx.session() as s:  # one round trip
            return dict(s.execute(text(sql)).all())

    def files(self) -> list[Path]:
        return sorted(p for p in self.storage_dir.rglob("*") if p.is_file()) if self.storage_dir.exists() else []

    # ------------------------------------------------------------ requests

    def raw(self, method: str, path: str, body: bytes = b"", *, content_type: str | None = "application/json",
            role: str | None = "admin", headers: dict | None = None, query: str = ""):
        """A request with exactly these bytes and headers."""
        hdrs = dict(headers or {})
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        return self.api.client.simulate_request(method, path, body=body, query_string=query or None,
                                                headers=self.api.headers(role, hdrs))

    def wsgi(self, method: str, path: str, body: bytes, *, content_length: str | None,
             content_type: str = "application/json", role: str | None = "admin", extra_env: dict | None = None):
        """Call the app as a WSGI server would, with ``content_length`` as the client declared it
        (``None``: no Content-Length header, as with a chunked body). Returns ``(status, headers, body)``."""
        from falcon import testing
        env = testing.create_environ(path=path, method=method,
                                     headers=self.api.headers(role, {"Content-Type": content_type}))
        env["wsgi.input"] = io.BytesIO(body)
        env.pop("CONTENT_LENGTH", None)
        if content_length is not None:
            env["CONTENT_LENGTH"] = content_length
        env.update(extra_env or {})
        seen = {}

        def start_response(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, dict(headers)
        chunks = self.api.app(env, start_response)
        data = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        return int(seen["status"].split()[0]), seen["headers"], data

    # ------------------------------------------------------------ builders

    def order(self, lines=None, *, role: str = "clerk", expect: int = 201, **fields):
        body = {"store_id": self.api.store_id, "channel": "store" if role != "customer" else "web",
                "fulfilment": "pickup",
                "lines": [{"product_id": p, "quantity": q} for p, q in (lines or [(self.otc, 1)])], **fields}
        if role != "customer":
            body.setdefault("customer_id", self.api.customer_id)
        r = self.api.post("/api/v1/orders", role=role, json=body)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r

    def held_rx_order(self) -> int:
        r = self.order([(self.rx, 1)], role="customer")
        assert r.json["status"] == "awaiting_review", r.json
        return r.json["id"]

    def upload(self, order_id: int, *, document: bytes | None = None, filename: str = "rx.jpg",
               content_type: str = "image/jpeg", **over):
        body, ctype = form(rx_fields([(self.rx, 1)], **over), unique_doc() if document is None else document,
                           filename=filename, content_type=content_type)
        return self.raw("POST", f"/api/v1/orders/{order_id}/prescription", body, content_type=ctype,
                        role="customer")


def make_hostile(pharmo2o_databases, tmp: Path, fake, **settings) -> Hostile:
    """A :class:`Hostile` on a fresh database of its own (module-scoped fixtures call this)."""
    storage = tmp / "rx-docs"
    conf = {**wechat_settings(fake), "prescription_review.storage_dir": str(storage), **settings}
    url = pharmo2o_databases.fresh(ALL_PLUGINS, (), tmp)
    data = {"database_url": url, "plugins": {"enabled": list(ALL_PLUGINS)}, **nested(conf)}
    ctx = Context.create(Config(path=tmp / "pharmo2o.toml", data=data))
    return Hostile(build_api_client(ctx), storage)


def unique(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:8]


__all__ = ["ALL_PLUGINS", "Hostile", "make_hostile", "nested", "unique", "resident_id"]
