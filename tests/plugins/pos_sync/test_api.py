"""The pos_sync endpoints through the Falcon app (responses checked against their schemas)."""
import hashlib
import uuid

import pytest

from core import people
from core.auth import SYSTEM
from plugins.pos_sync.models import PosDevice
from tests.core.factories import product, receive, store

from .helpers import FAST, sale

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Terminal:
    """A terminal talking to the app with its own credentials."""

    def __init__(self, api, secret, database_id=None):
        self.api, self.secret = api, secret
        self.database_id = database_id or uuid.uuid4().hex

    def headers(self, **extra):
        return {"Authorization": f"Bearer {self.secret}", "X-POS-Database-Id": self.database_id, **extra}

    def catalog(self, **params):
        return self.api.request("GET", "/api/v1/pos/catalog", headers=self.headers(), params=params or None)

    def upload(self, batch, **body):
        return self.api.request("POST", "/api/v1/pos/sales:batch", headers=self.headers(),
                                json={"sales": batch, **body})


@pytest.fixture
def pos(make_api):
    api = make_api(enabled=["pos_sync"], settings=FAST)
    with api.ctx.transaction() as s:
        pids = [product(s, price_fen=1000).id for _ in range(2)]
        for pid in pids:
            receive(api.ctx, s, api.store_id, pid, 5)
    api.product_ids = pids
    return api


def register(api, role="store_manager", store_id=None, name="Counter 1"):
    return api.post("/api/v1/pos/devices", role=role, json={"store_id": store_id or api.store_id, "name": name})


def test_a_manager_registers_a_terminal_whose_secret_is_shown_once(pos):
    r = register(pos)
    assert r.status_code == 201, r.json
    secret = r.json["secret"]
    assert secret.startswith("pos_") and r.headers["Location"] == f"/api/v1/pos/devices/{r.json['id']}"
    with pos.ctx.session() as s:
        assert s.get(PosDevice, r.json["id"]).secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    listed = pos.get("/api/v1/pos/devices", role="store_manager")
    assert listed.status_code == 200 and [d["id"] for d in listed.json["items"]] == [r.json["id"]]
    assert "secret" not in listed.json["items"][0] and secret not in listed.text
    assert pos.get(f"/api/v1/pos/devices/{r.json['id']}", role="store_manager").json["status"] == "active"
    assert register(pos, role="clerk").status_code == 403
    assert register(pos, role="customer").status_code == 403
    assert pos.post("/api/v1/pos/devices", role="store_manager", json={"store_id": pos.store_id}).status_code == 422


def test_a_manager_of_another_store_sees_and_touches_nothing_here(pos):
    with pos.ctx.transaction() as s:
        other = store(s)
        user = people.create_user(s, {"username": "mgr2", "password": "password-22", "role": "store_manager",
                                      "store_id": other.id}, SYSTEM)
        other_id, uid = other.id, user.id
    token = pos.token(user_id=uid)
    dev = register(pos).json
    as_other = {"Authorization": f"Bearer {token}"}
    # another store's terminal: 403, as for every store-bound staff member (customers alone get 404)
    assert pos.request("GET", f"/api/v1/pos/devices/{dev['id']}", headers=as_other).status_code == 403
    assert pos.request("POST", f"/api/v1/pos/devices/{dev['id']}/revoke", headers=as_other,
                       json={"reason": "x"}).status_code == 403
    assert pos.request("GET", "/api/v1/pos/devices", headers=as_other).json["items"] == []
    r = pos.request("POST", "/api/v1/pos/devices", headers=as_other, json={"store_id": pos.store_id, "name": "x"})
    assert r.status_code == 403 and r.json["type"].endswith("/forbidden")
    assert pos.request("GET", "/api/v1/pos/discrepancies", headers=as_other,
                       params={"store_id": str(pos.store_id)}).status_code == 403
    assert register(pos, role="admin", store_id=other_id).status_code == 201


def test_a_terminal_pulls_the_catalogue_and_uploads_sales(pos):
    term = Terminal(pos, register(pos).json["secret"])
    page = term.catalog(limit="1")
    assert page.status_code == 200, page.json
    assert len(page.json["products"]) == 1 and page.json["has_more"]
    got, cursor = list(page.json["products"]), page.json["next_cursor"]
    lots = []
    while True:
        page = term.catalog(since=cursor, limit="1")
        got += page.json["products"]
        lots += page.json["stock"]
        cursor = page.json["next_cursor"]
        if not page.json["has_more"]:
            break
    assert sorted(p["id"] for p in got) == sorted(pos.product_ids) and len(lots) == 2
    version = page.json["price_list_version"]
    pid = pos.product_ids[0]
    batch = [sale([(pid, 2, 1000)], pv=version), sale([(pid, 4, 1000)], pv=version), {"client_sale_id": "x"}]
    r = term.upload(batch, queued=3)
    assert r.status_code == 200, r.json
    assert [x["status"] for x in r.json["results"]] == ["accepted", "accepted", "rejected"]
    assert r.json["results"][1]["discrepancies"] == [{"line_id": batch[1]["lines"][0]["line_id"],
                                                      "product_id": pid, "short": 1}]
    again = term.upload(batch[:2])
    assert [x["status"] for x in again.json["results"]] == ["duplicate", "duplicate"]
    assert again.json["results"][0]["order_id"] == r.json["results"][0]["order_id"]
    # the stock change comes down with the next pull
    page = term.catalog(since=cursor)
    assert [(l["product_id"], l["on_hand"]) for l in page.json["stock"]] == [(pid, -1)]
    # staff see the discrepancy and the terminal's status
    d = pos.get("/api/v1/pos/discrepancies", role="store_manager")
    assert [x["quantity_short"] for x in d.json["items"]] == [1]
    resolved = pos.post(f"/api/v1/pos/discrepancies/{d.json['items'][0]['id']}/resolve", role="store_manager",
                        json={"note": "recounted"})
    assert resolved.status_code == 200 and resolved.json["resolved_by"] == "user:store_manager"
    status = pos.get("/api/v1/pos/sync-status", role="store_manager").json["items"][0]
    assert (status["accepted"], status["rejected"], status["queued"]) == (2, 0, 0)
    assert pos.get("/api/v1/pos/sync-status", role="clerk").status_code == 403


def test_terminal_authentication_failures(pos):
    secret = register(pos).json["secret"]
    term = Terminal(pos, secret)
    none = pos.request("GET", "/api/v1/pos/catalog")
    assert none.status_code == 401 and none.json["type"].endswith("/unauthorized")
    staff = pos.request("GET", "/api/v1/pos/catalog", role="admin", headers={"X-POS-Database-Id": "abcdefgh"})
    assert staff.status_code == 401  # a staff token is not a terminal secret
    assert Terminal(pos, secret[:-3] + "abc").catalog().status_code == 401
    r = pos.request("GET", "/api/v1/pos/catalog", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "X-POS-Database-Id"
    assert term.catalog().status_code == 200
    clone = Terminal(pos, secret)
    r = clone.upload([sale([(pos.product_ids[0], 1, 1000)])])
    assert r.status_code == 403 and r.json["type"].endswith("/pos-device-refused") and "re-register" in r.json["detail"]
    flags = pos.get("/api/v1/pos/flags", role="store_manager", params={"kind": "database_mismatch"}).json["items"]
    assert len(flags) == 1
    unknown = pos.get("/api/v1/pos/flags", role="store_manager", params={"kind": "2.6e+16"})
    assert unknown.status_code == 422 and unknown.json["errors"][0]["field"] == "kind"  # not an empty list
    reviewed = pos.post(f"/api/v1/pos/flags/{flags[0]['id']}/review", role="store_manager", json={"note": "ok"})
    assert reviewed.status_code == 200 and reviewed.json["reviewed_at"]
    dev_id = pos.get("/api/v1/pos/devices").json["items"][0]["id"]
    new = pos.post(f"/api/v1/pos/devices/{dev_id}/reregister", role="store_manager")
    assert new.status_code == 200 and new.json["secret"] != secret
    assert Terminal(pos, new.json["secret"], clone.database_id).catalog().status_code == 200
    assert term.catalog().status_code == 401  # the old secret is gone
    r = pos.post(f"/api/v1/pos/devices/{dev_id}/revoke", role="store_manager", json={"reason": "stolen"})
    assert r.status_code == 200 and r.json["status"] == "revoked"
    r = Terminal(pos, new.json["secret"], clone.database_id).upload([sale([(pos.product_ids[0], 1, 1000)])])
    assert r.status_code == 403 and "revoked" in r.json["detail"]
    assert pos.post(f"/api/v1/pos/devices/{dev_id}/reregister", role="admin").status_code == 403


def test_batch_body_problems(pos):
    term = Terminal(pos, register(pos).json["secret"])
    r = pos.request("POST", "/api/v1/pos/sales:batch", headers=term.headers(), body="{nope")
    assert r.status_code == 400 and r.json["type"].endswith("/malformed-json")
    r = term.upload([sale([(pos.product_ids[0], 1, 1000)]) for _ in range(501)])
    assert r.status_code in (413, 422)
    r = pos.request("POST", "/api/v1/pos/sales:batch", headers=term.headers(), json=[1, 2])
    assert r.status_code == 422
    assert pos.request("POST", "/api/v1/pos/sales", headers=term.headers(), json={}).status_code == 404


def test_the_api_document_shows_terminal_operations_as_bearer_protected(pos):
    doc = pos.get("/api/v1/openapi.json", role=None).json
    batch = doc["paths"]["/api/v1/pos/sales:batch"]["post"]
    assert batch["security"] == [{"bearerAuth": []}] and batch["x-roles"] == ["device"] and not batch["x-public"]
    assert batch["x-plugin"] == "pos_sync" and "requestBody" in batch
    assert doc["paths"]["/api/v1/pos/devices"]["post"]["x-roles"] == ["admin", "store_manager"]
    assert "/api/v1/pos/catalog" in doc["paths"] and "/api/v1/pos/sync-status" in doc["paths"]
    assert "Terminals only" in batch["description"] and "Public" not in batch["description"]


def test_a_chain_may_let_more_roles_read_the_review_lists(make_api):
    from tests.core.factories import make_plugin
    grant = make_plugin("grant", register_permissions=lambda: {"pos.discrepancies.list": ["clerk"]})
    api = make_api(enabled=["pos_sync"], extra_plugins=[grant], settings=FAST)
    r = api.get("/api/v1/pos/discrepancies", role="clerk")
    assert r.status_code == 200 and r.json["items"] == []
    assert api.get("/api/v1/pos/discrepancies", role="clerk", params={"store_id": str(api.store_id + 1)}).status_code == 403
    assert api.get("/api/v1/pos/sync-status", role="clerk").status_code == 403


def test_loyalty_earns_points_when_an_offline_sale_syncs(make_api):
    api = make_api(enabled=["pos_sync", "loyalty"], settings=FAST)
    with api.ctx.transaction() as s:
        pid = product(s, price_fen=5000).id
        receive(api.ctx, s, api.store_id, pid, 5)
    term = Terminal(api, register(api).json["secret"])
    assert api.get(f"/api/v1/members/{api.customer_id}/ledger", role="admin").json.get("items", []) == []
    batch = [sale([(pid, 2, 5000)], customer_id=api.customer_id)]
    assert [r["status"] for r in term.upload(batch).json["results"]] == ["accepted"]
    assert [r["status"] for r in term.upload(batch).json["results"]] == ["duplicate"]
    ledger = api.get(f"/api/v1/members/{api.customer_id}/ledger", role="admin")
    assert ledger.status_code == 200, ledger.json
    earned = [e for e in ledger.json["items"] if e["kind"] == "earn"]
    assert len(earned) == 1 and earned[0]["eligible_fen_delta"] == 10000  # once, however often it is re-sent
    assert earned[0]["pending_delta"] > 0
