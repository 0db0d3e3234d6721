"""Status pushes to Meituan: queued in the change's transaction, sent by the outbox after commit,
signed, retried on failure, and never holding the request that caused them."""
from __future__ import annotations

import datetime as dt
import json
import time

from meituan_delivery.signing import sign
from meituan_calls import SECRET

PATH = "/api/v1/order/status"


def accepted(meituan) -> tuple[str, int]:
    r = meituan.send_order()
    assert r.status_code == 201, r.text
    return r.json["meituan_order_id"], r.json["order_id"]


def test_a_store_refund_is_pushed_to_meituan_after_commit_signed(shop, meituan, fake_http):
    mt_id, order_id = accepted(meituan)
    r = shop.api.post(f"/api/v1/orders/{order_id}/refund", role="store_manager", json={"reason": "缺货"})
    assert r.status_code == 200, r.text
    assert fake_http.received() == []  # nothing is sent from inside the request
    [queued] = shop.outbox("meituan.order_status")
    assert queued["status"] == "pending" and SECRET not in json.dumps(queued["payload"])  # no secret kept

    assert shop.run_outbox().sent == 1
    [call] = fake_http.received(PATH)
    assert call["method"] == "POST"
    assert call["headers"]["x-meituan-signature"] == sign(SECRET, call["body"])
    assert call["headers"]["x-pharmo2o-message-id"] == str(queued["id"])
    assert (call["json"]["order_id"], call["json"]["status"], call["json"]["pharmo2o_order_id"]) == (
        mt_id, "refunded", order_id)
    assert shop.outbox("meituan.order_status")[0]["status"] == "sent"
    assert shop.run_outbox().sent == 0  # delivered once


def test_a_failing_meituan_is_retried_not_lost(shop, meituan, fake_http):
    _, order_id = accepted(meituan)
    shop.fulfil(order_id)  # the store hands it to its own courier: paid -> dispatched, Meituan is told
    fake_http.answer(PATH, status=503, json={"error": "busy"}, times=1)
    first = shop.run_outbox()
    assert (first.sent, first.failed) == (0, 1)
    [msg] = shop.outbox("meituan.order_status")
    assert msg["status"] == "pending" and msg["attempts"] == 1 and "503" in msg["last_error"]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    assert shop.run_outbox(now=later).sent == 1
    assert [c["json"]["status"] for c in fake_http.received(PATH)] == ["dispatched", "dispatched"]


def test_a_slow_meituan_times_out_in_the_runner_and_the_request_never_waits(shop, meituan, fake_http):
    _, order_id = accepted(meituan)
    fake_http.answer(PATH, delay=3)  # far beyond the configured 0.5 s timeout
    started = time.perf_counter()
    shop.api.post(f"/api/v1/orders/{order_id}/refund", role="admin", json={"reason": "顾客拒收"})
    assert time.perf_counter() - started < 2.5  # the request is done before Meituan would even answer

    started = time.perf_counter()
    result = shop.run_jobs("outbox.dispatch")
    assert time.perf_counter() - started < 2.5  # the sender gave up at its timeout
    assert result["outbox.dispatch"] == "sent 0, failed 1, dead 0"
    [msg] = shop.outbox("meituan.order_status")
    assert msg["status"] == "pending" and "timed out" in msg["last_error"]
