"""Catalogue pull: paging, resuming an interrupted pull, incremental changes, unknown cursors."""
import datetime as dt

import pytest
from sqlalchemy import update

from core import catalog as core_catalog
from core.errors import ValidationFailed
from core.models import Product
from plugins.pos_sync import catalog, prices
from tests.core.factories import ADMIN, make_plugin, product, receive

from .helpers import pos_ctx, sale, shop, upload


def pull_all(ctx, device, cursor=None, limit=4):
    """Pull until caught up; returns (pages, cursor)."""
    pages = []
    while True:
        page = catalog.pull(ctx, device, cursor, limit)
        pages.append(page)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return pages, cursor


def ids(pages, what="products", key="id"):
    return [row[key] for page in pages for row in page[what]]


def test_a_full_pull_pages_products_then_the_stores_stock_once_each(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=7, stock=5)
    other = shop(ctx, products=2, stock=5)  # its lots are another store's: never sent here
    device = sh.device(ctx)
    pages, _ = pull_all(ctx, device)
    assert all(len(p["products"]) + len(p["stock"]) <= 4 for p in pages)
    assert sorted(ids(pages)) == sorted(sh.product_ids + other.product_ids)
    assert len(ids(pages)) == len(set(ids(pages)))
    lots = [row for page in pages for row in page["stock"]]
    assert sorted(l["product_id"] for l in lots) == sorted(sh.product_ids)
    assert all(l["on_hand"] == 5 and l["available"] == 5 and l["sellable"] for l in lots)
    first = pages[0]["products"][0]
    assert first["price_fen"] == 1000 and first["price_list_version"] == pages[0]["price_list_version"] >= 1
    assert first["restrictions"]["offline"] == {"allowed": True, "reasons": [], "needs_prescription": False,
                                               "needs_buyer_id": False, "max_units_per_sale": None}
    assert not any(p["reset"] for p in pages)


def test_restrictions_tell_the_terminal_what_it_may_sell(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=0)
    with ctx.transaction() as s:
        rx = product(s, rx_class="rx").id
        eph = product(s, ephedrine=True).id
        banned = product(s, online_banned=True).id
        gone = product(s, active=False).id
    rows = {r["id"]: r["restrictions"] for p in pull_all(ctx, sh.device(ctx))[0] for r in p["products"]}
    assert rows[rx]["offline"]["allowed"] is False and "no prescription review" in rows[rx]["offline"]["reasons"][0]
    assert rows[eph]["offline"] == {"allowed": True, "reasons": [], "needs_prescription": False,
                                    "needs_buyer_id": True, "max_units_per_sale": 2}
    assert rows[eph]["online"]["allowed"] is False
    assert rows[banned]["offline"]["allowed"] and not rows[banned]["online"]["allowed"]
    assert "online-sale ban list" in " ".join(rows[banned]["online"]["reasons"])
    assert rows[gone]["offline"]["allowed"] is False


def test_an_interrupted_pull_resumes_without_loss_or_repeats(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=9, stock=3)
    device = sh.device(ctx)
    applied, cursor = [], None
    for step in range(100):
        page = catalog.pull(ctx, device, cursor, 3)
        if step % 2 == 1:
            continue  # the connection dropped: the page never reached the terminal, the cursor is not stored
        applied.append(page)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert sorted(ids(applied)) == sorted(sh.product_ids)
    assert sorted(ids(applied, "stock", "lot_id")) == sorted(set(ids(applied, "stock", "lot_id")))
    assert len(ids(applied, "stock", "lot_id")) == 9


def test_the_next_pull_brings_only_what_changed(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=5, stock=10)
    device = sh.device(ctx)
    pages, cursor = pull_all(ctx, device)
    v1 = pages[-1]["price_list_version"]
    nothing = catalog.pull(ctx, device, cursor)
    assert (nothing["products"], nothing["stock"], nothing["has_more"], nothing["reset"]) == ([], [], False, False)
    with ctx.transaction() as s:
        core_catalog.update_product(s, sh.product_ids[2], {"price_fen": 1500}, ADMIN)
    upload(ctx, sh, [sale([(sh.product_ids[4], 4, 1000)])])
    page = catalog.pull(ctx, device, nothing["next_cursor"])
    assert [(p["id"], p["price_fen"], p["price_list_version"]) for p in page["products"]] == [
        (sh.product_ids[2], 1500, v1 + 1)]
    assert page["price_list_version"] == v1 + 1
    assert [(l["product_id"], l["on_hand"]) for l in page["stock"]] == [(sh.product_ids[4], 6)]
    assert not page["has_more"]


@pytest.mark.parametrize("bad", ["garbage", "eyJ2IjoxfQ.AAAA", ""])
def test_a_cursor_the_server_does_not_know_forces_a_full_resync(make_ctx, bad):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=3)
    device = sh.device(ctx)
    page = catalog.pull(ctx, device, bad, 100)
    assert page["reset"] is bool(bad)
    assert sorted(r["id"] for r in page["products"]) == sorted(sh.product_ids)


def test_a_cursor_of_another_store_or_a_newer_database_forces_a_full_resync(make_ctx):
    ctx = pos_ctx(make_ctx)
    a, b = shop(ctx, products=2), shop(ctx, products=2)
    _, cursor_a = pull_all(ctx, a.device(ctx))
    page = catalog.pull(ctx, b.device(ctx), cursor_a, 100)
    assert page["reset"] and len(page["products"]) == 4 and len(page["stock"]) == 2
    # the server's database was restored to an earlier point: the cursor points past its data
    with ctx.transaction() as s:
        s.execute(update(Product).values(updated_at=prices.utcnow() - dt.timedelta(days=1)))
    page = catalog.pull(ctx, a.device(ctx), cursor_a, 100)
    assert page["reset"] and len(page["products"]) == 4
    # and so does a cursor signed by another database
    key = "0" * 64
    forged = catalog.encode_cursor(key, {"v": 1, "s": a.store_id, "pt": "1970-01-01T00:00:00+00:00", "pi": 0,
                                         "lt": "1970-01-01T00:00:00+00:00", "li": 0, "pv": 0})
    assert catalog.pull(ctx, a.device(ctx), forged, 100)["reset"]


def test_page_size_is_bounded(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=1)
    for bad in (0, 1001, "10", True):
        with pytest.raises(ValidationFailed, match="limit"):
            catalog.pull(ctx, sh.device(ctx), None, bad)


def test_rows_still_settling_wait_for_the_next_pull(make_ctx):
    ctx = pos_ctx(make_ctx, settings={"pos_sync.catalog_settle_seconds": 3600})
    sh = shop(ctx, products=2)
    page = catalog.pull(ctx, sh.device(ctx), None, 100)
    assert page["products"] == [] and page["stock"] == []
    later = catalog.pull(ctx, sh.device(ctx), page["next_cursor"], 100,
                         now=prices.utcnow() + dt.timedelta(hours=2))
    assert len(later["products"]) == 2 and len(later["stock"]) == 2


def test_plugins_fields_come_down_and_expired_lots_are_not_available(make_ctx):
    tagger = make_plugin("tagger", product_serialize=lambda product, data, channel, caller:
                         data.__setitem__("shelf_tag", f"{channel}:{product.sku}"))
    ctx = pos_ctx(make_ctx, extra_plugins=[tagger])
    sh = shop(ctx, products=1, stock=0)
    pid = sh.product_ids[0]
    with ctx.transaction() as s:
        receive(ctx, s, sh.store_id, pid, 4, lot_no="OLD", days=2)
    page = catalog.pull(ctx, sh.device(ctx), None, 100, now=prices.utcnow() + dt.timedelta(days=3))
    row = page["products"][0]
    assert row["shelf_tag"].startswith("pos:") and "package_insert" not in row
    assert [(l["lot_no"], l["on_hand"], l["available"], l["sellable"]) for l in page["stock"]] == [("OLD", 4, 0, False)]


def test_a_change_committed_late_with_an_early_stamp_is_not_skipped(make_ctx, db_backend):
    if db_backend == "sqlite":
        pytest.skip("SQLite serializes writers: a second writer cannot commit while the first is open")
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=2, stock=0)
    device = sh.device(ctx)
    _, cursor = pull_all(ctx, device)
    a, b = sh.product_ids
    slow = ctx.sessions()
    slow.begin()
    core_catalog.update_product(slow, a, {"price_fen": 1111}, ADMIN)  # stamped now, committed last
    slow.flush()
    with ctx.transaction() as s:
        core_catalog.update_product(s, b, {"price_fen": 2222}, ADMIN)
    page = catalog.pull(ctx, device, cursor)
    assert page["products"] == []  # b waits: an older writer is still open
    slow.commit()
    slow.close()
    page = catalog.pull(ctx, device, page["next_cursor"])
    assert sorted((p["id"], p["price_fen"]) for p in page["products"]) == [(a, 1111), (b, 2222)]
