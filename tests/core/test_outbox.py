import datetime as dt

import pytest
from sqlalchemy import select

from core import orders, outbox
from core.db import utcnow
from core.models import OutboxMessage

from .factories import ADMIN, customer, make_plugin, product, receive, store


class Recorder:
    """A notification sender that can be told to fail a number of times."""

    def __init__(self, fail_times=0):
        self.sent, self.fail_times, self.calls = [], fail_times, 0

    def __call__(self, payload):
        self.calls += 1
        if self.calls <= self.fail_times:
            raise ConnectionError("WeChat timed out")
        self.sent.append(payload)


def notifying_plugin(recorder):
    def order_status_changed(session, order, old_status, new_status, caller):
        outbox.enqueue(session, "sms", {"order_id": order.id, "status": new_status},
                       dedupe_key=f"sms:{order.id}:{new_status}")
    return make_plugin("notify", order_status_changed=order_status_changed,
                       notification_senders=lambda: {"sms": recorder})


def seed(ctx):
    with ctx.transaction() as s:
        st, p, c = store(s), product(s), customer(s)
        receive(ctx, s, st.id, p.id, 5)
        return st.id, p.id, c.id


def place(ctx, sid, pid, cid, qty=1):
    with ctx.transaction() as s:
        order, _ = orders.create_order(ctx, s, store_id=sid, customer_id=cid, channel="store", fulfilment="pickup",
                                       lines=[{"product_id": pid, "quantity": qty}], caller=ADMIN)
        return order.id


def test_hook_notification_senders(make_ctx):
    rec = Recorder()
    ctx = make_ctx(extra_plugins=[notifying_plugin(rec)])
    sid, pid, cid = seed(ctx)
    oid = place(ctx, sid, pid, cid)
    assert rec.sent == []  # nothing is sent inside the transaction
    result = outbox.dispatch(ctx)
    assert result.sent == 1
    assert [(p["order_id"], p["status"]) for p in rec.sent] == [(oid, "awaiting_payment")]
    assert isinstance(rec.sent[0]["_outbox_id"], int)
    assert outbox.dispatch(ctx).sent == 0  # sent exactly once


def test_rolled_back_order_sends_nothing(make_ctx):
    rec = Recorder()
    ctx = make_ctx(extra_plugins=[notifying_plugin(rec)])
    sid, pid, cid = seed(ctx)
    with pytest.raises(Exception):
        place(ctx, sid, pid, cid, qty=50)  # fails after the order row was flushed
    with pytest.raises(RuntimeError):
        with ctx.transaction() as s:
            order, _ = orders.create_order(ctx, s, store_id=sid, customer_id=cid, channel="store",
                                           fulfilment="pickup", lines=[{"product_id": pid, "quantity": 1}], caller=ADMIN)
            raise RuntimeError("the request failed after the order was placed")
    outbox.dispatch(ctx)
    assert rec.sent == []
    with ctx.session() as s:
        assert s.scalars(select(OutboxMessage)).all() == []


def test_failed_send_is_retried_with_backoff_not_lost(make_ctx):
    rec = Recorder(fail_times=2)
    ctx = make_ctx(extra_plugins=[notifying_plugin(rec)])
    sid, pid, cid = seed(ctx)
    place(ctx, sid, pid, cid)
    first = outbox.dispatch(ctx)
    assert (first.sent, first.failed) == (0, 1)
    with ctx.session() as s:
        msg = s.scalars(select(OutboxMessage)).one()
        assert msg.status == "pending" and msg.attempts == 1 and "timed out" in msg.last_error
        assert msg.next_attempt_at > utcnow()
    assert outbox.dispatch(ctx).sent == 0  # not due yet
    later = utcnow() + dt.timedelta(minutes=2)
    assert outbox.dispatch(ctx, now=later).failed == 1
    assert outbox.dispatch(ctx, now=later + dt.timedelta(minutes=5)).sent == 1
    assert len(rec.sent) == 1 and rec.calls == 3


def test_message_goes_dead_after_max_attempts_but_is_kept(make_ctx, monkeypatch):
    monkeypatch.setattr(outbox, "MAX_ATTEMPTS", 2)
    rec = Recorder(fail_times=99)
    ctx = make_ctx(extra_plugins=[notifying_plugin(rec)])
    sid, pid, cid = seed(ctx)
    place(ctx, sid, pid, cid)
    outbox.dispatch(ctx)
    assert outbox.dispatch(ctx, now=utcnow() + dt.timedelta(hours=2)).dead == 1
    with ctx.session() as s:
        msg = s.scalars(select(OutboxMessage)).one()
        assert (msg.status, msg.attempts) == ("dead", 2)


def test_dedupe_key_queues_once_and_unknown_kind_waits(ctx):
    with ctx.transaction() as s:
        assert outbox.enqueue(s, "fax", {"n": 1}, dedupe_key="once") is not None
        assert outbox.enqueue(s, "fax", {"n": 2}, dedupe_key="once") is None
    with ctx.transaction() as s:
        assert outbox.enqueue(s, "fax", {"n": 3}, dedupe_key="once") is None
    result = outbox.dispatch(ctx)
    assert result.failed == 1
    with ctx.session() as s:
        msg = s.scalars(select(OutboxMessage)).one()
        assert msg.status == "pending" and "no enabled plugin sends 'fax'" in msg.last_error


def test_backoff_doubles_and_is_capped():
    assert [outbox.backoff(n).total_seconds() for n in (1, 2, 3)] == [5, 10, 20]
    assert outbox.backoff(50).total_seconds() == 3600


def test_core_log_sender_delivers(ctx, caplog):
    with ctx.transaction() as s:
        outbox.enqueue(s, "log", {"hello": "world"})
    with caplog.at_level("INFO", logger="pharmo2o.core"):
        assert outbox.dispatch(ctx).sent == 1
    assert "world" in caplog.text
