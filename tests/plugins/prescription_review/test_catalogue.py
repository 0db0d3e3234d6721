"""The catalogue online: the Rx notice, the withheld package insert, no direct purchase, and the ban list
as versioned data (bundled, loaded through the API or the CLI)."""
from __future__ import annotations

import json

import pytest

from core.catalog import RX_NOTICE
from plugins.prescription_review import banlist
from tests.api.helpers import product, receive
from tests.core.clitools import initialised  # noqa: F401  (fixture)

from .helpers import as_token, decide, held, new_customer, order, rx_api, upload


def _get(api, pid, role="customer", **params):
    return api.get(f"/api/v1/products/{pid}", role=role, params=params or None)


def _listed(api, role="customer", **params):
    return {p["id"] for p in api.get("/api/v1/products", role=role, params={"limit": "200", **params}).json["items"]}


def test_rx_online_shows_the_notice_withholds_the_insert_and_offers_no_direct_buy(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    view = _get(api, api.rx).json
    assert view["rx_notice"] == RX_NOTICE == "处方药须凭处方在药师指导下购买和使用"
    assert view["package_insert"] is None and view["purchasable"] is False
    assert view["prescription_required"] is True and view["purchase_flow"] == "prescription_review"
    assert view["approved_prescription_id"] is None
    otc = _get(api, api.otc).json
    assert "rx_notice" not in otc and otc["purchasable"] is True and otc["package_insert"] == "说明书全文"
    assert api.rx in _listed(api)  # listed, labelled, not hidden
    staff = _get(api, api.rx, role="pharmacist", channel="web").json  # staff see what the customer sees, and more
    assert staff["rx_notice"] == RX_NOTICE and staff["package_insert"] == "【适应症】敏感菌所致感染"
    counter = _get(api, api.rx, role="clerk").json  # the store channel is not online
    assert "rx_notice" not in counter and counter["purchasable"] is True
    # ordering is how the customer asks: the order waits for the prescription
    assert held(api, [(api.rx, 1)])["status"] == "awaiting_review"


def test_the_insert_is_shown_to_a_customer_whose_prescription_was_approved(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 1)])
    p = upload(api, o["id"], items=[(api.rx, 2)]).json
    assert _get(api, api.rx).json["package_insert"] is None  # pending is not approved
    decide(api, p["id"], "approve")
    view = _get(api, api.rx).json
    assert view["package_insert"] == "【适应症】敏感菌所致感染" and view["approved_prescription_id"] == p["id"]
    assert view["purchasable"] is True and view["purchase_flow"] == "approved_prescription"
    assert _get(api, api.rx2).json["package_insert"] is None  # only what it covers
    other = new_customer(api)
    r = api.get(f"/api/v1/products/{api.rx}", role=None, headers=as_token(other["token"]))
    assert r.json["package_insert"] is None  # only for that customer
    assert order(api, [(api.rx, 1)], prescription_id=p["id"]).status_code == 201  # uses the last unit
    assert _get(api, api.rx).json["package_insert"] is None


def _banned_world(api):
    ids = {}
    for key, fields in {
        "tramadol": {"generic_name": "盐酸曲马多缓释片", "rx_class": "rx", "category": "镇痛"},
        "ceftriaxone": {"generic_name": "注射用头孢曲松钠", "dosage_form": "注射剂", "rx_class": "rx"},
        "insulin": {"generic_name": "门冬胰岛素注射液", "dosage_form": "注射剂", "rx_class": "rx"},
        "dxm": {"generic_name": "氢溴酸右美沙芬片", "rx_class": "otc_a"},
        "dxm_compound": {"generic_name": "右美沙芬愈创甘油醚糖浆", "rx_class": "otc_a"},
        "vaccine": {"generic_name": "流感病毒裂解疫苗", "category": "疫苗", "rx_class": "rx"},
        "plain": {"generic_name": "板蓝根颗粒", "rx_class": "otc_b"},
    }.items():
        ids[key] = product(api, **fields)["id"]
        receive(api, api.store_id, ids[key], 10)
    return ids


def test_the_bundled_ban_list_hides_and_refuses_products_online_only(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    ids = _banned_world(api)
    banned = {ids[k] for k in ("tramadol", "ceftriaxone", "dxm", "vaccine")}
    allowed = {ids[k] for k in ("insulin", "dxm_compound", "plain")}
    listed = _listed(api)
    assert not (banned & listed) and allowed <= listed
    for pid in banned:
        assert _get(api, pid).status_code == 404
        r = order(api, [(pid, 1)])  # a customer is not told more than "not sold here"
        assert r.status_code == 422 and "is not sold on channel 'web'" in r.json["detail"]
        r = order(api, [(pid, 1)], role="clerk")  # staff ordering on the online channel are told why
        assert r.status_code == 422 and "online-sale ban list (version nmpa-2022-111.1)" in r.json["detail"]
    assert "注射剂（降糖类药物除外）" in order(api, [(ids["ceftriaxone"], 1)], role="clerk").json["detail"]
    staff = _get(api, ids["tramadol"], role="pharmacist", channel="web").json  # staff see why
    assert staff["purchasable"] is False and staff["online_ban"]["entry"] == "psychotropics-name"
    assert banned <= _listed(api, role="clerk")  # the store channel is not online: in the list, sold at the counter
    r = order(api, [(ids["tramadol"], 1)], role="clerk", channel="store")
    assert r.status_code == 201 and r.json["status"] == "awaiting_review"


def test_a_new_ban_list_version_is_loaded_without_a_code_change(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    ids = _banned_world(api)
    current = api.get("/api/v1/prescriptions/banlist", role="clerk").json
    assert current["origin"] == "bundled" and current["version"] == "nmpa-2022-111.1" and current["history"] == []
    target = api.get(f"/api/v1/products/{ids['plain']}", role="clerk").json["approval_number"]
    doc = {"format": 1, "version": "chain-2027.1", "title": "门店自定", "source": "chain compliance",
           "entries": [{"id": "local", "reason": "连锁自定：暂停线上销售", "approval_number": [target]}]}
    assert api.post("/api/v1/prescriptions/banlist", role="store_manager", json=doc).status_code == 403
    r = api.post("/api/v1/prescriptions/banlist", json=doc)
    assert r.status_code == 201 and r.json["origin"] == "database" and r.json["version"] == "chain-2027.1"
    assert [h["version"] for h in r.json["history"]] == ["chain-2027.1"]
    listed = _listed(api)
    assert ids["plain"] not in listed and ids["tramadol"] in listed  # the new list replaces the old one
    r = order(api, [(ids["plain"], 1)], role="clerk")
    assert r.status_code == 422 and "(version chain-2027.1): 连锁自定" in r.json["detail"]
    assert api.post("/api/v1/prescriptions/banlist", json=doc).status_code == 200  # the same again: no-op
    r = api.post("/api/v1/prescriptions/banlist", json={**doc, "entries": [{"id": "x", "reason": "y",
                                                                          "category": ["疫苗"]}]})
    assert r.status_code == 409 and r.json["errors"][0]["field"] == "version"
    r = api.post("/api/v1/prescriptions/banlist", json={**doc, "version": "bad-1", "entries": [{"id": "x",
                                                                                              "reason": "y"}]})
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "entries[0]"
    r = api.post("/api/v1/prescriptions/banlist", json={**doc, "version": "bad-2", "entries": [
        {"id": "x", "reason": "y", "generic_name_matches": "(unclosed"}]})
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "entries[0].generic_name_matches"
    # the bundled list comes back as a newer version of the data, still without code
    bundled = json.loads(banlist.BUNDLED.read_text(encoding="utf-8"))
    r = api.post("/api/v1/prescriptions/banlist", json={**bundled, "version": "nmpa-2022-111.2"})
    assert r.status_code == 201
    assert ids["plain"] in _listed(api) and ids["tramadol"] not in _listed(api)
    with api.ctx.session() as s:
        from core.models import AuditEntry
        from sqlalchemy import select
        loads = s.scalars(select(AuditEntry.after).where(AuditEntry.action == "prescription_review.banlist.load")).all()
        assert [a["version"] for a in loads] == ["chain-2027.1", "nmpa-2022-111.2"]


def test_a_ban_list_file_named_in_the_configuration_is_used_until_one_is_loaded(make_api, tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"format": 1, "version": "file-1", "entries": [
        {"id": "herbs", "reason": "测试", "generic_name_contains": ["板蓝根"]}]}, ensure_ascii=False), encoding="utf-8")
    api = rx_api(make_api, tmp_path, banlist_file=str(path))
    ids = _banned_world(api)
    listed = _listed(api)
    assert ids["plain"] not in listed and ids["tramadol"] in listed
    assert api.get("/api/v1/prescriptions/banlist", role="clerk").json["origin"] == "file"


def test_cli_loads_and_shows_ban_list_versions(initialised, tmp_path):
    run = initialised
    run.ok("plugins", "enable", "prescription_review")
    assert "in force: nmpa-2022-111.1 (bundled" in run.ok("prescriptions", "banlist", "show").stdout
    path = tmp_path / "v2.json"
    bundled = json.loads(banlist.BUNDLED.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**bundled, "version": "nmpa-2022-111.2"}, ensure_ascii=False), encoding="utf-8")
    out = run.ok("prescriptions", "banlist", "load", str(path), "--actor", "compliance").stdout
    assert "nmpa-2022-111.2" in out and "loaded and in force" in out
    assert "was already loaded" in run.ok("prescriptions", "banlist", "load", str(path)).stdout
    shown = run.ok("prescriptions", "banlist", "show").stdout
    assert "in force: nmpa-2022-111.2 (database" in shown and "by cli:compliance" in shown
    assert json.loads(run.ok("prescriptions", "banlist", "show", "--json").stdout)["version"] == "nmpa-2022-111.2"
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "version": "x", "entries": []}', encoding="utf-8")
    result = run("prescriptions", "banlist", "load", str(bad))
    assert result.exit_code == 2 and "entries" in result.output
    assert "no prescription waits for review" in run.ok("prescriptions", "queue").stdout


def test_every_entry_of_the_bundled_list_is_well_formed_and_each_condition_matches():
    found = banlist.bundled()
    assert found.version == "nmpa-2022-111.1" and len(found.entries) >= 15

    class P:
        def __init__(self, generic_name, dosage_form="", category="", approval_number="国药准字H00000000"):
            self.generic_name, self.dosage_form, self.category = generic_name, dosage_form, category
            self.approval_number = approval_number

    assert found.match(P("盐酸吗啡片")).id == "narcotics-name"
    assert found.match(P("人血白蛋白")).id == "blood-products-name"
    assert found.match(P("某药", category="放射性药品")).id == "radioactive"
    assert found.match(P("米非司酮片")).id == "abortifacients"
    assert found.match(P("复方盐酸伪麻黄碱缓释胶囊")).id == "ephedrine-name"
    assert found.match(P("利拉鲁肽注射液", dosage_form="注射剂")) is None  # hypoglycaemic injection
    assert found.match(P("维生素B12注射液", dosage_form="注射液")).id == "injections"
    assert found.match(P("右美沙芬")).id == "dextromethorphan"
    assert found.match(P("酚麻美敏片")) is None
    with pytest.raises(Exception, match="names no condition"):
        banlist.parse({"format": 1, "version": "v", "entries": [{"id": "a", "reason": "b"}]})
