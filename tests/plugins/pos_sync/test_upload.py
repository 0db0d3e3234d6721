"""Sales upload at the service level: accepted, duplicate, rejected, flagged, cut off half-way."""
import datetime as dt

import pytest
from sqlalchemy import func, select

from core import stock
from core.db import utcnow
from core.errors import ValidationFailed
from core.models import Order, OrderEvent, StockLot
from plugins.pos_sync.models import PosSale, PosSaleFlag, PosStockDiscrepancy
from tests.core.factories import make_plugin, receive

from .helpers import pos_ctx, sale, shop, statuses, upload


def count(ctx, model, *where):
    with ctx.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_an_offline_sale_is_recorded_once_with_device_and_server_times(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    p1, p2, _ = sh.product_ids
    sold = utcnow() - dt.timedelta(hours=3)
    s1 = sale([(p1, 2, 1000), (p2, 1, 1000)], sold_at=sold, customer_id=sh.customer_id)
    answer = upload(ctx, sh, [s1])
    assert statuses(answer) == ["accepted"] and answer["accepted"] == 1
    res = answer["results"][0]
    assert res["total_fen"] == 3000 and res["flags"] == [] and res["discrepancies"] == []
    with ctx.session() as s:
        order = s.get(Order, res["order_id"])
        assert (order.status, order.channel, order.store_id, order.customer_id) == ("completed", "pos", sh.store_id,
                                                                                      sh.customer_id)
        assert order.extra["pos"]["client_sale_id"] == s1["client_sale_id"]
        assert order.extra["payments"] == [{"method": "cash", "amount_fen": 3000, "reference": None}]
        row = s.scalars(select(PosSale)).one()
        assert row.sold_at == sold and row.received_at > sold and row.status == "accepted"
        assert sum(l.on_hand for l in stock.on_hand(s, sh.store_id, p1)) == 48
        assert stock.verify(s) == []


def test_resending_returns_the_stored_result_and_makes_no_second_sale(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    batch = [sale([(pid, 1, 1000)]) for pid in sh.product_ids]
    first = upload(ctx, sh, batch)
    again = upload(ctx, sh, batch)
    assert statuses(first) == ["accepted"] * 3 and statuses(again) == ["duplicate"] * 3
    for a, b in zip(first["results"], again["results"]):
        assert {**a, "status": "duplicate"} == b
    assert count(ctx, Order) == 3
    with ctx.session() as s:
        assert [l.on_hand for l in s.scalars(select(StockLot).order_by(StockLot.id))] == [49, 49, 49]


def test_same_id_with_other_content_is_rejected_flagged_and_never_overwrites(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    original = sale([(sh.product_ids[0], 1, 1000)])
    upload(ctx, sh, [original])
    forged = {**original, "lines": [{**original["lines"][0], "quantity": 5}],
              "payments": [{"method": "cash", "amount_fen": 5000}]}
    for _ in range(2):  # flagged once however often it comes
        answer = upload(ctx, sh, [forged])
        res = answer["results"][0]
        assert res["status"] == "rejected" and res["flagged"] and "different content" in res["reason"]
    assert count(ctx, PosSaleFlag, PosSaleFlag.kind == "content_mismatch") == 1
    with ctx.session() as s:
        row = s.scalars(select(PosSale)).one()
        assert row.status == "accepted" and row.total_fen == 1000
        flag = s.scalars(select(PosSaleFlag)).one()
        assert flag.sale_id == row.id and flag.payload["lines"][0]["quantity"] == 5
    assert count(ctx, Order) == 1
    assert statuses(upload(ctx, sh, [original])) == ["duplicate"]


def test_a_sale_beyond_recorded_stock_is_accepted_and_raises_a_discrepancy(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=1, stock=3)
    pid = sh.product_ids[0]
    s1 = sale([(pid, 5, 1000)])
    res = upload(ctx, sh, [s1])["results"][0]
    assert res["status"] == "accepted" and "stock_discrepancy" in res["flags"]
    assert res["discrepancies"] == [{"line_id": s1["lines"][0]["line_id"], "product_id": pid, "short": 2}]
    with ctx.session() as s:
        d = s.scalars(select(PosStockDiscrepancy)).one()
        assert (d.store_id, d.product_id, d.quantity_short, d.device_id) == (sh.store_id, pid, 2, sh.device_id)
        assert [l.on_hand for l in stock.on_hand(s, sh.store_id, pid)] == [-2]
        assert stock.verify(s) == []
    assert statuses(upload(ctx, sh, [s1])) == ["duplicate"]
    assert count(ctx, PosStockDiscrepancy) == 1


def test_fefo_and_scanned_lot(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=1, stock=0)
    pid = sh.product_ids[0]
    with ctx.transaction() as s:
        receive(ctx, s, sh.store_id, pid, 5, lot_no="LATE", days=700)
        receive(ctx, s, sh.store_id, pid, 5, lot_no="SOON", days=60)
    upload(ctx, sh, [sale([(pid, 2, 1000)]), sale([(pid, 1, 1000, "LATE")])])
    with ctx.session() as s:
        assert {l.lot_no: l.on_hand for l in stock.on_hand(s, sh.store_id, pid)} == {"SOON": 3, "LATE": 4}


def test_invalid_sales_are_rejected_one_by_one_and_not_stored(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    pid = sh.product_ids[0]
    good = sale([(pid, 1, 1000)])
    naive = sale([(pid, 1, 1000)], sold_at=dt.datetime(2026, 1, 1, 9, 0))
    unpaid = sale([(pid, 1, 1000)], payments=[{"method": "cash", "amount_fen": 900}])
    points = sale([(pid, 1, 1000)], payments=[{"method": "points", "amount_fen": 1000}])
    other_store = sale([(pid, 1, 1000)], store_id=999)
    answer = upload(ctx, sh, [naive, good, unpaid, points, other_store, "junk"])
    assert statuses(answer) == ["rejected", "accepted", "rejected", "rejected", "rejected", "rejected"]
    reasons = [r.get("reason", "") for r in answer["results"]]
    assert "UTC offset" in reasons[0] and "add up to 900" in reasons[2] and "points" in reasons[3]
    assert "store_id" in reasons[4]
    assert count(ctx, PosSale) == 1
    with pytest.raises(ValidationFailed, match="at most 500"):
        upload(ctx, sh, [sale([(pid, 1, 1000)]) for _ in range(501)])
    with pytest.raises(ValidationFailed):
        upload(ctx, sh, [])


def test_points_cannot_be_redeemed_offline(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    res = upload(ctx, sh, [sale([(sh.product_ids[0], 1, 1000)], redeem_points=100)])["results"][0]
    assert res["status"] == "rejected" and "points cannot be redeemed offline" in res["reason"]


def test_accepted_sales_run_the_online_order_hooks(make_ctx):
    seen = []
    watcher = make_plugin("watcher", order_status_changed=lambda session, order, old_status, new_status, caller:
                          seen.append((order.channel, old_status, new_status, caller.actor)))
    ctx = pos_ctx(make_ctx, extra_plugins=[watcher])
    sh = shop(ctx)
    upload(ctx, sh, [sale([(sh.product_ids[0], 1, 1000)], customer_id=sh.customer_id)])
    actor = f"device:{sh.device_id}"
    assert seen == [("pos", None, "paid", actor), ("pos", "paid", "ready", actor), ("pos", "ready", "completed", actor)]


def test_a_batch_cut_off_half_way_keeps_what_was_committed(make_ctx):
    """The server dies while a batch is processed: committed chunks stay, nothing is reported
    for them, and the re-sent batch is answered duplicate for those and accepted for the rest."""
    crash = {"at": None}

    def movement_hook(session, movement):
        if movement.kind == "sale" and crash["at"] == movement.product_id:
            raise RuntimeError("the server process died")
    ctx = pos_ctx(make_ctx, extra_plugins=[make_plugin("crasher", stock_movement_recorded=movement_hook)],
                  settings={"pos_sync.commit_every": 4})
    sh = shop(ctx, products=2, stock=100)
    p_ok, p_crash = sh.product_ids
    batch = [sale([(p_ok, 1, 1000)]) for _ in range(9)] + [sale([(p_crash, 1, 1000)])] + \
            [sale([(p_ok, 1, 1000)]) for _ in range(5)]
    crash["at"] = p_crash
    with pytest.raises(RuntimeError):
        upload(ctx, sh, batch)
    assert count(ctx, PosSale) == 8  # chunks 1 and 2 committed, chunk 3 (sales 9-12) rolled back
    crash["at"] = None
    answer = upload(ctx, sh, batch)
    assert statuses(answer) == ["duplicate"] * 8 + ["accepted"] * 7
    assert count(ctx, Order) == 15 and count(ctx, PosSale) == 15
    with ctx.session() as s:
        assert s.scalar(select(func.sum(StockLot.on_hand))) == 200 - 15
        assert stock.verify(s) == []


def test_one_refused_sale_does_not_refuse_its_batch(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    pid = sh.product_ids[0]
    answer = upload(ctx, sh, [sale([(pid, 1, 1000)]), sale([(999999, 1, 1000)]), sale([(pid, 1, 1000)])])
    assert statuses(answer) == ["accepted", "rejected", "accepted"]
    assert "999999" in answer["results"][1]["reason"]
    assert count(ctx, Order) == 2
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(OrderEvent)) == 6


def test_a_batch_over_its_time_budget_defers_the_rest_to_the_next_request(make_ctx):
    ctx = pos_ctx(make_ctx, settings={"pos_sync.batch_time_budget_seconds": 0, "pos_sync.commit_every": 2})
    sh = shop(ctx)
    batch = [sale([(sh.product_ids[0], 1, 1000)]) for _ in range(5)]
    first = upload(ctx, sh, batch)
    assert statuses(first) == ["accepted"] * 2 + ["deferred"] * 3 and first["deferred"] == 3
    assert "send this sale again" in first["results"][2]["reason"]
    assert count(ctx, PosSale) == 2
    again = upload(ctx, sh, batch[2:])  # the terminal sends what is still queued
    assert statuses(again) == ["accepted"] * 2 + ["deferred"]
    assert statuses(upload(ctx, sh, batch)) == ["duplicate"] * 2 + ["deferred"] * 3  # the first chunk always runs
    assert statuses(upload(ctx, sh, batch[4:])) == ["accepted"]
    assert count(ctx, Order) == 5


def test_a_sale_a_hook_refuses_mid_chunk_leaves_nothing_and_its_neighbours_are_recorded(make_ctx):
    """A chunk is written together; a sale a hook refuses afterwards (here the core's ephedrine
    rule in order_validate) is rolled back alone: no order, no movement, the lot untouched by it,
    and the sales before and after it in the chunk recorded with their own hooks."""
    seen = []
    ctx = pos_ctx(make_ctx, extra_plugins=[make_plugin(
        "watcher", order_status_changed=lambda session, order, old_status, new_status, caller:
            seen.append((order.extra["pos"]["client_sale_id"], new_status)))])
    sh = shop(ctx, ephedrine=True)
    pid = sh.product_ids[0]
    buyer = "11010519491231002X"
    batch = [sale([(pid, 2, 1000)], buyer_id_number=buyer), sale([(pid, 3, 1000)], buyer_id_number=buyer),
             sale([(pid, 1, 1000)], buyer_id_number=buyer)]
    answer = upload(ctx, sh, batch)
    assert statuses(answer) == ["accepted", "rejected", "accepted"]
    assert "at most 2 packs" in answer["results"][1]["reason"]
    assert count(ctx, Order) == 2
    with ctx.session() as s:
        assert s.scalar(select(func.sum(StockLot.on_hand)).where(StockLot.product_id == pid)) == 50 - 3
        assert stock.verify(s) == []
    kept = {batch[0]["client_sale_id"], batch[2]["client_sale_id"]}
    committed = [(cid, st) for cid, st in seen if cid in kept]
    assert sorted(committed) == sorted((cid, st) for cid in kept for st in ("paid", "ready", "completed"))


def test_a_sale_id_twice_in_one_chunk_is_answered_as_if_sent_again(make_ctx):
    """The second copy is taken after the first (as if in a later chunk): duplicate, or refused and
    flagged when its content differs; the sales around them are recorded once."""
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    a, b = sale([(sh.product_ids[0], 1, 1000)]), sale([(sh.product_ids[1], 1, 1000)])
    changed = {**a, "lines": [dict(a["lines"][0], quantity=2)], "payments": [{"method": "cash", "amount_fen": 2000}]}
    answer = upload(ctx, sh, [a, b, a, changed])
    assert statuses(answer) == ["accepted", "accepted", "duplicate", "rejected"]
    assert answer["results"][2]["order_id"] == answer["results"][0]["order_id"]
    assert answer["results"][3]["flagged"] is True
    assert count(ctx, Order) == 2


def test_the_flags_and_discrepancies_of_new_sales_refer_to_their_stored_rows(make_ctx):
    """A chunk's new pos_sales rows are written once, after the chunk's sales were recorded, with their
    final values; what refers to them is stored with their ids: a shortfall, a sale dated ahead of the
    server, a device sequence number used by an earlier sale of the chunk (even a refused one), and
    other content sent under a sale id received earlier in the same chunk (a flag written at once)."""
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=3, stock=1)
    p1, p2, p3 = sh.product_ids
    refused = sale([(p1, 1, 1000)], seq=500, redeem_points=5)
    short = sale([(p1, 3, 1000)], seq=500)
    ahead = sale([(p2, 1, 1000)], seq=501, sold_at=utcnow() + dt.timedelta(hours=2))
    again = sale([(p3, 1, 1000)], seq=501)
    changed = {**short, "lines": [dict(short["lines"][0], quantity=1)], "payments": [{"method": "cash", "amount_fen": 1000}]}
    batch = [refused, short, ahead, again, changed]
    answer = upload(ctx, sh, batch)
    assert statuses(answer) == ["rejected", "accepted", "accepted", "accepted", "rejected"]
    r = answer["results"]
    assert [x.get("flags") for x in r[1:4]] == [["stock_discrepancy", "sequence_reused"], ["clock_drift"],
                                                ["sequence_reused"]]
    assert r[4]["flagged"] is True and r[4]["sale_id"] == r[1]["sale_id"]
    with ctx.session() as s:
        rows = {row.client_sale_id: row for row in s.scalars(select(PosSale))}
        assert len(rows) == 4
        for raw, res in zip(batch[:4], r):
            row = rows[raw["client_sale_id"]]
            assert (row.id, row.status, row.order_id, row.result, row.attempts) == \
                (res["sale_id"], res["status"], res.get("order_id"), res, 1)
            assert row.flags == res.get("flags", []) and row.total_fen == res.get("total_fen", 0)
            assert row.device_seq == raw["device_seq"] and row.content_hash
        assert rows[refused["client_sale_id"]].reason == r[0]["reason"]
        d = s.scalars(select(PosStockDiscrepancy)).one()
        assert (d.sale_id, d.order_id, d.quantity_short) == (r[1]["sale_id"], r[1]["order_id"], 2)
        flags = {(f.kind, f.sale_id): f for f in s.scalars(select(PosSaleFlag))}
        assert sorted(flags) == sorted([("sequence_reused", r[1]["sale_id"]), ("clock_drift", r[2]["sale_id"]),
                                        ("sequence_reused", r[3]["sale_id"]), ("content_mismatch", r[1]["sale_id"])])
        assert f"(#{r[0]['sale_id']})" in flags["sequence_reused", r[1]["sale_id"]].detail
        assert f"(#{r[2]['sale_id']})" in flags["sequence_reused", r[3]["sale_id"]].detail
        assert flags["content_mismatch", r[1]["sale_id"]].payload == changed
        assert stock.verify(s) == []
