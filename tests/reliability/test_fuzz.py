"""Property-based fuzzing of the whole API (issue #10): every operation of ``/api/v1/openapi.json``, with
generated and mutated input, as every role, with all four bundled plugins enabled.

Schemathesis loads the API document from the Falcon app and sends each case in-process (WSGI). For each
role — admin, store_manager, pharmacist, clerk, customer, anonymous (no token) and a POS terminal (its
secret and database id) — every operation gets positive cases (valid per the schema) and negative cases
(mutated: wrong types, missing or extra fields, out-of-range values, malformed headers). A role the operation
does not admit gets a quarter as many, at least one (it must be refused cleanly). Path parameters are drawn half
the time from seeded rows (stores, stocked products, orders in several states, a prescription, a reward, a
POS terminal), so the cases reach real rows and not only 404s. WeChat is a :class:`FakeWeChat` on 127.0.0.1:
nothing goes to the Internet.

Every response must pass: not a 5xx; its status code is declared for the operation; its content type is
the declared one; its body matches the declared schema; and a mutated (schema-violating) request is never
accepted with a 2xx.

Budget: ``PHARMO2O_FUZZ_EXAMPLES`` examples per (operation, role, mode) for an admitted role (default 4,
which keeps the module well under 90 s per backend). A longer run::

    PHARMO2O_FUZZ_EXAMPLES=100 PHARMO2O_TEST_DATABASE=postgresql .venv/bin/python -m pytest -q \\
        -p no:cacheprovider tests/reliability/test_fuzz.py

``PHARMO2O_FUZZ_SEED=<int>`` replays a run (the seed of each run is printed with its figures: operations ×
roles, cases tried, failures); ``PHARMO2O_FUZZ_ONLY="GET /api/v1/pos/catalog"`` limits it to the operations
whose "METHOD path" contains that text, and ``PHARMO2O_FUZZ_VERBOSE=1`` prints every request (with ``-s``).
"""
from __future__ import annotations

import pytest

from tests.plugins.wechat_channel.fake_wechat import FakeWeChat
from tests.plugins.wechat_channel.helpers import API_KEY, APPID, MCH_ID, SECRET, settings

from .fuzz_support import ALL_PLUGINS, ROLES, Tally, examples, fuzz_role, fuzz_seed, load_schema, seed_data

TOTALS: dict[str, Tally] = {}


@pytest.fixture(scope="module")
def fuzz_target(pharmo2o_databases, tmp_path_factory):
    """One database for the module (all four plugins, seeded once): the roles fuzz it in turn."""
    from core.config import Config
    from core.context import Context
    from core.testing import build_api_client

    tmp = tmp_path_factory.mktemp("fuzz")
    fake = FakeWeChat(appid=APPID, secret=SECRET, mch_id=MCH_ID, api_key=API_KEY).start()
    conf = {**settings(fake), "prescription_review.storage_dir": str(tmp / "rx-docs"),
            "pos_sync.price_check_seconds": 0, "pos_sync.catalog_settle_seconds": 0}
    data: dict = {"database_url": pharmo2o_databases.fresh(ALL_PLUGINS, (), tmp),
                  "plugins": {"enabled": list(ALL_PLUGINS)}}
    for key, value in conf.items():
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = value
    ctx = Context.create(Config(path=tmp / "pharmo2o.toml", data=data))
    try:
        api = build_api_client(ctx)
        seeded = seed_data(api)
        yield load_schema(api), seeded
    finally:
        ctx.dispose()
        fake.stop()


def figures(role: str, tally: Tally, seed_value: int) -> str:
    statuses = ", ".join(f"{k}:{v}" for k, v in sorted(tally.statuses.items()))
    line = (f"API fuzz as {role}: {tally.pairs} operations, {tally.cases} cases, {len(tally.failures)} failures, "
            f"{tally.seconds:.1f}s (seed {seed_value}; statuses {statuses})")
    if len(TOTALS) == len(ROLES):
        cases = sum(t.cases for t in TOTALS.values())
        pairs = sum(t.pairs for t in TOTALS.values())
        failures = sum(len(t.failures) for t in TOTALS.values())
        line += (f"\nAPI fuzz total: {tally.pairs} operations x {len(TOTALS)} roles = {pairs} pairs, {cases} cases "
                 f"tried, {failures} failures (PHARMO2O_FUZZ_EXAMPLES={examples()})")
    return line


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_as(role, fuzz_target, capsys, record_property):
    schema, seeded = fuzz_target
    seed_value = fuzz_seed()
    tally = fuzz_role(schema, role, seeded, examples(), seed_value)
    TOTALS[role] = tally
    record_property("fuzz_cases", tally.cases)
    record_property("fuzz_failures", len(tally.failures))
    with capsys.disabled():
        print("\n" + figures(role, tally, seed_value))
    assert tally.cases > 0
    assert not tally.failures, (
        f"{len(tally.failures)} failing operation(s) as {role} (PHARMO2O_FUZZ_SEED={seed_value}):\n\n"
        + "\n\n".join(tally.failures))


# ------------------------------------------------------------------ what the fuzzer found, pinned

def test_a_non_ascii_pickup_code_is_a_422_not_a_500(fuzz_target):
    """``secrets.compare_digest`` raises TypeError on a str with non-ASCII characters: a 500 before the fix."""
    shop = fuzz_target[1].shop
    product = shop.product(generic_name="取货码药品")
    order = shop.place_order([(product["id"], 1)]).json
    shop.pay(order["id"])
    shop.fulfil(order["id"])
    r = shop.api.post(f"/api/v1/orders/{order['id']}/complete", role="clerk",
                      body='{"pickup_code": "\\u00ac\\ud873\\udc76"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json["errors"]] == ["pickup_code"]
    assert shop.order(order["id"])["status"] == "ready"


QUERY_IDS = [("/api/v1/orders", "store_id"), ("/api/v1/orders", "customer_id"), ("/api/v1/customers", "store_id"),
             ("/api/v1/users", "store_id"), ("/api/v1/stores/{store}/stock", "product_id"),
             ("/api/v1/stores/{store}/stock/movements", "product_id"), ("/api/v1/reports/sales", "store_id"),
             ("/api/v1/pos/devices", "store_id"), ("/api/v1/pos/flags", "store_id"),
             ("/api/v1/pos/sync-status", "store_id")]


def test_an_id_beyond_64_bits_in_a_query_is_a_422_not_a_500(fuzz_target):
    """An unbounded ``int`` query parameter reached the database: OverflowError on SQLite, a 500."""
    api = fuzz_target[1].api
    for path, param in QUERY_IDS:
        r = api.get(path.format(store=api.store_id), params={param: str(2 ** 70)})
        assert r.status_code == 422, (path, param, r.text)
        assert [e["field"] for e in r.json["errors"]] == [param], (path, param)


def test_a_queued_count_beyond_32_bits_is_a_422_not_a_500(fuzz_target):
    """``queued`` of a POS batch had no upper bound and is stored in a 32-bit column: a 500 at commit,
    after the batch's sales were committed."""
    from plugins.pos_sync.models import PosSale
    api = fuzz_target[1].api
    device = api.post("/api/v1/pos/devices", json={"store_id": api.store_id, "name": "Counter 9"}).json
    headers = {"Authorization": f"Bearer {device['secret']}", "X-POS-Database-Id": "fuzz-queued-1"}
    sale = {"client_sale_id": "queued-1", "device_seq": 1, "sold_at": "2026-01-01T00:00:00+00:00",
            "lines": [{"line_id": "l1", "product_id": 999999, "quantity": 1, "unit_price_fen": 1,
                       "price_list_version": 1}], "payments": [{"method": "cash", "amount_fen": 1}]}
    with api.ctx.session() as s:
        before = s.query(PosSale).count()
    r = api.request("POST", "/api/v1/pos/sales:batch", json={"sales": [sale], "queued": 2 ** 40}, headers=headers)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json["errors"]] == ["queued"]
    with api.ctx.session() as s:
        assert s.query(PosSale).count() == before


def test_a_terminal_clock_centuries_off_is_recorded_not_a_500(fuzz_target):
    """The clock offset (device_time minus the server's time) went unclamped into a 32-bit column:
    PostgreSQL refused it (integer out of range), a 500 after the batch's sales were committed."""
    api = fuzz_target[1].api
    device = api.post("/api/v1/pos/devices", json={"store_id": api.store_id, "name": "Counter 1549"}).json
    headers = {"Authorization": f"Bearer {device['secret']}", "X-POS-Database-Id": "fuzz-clock-1"}
    sale = {"client_sale_id": "clock-1", "device_seq": 1, "sold_at": "0549-10-05T09:02:29+00:00",
            "lines": [{"line_id": "l1", "product_id": 999999, "quantity": 1, "unit_price_fen": 1,
                       "price_list_version": 1}], "payments": [{"method": "cash", "amount_fen": 1}]}
    r = api.request("POST", "/api/v1/pos/sales:batch", headers=headers,
                    json={"sales": [sale], "device_time": "0549-10-05T09:02:29+00:00"})
    assert r.status_code == 200, r.text
    assert r.json["clock_offset_s"] == -(2**31 - 1)
    status = api.get("/api/v1/pos/sync-status", params={"store_id": str(api.store_id)})
    assert status.status_code == 200, status.text
    row = next(t for t in status.json["items"] if t["device_id"] == device["id"])
    assert row["clock_offset_s"] == -(2**31 - 1)


# ------------------------------------------------------------------ the checks themselves can fail

@pytest.mark.parametrize("breakage", ["body", "status", "content_type"])
def test_the_checks_catch_an_answer_that_breaks_its_declaration(fuzz_target, breakage):
    """Against a deliberately wrong copy of the API document the same checks must fail (else a green fuzz
    run proves nothing)."""
    import copy

    import schemathesis
    from schemathesis.core.failures import FailureGroup

    from .fuzz_support import CHECKS

    api = fuzz_target[1].api
    doc = copy.deepcopy(api.app.api.openapi())
    answer = doc["paths"]["/api/v1/stores"]["get"]["responses"]
    if breakage == "body":
        doc["components"]["schemas"]["StorePage"]["required"] = ["items", "no_such_field"]
    elif breakage == "status":
        answer["201"] = answer.pop("200")
    else:
        answer["200"]["content"] = {"text/csv": answer["200"]["content"]["application/json"]}
    schema = schemathesis.openapi.from_dict(doc)
    schema.app = api.app
    case = schema["/api/v1/stores"]["GET"].Case(headers={"Authorization": f"Bearer {api.tokens['admin']}"})
    response = case.call()
    assert response.status_code == 200
    with pytest.raises(FailureGroup):
        case.validate_response(response, checks=CHECKS)
