"""The every-subset matrix: each of the 16 subsets of the four bundled plugins boots, migrates a
fresh empty database up, serves the API (health, plugin list, catalogue, an OTC order placed and
paid), then takes each enabled plugin's branch down again, leaving the core and its data intact.

Runs in both backend passes of ``scripts/test.sh``; kept to one smoke path per subset so the
whole matrix stays well under a minute per backend.
"""
from __future__ import annotations

import itertools

import pytest
from sqlalchemy import inspect

from core import migrations
from core.api import create_app
from core.testing import ApiClient, Shop, build_api_client

BUNDLED = ("loyalty", "pos_sync", "prescription_review", "wechat_channel")
SUBSETS = [combo for size in range(len(BUNDLED) + 1) for combo in itertools.combinations(BUNDLED, size)]


def _id(subset) -> str:
    return "+".join(subset) or "core-only"


def tables(ctx) -> set[str]:
    return set(inspect(ctx.engine).get_table_names())


@pytest.fixture(scope="module")
def core_tables(pharmo2o_databases, tmp_path_factory):
    """The tables of a database migrated for the core alone."""
    from core.config import Config
    from core.context import Context
    url = pharmo2o_databases.fresh([], (), tmp_path_factory.mktemp("core-only"))
    ctx = Context.create(Config(path=tmp_path_factory.getbasetemp() / "none.toml", data={"database_url": url}),
                         enabled=[])
    try:
        return tables(ctx)
    finally:
        ctx.dispose()


def test_the_matrix_is_every_subset():
    assert len(SUBSETS) == 16 and len(set(SUBSETS)) == 16


@pytest.mark.parametrize("subset", SUBSETS, ids=_id)
def test_subset_boots_migrates_serves_and_migrates_down(subset, make_ctx, pharmo2o_databases, tmp_path, core_tables):
    # boots, on a fresh empty database
    url = pharmo2o_databases.fresh(list(subset), (), tmp_path, migrated=False)
    ctx = make_ctx(enabled=subset, url=url)
    assert ctx.registry.enabled == sorted(subset)
    assert tables(ctx) == set()

    # migrates up: the core's branch and each enabled plugin's, nothing else
    assert migrations.upgrade(ctx) == ["core", *sorted(subset)]
    assert migrations.current_branches(ctx) == {"core", *subset}
    plugin_tables = tables(ctx) - core_tables
    assert core_tables <= tables(ctx)

    # serves
    api = build_api_client(ctx)
    health = api.get("/api/v1/health", role=None)
    assert health.status_code == 200 and health.json["plugins"] == sorted(subset)
    rows = {row["name"]: row for row in api.get("/api/v1/plugins", role="clerk").json["items"]}
    assert {name for name, row in rows.items() if row["enabled"]} == set(subset)
    assert all(rows[name]["hooks"] for name in subset)  # each enabled plugin answers some hook
    owners = {route.owner for route in api.app.api.routes}
    assert owners <= {"core", *subset}

    shop = Shop(api)  # a product with stock, through the API
    listed = api.get("/api/v1/products", role="clerk", params={"q": shop.otc["sku"]})
    assert listed.status_code == 200 and [p["id"] for p in listed.json["items"]] == [shop.otc["id"]]
    order = shop.place_order([(shop.otc["id"], 2)]).json
    assert order["status"] == "awaiting_payment" and order["total_fen"] == 2 * shop.otc["price_fen"]
    paid = shop.pay(order["id"]).json
    assert paid["status"] == "paid" and shop.available(shop.otc["id"]) == 48

    # migrates down: with the plugins disabled, each one's branch (dependants first); the core and its
    # orders stay, and the core alone still serves what was sold
    core_ctx = make_ctx(enabled=[], url=url)
    for name in reversed(ctx.registry.enabled):
        migrations.downgrade_plugin(core_ctx, name)
    assert migrations.current_branches(core_ctx) == {"core"}
    assert tables(core_ctx) == core_tables and (not subset or plugin_tables)
    core_only = ApiClient(core_ctx, create_app(core_ctx), api.tokens, api.store_id, api.customer_id, api.user_ids)
    assert core_only.get(f"/api/v1/orders/{order['id']}").json["status"] == "paid"
