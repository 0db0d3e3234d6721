"""The world the authorisation table runs in: two stores, two customers, staff of each store, POS
terminals, prescriptions and points, all four bundled plugins enabled, and a snapshot of every table
so a refused request can be shown to have written nothing.

Callers are named (``cust_a``, ``clerk1``, ``pharm2``, ``dev1``...): :meth:`World.headers` gives the
headers each one sends. Object ids live in :attr:`World.ids` and are substituted into the paths of
the table's rows (``{order_b}``, ``{rx_b}``...).
"""
from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import MetaData, select, update

from core.testing import ApiClient
from tests.api.helpers import product, receive, store
from tests.plugins.prescription_review.helpers import form, rx_fields, today, unique_doc

ALL_PLUGINS = ["wechat_channel", "prescription_review", "loyalty", "pos_sync"]
STAFF = {"admin", "store_manager", "pharmacist", "clerk"}
EVERYONE = STAFF | {"customer"}
MANAGERS = {"admin", "store_manager"}
DEVICE = {"device"}  # POS terminals: their own secret, checked by the plugin (not a staff/customer token)
PUBLIC = None

#: the reviewed roles of every plugin operation (the core's are tests/api/test_roles.py's POLICY)
PLUGIN_POLICY: dict[str, set[str] | None] = {
    # loyalty: a customer reads/joins their own membership only (404 otherwise); corrections are admin's
    "loyalty.members.get": EVERYONE, "loyalty.members.join": EVERYONE, "loyalty.ledger.list": EVERYONE,
    "loyalty.adjustments.create": {"admin"},
    "loyalty.rewards.list": EVERYONE, "loyalty.rewards.get": EVERYONE,
    "loyalty.rewards.create": {"admin"}, "loyalty.rewards.update": {"admin"},
    "loyalty.staff_links.list": {"admin"}, "loyalty.staff_links.create": {"admin"},
    "loyalty.staff_links.delete": {"admin"},
    # pos_sync: managers manage their store's terminals; terminals pull and upload with their own secret
    "pos.devices.list": MANAGERS, "pos.devices.register": MANAGERS, "pos.devices.get": MANAGERS,
    "pos.devices.revoke": MANAGERS, "pos.devices.reregister": MANAGERS,
    "pos.catalog": DEVICE, "pos.sales.batch": DEVICE,
    "pos.discrepancies.list": MANAGERS, "pos.discrepancies.resolve": MANAGERS,
    "pos.flags.list": MANAGERS, "pos.flags.review": MANAGERS, "pos.sync_status": MANAGERS,
    # prescription_review: sensitive personal data, pharmacists and the patient only
    "prescriptions.submit": EVERYONE,
    "prescriptions.list": {"pharmacist", "customer"}, "prescriptions.get": {"pharmacist", "customer"},
    "prescriptions.document": {"pharmacist", "customer"}, "prescriptions.access_log": {"admin"},
    "prescriptions.claim": {"pharmacist"}, "prescriptions.approve": {"pharmacist"},
    "prescriptions.reject": {"pharmacist"},
    "prescriptions.reasons": EVERYONE, "prescriptions.banlist.get": STAFF, "prescriptions.banlist.load": {"admin"},
    # wechat_channel: WeChat and the browser sign what they send (public); the API part by role
    "wechat.callback_verify": PUBLIC, "wechat.callback": PUBLIC, "wechat.pay_notify": PUBLIC,
    "wechat.oauth_start": PUBLIC, "wechat.oauth_callback": PUBLIC, "wechat.oauth_exchange": PUBLIC,
    "wechat.h5": PUBLIC, "wechat.h5_asset": PUBLIC,
    "wechat.pay": {"customer"}, "wechat.order_payments": STAFF, "wechat.shop": {"customer"},
    "wechat.status": {"admin"},
}

WECHAT = {"appid": "wx5f3c1e0a9b7d2c4e", "secret": "app-secret-9f8e7d6c5b4a39281706", "token": "p2oToken2026",
          "encoding_aes_key": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aQ", "mch_id": "1230000109",
          "api_key": "8934e7d15453e97507ef794cf7b0519d", "base_url": "https://shop.example.com",
          # nothing listens there: a refused payment must never reach WeChat
          "api_base": "http://127.0.0.1:9", "pay_api_base": "http://127.0.0.1:9", "oauth_base": "http://127.0.0.1:9",
          "timeout_seconds": 1}


class World:
    """Everything the table's rows point at (see the module docstring)."""

    def __init__(self, api: ApiClient):
        self.api = api
        self.ctx = api.ctx
        self.bearer: dict[str, str] = {}  # caller -> bearer token (staff, customers, broken tokens)
        self.terminals: dict[str, tuple[str, str]] = {}  # caller -> (secret, terminal database id)
        self.ids: dict[str, int] = {}
        self._tables = None

    # ----------------------------------------------------------------- callers
    def headers(self, who: str | None) -> dict:
        if who is None:
            return {}
        if who in self.terminals:
            secret, database_id = self.terminals[who]
            return {"Authorization": f"Bearer {secret}", "X-POS-Database-Id": database_id}
        return {"Authorization": f"Bearer {self.bearer[who]}"}

    def request(self, who: str | None, method: str, path: str, *, json=None, body=None, headers=None, params=None):
        return self.api.request(method, path.format(**self.ids), json=json, body=body, params=params,
                                headers={**self.headers(who), **(headers or {})})

    # ---------------------------------------------------------------- snapshot
    def snapshot(self) -> dict[str, list]:
        """Every row of every table, sorted: equal snapshots mean nothing was written."""
        if self._tables is None:
            meta = MetaData()
            meta.reflect(self.ctx.engine)
            self._tables = [t for t in meta.sorted_tables if t.name != "alembic_version"]
        out = {}
        with self.ctx.engine.connect() as c:
            for t in self._tables:
                out[t.name] = sorted(tuple(repr(v) for v in row) for row in c.execute(select(t)))
        return out


def diff(before: dict, after: dict) -> dict[str, str]:
    """``{table: what changed}`` between two snapshots."""
    out = {}
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, []), after.get(name, [])
        if b != a:
            added = [r for r in a if r not in b]
            gone = [r for r in b if r not in a]
            out[name] = f"+{len(added)} -{len(gone)} rows, e.g. {(added or gone)[0]}"[:300]
    return out


def _ok(r, status=(200, 201)):
    assert r.status_code in ((status,) if isinstance(status, int) else status), (r.status_code, r.text[:500])
    return r.json


def world_settings(tmp_path) -> dict:
    settings = {"prescription_review.storage_dir": str(tmp_path / "rx-docs"),
                # a terminal's pull serves rows at once (PostgreSQL would hold back the last 5 s)
                "pos_sync.price_check_seconds": 0, "pos_sync.catalog_settle_seconds": 0}
    settings.update({f"wechat.{k}": v for k, v in WECHAT.items()})
    return settings


def world_api(databases, tmp_path) -> ApiClient:
    """What ``make_api(enabled=ALL_PLUGINS, settings=world_settings(tmp_path))`` builds, for a fixture of any
    scope (``databases`` is the session's ``pharmo2o_databases``); ``api.ctx.dispose()`` when done."""
    from core.config import Config
    from core.context import Context
    from core.testing import build_api_client
    data: dict = {"database_url": databases.fresh(ALL_PLUGINS, (), tmp_path), "plugins": {"enabled": ALL_PLUGINS}}
    for key, value in world_settings(tmp_path).items():
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = value
    ctx = Context.create(Config(path=tmp_path / "pharmo2o.toml", data=data))
    return build_api_client(ctx)


def build_world(api: ApiClient) -> World:
    w = World(api)
    w.bearer.update({"admin": api.tokens["admin"], "manager1": api.tokens["store_manager"],
                     "pharm1": api.tokens["pharmacist"], "clerk1": api.tokens["clerk"],
                     "cust_a": api.tokens["customer"]})
    s1 = api.store_id
    s2 = store(api)["id"]
    w.ids.update(store1=s1, store2=s2, cust_a=api.customer_id)
    expiry = (today() + dt.timedelta(days=365)).isoformat()
    _ok(api.patch(f"/api/v1/users/{api.user_ids['pharmacist']}",
                  json={"licence_number": "PH-0001", "licence_expiry": expiry}))

    def user(name, role, store_id, **fields):
        made = _ok(api.post("/api/v1/users", json={"username": name, "password": "test-password-1", "role": role,
                                                   "display_name": name, "store_id": store_id, **fields}))
        w.ids[f"user_{name}"] = made["id"]
        w.bearer[name] = api.token(user_id=made["id"])
        return made["id"]

    user("manager2", "store_manager", s2)
    user("clerk2", "clerk", s2)
    user("pharm2", "pharmacist", s2, licence_number="PH-0002", licence_expiry=expiry)
    user("pharm_expired", "pharmacist", s1, licence_number="PH-0003",
         licence_expiry=(today() - dt.timedelta(days=1)).isoformat())
    user("pharm_unlicensed", "pharmacist", s1)
    inactive = user("pharm_inactive", "pharmacist", s1, licence_number="PH-0004", licence_expiry=expiry)
    cust_b = _ok(api.post("/api/v1/customers", role="clerk", json={"name": "李四", "phone": "13900000001"}))["id"]
    w.ids["cust_b"] = cust_b
    w.bearer["cust_b"] = api.token(customer_id=cust_b)

    # broken tokens: an expired one, one revoked by logout, and a valid token of a deactivated user
    from core.api import tokens
    from core.models import User
    with api.ctx.transaction() as s:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        w.bearer["expired_token"] = tokens.issue_user_token(s, s.get(User, api.user_ids["admin"]),
                                                            dt.timedelta(hours=1), now=past).token
        w.bearer["expired_cust_a"] = tokens.issue_customer_token(api.ctx, s, api.customer_id,
                                                                 ttl=dt.timedelta(hours=1), now=past).token
        s.execute(update(User).where(User.id == inactive).values(active=False))  # its token is still stored
    w.bearer["revoked_cust_a"] = api.token(customer_id=api.customer_id)
    _ok(api.request("POST", "/api/v1/auth/logout", headers={"Authorization": f"Bearer {w.bearer['revoked_cust_a']}"}),
        (200, 204))
    w.bearer["garbage"] = "not-a-token-" + uuid.uuid4().hex

    # catalogue and stock in both stores
    otc = product(api, rx_class="otc_b", generic_name="维生素C片", price_fen=500)["id"]
    rx = product(api, rx_class="rx", generic_name="阿莫西林胶囊", specification="0.25g×24粒", price_fen=2600)["id"]
    w.ids.update(otc=otc, rx=rx)
    for sid in (s1, s2):
        for pid in (otc, rx):
            receive(api, sid, pid, 40, lot_no=f"LOT-S{sid}-P{pid}")
    from core.models import StockLot
    with api.ctx.session() as s:
        lots = {(l.store_id, l.product_id): l for l in s.scalars(select(StockLot))}
        w.ids.update(lot1_otc=lots[(s1, otc)].id, lot2_otc=lots[(s2, otc)].id)
        w.lot2_otc_no = lots[(s2, otc)].lot_no

    def order(who, store_id, lines, channel="web", **fields):
        body = {"store_id": store_id, "channel": channel, "fulfilment": "pickup",
                "lines": [{"product_id": p, "quantity": q} for p, q in lines], **fields}
        return _ok(w.request(who, "POST", "/api/v1/orders", json=body), 201)

    w.ids["order_a"] = order("cust_a", s1, [(otc, 1)])["id"]
    w.ids["order_b"] = order("cust_b", s1, [(otc, 2)])["id"]
    w.ids["order_s2"] = order("clerk2", s2, [(otc, 1)], channel="store", customer_id=cust_b)["id"]
    paid = order("clerk2", s2, [(otc, 1)], channel="store", customer_id=cust_b)["id"]
    _ok(w.request("clerk2", "POST", f"/api/v1/orders/{paid}/pay", json={"provider": "cash"}))
    w.ids["order_s2_paid"] = paid
    rx_b = order("cust_b", s1, [(rx, 1)])
    assert rx_b["status"] == "awaiting_review", rx_b
    w.ids["order_rx_b"] = rx_b["id"]
    w.ids["rx_b"] = upload(w, "cust_b", rx_b["id"], [(rx, 1)])["id"]
    rx_s2 = order("cust_b", s2, [(rx, 1)])
    w.ids["order_rx_s2"] = rx_s2["id"]
    w.ids["rx_s2"] = upload(w, "cust_b", rx_s2["id"], [(rx, 3)])["id"]  # covers 2 more units once approved
    _ok(w.request("pharm2", "POST", "/api/v1/prescriptions/{rx_s2}".format(**w.ids) + "/approve", json={}))

    # points: both customers are members with 500 points; admin2 is also customer "staffer"
    for cid in (api.customer_id, cust_b):
        _ok(api.post(f"/api/v1/members/{cid}", role="clerk"))
        _ok(api.post(f"/api/v1/members/{cid}/adjustments", json={"points": 500, "reason": "opening balance"}), 201)
    staffer = _ok(api.post("/api/v1/customers", role="clerk", json={"name": "王管理", "phone": "13900000002"}))["id"]
    w.ids["cust_staffer"] = staffer
    _ok(api.post(f"/api/v1/members/{staffer}", role="clerk"))
    admin2 = user("admin2", "admin", None)
    _ok(api.post("/api/v1/loyalty/staff-links", json={"user_id": admin2, "customer_id": staffer}), 201)

    # POS terminals: one per store, one revoked
    def terminal(name, store_id):
        made = _ok(api.post("/api/v1/pos/devices", json={"store_id": store_id, "name": name}), 201)
        w.terminals[name] = (made["secret"], uuid.uuid4().hex)
        w.ids[name] = made["id"]
        return made

    terminal("dev1", s1)
    terminal("dev2", s2)
    terminal("dev_revoked", s1)
    for name in ("dev1", "dev2", "dev_revoked"):  # first contact binds each terminal's database
        _ok(w.request(name, "GET", "/api/v1/pos/catalog", params={"limit": "1"}))
    _ok(api.post(f"/api/v1/pos/devices/{w.ids['dev_revoked']}/revoke", json={"reason": "stolen"}))
    w.terminals["dev1_clone"] = (w.terminals["dev1"][0], uuid.uuid4().hex)  # dev1's secret, another database
    w.terminals["dev_unknown"] = ("pos_" + uuid.uuid4().hex, uuid.uuid4().hex)
    # a discrepancy and a flag in store 2 (an offline sale of more than store 2 holds)
    r = upload_sales(w, "dev2", [pos_sale([(otc, 100, 500)])])
    assert r.json["results"][0]["status"] == "accepted", r.json
    from plugins.pos_sync.models import PosSaleFlag, PosStockDiscrepancy
    with api.ctx.transaction() as s:
        w.ids["disc_s2"] = s.scalars(select(PosStockDiscrepancy.id).where(PosStockDiscrepancy.store_id == s2)).one()
        flag = PosSaleFlag(device_id=w.ids["dev2"], store_id=s2, kind="clock_drift", detail="seeded for the table",
                           dedupe_key=f"authz:{uuid.uuid4().hex}", created_at=dt.datetime.now(dt.UTC))
        s.add(flag)
        s.flush()
        w.ids["flag_s2"] = flag.id
    return w


def upload(w: World, who: str, order_id: int, items) -> dict:
    body, ctype = form(rx_fields(items), unique_doc())
    return _ok(w.request(who, "POST", f"/api/v1/orders/{order_id}/prescription", body=body,
                         headers={"Content-Type": ctype}), 201)


_seq = iter(range(1, 10**6))


def pos_sale(lines, **extra) -> dict:
    """One offline sale: ``lines`` as ``[(product_id, quantity, unit_price_fen[, lot_no]), ...]``."""
    body = []
    for item in lines:
        line = {"line_id": uuid.uuid4().hex, "product_id": item[0], "quantity": item[1], "unit_price_fen": item[2],
                "price_list_version": 1}
        if len(item) > 3:
            line["lot_no"] = item[3]
        body.append(line)
    total = sum(l["quantity"] * l["unit_price_fen"] for l in body)
    return {"client_sale_id": uuid.uuid4().hex, "device_seq": next(_seq),
            "sold_at": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat(), "lines": body,
            "payments": [{"method": "cash", "amount_fen": total}], **extra}


def upload_sales(w: World, who: str, sales: list[dict]):
    return w.request(who, "POST", "/api/v1/pos/sales:batch", json={"sales": sales})


def multipart(items) -> tuple[bytes, dict]:
    body, ctype = form(rx_fields(items), unique_doc())
    return body, {"Content-Type": ctype}
