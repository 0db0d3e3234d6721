"""Offline sale rules: Rx needs an approved prescription, ephedrine register, clock drift,
stale prices, reused sequence numbers; and what staff see (discrepancies, flags, sync status)."""
import datetime as dt

import pytest
from sqlalchemy import select

from core import catalog
from core.db import utcnow
from core.errors import Conflict
from plugins.pos_sync import prices, reports
from plugins.pos_sync.models import PosSaleFlag
from tests.core.factories import ADMIN, make_plugin

from .helpers import manager_of, pos_ctx, register, sale, shop, statuses, upload, version

BUYER_ID = "11010519491231002X"


def reviewer(approved=("RX-1",)):
    """Stands in for the prescription_review plugin: the capability plus an order_hold that
    knows which prescription ids are approved."""
    return make_plugin(
        "fake_review",
        capabilities=lambda: ["prescription_review"],
        order_hold=lambda session, order, extra, caller:
            None if not any(l.rx_class == "rx" for l in order.lines) or extra.get("prescription_id") in approved
            else f"prescription {extra.get('prescription_id')!r} is not approved")


def test_rx_is_refused_offline_when_no_plugin_reviews_prescriptions(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, rx_class="rx")
    res = upload(ctx, sh, [sale([(sh.product_ids[0], 1, 1000)], prescription_id="RX-1")])["results"][0]
    assert res["status"] == "rejected" and "no prescription review is enabled" in res["reason"]


def test_rx_needs_a_prescription_approved_online(make_ctx):
    approved = {"RX-1"}
    ctx = pos_ctx(make_ctx, extra_plugins=[reviewer(approved)])
    sh = shop(ctx, rx_class="rx")
    pid = sh.product_ids[0]
    missing, unknown, good = (sale([(pid, 1, 1000)]), sale([(pid, 1, 1000)], prescription_id="RX-2"),
                              sale([(pid, 1, 1000)], prescription_id="RX-1"))
    answer = upload(ctx, sh, [missing, unknown, good])
    assert statuses(answer) == ["rejected", "rejected", "accepted"]
    assert "prescription_id" in answer["results"][0]["reason"]
    assert "'RX-2' is not approved" in answer["results"][1]["reason"]
    # once the prescription is approved online, re-sending the same sale is checked again
    approved.add("RX-2")
    assert statuses(upload(ctx, sh, [unknown])) == ["accepted"]
    assert statuses(upload(ctx, sh, [unknown])) == ["duplicate"]
    with ctx.session() as s:
        status = reports.sync_status(s, ADMIN)[0]
        assert (status["accepted"], status["rejected"]) == (2, 1)


def test_ephedrine_needs_the_buyers_id_and_at_most_two_packs(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, ephedrine=True)
    pid = sh.product_ids[0]
    answer = upload(ctx, sh, [sale([(pid, 1, 1000)]), sale([(pid, 1, 1000)], buyer_id_number="110105194912310021"),
                              sale([(pid, 3, 1000)], buyer_id_number=BUYER_ID),
                              sale([(pid, 2, 1000)], buyer_id_number=BUYER_ID)])
    assert statuses(answer) == ["rejected", "rejected", "rejected", "accepted"]
    assert "resident ID" in answer["results"][0]["reason"] and "resident ID" in answer["results"][1]["reason"]
    assert "at most 2 packs" in answer["results"][2]["reason"]


def test_clock_drift_is_flagged(make_ctx):
    ctx = pos_ctx(make_ctx, settings={"pos_sync.clock_drift_seconds": 60})
    sh = shop(ctx)
    pid = sh.product_ids[0]
    ahead = (utcnow() + dt.timedelta(minutes=10)).isoformat()
    answer = upload(ctx, sh, [sale([(pid, 1, 1000)])], device_time=ahead)
    assert answer["results"][0]["status"] == "accepted" and answer["results"][0]["flags"] == ["clock_drift"]
    assert 590 <= answer["clock_offset_s"] <= 600
    future = upload(ctx, sh, [sale([(pid, 1, 1000)], sold_at=utcnow() + dt.timedelta(hours=1))],
                    device_time=utcnow().isoformat())
    assert future["results"][0]["flags"] == ["clock_drift"]
    fine = upload(ctx, sh, [sale([(pid, 1, 1000)])], device_time=utcnow().isoformat())
    assert fine["results"][0]["flags"] == []
    with ctx.session() as s:
        assert [(f.kind, f.sale_id is None) for f in s.scalars(select(PosSaleFlag).order_by(PosSaleFlag.id))] == [
            ("clock_drift", True), ("clock_drift", False)]  # the upload-wide offset, then the sale dated ahead
        assert abs(reports.sync_status(s, ADMIN)[0]["clock_offset_s"]) <= 5  # the last upload's clock


def test_a_price_older_than_allowed_is_accepted_and_flagged(make_ctx):
    ctx = pos_ctx(make_ctx, settings={"pos_sync.price_staleness_minutes": 60})
    sh = shop(ctx, products=2, price=1000)
    p1, p2 = sh.product_ids
    v1 = version(ctx)
    with ctx.transaction() as s:
        catalog.update_product(s, p1, {"price_fen": 1200}, ADMIN)
    v2 = version(ctx)
    assert v2 == v1 + 1
    late = utcnow() + dt.timedelta(hours=2)  # two hours after the new price list was published
    answer = upload(ctx, sh, [
        sale([(p1, 1, 1000)], pv=v1, sold_at=late),   # old price, long after the change: stale
        sale([(p1, 1, 1000)], pv=v1),                  # old price within the hour: fine
        sale([(p1, 1, 1200)], pv=v2, sold_at=late),    # new price: fine
        sale([(p2, 1, 1000)], pv=v1, sold_at=late),    # old version but that price did not change: fine
    ], device_time=utcnow().isoformat())
    assert statuses(answer) == ["accepted"] * 4
    assert [r["flags"] for r in answer["results"]] == [["stale_price", "clock_drift"], [], ["clock_drift"], ["clock_drift"]]
    with ctx.session() as s:
        flag = s.scalars(select(PosSaleFlag).where(PosSaleFlag.kind == "stale_price")).one()
        assert flag.payload[0]["charged_fen"] == 1000 and flag.payload[0]["price_fen"] == 1200
        assert prices.current_version(s) == v2


def test_a_reused_sequence_number_is_flagged(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    pid = sh.product_ids[0]
    upload(ctx, sh, [sale([(pid, 1, 1000)], seq=7)])
    res = upload(ctx, sh, [sale([(pid, 1, 1000)], seq=7)])["results"][0]
    assert res["status"] == "accepted" and res["flags"] == ["sequence_reused"]


def test_discrepancies_are_listed_and_resolved_by_the_store(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=1, stock=1)
    upload(ctx, sh, [sale([(sh.product_ids[0], 3, 1000)])])
    mgr = manager_of(sh.store_id)
    with ctx.transaction() as s:
        page = reports.list_discrepancies(s, mgr)
        assert [reports.serialize_discrepancy(d)["quantity_short"] for d in page.items] == [2]
        reports.resolve_discrepancy(s, page.items[0].id, mgr, "counted: 2 boxes were in the back room")
        with pytest.raises(Conflict):
            reports.resolve_discrepancy(s, page.items[0].id, mgr, "again")
    with ctx.session() as s:
        assert reports.list_discrepancies(s, mgr).items == []
        assert len(reports.list_discrepancies(s, mgr, state="resolved").items) == 1


def test_sync_status_per_terminal(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    other_id, _ = register(ctx, sh.store_id)
    pid = sh.product_ids[0]
    sold = utcnow() - dt.timedelta(hours=1)
    upload(ctx, sh, [sale([(pid, 1, 1000)], seq=1, sold_at=sold), sale([(pid, 1, 1000)], seq=2),
                     sale([(999999, 1, 1000)], seq=4)], queued=10)
    with ctx.session() as s:
        rows = {r["device_id"]: r for r in reports.sync_status(s, manager_of(sh.store_id))}
    mine = rows[sh.device_id]
    assert (mine["accepted"], mine["rejected"], mine["queued"]) == (2, 1, 7)
    assert (mine["last_sequence"], mine["sequence_gaps"]) == (4, 1)
    assert 3590 <= mine["lag_s"] <= 3700 and mine["since_last_contact_s"] < 60
    assert rows[other_id]["last_contact_at"] is None and rows[other_id]["accepted"] == 0
