"""A plugin that fails inside a hook is named in the answer and leaves nothing half-written;
a plugin that is slow in an after-commit sender never holds a request."""
from __future__ import annotations

import inspect
import threading
import time

import pytest
from sqlalchemy import func, select

from core import hookspecs
from core.config import Config
from core.errors import ValidationFailed
from core.jobs import jobs_of, run_forever
from core.models import Order, OrderLine, OutboxMessage, StockMovement
from core.outbox import enqueue
from core.plugins import HookFailure, hook_failure, load_registry
from core.testing import Shop

from .factories import make_plugin


def counts(ctx) -> dict[str, int]:
    with ctx.session() as s:
        return {table.__tablename__: s.scalar(select(func.count()).select_from(table))
                for table in (Order, OrderLine, StockMovement, OutboxMessage)}


def assert_plugin_failed(result, plugin: str, hook: str) -> dict:
    assert result.status_code == 500, result.text
    assert result.headers["content-type"] == "application/problem+json"
    body = result.json
    assert body["type"] == "https://pharmo2o.dev/problems/plugin-failed"
    assert (body["plugin"], body["hook"]) == (plugin, hook)
    assert body["detail"].startswith(f"plugin {plugin!r} failed in hook {hook}: RuntimeError")
    assert body["request_id"] in body["detail"]
    return body


@pytest.mark.parametrize("hook", ["order_validate", "order_hold", "order_price_adjustments", "order_status_changed"])
def test_a_plugin_raising_in_an_order_hook_is_named_and_nothing_is_written(make_api, hook, caplog):
    def failing(session, order, extra, caller, old_status=None, new_status=None):
        enqueue(session, "log", {"written": "before the failure"})  # would be sent if the order committed
        raise RuntimeError("broken plugin internals")
    failing.__name__ = hook
    signature = {"order_status_changed": lambda session, order, old_status, new_status, caller:
                 failing(session, order, None, caller)}.get(hook, failing)
    api = make_api(extra_plugins=[make_plugin("flaky", **{hook: signature})])
    shop = Shop(api)
    before, available = counts(api.ctx), shop.available(shop.otc["id"])

    body = assert_plugin_failed(shop.place_order([(shop.otc["id"], 2)], expect=None), "flaky", hook)
    assert "broken plugin internals" not in body["detail"]  # internals stay in the log
    assert counts(api.ctx) == before  # no order, line, reservation or outbox message survived
    assert shop.available(shop.otc["id"]) == available
    logged = next(r for r in caplog.records if "failed in hook" in r.getMessage())
    assert "flaky" in logged.getMessage() and logged.exc_info[1].__notes__ == [
        f"raised by plugin 'flaky' in hook {hook}"]


def test_a_plugin_raising_during_a_transition_leaves_the_order_as_it_was(make_api):
    def order_status_changed(session, order, old_status, new_status, caller):
        if new_status == "paid":
            raise RuntimeError("payment bookkeeping crashed")
    api = make_api(extra_plugins=[make_plugin("bookkeeper", order_status_changed=order_status_changed)])
    shop = Shop(api)
    order = shop.place_order().json
    before = counts(api.ctx)
    assert_plugin_failed(shop.pay(order["id"], expect=None), "bookkeeper", "order_status_changed")
    assert shop.order(order["id"])["status"] == "awaiting_payment"
    assert counts(api.ctx) == before  # the sale movements were rolled back with it


def test_a_refusal_from_a_hook_is_the_plugins_4xx_not_a_failure(make_api):
    def order_validate(session, order, extra, caller):
        raise ValidationFailed.one("note", "this pharmacy needs a note on every order")
    shop = Shop(make_api(extra_plugins=[make_plugin("strict", order_validate=order_validate)]))
    r = shop.place_order(expect=422)
    assert r.json["errors"] == [{"field": "note", "message": "this pharmacy needs a note on every order"}]
    assert "plugin" not in r.json


def test_a_read_naming_the_plugin_whose_serializer_fails(make_api):
    def product_serialize(product, data, channel, caller):
        raise RuntimeError("no such column")
    api = make_api(extra_plugins=[make_plugin("decorator", product_serialize=product_serialize)])
    made = api.post("/api/v1/products", json={"sku": "A1", "generic_name": "维生素C片", "approval_number": "国药准字H20000001",
                                              "rx_class": "otc_b", "price_fen": 500})
    assert_plugin_failed(made, "decorator", "product_serialize")
    assert api.get("/api/v1/products").json["items"] == []  # the product was not created
    with api.ctx.transaction() as s:  # a read of an existing product names the plugin too
        from core.catalog import create_product
        from tests.core.factories import ADMIN
        create_product(s, {"sku": "A2", "generic_name": "维生素C片", "approval_number": "国药准字H20000002",
                           "rx_class": "otc_b", "price_fen": 500}, ADMIN)
    assert_plugin_failed(api.get("/api/v1/products"), "decorator", "product_serialize")


def test_the_innermost_failing_plugin_is_named_when_hooks_call_hooks(tmp_path):
    def startup(registry):
        registry.hook.capabilities()  # the outer plugin asks the others: the inner one breaks
    def capabilities():
        raise RuntimeError("inner")
    outer, inner = make_plugin("outer", startup=startup), make_plugin("inner", capabilities=capabilities)
    with pytest.raises(RuntimeError, match="inner") as err:
        load_registry(Config(path=tmp_path / "p.toml", data={}), extra=[outer, inner], enabled=["outer", "inner"])
    assert hook_failure(err.value) == HookFailure("inner", "capabilities")


def test_merged_answers_name_the_plugin_too(tmp_path):
    def notification_senders():
        raise KeyError("sms")
    registry = load_registry(Config(path=tmp_path / "p.toml", data={}),
                             extra=[make_plugin("sms", notification_senders=notification_senders)], enabled=["sms"])
    with pytest.raises(KeyError) as err:
        registry.merged_dict("notification_senders", "notification kind")
    assert hook_failure(err.value) == HookFailure("sms", "notification_senders")
    assert registry.hooks_of("sms") == ["notification_senders"]


def test_every_hook_of_an_enabled_plugin_is_named_on_failure(tmp_path):
    """The naming covers each hookspec, whichever way the core calls it."""
    def raising(name):
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        return eval(f"lambda {params}: _raise()", {"_raise": _raise})  # the spec's own argument names
    names = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "pharmo2o_spec") and n != "startup"]
    registry = load_registry(Config(path=tmp_path / "p.toml", data={}),
                             extra=[make_plugin("all", **{n: raising(n) for n in names})], enabled=["all"])
    assert registry.hooks_of("all") == sorted(names)
    for name in names:
        [impl] = [i for i in getattr(registry.pm.hook, name).get_hookimpls() if i.plugin_name == "all"]
        with pytest.raises(RuntimeError) as err:
            impl.function(*[None] * len(impl.argnames))
        assert hook_failure(err.value) == HookFailure("all", name)


def _raise():
    raise RuntimeError("x")


def test_a_slow_sender_holds_neither_the_request_nor_other_requests(make_api):
    """Senders run after commit, from the job runner: a sender stuck on the outside world keeps
    no transaction open, so orders keep being placed while it hangs."""
    release, entered, calls = threading.Event(), threading.Event(), []

    def slow(payload):
        calls.append(payload["order_id"])
        entered.set()
        assert release.wait(20), "the test never released the sender"

    def order_status_changed(session, order, old_status, new_status, caller):
        if old_status is None:
            enqueue(session, "slow.push", {"order_id": order.id})
    plugin = make_plugin("slowpush", notification_senders=lambda: {"slow.push": slow},
                         order_status_changed=order_status_changed)
    api = make_api(extra_plugins=[plugin])
    shop = Shop(api)

    started = time.perf_counter()
    first = shop.place_order().json
    assert time.perf_counter() - started < 5  # well under the sender's 20 s: it did not run in the request
    assert calls == [] and [m["status"] for m in shop.outbox("slow.push")] == ["pending"]

    stop = threading.Event()
    runner = threading.Thread(target=run_forever, args=(api.ctx, stop, 0.05), daemon=True)
    runner.start()
    try:
        assert entered.wait(20), "the job runner never delivered the message"
        assert calls == [first["id"]]
        # the sender is stuck: the API still places (and pays) orders meanwhile
        second = shop.place_order().json
        shop.pay(second["id"])
        assert not release.is_set() and shop.outbox("slow.push")[0]["status"] == "sending"
    finally:
        release.set()
        stop.set()
        runner.join(20)
    assert not runner.is_alive()
    assert shop.outbox("slow.push")[0]["status"] == "sent"
    assert "outbox.dispatch" in {j.name for j in jobs_of(api.ctx.registry)}
